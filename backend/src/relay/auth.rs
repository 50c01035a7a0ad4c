//! AUTH on the relay: PLAIN and LOGIN with an app's id (or an address the
//! app may send as) and key, checked in constant time, with the same
//! lockout as the HTTP API (docs/API.md §2).

use mailroom_shared::sending::App;
use smtp_proto::request::receiver::LineReceiver;
use subtle::ConstantTimeEq;

use super::session::{ascii_line, Flow, Mode, Sender, Session};
use crate::apps::key_hash;
use crate::auth::Refused;

impl Session {
    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Flow {
        if self.app.is_some() {
            return self.out_of_sequence("Already authenticated");
        }
        if self.tx.is_some() {
            return self.out_of_sequence("AUTH is not allowed during a mail transaction");
        }
        if !self.may_auth() {
            self.refuse(
                538,
                "5.7.11",
                "Encryption required: send STARTTLS, then AUTH",
            );
            return Flow::Go;
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.out.extend_from_slice(b"334 \r\n");
                self.mode = Mode::AuthPlain(LineReceiver::new(()));
                Flow::Go
            }
            smtp_proto::AUTH_PLAIN => self.auth_plain(initial.as_bytes()).await,
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                // "Username:"
                self.out.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
                self.mode = Mode::AuthUser(LineReceiver::new(()));
                Flow::Go
            }
            smtp_proto::AUTH_LOGIN => match decode_line(initial.as_bytes()) {
                Some(user) => {
                    self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                    self.mode = Mode::AuthPass(LineReceiver::new(user));
                    Flow::Go
                }
                None => self.auth_cancelled(initial.as_bytes()),
            },
            _ => {
                self.reply(
                    504,
                    "5.5.4",
                    "Unrecognized authentication type; use PLAIN or LOGIN",
                );
                Flow::Go
            }
        }
    }

    pub(super) fn auth_cancelled(&mut self, line: &[u8]) -> Flow {
        if line.trim_ascii() == b"*" {
            self.error(501, "5.7.0", "Authentication cancelled")
        } else {
            self.error(501, "5.5.2", "Cannot decode the response as base64")
        }
    }

    pub(super) async fn auth_plain(&mut self, line: &[u8]) -> Flow {
        let Some(decoded) = decode_bytes(line) else {
            return self.auth_cancelled(line);
        };
        // authzid NUL authcid NUL passwd
        let mut parts = decoded.split(|b| *b == 0);
        let (Some(_), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(
                501,
                "5.5.2",
                "AUTH PLAIN needs authzid NUL username NUL password",
            );
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        self.verify(&user, &pass).await
    }

    pub(super) fn locked_out(&mut self, seconds: u64) -> Flow {
        let minutes = seconds.div_ceil(60);
        self.reply(
            421,
            "4.7.0",
            &format!("Too many failed sign-ins from this address; try again in {minutes} minutes"),
        );
        Flow::Close
    }

    /// Checks an app id and key: the key's hash is compared in constant time.
    /// A right key is always accepted; wrong ones count towards the
    /// address's limit, past which each is answered after a delay and the
    /// connection closed (docs/API.md §2).
    pub(super) async fn verify(&mut self, user: &str, pass: &str) -> Flow {
        // An id and a key hold no character that shows as nothing; one
        // pasted along (from a chat) made a right key wrong.
        let (user, pass) = (
            &mailroom_shared::parse::without_invisible(user),
            &mailroom_shared::parse::without_invisible(pass),
        );
        let limit = self.shared.sending.apps.key_failures.clone();
        let hash = key_hash(pass.trim());
        let looked_up = if user.trim().contains('@') {
            self.by_address(user.trim(), hash).await
        } else {
            self.by_id(user.trim(), hash).await
        };
        let Looked {
            named,
            app,
            refused,
            old_key,
        } = match looked_up {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read apps for an SMTP sign-in");
                self.reply(
                    454,
                    "4.3.0",
                    "Temporary authentication failure: Mailroom cannot reach its database; try again shortly",
                );
                return Flow::Go;
            }
        };
        let verdict = limit.check(self.peer, app.is_some()).await;
        if let (Ok(()), Some(app)) = (verdict, app) {
            tracing::info!(app = %app.id, peer = %self.peer, "relay sign-in");
            if let Some(r) = &old_key {
                let peer = format!("{} (relay)", self.peer);
                self.shared.sending.apps.old_key_signed_in(r, &peer).await;
            }
            self.app = Some(app);
            self.key = hash;
            self.reply(235, "2.7.0", "Authentication successful");
            return Flow::Go;
        }
        // The reply stays the same for every wrong pair (it tells a guesser
        // nothing); the log tells the admin which part is wrong.
        let why = match (&named, verdict, refused) {
            (_, Err(Refused::LockedOut(_)), _) => {
                "too many failed sign-ins from this address".to_string()
            }
            (_, _, Some(refused)) => refused,
            (Some((id, name)), _, None) => {
                let replaced = self.replaced_key_refused(hash, Some(id)).await;
                match (replaced, cut_key(pass.trim())) {
                    (Some(r), _) => format!("the password is the key app {id} (\"{name}\") had until its new key of {}: give the device the new key", r.replaced_at),
                    (None, Some(cut)) => format!("the password is not the key of app {id} (\"{name}\"): {cut}"),
                    (None, None) => format!("the password is not the key of app {id} (\"{name}\"): another app's key, an older one, or a typo"),
                }
            }
            // A mailbox's address as the username (by_address) and a key
            // from before its app's last *New key*, its time over.
            (None, _, None) if user.trim().contains('@') && pass.trim().starts_with("mr_") => {
                match self.replaced_key_refused(hash, None).await {
                    Some(r) => format!(
                        "the username \"{}\" is an email address, and the password is the key app {} (\"{}\") had until its new key of {}: give the device the new key",
                        user.trim().chars().take(64).collect::<String>(),
                        r.app,
                        crate::error::short(&r.name),
                        r.replaced_at
                    ),
                    None => wrong_username(user.trim()),
                }
            }
            (None, _, None) => {
                let apps = self
                    .shared
                    .sending
                    .apps
                    .queue
                    .list_apps()
                    .await
                    .unwrap_or_default();
                let given = user.trim();
                // An app's name where its id belongs is the likeliest slip;
                // then the start of an id, where a device's field was short.
                let by_name = apps.iter().find(|a| a.name.eq_ignore_ascii_case(given));
                let cut_from = apps.iter().find(|a| {
                    given.len() >= 8 && a.id.len() > given.len() && a.id.starts_with(given)
                });
                match (by_name, cut_from) {
                    (Some(app), _) => format!(
                        "the username \"{}\" is the name of app {}: the username is the app's id ({}), the password its key (mr_...)",
                        app.name, app.id, app.id
                    ),
                    (None, Some(app)) => format!(
                        "the username \"{given}\" is the start of app {}'s id, {} of its {} characters: {CUT_FIX}",
                        app.id,
                        given.len(),
                        app.id.len()
                    ),
                    (None, None) => wrong_username(given),
                }
            }
        };
        tracing::warn!(peer = %self.peer, reason = %ascii_line(&why), "relay sign-in refused");
        self.shared.sending.metrics.relay_auth_failures.inc();
        self.reply(
            535,
            "5.7.8",
            "Authentication credentials invalid: the username is the app's id (app_...) or an address it sends as, and the password its key (mr_...)",
        );
        match verdict {
            Err(Refused::LockedOut(wait)) => {
                tokio::time::sleep(crate::apps::WRONG_KEY_DELAY).await;
                self.locked_out(wait)
            }
            _ => Flow::Go,
        }
    }
}

