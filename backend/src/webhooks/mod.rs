//! Webhooks (docs/API.md §14): events are stored in the outbox before they
//! are sent (an event is never lost to a restart), then sent by a task of
//! their own (a slow or dead receiver never slows mail), signed the
//! Standard Webhooks way, and retried after 5 s, 30 s, 2 min, 10 min, 1 h,
//! 4 h and 8 h with the same `webhook-id` and a fresh signature. With
//! several servers a delivery is claimed with a lease, so one server sends
//! it at a time, and only the claim's holder records its outcome.

pub mod format;
pub mod refusal;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use mailroom_shared::webhooks::{Format, Webhook, WebhookTest};
use rand::RngCore;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::crypto::{Cipher, Secret};
use crate::metrics::Metrics;
use crate::store::{DeliveryResult, DueDelivery, NewDelivery, WebhookRow, WebhookStore};

/// Each request's limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before each retry; after the last, the delivery is `failed`.
pub const RETRY_AFTER_SECS: &[i64] = &[5, 30, 120, 600, 3600, 4 * 3600, 8 * 3600];
/// How long a claimed delivery stays this server's.
const LEASE_SECS: i64 = 120;
/// Deliveries claimed in one round, at most. A chat webhook's due
/// deliveries of a round go as one post, so a burst of events reaches its
/// channel in a few.
const BATCH: i64 = 64;
/// Requests at once by one server.
const SENDS_AT_ONCE: usize = 8;

/// How many deliveries a round claims: [`BATCH`], or fewer when requests
/// may take so long that [`SENDS_AT_ONCE`] at a time would not finish them
/// 20 s inside their claim's [`LEASE_SECS`] (another server would take them
/// and send them again). With [`REQUEST_TIMEOUT`], 64 take at most 80 s.
fn claim_size(timeout: Duration) -> i64 {
    let waves = (LEASE_SECS - 20) / (timeout.as_secs() as i64).max(1);
    (SENDS_AT_ONCE as i64 * waves).clamp(SENDS_AT_ONCE as i64, BATCH)
}
/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_millis(500);

/// When the delivery after `attempts` failed requests is due, or `None`
/// when it has had them all.
pub fn next_retry(attempts: u32, now: i64) -> Option<i64> {
    RETRY_AFTER_SECS
        .get(attempts.saturating_sub(1) as usize)
        .map(|wait| now + wait)
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why it is not a success.
    pub error: Option<String>,
}

impl Sent {
    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Each webhook's id and the events it wants.
type Subscriptions = Vec<(String, Vec<String>)>;

/// The subscriptions as last read.
struct Cached {
    read_at: tokio::time::Instant,
    /// A change on this server since: read again before use.
    stale: bool,
    list: Subscriptions,
}

/// What a chat webhook's test adds while `--public-url` is not set: its
/// posts then end without the link to what they are about.
pub const NO_LINK: &str = " Its posts carry no link to Mailroom: start Mailroom with --public-url set to the address people open it at (such as https://mail.contoso.com), and each post ends with a link to the message or the settings it is about.";

/// The events, the outbox and the sender.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    cipher: Arc<Cipher>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    timeout: Duration,
    wake: tokio::sync::Notify,
    owner: String,
    public_url: Option<String>,
    /// Which webhooks want which events, read again every few seconds so
    /// that other servers' changes count and an event without subscribers
    /// costs no write.
    subscribers: Mutex<Option<Cached>>,
    /// `quota.reached` once per crossing: the end of the window last announced.
    announced: Mutex<HashMap<String, i64>>,
    /// Where a message event's SUMMARY is read at its first try.
    queue: std::sync::OnceLock<Arc<dyn crate::store::queue::Queue>>,
}

/// The key of a message event's data until its first try reads the SUMMARY.
const MESSAGE_REF: &str = "$message";

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks { .. }")
    }
}

/// A new signing secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `webhook-signature` for a body (Standard Webhooks, `v1`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    standardwebhooks::Webhook::new(secret)
        .and_then(|w| w.sign(id, timestamp, body.as_bytes()))
        .map_err(|e| e.to_string())
}

