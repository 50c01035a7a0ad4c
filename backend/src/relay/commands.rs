//! The relay's commands after the greeting: EHLO to QUIT, and the mail
//! transaction (MAIL FROM, RCPT TO, the end of DATA), which checks the sender
//! against the app's From policy and its limits and stores the message
//! through [`crate::intake`].

use mailroom_shared::sending::{App, FromPolicy, MAX_RECIPIENTS};
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{EhloResponse, Request};

use super::session::{Flow, Mode, Sender, Session, Transaction};
use crate::queue::Enqueued;
use crate::store::StoreError;

impl Session {
    pub(super) async fn command(&mut self, request: Request<String>) -> Flow {
        if !self.past_auth() {
            self.commands += 1;
            if self.commands > super::MAX_COMMANDS_BEFORE_AUTH {
                self.reply(
                    421,
                    "4.7.0",
                    &format!(
                        "{} Too many commands before AUTH; closing the connection",
                        self.hostname()
                    ),
                );
                return Flow::Close;
            }
        } else {
            self.commands = self.commands.saturating_add(1);
        }
        match request {
            Request::Ehlo { host } => {
                self.helo = Some((host.clone(), true));
                self.tx = None;
                let mut ehlo = EhloResponse::new(self.hostname());
                ehlo.capabilities = smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES
                    // RFC 6531, as `sendmail -bs` offers it: without it,
                    // clients that check (lettre, smtplib) refuse to send to
                    // an address beyond ASCII, which intake and delivery take.
                    | smtp_proto::EXT_SMTP_UTF8;
                ehlo.size = self.shared.sending.max_message_size as usize;
                if !self.tls {
                    ehlo.capabilities |= smtp_proto::EXT_START_TLS;
                }
                if self.may_auth() && self.app.is_none() {
                    ehlo.capabilities |= smtp_proto::EXT_AUTH;
                    ehlo.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                }
                // smtp-proto's first line is "{host} you had me at EHLO":
                // the server's name and the client's, as mail servers say.
                let mut reply = Vec::new();
                let _ = ehlo.write(&mut reply);
                let rest = reply.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                let client = printable(&host, 64);
                let first = format!("250-{} Hello {client} [{}]\r\n", self.hostname(), self.peer);
                self.out.extend_from_slice(first.as_bytes());
                self.out.extend_from_slice(&reply[rest..]);
                Flow::Go
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.helo = Some((host, false));
                self.tx = None;
                let text = format!("250 {}\r\n", self.hostname());
                self.out.extend_from_slice(text.as_bytes());
                Flow::Go
            }
            Request::StartTls => {
                if self.tls {
                    return self.out_of_sequence("TLS is already active");
                }
                if self.tx.is_some() {
                    return self.out_of_sequence("Finish or reset the mail transaction first");
                }
                self.reply(220, "2.0.0", "Ready to start TLS");
                Flow::StartTls
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to.address).await,
            Request::Data => {
                let Some(tx) = &self.tx else {
                    return self.out_of_sequence("Send MAIL FROM first");
                };
                if tx.rcpts.is_empty() {
                    return self.error(554, "5.5.1", "No valid recipients");
                }
                self.mode = Mode::Data(DataReceiver::new(), Vec::new());
                self.out
                    .extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
                Flow::Go
            }
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "Ok");
                Flow::Go
            }
            Request::Noop { .. } => {
                self.reply(250, "2.0.0", "Ok");
                Flow::Go
            }
            Request::Quit => {
                self.reply(221, "2.0.0", "Bye");
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.reply(
                    252,
                    "2.5.0",
                    "Cannot verify; send the message and it will be tried",
                );
                Flow::Go
            }
            Request::Help { .. } => {
                self.reply(
                    214,
                    "2.0.0",
                    "See the Mailroom README, section Sending mail through Mailroom",
                );
                Flow::Go
            }
            Request::Bdat { .. } => {
                // CHUNKING is not offered, so its data cannot be framed: close.
                self.reply(502, "5.5.1", "BDAT is not offered; use DATA");
                Flow::Close
            }
            _ => self.error(502, "5.5.1", "Command not implemented"),
        }
    }

    /// Whether the key this session signed in with is app `id`'s key from
    /// before its last *New key*, and still works.
    async fn old_key_works(&self, id: &str) -> bool {
        let apps = &self.shared.sending.apps;
        matches!(apps.app_of_old_key(self.key).await, Ok(Some((app, _))) if app.id == id)
    }

    /// The session's sender, checked again now: a revoked app, or one
    /// whose key was replaced since the session signed in, stops here.
    pub(super) async fn sender(&mut self) -> Result<Sender, Flow> {
        use subtle::ConstantTimeEq;
        if let Some(app) = &self.app {
            let why = match self.shared.sending.apps.queue.app_by_id(&app.id).await {
                Ok(Some((app, stored))) if bool::from(stored.ct_eq(&self.key)) => {
                    self.app = Some(app.clone());
                    return Ok(Sender::App(Box::new(app)));
                }
                // Signed in with the key from before its last *New key*,
                // which still works for a while.
                Ok(Some((app, _))) if self.old_key_works(&app.id).await => {
                    self.app = Some(app.clone());
                    return Ok(Sender::App(Box::new(app)));
                }
                Ok(Some((app, _))) => {
                    tracing::info!(app = %app.id, peer = %self.peer, "relay session refused: the app's key was replaced");
                    "Authentication required: this app's key was replaced, so the key this session signed in with no longer works"
                }
                Ok(None) => {
                    "Authentication required: this app was revoked, so its key no longer works"
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read apps");
                    self.reply(451, "4.3.0", "Temporary failure reading apps; try again");
                    return Err(Flow::Go);
                }
            };
            self.refuse(530, "5.7.0", why);
            self.app = None;
            return Err(Flow::Go);
        }
        if self.trusted() {
            return Ok(Sender::Trusted(self.peer));
        }
        self.refuse(
            530,
            "5.7.0",
            if self.may_auth() {
                "Authentication required: AUTH with the app's id as username and its key as password"
            } else {
                "Authentication required: send STARTTLS, then AUTH with the app's id and key"
            },
        );
        Err(Flow::Go)
    }

    pub(super) async fn policy(
        &mut self,
        sender: &Sender,
    ) -> Result<(FromPolicy, Option<mailroom_shared::Settings>), Flow> {
        match self.sender_policy(sender).await {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the settings");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure reading the settings; try again",
                );
                Err(Flow::Go)
            }
        }
    }

    /// Who may send as what for `sender`, under its profile's settings
    /// (a trusted network's: the default profile's), and those settings.
    pub(super) async fn sender_policy(
        &self,
        sender: &Sender,
    ) -> Result<(FromPolicy, Option<mailroom_shared::Settings>), crate::settings::LoadError> {
        let profile = match sender {
            Sender::App(app) => app.profile.as_str(),
            Sender::Trusted(_) => crate::store::DEFAULT_PROFILE,
        };
        let repo = self.shared.sending.settings.for_profile(profile);
        let current = repo.load_settings().await?;
        let policy = match sender {
            Sender::App(app) => FromPolicy::new(current.as_ref(), &app.allowed_from),
            Sender::Trusted(_) => FromPolicy::for_trusted_network(current.as_ref()),
        };
        Ok((policy, current))
    }

    pub(super) async fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Flow {
        if self.helo.is_none() {
            return self.out_of_sequence("Send EHLO first");
        }
        if self.tx.is_some() {
            return self.out_of_sequence("A mail transaction is already open; send RSET first");
        }
        if let Some(why) = super::session::sender_syntax(&from.address) {
            return self.error(501, "5.1.7", &why);
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            // RFC 3030: binary content only comes in BDAT chunks, which the
            // relay does not offer; DATA would cut it at its first CRLF.CRLF.
            return self.error(
                555,
                "5.5.4",
                "BODY=BINARYMIME needs BDAT, which this relay does not offer; send the message as 8BITMIME or 7BIT with DATA",
            );
        }
        let max = self.shared.sending.max_message_size;
        let sender = match self.sender().await {
            Ok(s) => s,
            Err(flow) => return flow,
        };
        if from.size as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        let rewrite = matches!(&sender, Sender::App(a) if a.rewrite_from);
        // The null sender `<>` (auto-replies, read receipts, forwarded
        // bounces) names no address to check: the message goes as its header
        // From, which the intake checks at the end of DATA, as it does for a
        // submission over HTTP without `from`.
        if !rewrite && !from.address.is_empty() {
            let (policy, _) = match self.policy(&sender).await {
                Ok(p) => p,
                Err(flow) => return flow,
            };
            if !policy.allows(&from.address) {
                self.refuse(550, "5.7.1", &policy.refusal(&from.address));
                return Flow::Go;
            }
        }
        if let Sender::App(app) = &sender {
            if let Some(hit) = self.limit_hit(app, 0).await {
                self.refuse(451, "4.7.1", &hit.text());
                return Flow::Go;
            }
        }
        if matches!(sender, Sender::Trusted(_)) {
            self.trusted_mail = true;
        }
        self.tx = Some(Transaction {
            sender,
            from: from.address,
            rcpts: Vec::new(),
            utf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
        });
        self.reply(250, "2.1.0", "Ok");
        Flow::Go
    }

    /// The limit the app's next message would pass with `rcpts` recipients
    /// (0: only the message limits), if any. A database that cannot be read
    /// leaves the decision to the store at the end of DATA.
    pub(super) async fn limit_hit(&self, app: &App, rcpts: u32) -> Option<crate::queue::LimitHit> {
        if !app.limits.has_windows() && app.limits.queued_max.is_none() {
            return None;
        }
        let now = self.shared.sending.apps.clock.wall().unix_timestamp();
        // The recent rows only for a limit over a window; queued_max needs a count.
        let rows = app.limits.has_windows();
        let recent = self
            .shared
            .sending
            .apps
            .queue
            .recent(&app.id, now, rows)
            .await
            .ok()?;
        let mut limits = app.limits;
        if rcpts == 0 {
            limits.recipients_per_day = None;
        }
        recent.hit(&limits, now, rcpts.max(1))
    }

    pub(super) async fn rcpt(&mut self, to: String) -> Flow {
        // The same mailbox again (case aside): accepted, kept once, and not
        // counted again against the app's limits.
        if let Some(tx) = &self.tx {
            let key = to.to_lowercase();
            if tx.rcpts.iter().any(|r| r.to_lowercase() == key) {
                self.reply(250, "2.1.5", "Ok (already a recipient)");
                return Flow::Go;
            }
        }
        let app = match &self.tx {
            Some(Transaction {
                sender: Sender::App(app),
                rcpts,
                ..
            }) if app.limits.recipients_per_day.is_some() => {
                Some((app.clone(), rcpts.len() as u32))
            }
            _ => None,
        };
        if let Some((app, count)) = app {
            if let Some(hit) = self.limit_hit(&app, count + 1).await {
                self.refuse(451, "4.7.1", &hit.text());
                return Flow::Go;
            }
        }
        let Some(tx) = &mut self.tx else {
            return self.out_of_sequence("Send MAIL FROM first");
        };
        if tx.rcpts.len() >= MAX_RECIPIENTS {
            self.reply(
                452,
                "4.5.3",
                &format!("Too many recipients: at most {MAX_RECIPIENTS} a message; send the rest in another"),
            );
            return Flow::Go;
        }
        // What is wrong with it, in the words the page and the HTTP API use
        // ("Bad recipient address syntax" named no cause).
        if to.is_empty() {
            // smtp-proto reads a local part alone (`<postmaster>`) as empty.
            self.reply(
                501,
                "5.1.3",
                "The recipient needs a whole address with its domain: RCPT TO:<name@example.com>",
            );
            return Flow::Go;
        }
        if let Some(why) = mailroom_shared::validate::check_address("recipient", &to) {
            self.reply(501, "5.1.3", &why);
            return Flow::Go;
        }
        tx.rcpts.push(to);
        self.reply(250, "2.1.5", "Ok");
        Flow::Go
    }

    /// The whole message arrived: check it, store it, and only then say 250.
    pub(super) async fn end_of_data(&mut self, body: Vec<u8>) -> Flow {
        let Some(tx) = self.tx.take() else {
            return self.out_of_sequence("Send MAIL FROM first");
        };
        let max = self.shared.sending.max_message_size;
        if body.len() as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        // The app may have been revoked while the message arrived.
        let sender = match &tx.sender {
            Sender::App(_) => match self.sender().await {
                Ok(s) => s,
                Err(flow) => return flow,
            },
            trusted => trusted.clone(),
        };
        let (policy, settings) = match self.policy(&sender).await {
            Ok(p) => p,
            Err(flow) => return flow,
        };
        let (app, source, rewrite) = match &sender {
            Sender::App(app) => (Some(app.clone()), None, app.rewrite_from),
            Sender::Trusted(ip) => (
                None,
                Some(format!("{} {ip}", crate::apps::TRUSTED_SOURCE)),
                false,
            ),
        };
        let app_id = app.as_ref().map(|a| a.id.clone());
        let built = match crate::intake::check(
            &body,
            crate::intake::Envelope {
                from: Some(tx.from.clone()),
                to: tx.rcpts.clone(),
            },
            &crate::intake::Rules {
                policy: &policy,
                settings: settings.as_ref(),
                rewrite_from: rewrite,
            },
        ) {
            Ok(b) => b,
            Err(errors) => {
                let from = errors.get("from").and_then(|m| m.first());
                match from {
                    Some(m) => self.refuse(550, "5.7.1", m),
                    None => {
                        let first = errors
                            .values()
                            .flatten()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| "The message is not valid".into());
                        self.refuse(550, "5.6.0", &first);
                    }
                }
                return Flow::Go;
            }
        };
        if built.body.len() as u64 > max {
            self.reply(
                552,
                "5.3.4",
                &format!("Message too big: the limit is {max} bytes"),
            );
            return Flow::Go;
        }
        match self
            .shared
            .sending
            .accept(app.as_deref(), source, built, None, &self.trace(tx.utf8))
            .await
        {
            Ok(Enqueued::Limited(hit)) => {
                self.shared
                    .sending
                    .metrics
                    .quota_reached
                    .get_or_create(&crate::metrics::Metrics::quota(
                        "app",
                        app_id.as_deref().unwrap_or_default(),
                    ))
                    .inc();
                self.refuse(451, "4.7.1", &hit.text());
            }
            // The relay takes no idempotency key, so no other request can
            // hold one; answered as nothing stored, should that change.
            Ok(Enqueued::KeyReused(_)) => {
                self.reply(451, "4.3.0", "Not queued; try again later");
            }
            Ok(Enqueued::New(id)) | Ok(Enqueued::Repeat(id, _)) => {
                tracing::info!(%id, app = ?app_id, peer = %self.peer, "message queued over SMTP");
                self.shared.sending.metrics.relay_accepted.inc();
                self.reply(250, "2.0.0", &format!("Ok: queued as {id}"));
            }
            Err(StoreError::Full) => {
                self.reply(452, "4.3.1", "Insufficient system storage; try again later");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a message from the relay");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message; try again",
                );
            }
        }
        Flow::Go
    }
}

/// A client's own name (its EHLO argument) for a reply line: visible ASCII
/// only, at most `max` characters, so nothing it sent can break the line.
pub(crate) fn printable(name: &str, max: usize) -> String {
    let shown: String = name
        .chars()
        .filter(char::is_ascii_graphic)
        .take(max)
        .collect();
    if shown.is_empty() {
        "unknown".into()
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_clients_name_is_shown_visible_and_short() {
        assert_eq!(printable("client.test", 64), "client.test");
        assert_eq!(printable("a\u{1b}[2Jb\u{202e}c", 64), "a[2Jbc");
        assert_eq!(printable(&"h".repeat(300), 64).len(), 64);
        assert_eq!(printable("\u{e9}", 64), "unknown");
    }
}