/// What a sign-in's username and key found.
#[derive(Default)]
struct Looked {
    /// The app the username names, `(id, name)`, whatever the key.
    named: Option<(String, String)>,
    /// The app signed in as: the username and the key agree.
    app: Option<App>,
    /// Why a right key was refused, for the log.
    refused: Option<String>,
    /// The key is `app`'s from before its last *New key*, still working.
    old_key: Option<crate::store::queue::ReplacedKey>,
}

impl Session {
    /// The app whose key from before its last *New key* `hash` is (of app
    /// `of`, when the username named one), refused here: its use is kept
    /// for the Apps list, naming this client.
    async fn replaced_key_refused(
        &self,
        hash: [u8; 32],
        of: Option<&String>,
    ) -> Option<crate::store::queue::ReplacedKey> {
        let apps = &self.shared.sending.apps;
        let r = apps.queue.app_of_replaced_key(hash).await.ok().flatten();
        let r = r.filter(|r| of.is_none_or(|id| r.app == *id))?;
        let peer = format!("{} (relay)", self.peer);
        apps.old_key_use(&r.app, &peer, true).await;
        Some(r)
    }

    /// A username that is an app's id: that app, when the key is its own
    /// (compared in constant time).
    async fn by_id(&self, id: &str, hash: [u8; 32]) -> Result<Looked, String> {
        let found = self
            .shared
            .sending
            .apps
            .queue
            .app_by_id(id)
            .await
            .map_err(|e| e.to_string())?;
        let named = found
            .as_ref()
            .map(|(app, _)| (app.id.clone(), app.name.clone()));
        let app = found.and_then(|(app, stored)| bool::from(stored.ct_eq(&hash)).then_some(app));
        let Some((id, _)) = named.as_ref().filter(|_| app.is_none()) else {
            return Ok(Looked {
                named,
                app,
                ..Looked::default()
            });
        };
        // The app's key from before its last *New key*, while it still works.
        let old = self.old_key_app(hash).await?.filter(|(a, _)| a.id == *id);
        let (app, old_key) = old.map_or((None, None), |(a, r)| (Some(a), Some(r)));
        Ok(Looked {
            named,
            app,
            old_key,
            ..Looked::default()
        })
    }

