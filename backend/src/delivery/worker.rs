//! A worker: claims due messages and sends them over one signed-in
//! connection, reused for consecutive messages.

use super::outcome::transcript_text;
use super::*;

impl Engine {
    pub(super) async fn work(self, worker: u32, mut stop: watch::Receiver<bool>) {
        // Claims are this worker's own: when a batch outlasts its lease and
        // another worker of this server takes the lapsed messages, this one's
        // renewal fails and it leaves them (with the server's id alone it
        // renewed the other's claim, and both sent them).
        static WORKERS: AtomicU64 = AtomicU64::new(0);
        let lease = Lease {
            owner: format!(
                "{}/w{}",
                self.lease.owner,
                WORKERS.fetch_add(1, Ordering::Relaxed)
            ),
            seconds: self.lease.seconds,
        };
        let mut conn: Option<Connection> = None;
        // With several servers, a connection slot of the profile (for all
        // servers together) is held while this worker has messages.
        let mut slot: Option<(u32, tokio::time::Instant)> = None;
        while !stopping(&stop) {
            let paused = self.is_paused().await;
            if paused {
                self.maybe_paused.store(true, Ordering::Relaxed);
                if let Err(wait) = self.probe_due().await {
                    conn = None;
                    self.wait(&mut stop, wait).await;
                    continue;
                }
            }
            if self.queue.shared() {
                slot = self.hold_slot(worker, slot).await;
                if slot.is_none() {
                    conn = None;
                    self.wait(&mut stop, Duration::from_secs(1)).await;
                    continue;
                }
            }
            // With a rate limit, claim one at a time: a claimed message shows as
            // `sending`, and it should not wait for a slot while it does.
            let batch = if self.options.rate_per_minute == 0 && !paused {
                claim_size(self.per_message())
            } else {
                1
            };
            let claimed = match self
                .queue
                .claim(&self.profile, unix(&*self.clock), batch, &lease)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(worker, error = %e, "cannot claim messages");
                    self.wait(&mut stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                if let Some(c) = conn.take() {
                    c.open.session.quit().await;
                }
                if let Some((n, _)) = slot.take() {
                    let _ = self
                        .queue
                        .free_connection_slot(&self.profile, n, &self.lease.owner)
                        .await;
                }
                self.wait(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
            // The profile's rolling day: what does not fit waits, with no attempt.
            let claimed = self.within_quota(claimed, &lease).await;
            // The settings are read once per batch; a save in between shows
            // as a new version, and the next batch opens a new connection.
            let current = self
                .settings
                .load_current()
                .await
                .map_err(|e| e.to_string());
            let claimed_at = tokio::time::Instant::now();
            let half_lease = Duration::from_secs(self.lease.seconds.max(0) as u64) / 2;
            let mut rest = claimed.into_iter();
            while let Some(message) = rest.next() {
                self.take_slot().await;
                // The pace of a working upstream counts the waits for Graph's
                // windows too, so that claims shrink while they last.
                let started = tokio::time::Instant::now();
                if let Some(at) = self.graph_room(&message, &current) {
                    // The rest of the batch goes back to the queue rather than
                    // wait with its leases running out; this one stays claimed.
                    let ids = rest.by_ref().map(|m| m.id).collect();
                    if let Err(e) = self.queue.release(ids, &lease.owner).await {
                        tracing::error!(worker, error = %e, "cannot release claimed messages");
                    }
                    // Its claim is renewed meanwhile ([`Engine::renewing`]);
                    // one lost anyway is found by the renewal below.
                    let wait = async {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => {}
                            _ = stop.changed() => {}
                        }
                    };
                    self.renewing(&message.id, &lease, wait).await;
                    // With several servers, the connection slot may have
                    // lapsed meanwhile: it is taken again (or another) first.
                    if !stopping(&stop) && self.queue.shared() {
                        slot = self.hold_slot(worker, slot).await;
                    }
                    if stopping(&stop) || (self.queue.shared() && slot.is_none()) {
                        if let Err(e) = self.queue.release(vec![message.id], &lease.owner).await {
                            tracing::error!(worker, error = %e, "cannot release a claimed message");
                        }
                        break;
                    }
                }
                // Late in a slow batch (a rate limit, a slow server), the lease
                // is renewed before the attempt; one that ran out may be
                // another server's now: leave that message to it.
                let renewed = if claimed_at.elapsed() < half_lease {
                    Ok(true)
                } else {
                    self.queue
                        .renew(&message.id, unix(&*self.clock), &lease)
                        .await
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(worker, error = %e, "cannot renew a lease");
                        let ids = std::iter::once(message.id)
                            .chain(rest.by_ref().map(|m| m.id))
                            .collect();
                        let _ = self.queue.release(ids, &lease.owner).await;
                        break;
                    }
                }
                let which = message.without_body();
                let attempt = self.guarded(&which, self.deliver(message, &current, conn));
                conn = self.renewing(&which.id, &lease, attempt).await;
                // The pace of a working upstream: an attempt that paused
                // delivery (refused at once, most often) says nothing of it.
                if conn.is_some() {
                    self.measured(started.elapsed());
                }
                // A pause or a stop ends the batch: the others go back unattempted.
                let paused = conn.is_none() && self.is_paused().await;
                if paused || stopping(&stop) {
                    let ids = rest.by_ref().map(|m| m.id).collect();
                    if let Err(e) = self.queue.release(ids, &lease.owner).await {
                        tracing::error!(worker, error = %e, "cannot release claimed messages");
                    }
                }
            }
        }
        // Every attempt is committed before the worker ends.
        self.flush_records().await;
        if let Some(c) = conn {
            c.open.session.quit().await;
        }
        if let Some((n, _)) = slot {
            let _ = self
                .queue
                .free_connection_slot(&self.profile, n, &self.lease.owner)
                .await;
        }
    }

