//! What an attempt did, recorded: per-recipient outcomes, deferrals,
//! failures and pauses, each with its diagnosis and the masked transcript.

use super::*;
use mailroom_shared::sending::RecipientState;

impl Engine {
    pub(super) async fn pause(&self, d: &Diagnosis) {
        let paused = Paused {
            since: self.clock.rfc3339(),
            stage: d.stage,
            code: d.code.clone(),
            message: d.message.clone(),
            hint: Some(d.hint.clone()),
        };
        tracing::warn!(profile = %self.profile, stage = d.stage.as_str(), code = ?d.code, "delivery paused: {}", d.message);
        *self.last_probe.lock().await = Some(tokio::time::Instant::now());
        self.maybe_paused.store(true, Ordering::Relaxed);
        let was = self.queue.pause_state(&self.profile).await.ok().flatten();
        // The event is stored first: a crash in between may announce a pause
        // twice (it is found again at the next try), never miss one.
        if was.is_none() {
            let mut data = serde_json::to_value(&paused).unwrap_or_default();
            data["profile"] = self.profile.as_ref().into();
            self.webhooks.emit("delivery.paused", data).await;
        }
        if let Err(e) = self.queue.set_pause(&self.profile, Some(paused)).await {
            tracing::error!(error = %e, "cannot record the pause");
        }
    }

    /// Ends a pause, if there is one, and says so (`delivery.resumed`).
    pub(super) async fn resume(&self) {
        let Ok(Some(was)) = self.queue.pause_state(&self.profile).await else {
            return;
        };
        tracing::info!(profile = %self.profile, "delivery resumed");
        // Stored before the pause ends, as for the pause itself.
        let data = serde_json::json!({
            "profile": self.profile.as_ref(),
            "since": was.since,
            "until": self.clock.rfc3339(),
        });
        self.webhooks.emit("delivery.resumed", data).await;
        if let Err(e) = self.queue.set_pause(&self.profile, None).await {
            tracing::error!(error = %e, "cannot end the pause");
        }
    }

    /// Hands an attempt to the recorder. The worker goes on with the next
    /// message meanwhile (the attempt's message stays `sending` under this
    /// server's lease until the commit, so nobody claims it);
    /// [`Engine::flush_records`] waits for the commits.
    pub(super) async fn record(&self, id: &str, r: AttemptRecord) {
        // Outside an attempt (the guard's own deferral, tests) there is no flag.
        let _ = super::worker::RECORDED.try_with(|r| r.store(true, Ordering::Relaxed));
        if self
            .recorder
            .send(ToRecord::Attempt(id.to_string(), r))
            .is_err()
        {
            tracing::error!(id, "the recorder has stopped; the attempt is not recorded");
        }
    }