    /// The app whose key from before its last *New key* this is, while it
    /// still works.
    async fn old_key_app(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<(App, crate::store::queue::ReplacedKey)>, String> {
        let apps = &self.shared.sending.apps;
        // Past the failure limit, guesses cost the database nothing more.
        if apps.key_failures.locked(self.peer).await.is_some() {
            return Ok(None);
        }
        apps.app_of_old_key(hash).await.map_err(|e| e.to_string())
    }

    /// A username that is an email address, as a device set up for Office
    /// 365 keeps (the mailbox's address) when it is moved to Mailroom: the
    /// key alone names its app, which must be allowed to send as that
    /// address (its `allowed_from`, or its profile's username and sender),
    /// so a key pasted for the wrong device is still caught. No app is
    /// `named`, as for a username that is no app's id.
    async fn by_address(&self, address: &str, hash: [u8; 32]) -> Result<Looked, String> {
        let apps = &self.shared.sending.apps.queue;
        let (app, old_key) = match apps.app_by_key(hash).await.map_err(|e| e.to_string())? {
            Some(app) => (app, None),
            None => match self.old_key_app(hash).await? {
                Some((app, r)) => (app, Some(r)),
                None => return Ok(Looked::default()),
            },
        };
        let (policy, _) = self
            .sender_policy(&Sender::App(Box::new(app.clone())))
            .await
            .map_err(|e| e.to_string())?;
        if policy.allows(address) {
            return Ok(Looked {
                app: Some(app),
                old_key,
                ..Looked::default()
            });
        }
        let shown: String = address.chars().take(64).collect();
        let why = format!(
            "the username \"{shown}\" is an email address that app {} (\"{}\") may not send as, though the password is its key: use the app's id ({}) as the username, or add the address to the app's allowed From addresses (allowed_from)",
            app.id, app.name, app.id
        );
        Ok(Looked {
            refused: Some(why),
            ..Looked::default()
        })
    }
}

/// What to do when a device cut the username or the password to what its
/// field holds.
const CUT_FIX: &str = "the device cut it to what its field holds. Give it whole; a device whose field cannot hold it can send without AUTH from a trusted network (--smtp-trusted-network), each such message shown as from that address";

/// Why a password given for a known app's id is wrong, when it looks like
/// a key a device cut short (some printers' password fields hold 32 or
/// fewer characters; a key has [`crate::apps::KEY_CHARS`]).
fn cut_key(pass: &str) -> Option<String> {
    let chars = pass.chars().count();
    (pass.starts_with("mr_") && chars < crate::apps::KEY_CHARS).then(|| {
        format!(
            "it is {chars} characters of a key's {}: {CUT_FIX}",
            crate::apps::KEY_CHARS
        )
    })
}

/// Why a username that is no app's id was refused, for the log: what it
/// looks like, and never a key given in its place.
fn wrong_username(user: &str) -> String {
    const FIX: &str = "the username is the app's id (app_...), shown on the Apps page, or an address the app may send as, and the password its key (mr_...)";
    let shown: String = user.chars().take(64).collect();
    if user.is_empty() {
        format!("no username: {FIX}")
    } else if user.starts_with("mr_") {
        format!("a key was given as the username: {FIX}")
    } else if user.contains('@') {
        format!("the username \"{shown}\" is an email address, and the password is no app's key (revoked, or a typo): {FIX}")
    } else {
        format!("no app has the id \"{shown}\" (revoked, or a typo): {FIX}")
    }
}

pub(super) fn decode_bytes(line: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let line = line.trim_ascii();
    if line == b"*" {
        return None;
    }
    // RFC 4954 4: a response of zero length is sent as a single "=".
    if line == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(line).ok()
}

pub(super) fn decode_line(line: &[u8]) -> Option<String> {
    decode_bytes(line).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_username_is_explained_and_a_key_in_its_place_never_shown() {
        let email = format!("{}@{}", "scanner", "contoso.com");
        assert!(wrong_username(&email).contains("is an email address"));
        let key = "mr_0123456789abcdef";
        let why = wrong_username(key);
        assert!(why.contains("a key was given as the username") && !why.contains(key));
        assert!(wrong_username("").starts_with("no username"));
        assert!(wrong_username("app_gone").contains("no app has the id \"app_gone\""));
        assert!(wrong_username(&"x".repeat(10_000)).len() < 300);
    }

    #[test]
    fn auth_responses_decode_and_a_star_cancels() {
        assert_eq!(decode_line(b"dXNlcg==").as_deref(), Some("user"));
        assert_eq!(decode_line(b"*"), None);
        assert_eq!(decode_line(b"not base64!"), None);
        // RFC 4954 4: an empty response is sent as "=" (it was "cannot
        // decode the response as base64").
        assert_eq!(decode_line(b"="), Some(String::new()));
    }
}