/// The client for receivers: no redirects (one could send the event
/// somewhere the admin never chose), `timeout` for each request, and the
/// given roots or else the system's.
fn http_client(
    timeout: Duration,
    tls: Option<rustls::ClientConfig>,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder();
    let builder = match tls {
        Some(config) => builder.use_preconfigured_tls(config),
        None => builder.use_rustls_tls(),
    };
    builder
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("Mailroom/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

impl Webhooks {
    /// The service over a store; `timeout` is [`REQUEST_TIMEOUT`] except in tests.
    pub fn new(
        store: Arc<dyn WebhookStore>,
        cipher: Arc<Cipher>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        public_url: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = http_client(timeout, None)?;
        Ok(Webhooks {
            store,
            cipher,
            clock,
            metrics,
            http,
            timeout,
            wake: tokio::sync::Notify::new(),
            owner: crate::apps::new_server_id(),
            public_url,
            subscribers: Mutex::new(None),
            announced: Mutex::new(HashMap::new()),
            queue: std::sync::OnceLock::new(),
        })
    }

    /// The queue that message events read their SUMMARY from.
    pub fn set_queue(&self, queue: Arc<dyn crate::store::queue::Queue>) {
        let _ = self.queue.set(queue);
    }

    /// Wakes the sender (after events were stored elsewhere).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The outbox rows for message events, to store in the same transaction
    /// as the attempts they report ([`crate::store::queue::Queue::record_many`]):
    /// the data names the message and is read at the first try.
    pub async fn message_rows(&self, events: &[(String, &'static str)]) -> Vec<NewDelivery> {
        let mut rows = Vec::new();
        for (message, event) in events {
            let targets = self.subscribed(event).await;
            rows.extend(self.message_event(targets, event, message));
        }
        rows
    }

    /// The rows of one message event for `targets`: the data names the
    /// message, whose SUMMARY is read at the first try.
    fn message_event(&self, targets: Vec<String>, event: &str, message: &str) -> Vec<NewDelivery> {
        if targets.is_empty() {
            return Vec::new();
        }
        let message = message.to_string();
        let data = json!({MESSAGE_REF: message});
        self.rows(targets, event, data, Some(&message))
    }

    /// A builder of the outbox rows that announce messages `--max-queue-time`
    /// ended ([`crate::store::queue::Queue::expire_some`], which stores them
    /// with the change): `message.sent` for one a recipient had, else
    /// `message.failed`, to the webhooks subscribed now.
    pub async fn expiry_rows(self: &Arc<Self>) -> crate::store::queue::ExpiryEvents {
        let sent = self.subscribed("message.sent").await;
        let failed = self.subscribed("message.failed").await;
        let hooks = self.clone();
        Arc::new(move |message: &str, status| {
            let (event, targets) = match status {
                mailroom_shared::sending::Status::Sent => ("message.sent", &sent),
                _ => ("message.failed", &failed),
            };
            hooks.message_event(targets.clone(), event, message)
        })
    }

    /// One outbox row per webhook for an event that happens now (about
    /// `message`, for a message event).
    fn rows(
        &self,
        targets: Vec<String>,
        event: &str,
        data: Value,
        message: Option<&String>,
    ) -> Vec<NewDelivery> {
        let at = self.clock.rfc3339();
        let body = json!({"type": event, "timestamp": at, "data": data}).to_string();
        let at_unix = self.clock.wall().unix_timestamp();
        targets
            .into_iter()
            .map(|webhook_id| NewDelivery {
                id: crate::apps::new_message_id(),
                webhook_id,
                event: event.to_string(),
                body: body.clone(),
                at: at.clone(),
                at_unix,
                message: message.cloned(),
            })
            .collect()
    }

    /// A message event's body with the message's SUMMARY in `data`, fixed
    /// in the store so every retry sends the same; `None` when the event
    /// does not apply after all (a deferral that is not the first).
    async fn settle(&self, d: &DueDelivery) -> Result<Option<String>, String> {
        let Ok(mut body) = serde_json::from_str::<Value>(&d.body) else {
            return Ok(Some(d.body.clone()));
        };
        let Some(message) = body["data"][MESSAGE_REF].as_str().map(str::to_string) else {
            return Ok(Some(d.body.clone()));
        };
        let Some(queue) = self.queue.get() else {
            return Err("the queue is not connected".into());
        };
        let details = queue.details(&message).await.map_err(|e| e.to_string())?;
        let settled = match details {
            Some(details)
                if d.event == "message.deferred" && details.summary.attempt_count != 1 =>
            {
                None
            }
            Some(details) => {
                body["data"] = serde_json::to_value(&details.summary).unwrap_or_default();
                // Beyond the contract: the Message-ID, by which an app
                // that set its own (a helpdesk threading its replies)
                // knows the message, and message trace finds it.
                if let Some(id) = &details.message_id {
                    body["data"]["message_id"] = json!(id);
                }
                Some(body.to_string())
            }
            // Purged meanwhile: its id is all there is to say.
            None => {
                body["data"] = json!({"id": message});
                Some(body.to_string())
            }
        };
        self.store
            .settle_delivery(d.seq, settled.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(settled)
    }

    /// The store (for the routes).
    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.store
    }

    /// The cipher that keeps the signing secrets.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The time.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Has the cached subscriptions read again before their next use
    /// (after a change on this server).
    pub fn changed(&self) {
        if let Some(c) = self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            c.stale = true;
        }
    }

    /// The webhooks that want `event`: read at most every 5 seconds. When
    /// the read fails, the list last read stands in: the event was dropped
    /// (a message's event with it, although its attempt was recorded).
    async fn subscribed(&self, event: &str) -> Vec<String> {
        let (fresh, known) = {
            let cached = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            match cached.as_ref() {
                Some(c) if !c.stale && c.read_at.elapsed() < Duration::from_secs(5) => {
                    (Some(c.list.clone()), None)
                }
                Some(c) => (None, Some(c.list.clone())),
                None => (None, None),
            }
        };
        let list = match fresh {
            Some(list) => list,
            None => match self.store.webhooks().await {
                Ok(rows) => {
                    let list: Subscriptions = rows
                        .into_iter()
                        .map(|r| (r.webhook.id, r.webhook.events))
                        .collect();
                    *self.subscribers.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
                        read_at: tokio::time::Instant::now(),
                        stale: false,
                        list: list.clone(),
                    });
                    list
                }
                Err(e) => match known {
                    Some(list) => {
                        tracing::warn!(error = %e, event, "cannot read the webhooks; the event goes to those last read");
                        list
                    }
                    None => {
                        tracing::error!(error = %e, event, "cannot read the webhooks; the event is not stored");
                        return Vec::new();
                    }
                },
            },
        };
        list.into_iter()
            .filter(|(_, events)| events.iter().any(|e| e == event))
            .map(|(id, _)| id)
            .collect()
    }

    /// Whether any webhook wants this event (so its data is worth reading).
    pub async fn wants(&self, event: &str) -> bool {
        !self.subscribed(event).await.is_empty()
    }

    /// Stores the event for every webhook that wants it (committed before
    /// this returns), then wakes the sender.
    pub async fn emit(&self, event: &str, data: Value) {
        let targets = self.subscribed(event).await;
        if targets.is_empty() {
            return;
        }
        let rows = self.rows(targets, event, data, None);
        match self.store.enqueue_deliveries(rows).await {
            Ok(()) => self.wake.notify_one(),
            Err(e) => tracing::error!(error = %e, event, "cannot store the event"),
        }
    }

    /// Whether an event kept to once a day under `key` may go now (and
    /// counts it); `last_stored` (the type's last stored event) stands in
    /// for the first check after a start.
    pub fn once_a_day(&self, key: &str, now: i64, last_stored: Option<i64>) -> bool {
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        let until = match announced.get(key) {
            Some(until) => *until,
            None => last_stored.map_or(0, |t| t + 86_400),
        };
        if until > now {
            announced.insert(key.to_string(), until);
            return false;
        }
        announced.insert(key.to_string(), now + 86_400);
        true
    }

    /// `quota.reached` once per crossing: again only after `until` passed.
    pub async fn quota_reached(&self, who: (&str, &str), limit: &str, value: u64, until: i64) {
        let key = format!("{}={}|{limit}", who.0, who.1);
        let now = self.clock.wall().unix_timestamp();
        {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if announced.get(&key).is_some_and(|end| *end > now) {
                return;
            }
            announced.insert(key, until);
        }
        let until = crate::clock::rfc3339_at(until);
        let mut data = json!({"limit": limit, "value": value, "until": until});
        data[who.0] = json!(who.1);
        self.emit("quota.reached", data).await;
    }

    /// Sends one request now, signed; nothing is stored (the test route).
    pub async fn send(
        &self,
        url: &str,
        format: Format,
        secrets: &[&str],
        id: &str,
        body: &str,
    ) -> Sent {
        self.post(url, format, secrets, id, &[body]).await
    }

    /// Sends `bodies` (events' Standard Webhooks bodies) in one request,
    /// signed as `id`: a Standard webhook takes one, a chat webhook gets one
    /// post for them all ([`format::chat_digest`]).
    async fn post(
        &self,
        url: &str,
        format: Format,
        secrets: &[&str],
        id: &str,
        bodies: &[&str],
    ) -> Sent {
        let payload = match (format, bodies) {
            (Format::Standard, [body]) => body.to_string(),
            (Format::Standard, _) => {
                return Sent {
                    status: None,
                    error: Some(format!("{} events for one request", bodies.len())),
                }
            }
            (chat, _) => {
                let events: Vec<Value> = bodies
                    .iter()
                    .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
                    .collect();
                format::chat_digest(chat, &events, self.public_url.as_deref()).to_string()
            }
        };
        // Fresh for every request: receivers refuse one more than 5 minutes off.
        let timestamp = self.clock.wall().unix_timestamp();
        // One signature per secret, space-separated: while a replaced secret
        // still signs, a receiver that knows either one takes the request.
        let signature = match secrets
            .iter()
            .map(|secret| sign(secret, id, timestamp, &payload))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(s) => s.join(" "),
            Err(e) => {
                return Sent {
                    status: None,
                    error: Some(format!("the secret cannot sign: {e}")),
                }
            }
        };
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Sent {
                status: Some(r.status().as_u16()),
                error: None,
            },
            Ok(r) if r.status().is_redirection() => Sent {
                status: Some(r.status().as_u16()),
                error: Some(format!(
                    "HTTP {}: the receiver redirects, and Mailroom does not follow redirects; use the final URL",
                    r.status().as_u16()
                )),
            },
            Ok(r) => {
                let status = r.status().as_u16();
                // What it said, if it says it in time; a body that does not
                // come leaves the status alone.
                let (body, _) = crate::upstream::read_capped(r, refusal::READ_BYTES)
                    .await
                    .unwrap_or_default();
                Sent {
                    status: Some(status),
                    error: Some(refusal::refusal(status, format, &body, url)),
                }
            }
            Err(e) if e.is_timeout() => Sent {
                status: None,
                error: Some(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                )),
            },
            // Without the URL, which for Slack and Teams is the credential
            // (this text is logged and shown).
            Err(e) => {
                let chain = crate::upstream::entra::error_chain(&e.without_url());
                let untrusted = crate::upstream::untrusted_certificate(&chain);
                Sent {
                    status: None,
                    error: Some(if untrusted {
                        format!("its TLS certificate is not trusted ({chain}): if it comes from your organisation's own CA, put that CA in --extra-ca-file; if it is for another host name, use that name in the URL")
                    } else {
                        chain
                    }),
                }
            }
        }
    }

    /// Trusts these roots (the system's and `--extra-ca-file`'s) for the
    /// receivers: one inside the organisation may have a certificate from
    /// its own CA, as a private SMTP relay may.
    pub fn trusting(mut self, tls: rustls::ClientConfig) -> Result<Self, String> {
        self.http = http_client(self.timeout, Some(tls))?;
        Ok(self)
    }

    /// The secrets that sign a webhook's requests now: its own, then the
    /// one it had before a new one, until that one's time is up.
    fn secrets_of(&self, row: &WebhookRow) -> Result<Vec<Secret>, String> {
        let now = self.clock.wall().unix_timestamp();
        let previous = row.previous_at(now).map(|(secret, _)| secret);
        std::iter::once(&row.secret)
            .chain(previous)
            .map(|s| {
                self.cipher
                    .decrypt("webhook_secret", s)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// `POST /api/webhooks/{id}/test`: one real request of `webhook.test`.
    pub async fn test(&self, row: &WebhookRow) -> WebhookTest {
        let secrets = match self.secrets_of(row) {
            Ok(s) => s,
            Err(e) => {
                return WebhookTest {
                    ok: false,
                    status: None,
                    message: format!("The signing secret cannot be read ({e})."),
                }
            }
        };
        let body = json!({"type": mailroom_shared::webhooks::TEST_EVENT, "timestamp": self.clock.rfc3339(), "data": {}}).to_string();
        let w = &row.webhook;
        let sent = self
            .send(
                &w.url,
                w.format,
                &secrets.iter().map(Secret::expose).collect::<Vec<_>>(),
                &crate::apps::new_message_id(),
                &body,
            )
            .await;
        WebhookTest {
            ok: sent.ok(),
            status: sent.status,
            message: match &sent.error {
                None => {
                    let mut said = format!("{} answered {}.", w.url, sent.status.unwrap_or(200));
                    // A chat post's one link needs the address people use.
                    if w.format != Format::Standard && self.public_url.is_none() {
                        said.push_str(NO_LINK);
                    }
                    said
                }
                Some(e) => format!("{} did not take the test event: {e}.", w.url),
            },
        }
    }

    /// Sends due deliveries until `stop`; wakes on new events.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            // A bug in one round costs that round: the deliveries it claimed
            // go again when their lease lapses. A panic would end the task,
            // and no event would go out again until a restart.
            let sent = crate::error::caught(self.send_due())
                .await
                .unwrap_or_else(|what| {
                    tracing::error!(panic = %what, "a webhook round panicked; its deliveries go again later");
                    0
                });
            if sent == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One round: claims due deliveries and sends them at once; how many.
    pub async fn send_due(&self) -> usize {
        let now = self.clock.wall().unix_timestamp();
        let due = match self
            .store
            .claim_deliveries(now, &self.owner, LEASE_SECS, claim_size(self.timeout))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook outbox");
                return 0;
            }
        };
        if due.is_empty() {
            return 0;
        }
        let hooks: HashMap<String, WebhookRow> = match self.store.webhooks().await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| (r.webhook.id.clone(), r))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhooks");
                return 0;
            }
        };
        let n = due.len();
        // A chat webhook's deliveries go together; each other one alone.
        let mut units: Vec<(Option<WebhookRow>, Vec<DueDelivery>)> = Vec::new();
        for d in due {
            let hook = hooks.get(&d.webhook_id).cloned();
            let chat = hook
                .as_ref()
                .is_some_and(|h| h.webhook.format != Format::Standard);
            match units
                .iter_mut()
                .find(|(h, _)| chat && h.as_ref().is_some_and(|h| h.webhook.id == d.webhook_id))
            {
                Some((_, together)) => together.push(d),
                None => units.push((hook, vec![d])),
            }
        }
        futures_util::stream::iter(units)
            .map(|(hook, due)| self.deliver(due, hook))
            .buffer_unordered(SENDS_AT_ONCE)
            .for_each(|()| async {})
            .await;
        n
    }

    /// Sends `due` (one delivery, or a chat webhook's several) in one
    /// request and records its outcome on each.
    async fn deliver(&self, due: Vec<DueDelivery>, hook: Option<WebhookRow>) {
        let mut ready = Vec::with_capacity(due.len());
        for mut d in due {
            match self.settle(&d).await {
                Ok(Some(body)) => {
                    d.body = body;
                    ready.push(d);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read a webhook event's message"),
            }
        }
        let Some(first) = ready.first() else {
            return;
        };
        let sent = match &hook {
            None => Sent {
                status: None,
                error: Some("the webhook was deleted".into()),
            },
            Some(row) => match self.secrets_of(row) {
                Ok(secrets) => {
                    let bodies: Vec<&str> = ready.iter().map(|d| d.body.as_str()).collect();
                    let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
                    let w = &row.webhook;
                    self.post(&w.url, w.format, &secrets, &first.id, &bodies)
                        .await
                }
                Err(e) => Sent {
                    status: None,
                    error: Some(format!("the signing secret cannot be read ({e})")),
                },
            },
        };
        if let Some(e) = &sent.error {
            let webhook = first.webhook_id.clone();
            self.metrics
                .webhook_failures
                .get_or_create(&crate::metrics::WebhookLabel { webhook })
                .inc();
            tracing::warn!(webhook = %first.webhook_id, id = %first.id, events = ready.len(), error = %e, "webhook delivery failed");
        }
        for d in &ready {
            self.record(d, hook.is_some(), &sent).await;
        }
    }

    /// Records one delivery's request: delivered, due again on the retry
    /// schedule, or failed (after the last retry, or its webhook deleted).
    async fn record(&self, d: &DueDelivery, webhook_exists: bool, sent: &Sent) {
        let attempts = d.attempts + 1;
        let now = self.clock.wall().unix_timestamp();
        let (status, next_unix) = match (&sent.error, next_retry(attempts, now)) {
            (None, _) => ("delivered", now),
            (Some(_), _) if !webhook_exists => ("failed", now),
            (Some(_), Some(next)) => ("pending", next),
            (Some(_), None) => ("failed", now),
        };
        let result = DeliveryResult {
            attempts,
            status,
            next_unix,
            last_status: sent.status,
            last_error: sent.error.clone(),
            at: self.clock.rfc3339(),
        };
        if let Err(e) = self.store.finish_delivery(d, result).await {
            tracing::error!(error = %e, "cannot record a webhook delivery");
        }
    }
}

