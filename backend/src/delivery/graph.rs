//! Delivering one message over Microsoft Graph (docs/API.md §12): the stored
//! bytes with a request-only `Bcc` for envelope-only recipients, one
//! `sendMail`, and the outcome recorded like an SMTP attempt's. A `Retry-After`
//! holds every worker, so the whole profile slows down, not one message.

use mailroom_shared::Settings;

use super::outcome::transcript_text;
use super::*;
use crate::upstream::graph::{self, GraphFailure};

impl Engine {
    pub(super) async fn deliver_graph(
        &self,
        m: Claimed,
        settings: &Settings,
        mut c: Connection,
    ) -> Option<Connection> {
        let envelope: Vec<String> = m.recipients.iter().map(|(_, a)| a.clone()).collect();
        let body = match graph::prepare(&m.body, &envelope) {
            Ok(body) => body,
            Err(u) => {
                // Nothing was sent: refused before any request.
                let d = diagnose::graph_unsendable(&u);
                self.finish_failed(&m, &d, None).await;
                return Some(c);
            }
        };
        let Way::Graph(way) = &mut c.open.session else {
            return None;
        };
        let mut lines = Vec::new();
        let sent = self
            .tester
            .graph_send(way, body, &mut lines, &mut c.open.secrets)
            .await;
        match sent {
            Ok(accepted) => {
                // Graph's answer for every recipient: 202 with its request-id,
                // which message trace and Microsoft support look up.
                let reply = format!(
                    "202 Accepted (request-id {})",
                    accepted.request_id.as_deref().unwrap_or("none")
                );
                let recipients = m
                    .recipients
                    .iter()
                    .map(|(idx, _)| RecipientOutcome {
                        idx: *idx,
                        status: Status::Sent,
                        code: Some("202".into()),
                        message: Some(reply.clone()),
                    })
                    .collect();
                let record = AttemptRecord {
                    attempt: self.attempt(
                        &m,
                        true,
                        None,
                        format!(
                            "Microsoft Graph accepted the message for {} recipients.",
                            m.recipients.len()
                        ),
                    ),
                    transcript: None,
                    recipients,
                    status: Status::Sent,
                    next_attempt_unix: unix(&*self.clock),
                    counts: true,
                    owner: m.owner.clone(),
                };
                self.record(&m.id, record).await;
                self.counted_sent(&m).await;
                Some(c)
            }
            Err(f) => {
                // Only a failure keeps its transcript (masked): a success's
                // record is the request-id.
                let refs: Vec<&str> = c.open.secrets.iter().map(String::as_str).collect();
                mask_transcript(&mut lines, &refs);
                let transcript = transcript_text(&lines);
                let retry_after = match &f {
                    GraphFailure::Reply { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let sent_as = diagnose::as_sent(settings, &m.mail_from);
                let d = diagnose::graph_failure(&f, &sent_as, &way.endpoint);
                let d = diagnose::app_address_refused(d, &m.mail_from, settings);
                if let Some(wait) = retry_after {
                    self.hold(wait).await;
                }
                match d.kind {
                    Kind::Pause => {
                        self.release_and_pause(&m, &d, Some(transcript)).await;
                        None
                    }
                    Kind::Temporary => {
                        self.defer(&m, &d, Some(transcript), retry_after).await;
                        Some(c)
                    }
                    Kind::Quota => {
                        self.wait_quota(&m, &d, retry_after).await;
                        Some(c)
                    }
                    Kind::Permanent => {
                        self.finish_failed(&m, &d, Some(transcript)).await;
                        Some(c)
                    }
                }
            }
        }
    }
}