    /// Waits until every attempt handed to the recorder so far is committed.
    pub(super) async fn flush_records(&self) {
        let (ack, done) = oneshot::channel();
        if self.recorder.send(ToRecord::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }

    pub(super) fn attempt(
        &self,
        m: &Claimed,
        ok: bool,
        d: Option<&Diagnosis>,
        message: String,
    ) -> Attempt {
        self.metrics
            .attempts
            .get_or_create(&crate::metrics::AttemptLabels {
                transport: m
                    .transport
                    .map_or("none", mailroom_shared::EnumId::id)
                    .to_string(),
                outcome: if ok {
                    "sent"
                } else {
                    d.map_or("failed", |d| kind_name(d.kind))
                }
                .to_string(),
            })
            .inc();
        Attempt {
            transport: m.transport,
            at: self.clock.rfc3339(),
            ok,
            stage: d.map(|d| d.stage),
            code: d.and_then(|d| d.code.clone()),
            message: d.map(|d| d.message.clone()).unwrap_or(message),
            hint: d.map(|d| d.hint.clone()),
        }
    }

    /// The message goes back to `queued` (not counted as an attempt) and the
    /// queue pauses, with the diagnosis and transcript kept on the message.
    pub(super) async fn release_and_pause(
        &self,
        m: &Claimed,
        d: &Diagnosis,
        transcript: Option<String>,
    ) {
        self.pause(d).await;
        // Nothing went out: its record uncounts it from the profile's day
        // too (while its claim holds: a late one leaves the holder's count).
        let record = AttemptRecord {
            attempt: self.attempt(m, false, Some(d), String::new()),
            transcript,
            recipients: Vec::new(),
            status: Status::Queued,
            next_attempt_unix: unix(&*self.clock),
            counts: false,
            owner: m.owner.clone(),
        };
        self.record(&m.id, record).await;
    }

    pub(super) fn masked_transcript(&self, c: &mut Connection) -> String {
        let mut lines = c.open.progress.take_transcript();
        let refs: Vec<&str> = c.open.secrets.iter().map(String::as_str).collect();
        mask_transcript(&mut lines, &refs);
        transcript_text(&lines)
    }

    /// Deferred with backoff, and not before `at_least` when the upstream
    /// said how long to wait (`Retry-After`).
    pub(super) async fn defer(
        &self,
        m: &Claimed,
        d: &Diagnosis,
        transcript: Option<String>,
        at_least: Option<Duration>,
    ) {
        let wait = backoff(m.attempt_count + 1).max(at_least.unwrap_or_default());
        self.deferred(m, d, transcript, wait, true).await;
    }

    /// The mailbox's sending quota is used up (Exchange's daily-limit reply):
    /// the message waits like one past its profile's `recipients_per_day`
    /// (docs/API.md §15): deferred for `wait` (an hour when not said), code
    /// `quota`, with no attempt added and no count toward `--max-queue-time`;
    /// `quota.reached` goes out once per crossing.
    pub(super) async fn wait_quota(&self, m: &Claimed, d: &Diagnosis, wait: Option<Duration>) {
        let wait = wait.unwrap_or(Duration::from_secs(3600));
        let until = unix(&*self.clock) + wait.as_secs().max(1) as i64;
        let said = d
            .code
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let when = crate::clock::rfc3339_at(until).unwrap_or_default();
        let text = format!(
            "{}{said} {} This message is tried again at {when}.",
            d.message, d.hint
        );
        if let Err(e) = self
            .queue
            .quota_wait(
                &m.id,
                until,
                &text,
                &self.clock.rfc3339(),
                unix(&*self.clock),
                true,
            )
            .await
        {
            tracing::error!(error = %e, "cannot defer a message for the mailbox's quota");
        }
        self.quota_reached(self.options.recipients_per_day.unwrap_or_default(), until)
            .await;
    }

    /// A profile's daily limit was reached: counted, and `quota.reached`
    /// once per crossing.
    pub(super) async fn quota_reached(&self, limit: u32, until: i64) {
        self.metrics
            .quota_reached
            .get_or_create(&Metrics::quota("profile", &self.profile))
            .inc();
        self.webhooks
            .quota_reached(
                ("profile", &self.profile),
                "recipients_per_day",
                u64::from(limit),
                until,
            )
            .await;
    }

    async fn deferred(
        &self,
        m: &Claimed,
        d: &Diagnosis,
        transcript: Option<String>,
        wait: Duration,
        counts: bool,
    ) {
        let record = AttemptRecord {
            attempt: self.attempt(m, false, Some(d), String::new()),
            transcript,
            recipients: Vec::new(),
            status: Status::Deferred,
            next_attempt_unix: unix(&*self.clock) + wait.as_secs() as i64,
            counts,
            owner: m.owner.clone(),
        };
        self.record(&m.id, record).await;
    }

    pub(super) async fn finish_failed(
        &self,
        m: &Claimed,
        d: &Diagnosis,
        transcript: Option<String>,
    ) {
        self.metrics
            .failed
            .get_or_create(&Metrics::app(m.app_id.as_deref()))
            .inc();
        let recipients = m
            .recipients
            .iter()
            .map(|(idx, _)| RecipientOutcome {
                idx: *idx,
                status: Status::Failed,
                code: d.code.clone(),
                message: Some(d.message.clone()),
            })
            .collect();
        let record = AttemptRecord {
            attempt: self.attempt(m, false, Some(d), String::new()),
            transcript,
            recipients,
            status: Status::Failed,
            next_attempt_unix: unix(&*self.clock),
            counts: true,
            owner: m.owner.clone(),
        };
        self.record(&m.id, record).await;
    }

    /// Counts a sent message, and ends a pause: a success shows the way out works.
    pub(super) async fn counted_sent(&self, m: &Claimed) {
        let label = Metrics::app(m.app_id.as_deref());
        self.metrics.sent.get_or_create(&label).inc();
        let waited = unix(&*self.clock) - m.created_unix;
        self.metrics.latency.observe(waited.max(0) as f64);
        if self.maybe_paused.swap(false, Ordering::Relaxed) {
            self.resume().await;
        }
    }

    /// The recipients of `m` as its earlier attempts left them: whether one
    /// had it (an attempt that left others to try again), and those that
    /// failed for good, with their codes. Only a message tried before has any.
    async fn earlier(&self, m: &Claimed) -> (bool, Vec<RecipientState>) {
        if m.attempt_count == 0 {
            return (false, Vec::new());
        }
        match self.queue.details(&m.id).await {
            Ok(Some(d)) => (
                d.recipients.iter().any(|r| r.status == Status::Sent),
                d.recipients
                    .into_iter()
                    .filter(|r| r.status == Status::Failed)
                    .collect(),
            ),
            _ => (false, Vec::new()),
        }
    }

    /// Records per-recipient outcomes; returns whether the connection can be
    /// used for the next message.
    pub(super) async fn finish_sent(
        &self,
        m: &Claimed,
        settings: &mailroom_shared::Settings,
        outcomes: Vec<Result<(), SmtpFailure>>,
        c: &mut Connection,
    ) -> bool {
        let mut recipients = Vec::new();
        let (mut sent, mut deferred) = (0, 0);
        let mut last_failure: Option<Diagnosis> = None;
        // The reason the message waits, when a recipient does.
        let mut waits_for: Option<Diagnosis> = None;
        let timeouts = self.tester.timeouts();
        let sent_as = diagnose::as_sent(settings, &m.mail_from);
        // Those that failed for good, with their codes.
        let mut refused = Vec::new();
        for ((idx, address), outcome) in m.recipients.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    sent += 1;
                    // The upstream's own words about it: the reply to DATA.
                    let reply = c.open.progress.data_reply.clone();
                    recipients.push(RecipientOutcome {
                        idx: *idx,
                        status: Status::Sent,
                        code: reply.as_ref().map(|r| r.0.clone()),
                        message: reply.map(|r| r.1),
                    });
                }
                Err(f) => {
                    let d = diagnose::smtp_failure(&f, &sent_as, &timeouts);
                    let d = diagnose::app_address_refused(d, &m.mail_from, settings);
                    // Refused for now, or for who sends rather than for who
                    // receives (a quota, a blocked mailbox, beside recipients
                    // the server took): tried again, never failed for it.
                    let status = if matches!(d.kind, Kind::Temporary | Kind::Pause | Kind::Quota) {
                        deferred += 1;
                        Status::Deferred
                    } else {
                        Status::Failed
                    };
                    recipients.push(RecipientOutcome {
                        idx: *idx,
                        status,
                        code: d.code.clone(),
                        message: Some(d.message.clone()),
                    });
                    if status == Status::Deferred {
                        waits_for = Some(d.clone());
                    } else {
                        refused.push(RecipientState {
                            address: address.clone(),
                            status,
                            code: d.code.clone(),
                            message: Some(d.message.clone()),
                        });
                    }
                    last_failure = Some(d);
                }
            }
        }
        // Not done while a recipient waits to be tried again: the message
        // stays deferred, its body kept, and its next attempt goes to the
        // recipients left (before, one accepted recipient made it `sent`,
        // and a deferred one never had it). Once none is left, it is sent
        // when the server took DATA for at least one recipient, in this
        // attempt or an earlier one.
        let (sent_before, refused_before) = match deferred {
            0 => self.earlier(m).await,
            _ => (false, Vec::new()),
        };
        let (status, next) = if deferred > 0 {
            let attempts = m.attempt_count + 1;
            (
                Status::Deferred,
                unix(&*self.clock) + backoff(attempts).as_secs() as i64,
            )
        } else if sent > 0 || sent_before {
            (Status::Sent, unix(&*self.clock))
        } else {
            (Status::Failed, unix(&*self.clock))
        };
        // Sent, but a recipient failed for good (in this attempt or an
        // earlier one): the message says so where its summary is read (the
        // list, `message.sent`'s data, a chat post), not only in its
        // details; its last_error was cleared as for a message every
        // recipient had.
        let refused: Vec<RecipientState> = refused_before.into_iter().chain(refused).collect();
        let partly = match (status, refused.last()) {
            (Status::Sent, Some(last)) => {
                let (stage, hint) = match &last_failure {
                    Some(d) => (d.stage, d.hint.clone()),
                    None => (
                        Stage::Send,
                        "Each recipient's reply is in the message's details; send the message again to the ones it did not reach.".into(),
                    ),
                };
                Some(Diagnosis {
                    stage,
                    code: last.code.clone(),
                    message: format!(
                        "Sent, but not to {}. {}",
                        not_reached(&refused),
                        last.message.as_deref().unwrap_or_default()
                    ),
                    hint,
                    kind: Kind::Permanent,
                })
            }
            _ => None,
        };
        let transcript = last_failure.as_ref().map(|_| self.masked_transcript(c));
        if last_failure.is_none() {
            // Keep memory flat over a long-lived connection.
            let _ = c.open.progress.take_transcript();
        }
        let of = m.recipients.len();
        // A message left deferred says why (a recipient's reason to wait,
        // not another's failure), even when some recipients had it.
        let waits = match (waits_for, sent) {
            (Some(d), 1..) => Some(Diagnosis {
                message: format!(
                    "The server accepted the message for {sent} of {of} recipients; the others are tried again later. {}",
                    d.message
                ),
                ..d
            }),
            (d, _) => d,
        };
        let record = AttemptRecord {
            attempt: self.attempt(
                m,
                status == Status::Sent,
                match status {
                    Status::Sent => partly.as_ref(),
                    _ => waits.as_ref().or(last_failure.as_ref()),
                },
                if sent == 0 && status == Status::Sent {
                    format!("The server refused the {of} recipients left; an earlier attempt delivered the message to the others.")
                } else {
                    format!("The server accepted the message for {sent} of {of} recipients.")
                },
            ),
            transcript,
            recipients,
            status,
            next_attempt_unix: next,
            counts: true,
            owner: m.owner.clone(),
        };
        self.record(&m.id, record).await;
        let label = Metrics::app(m.app_id.as_deref());
        match status {
            Status::Sent => {
                self.counted_sent(m).await;
                if !refused.is_empty() {
                    let missed = self.metrics.recipients_failed.get_or_create(&label);
                    missed.inc_by(refused.len() as u64);
                }
            }
            Status::Failed => {
                self.metrics.failed.get_or_create(&label).inc();
            }
            _ => {}
        }
        if sent == 0 {
            return c.open.session.reset(&mut c.open.progress).await.is_ok();
        }
        true
    }
}