/// A webhook as the API shows it, with a fresh id and time.
pub fn new_webhook(url: String, events: Vec<String>, format: Format, now: String) -> Webhook {
    Webhook {
        id: crate::apps::new_id("wh"),
        url,
        events,
        format,
        created_at: now,
        last_success_at: None,
        last_failure_at: None,
        old_secret_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own test vector (docs/REFERENCE.md).
    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // One byte more in the body, and it differs.
        assert_ne!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232315}"#
            )
            .unwrap(),
            sig
        );
    }

    /// A round of the sender that panics (a faulty clock stands in for any
    /// bug) costs that round only: the sender goes on to the next round
    /// instead of ending, and stops when told.
    #[tokio::test]
    async fn a_round_that_panics_costs_that_round_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let cipher = crate::crypto::Cipher::load_or_create_at(&dir.path().join("key"), true);
        let clock = Arc::new(crate::clock::FaultyClock {
            panics: 2,
            ..Default::default()
        });
        let hooks = Webhooks::new(
            Arc::new(store),
            Arc::new(cipher.unwrap()),
            clock.clone(),
            Arc::new(Metrics::new(Default::default())),
            None,
            Duration::from_secs(5),
        )
        .map(Arc::new)
        .unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(hooks.clone().run(rx));
        let started = std::time::Instant::now();
        // Two rounds panic; the third reads the time and finds nothing due.
        while clock.readings.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(!task.is_finished(), "the sender ended after a panic");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no third round"
            );
            hooks.wake();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the sender stops when told")
            .expect("and did not panic");
    }

    #[test]
    fn a_round_claims_what_it_can_send_within_its_lease() {
        assert_eq!(claim_size(REQUEST_TIMEOUT), 64);
        assert_eq!(claim_size(Duration::from_millis(300)), 64);
        // 30 s a request: 8 at a time for 3 waves, 90 s of the 120.
        assert_eq!(claim_size(Duration::from_secs(30)), 24);
        assert_eq!(claim_size(Duration::from_secs(600)), 8);
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let waits: Vec<i64> = (1..=8)
            .filter_map(|n| next_retry(n, 1000))
            .map(|t| t - 1000)
            .collect();
        assert_eq!(waits, vec![5, 30, 120, 600, 3600, 14400, 28800]);
        assert_eq!(next_retry(8, 0), None);
    }

    #[test]
    fn secrets_are_random_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a != b);
        assert!(sign(&a, "msg_1", 1, "{}").unwrap().starts_with("v1,"));
    }
}