    /// How long a message has taken to send lately, if one was sent.
    fn per_message(&self) -> Option<Duration> {
        match self.per_message_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Adds one attempt's time to the moving average (weight 1/8).
    fn measured(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .per_message_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |was| {
                Some(if was == 0 {
                    took
                } else {
                    was - was / 8 + took / 8
                })
            });
    }

    /// Whether this profile's delivery is paused.
    async fn is_paused(&self) -> bool {
        let state = self.queue.pause_state(&self.profile).await;
        state.ok().flatten().is_some()
    }

    /// Keeps (renewing at half its lease) or takes one of the profile's
    /// connection slots, shared by all servers; `None` when all are taken.
    async fn hold_slot(
        &self,
        worker: u32,
        held: Option<(u32, tokio::time::Instant)>,
    ) -> Option<(u32, tokio::time::Instant)> {
        let lease = Duration::from_secs(self.lease.seconds.max(1) as u64);
        if let Some((_, at)) = held {
            if at.elapsed() < lease / 2 {
                return held;
            }
        }
        let now = unix(&*self.clock);
        let until = now + self.lease.seconds.max(1);
        let owner = format!("{}/{worker}", self.lease.owner);
        let n = self.options.connections.max(1);
        // Its own slot first, then any other free one.
        let order = held
            .map(|(s, _)| s)
            .into_iter()
            .chain((0..n).map(|i| (worker + i) % n));
        for s in order {
            match self
                .queue
                .take_connection_slot(&self.profile, s, &owner, now, until)
                .await
            {
                Ok(true) => return Some((s, tokio::time::Instant::now())),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take a connection slot");
                    return None;
                }
            }
        }
        None
    }

    /// Counts the batch toward the profile's `recipients_per_day`; messages
    /// past it wait (deferred, code `quota`, no attempt) until the rolling
    /// window allows them, and `quota.reached` goes out once per crossing.
    async fn within_quota(&self, claimed: Vec<Claimed>, lease: &Lease) -> Vec<Claimed> {
        let sizes: Vec<(String, u32)> = claimed
            .iter()
            .map(|m| (m.id.clone(), m.recipients.len() as u32))
            .collect();
        let now = unix(&*self.clock);
        let limit = self.options.recipients_per_day;
        let (fit, next) = match self
            .queue
            .take_quota(&self.profile, sizes, limit, now)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot count the profile's daily recipients");
                // Nothing of this claim was counted; the release gives back
                // a message's newest count, for a partly delivered one an
                // earlier try's (an undercount of a few, on a database error).
                let ids = claimed.into_iter().map(|m| m.id).collect();
                let _ = self.queue.release(ids, &lease.owner).await;
                return Vec::new();
            }
        };
        let mut claimed = claimed;
        let waiting = claimed.split_off(fit);
        if let (Some(until), false) = (next, waiting.is_empty()) {
            let limit = limit.unwrap_or_default();
            let when = crate::clock::rfc3339_at(until).unwrap_or_default();
            let text = format!(
                "This profile reached its limit of {limit} recipients in 24 hours; the message waits until {when}, when the rolling window allows it (nothing fails for it)."
            );
            for m in &waiting {
                if let Err(e) = self
                    .queue
                    .quota_wait(&m.id, until, &text, &self.clock.rfc3339(), now, false)
                    .await
                {
                    tracing::error!(error = %e, "cannot defer a message for the daily limit");
                }
            }
            tracing::info!(profile = %self.profile, n = waiting.len(), "daily recipients reached: messages wait");
            self.quota_reached(limit, until).await;
        }
        claimed
    }

    pub(super) async fn deliver(
        &self,
        m: Claimed,
        current: &Result<Current, String>,
        conn: Option<Connection>,
    ) -> Option<Connection> {
        let current = match current {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the settings");
                let d = Diagnosis {
                    kind: Kind::Pause,
                    stage: Stage::Connect,
                    code: None,
                    message: "Mailroom could not read its saved settings.".into(),
                    hint: "Check the server log and the database, then save the settings again."
                        .into(),
                };
                self.release_and_pause(&m, &d, None).await;
                return None;
            }
        };
        let Some(settings) = current.secret_complete() else {
            let d = Diagnosis {
                kind: Kind::Pause,
                stage: Stage::Connect,
                code: None,
                message: "No outgoing email settings are saved yet, so nothing can be delivered."
                    .into(),
                hint: "Configure the email server in Mailroom, test it, and save it: waiting messages go out at once."
                    .into(),
            };
            self.release_and_pause(&m, &d, None).await;
            return None;
        };
        let mut m = m;
        m.transport = Some(settings.transport);
        // A connection opened with older settings is not reused.
        let mut conn =
            conn.filter(|c| c.version == current.version && c.sent < MESSAGES_PER_CONNECTION);
        if conn.is_none() {
            let cert = match self.certificate(current, &settings) {
                Ok(cert) => cert,
                Err(d) => {
                    self.release_and_pause(&m, &d, None).await;
                    return None;
                }
            };
            match self.tester.open_session(&settings, cert.as_ref()).await {
                Ok(open) => {
                    conn = Some(Connection {
                        open,
                        version: current.version,
                        sent: 0,
                    })
                }
                Err(f) => {
                    let transcript = transcript_text(&f.transcript);
                    self.release_and_pause(&m, &f.diagnosis, Some(transcript))
                        .await;
                    return None;
                }
            }
        }
        let mut c = conn?;
        c.sent += 1;
        if matches!(c.open.session, Way::Graph(_)) {
            return self.deliver_graph(m, &settings, c).await;
        }
        let from: Address = match m.mail_from.parse() {
            Ok(a) => a,
            Err(e) => {
                let d = Diagnosis {
                    kind: Kind::Permanent,
                    stage: Stage::Send,
                    code: None,
                    message: format!("The envelope sender {} is not usable: {e}.", m.mail_from),
                    hint: "Submit the message again with a valid From address.".into(),
                };
                self.finish_failed(&m, &d, None).await;
                return Some(c);
            }
        };
        let to: Vec<Address> = m
            .recipients
            .iter()
            .filter_map(|(_, a)| a.parse().ok())
            .collect();
        let Way::Smtp(session) = &mut c.open.session else {
            return None;
        };
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            session.send_each(&from, &to, &m.body, &mut c.open.progress),
        )
        .await
        .unwrap_or(Err(SmtpFailure::Timeout(Stage::Send)));
        match refused_for_the_sender(result) {
            Ok(outcomes) => {
                let reusable = self.finish_sent(&m, &settings, outcomes, &mut c).await;
                reusable.then_some(c)
            }
            Err(f) => {
                let sent_as = diagnose::as_sent(&settings, &m.mail_from);
                let d = diagnose::smtp_failure(&f, &sent_as, &self.tester.timeouts());
                let d = diagnose::settings_sender_refused(d, &m.mail_from, &settings);
                let d = diagnose::app_address_refused(d, &m.mail_from, &settings);
                let transcript = Some(self.masked_transcript(&mut c));
                match d.kind {
                    Kind::Pause => {
                        self.release_and_pause(&m, &d, transcript).await;
                        None
                    }
                    Kind::Quota => {
                        self.wait_quota(&m, &d, None).await;
                        self.reset_or_drop(c, true).await
                    }
                    Kind::Temporary => {
                        self.defer(&m, &d, transcript, None).await;
                        // A dropped connection is gone; a 4xx leaves it usable after RSET.
                        let alive = matches!(f, SmtpFailure::Reply { code, .. } if code != 421);
                        self.reset_or_drop(c, alive).await
                    }
                    Kind::Permanent => {
                        self.finish_failed(&m, &d, transcript).await;
                        self.reset_or_drop(c, true).await
                    }
                }
            }
        }
    }

    /// The stored certificate these settings sign in with, if they use one.
    pub(super) fn certificate(
        &self,
        current: &Current,
        settings: &Settings,
    ) -> Result<Option<Arc<CertKey>>, Diagnosis> {
        let Some(row) = current.certificate_for_delivery(settings) else {
            return Ok(None);
        };
        self.settings.open_certificate(row).map(Some).map_err(|e| Diagnosis {
            kind: Kind::Pause,
            stage: Stage::Token,
            code: None,
            message: format!("The stored certificate cannot be used ({e})."),
            hint: "Generate a new certificate under Settings, upload it in Entra, send a test email and save.".into(),
        })
    }

    /// Runs one message's attempt. A panic in it (a bug, in Mailroom or in
    /// a crate it uses, on some odd message) costs that message one attempt,
    /// deferred with the reason, and its connection: it never ends the
    /// worker. Without this, a message that panics its worker each time was
    /// claimed again when its lease lapsed and took the next worker with it,
    /// until the profile delivered nothing at all and said nothing.
    ///
    /// A panic after the attempt's outcome went to the recorder (sent,
    /// deferred, failed) keeps that outcome: deferring on top of a `sent`
    /// would send the message again.
    pub(super) async fn guarded(
        &self,
        m: &Claimed,
        attempt: impl std::future::Future<Output = Option<Connection>>,
    ) -> Option<Connection> {
        let recorded = Arc::new(AtomicBool::new(false));
        match crate::error::caught(RECORDED.scope(recorded.clone(), attempt)).await {
            Ok(conn) => conn,
            Err(what) if recorded.load(Ordering::Relaxed) => {
                tracing::error!(id = %m.id, panic = %what, "an attempt panicked after its outcome was recorded; the message keeps that outcome");
                None
            }
            Err(what) => {
                tracing::error!(id = %m.id, panic = %what, "an attempt panicked; the message is deferred");
                let d = internal_error(&what);
                self.defer(m, &d, None, None).await;
                None
            }
        }
    }

    pub(super) async fn reset_or_drop(&self, mut c: Connection, alive: bool) -> Option<Connection> {
        if alive && c.open.session.reset(&mut c.open.progress).await.is_ok() {
            Some(c)
        } else {
            None
        }
    }
}