/// The recipients a sent message did not reach, with their codes: the
/// first five, and how many more.
fn not_reached(refused: &[RecipientState]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = refused
        .iter()
        .take(SHOWN)
        .map(|r| match &r.code {
            Some(code) => format!("{} ({code})", r.address),
            None => r.address.clone(),
        })
        .collect();
    if refused.len() > SHOWN {
        names.push(format!("{} more", refused.len() - SHOWN));
    }
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A kind's name for the attempts metric.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Temporary => "deferred",
        Kind::Permanent => "failed",
        Kind::Pause => "paused",
        Kind::Quota => "quota",
    }
}

pub(super) fn transcript_text(lines: &[TranscriptLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {}\n",
                match l.dir {
                    mailroom_shared::api::Direction::Client => "C:",
                    mailroom_shared::api::Direction::Server => "S:",
                },
                l.line
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recipients a sent message missed: each with its code, joined
    /// with "and", the first five and then how many more.
    #[test]
    fn the_recipients_not_reached_are_named_five_at_most() {
        let refused = |n: usize| -> Vec<RecipientState> {
            (0..n)
                .map(|i| RecipientState {
                    address: format!("r{i}@example.org"),
                    status: Status::Failed,
                    code: (i != 1).then(|| "5.1.1".to_string()),
                    message: None,
                })
                .collect()
        };
        assert_eq!(not_reached(&refused(1)), "r0@example.org (5.1.1)");
        assert_eq!(
            not_reached(&refused(2)),
            "r0@example.org (5.1.1) and r1@example.org"
        );
        assert_eq!(
            not_reached(&refused(8)),
            "r0@example.org (5.1.1), r1@example.org, r2@example.org (5.1.1), r3@example.org (5.1.1), r4@example.org (5.1.1) and 3 more"
        );
    }
}