tokio::task_local! {
    /// Set once the attempt that [`Engine::guarded`] runs has handed its
    /// outcome to the recorder ([`Engine::record`]).
    pub(super) static RECORDED: Arc<AtomicBool>;
}

/// What an attempt that panicked shows on its message.
fn internal_error(what: &str) -> Diagnosis {
    Diagnosis {
        kind: Kind::Temporary,
        stage: Stage::Send,
        code: None,
        message: crate::upstream::cut_text(format!(
            "Mailroom stopped this attempt with an internal error ({what})."
        )),
        hint: "The message is kept and tried again later, like any deferred message. If it happens again, report it with this message's id and the server log's lines around \"an attempt panicked\"; other messages go on meanwhile.".into(),
    }
}

/// A transaction whose every recipient was refused for who sends, not for
/// who receives (Exchange's `5.1.8` for a mailbox it blocked, its daily
/// quota, sign-in trouble), is that refusal: delivery pauses or waits, as
/// when MAIL FROM is refused, instead of failing the message recipient by
/// recipient.
fn refused_for_the_sender(
    result: Result<Vec<Result<(), SmtpFailure>>, SmtpFailure>,
) -> Result<Vec<Result<(), SmtpFailure>>, SmtpFailure> {
    let Ok(outcomes) = result else {
        return result;
    };
    let first = match outcomes.as_slice() {
        [Err(first), rest @ ..] if rest.iter().all(Result::is_err) => first,
        _ => return Ok(outcomes),
    };
    if matches!(diagnose::classify(first), Kind::Pause | Kind::Quota) {
        Err(first.clone())
    } else {
        Ok(outcomes)
    }
}
