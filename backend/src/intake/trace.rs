//! The `Received` trace field every accepted message gets at its top (RFC
//! 5321 4.4: a server that takes a message in MUST add one), as Postfix's
//! smtpd and pickup do. It names the device or program (the name it gave in
//! EHLO, and its address), this server, how the message came (RFC 3848's
//! `ESMTPSA` and its kin, or `HTTP`), the message's id, and when. In a
//! recipient's headers, or Exchange's message trace, it answers "which
//! printer sent this?" and "how long did it wait in Mailroom's queue?".

use std::net::IpAddr;

/// How a message came in, for its `Received` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The client's address (behind a trusted proxy or a PROXY header, the
    /// one it vouched for).
    pub peer: IpAddr,
    /// How it came.
    pub via: Via,
}

/// The way in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The relay: the name the client gave (`None` before any), whether it
    /// said EHLO, whether the session was in TLS, whether it authenticated,
    /// and whether its MAIL FROM said `SMTPUTF8`.
    Smtp {
        name: Option<String>,
        extended: bool,
        tls: bool,
        auth: bool,
        utf8: bool,
    },
    /// `POST /api/messages`, `mailroom sendmail` included.
    Http,
}

/// The longest client name written as given; a longer one, or one that is
/// not a domain or an address literal, is written `unknown`.
const LONGEST_NAME: usize = 253;

impl Trace {
    /// The field, CRLF-terminated, folded so that no line passes 78
    /// characters but for a very long host name. `id` is the message's id,
    /// `host` this server's name (`--smtp-hostname`, checked at start),
    /// `date` RFC 5322's date.
    pub fn field(&self, id: &str, host: &str, date: &str) -> String {
        let literal = address_literal(self.peer);
        let (from, protocol) = match &self.via {
            Via::Smtp {
                name,
                extended,
                tls,
                auth,
                utf8,
            } => {
                let name = name
                    .as_deref()
                    .and_then(client_name)
                    .unwrap_or_else(|| "unknown".into());
                // RFC 3848: S for TLS, A for AUTH; both are ESMTP's. RFC
                // 6531 3.7.3: UTF8SMTP and its kin when SMTPUTF8 was used.
                let protocol = match (*extended || *tls || *auth || *utf8, *tls, *auth, *utf8) {
                    (false, ..) => "SMTP",
                    (true, false, false, false) => "ESMTP",
                    (true, true, false, false) => "ESMTPS",
                    (true, false, true, false) => "ESMTPA",
                    (true, true, true, false) => "ESMTPSA",
                    (true, false, false, true) => "UTF8SMTP",
                    (true, true, false, true) => "UTF8SMTPS",
                    (true, false, true, true) => "UTF8SMTPA",
                    (true, true, true, true) => "UTF8SMTPSA",
                };
                (name.to_string(), protocol)
            }
            Via::Http => (literal.clone(), "HTTP"),
        };
        format!(
            "Received: from {from} ({literal})\r\n\tby {host} (Mailroom) with {protocol} id {id};\r\n\t{date}\r\n"
        )
    }
}

/// RFC 5321 4.1.3's address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// A client's EHLO name as it can be written: a host name by the rule
/// `--smtp-hostname` is held to ([`crate::config::parse_hostname`]:
/// letters, digits, hyphens, underscores as Windows machines have, dotted
/// parts of at most 63, 253 in all), or an address literal of at most
/// [`LONGEST_NAME`]. Anything else (a space, a parenthesis that would end the
/// comment early, a line break) is not.
fn client_name(name: &str) -> Option<String> {
    let literal = name
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .is_some_and(|inner| {
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':'))
        });
    if literal {
        return (name.len() <= LONGEST_NAME).then(|| name.to_string());
    }
    crate::config::parse_hostname(name)
        .ok()
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sat, 05 Dec 2026 02:30:00 +0000";

    fn relay(name: Option<&str>, extended: bool, tls: bool, auth: bool) -> Trace {
        Trace {
            peer: "192.0.2.7".parse().unwrap(),
            via: Via::Smtp {
                name: name.map(str::to_string),
                extended,
                tls,
                auth,
                utf8: false,
            },
        }
    }

    #[test]
    fn a_relay_message_names_the_device_the_server_the_protocol_and_the_id() {
        let field = relay(Some("scanner-3.contoso.local"), true, true, true).field(
            "msg_01",
            "mail.contoso.com",
            DATE,
        );
        assert_eq!(
            field,
            "Received: from scanner-3.contoso.local ([192.0.2.7])\r\n\tby mail.contoso.com (Mailroom) with ESMTPSA id msg_01;\r\n\tSat, 05 Dec 2026 02:30:00 +0000\r\n"
        );
        for line in field.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
    }

    #[test]
    fn the_protocol_follows_rfc_3848() {
        let with = |extended, tls, auth| {
            let field = relay(Some("printer"), extended, tls, auth).field("msg_1", "h", DATE);
            field
                .split(" with ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap()
                .to_string()
        };
        assert_eq!(with(false, false, false), "SMTP");
        assert_eq!(with(true, false, false), "ESMTP");
        assert_eq!(with(true, true, false), "ESMTPS");
        assert_eq!(with(true, false, true), "ESMTPA");
        assert_eq!(with(true, true, true), "ESMTPSA");
        // TLS and AUTH are extensions: a HELO client that used them spoke ESMTP.
        assert_eq!(with(false, true, true), "ESMTPSA");
        // RFC 6531's names when MAIL FROM said SMTPUTF8.
        let utf8 = |tls, auth| {
            let mut t = relay(Some("printer"), true, tls, auth);
            if let Via::Smtp { utf8, .. } = &mut t.via {
                *utf8 = true;
            }
            t.field("msg_1", "h", DATE)
        };
        assert!(utf8(false, false).contains(" with UTF8SMTP id "));
        assert!(utf8(true, false).contains(" with UTF8SMTPS id "));
        assert!(utf8(false, true).contains(" with UTF8SMTPA id "));
        assert!(utf8(true, true).contains(" with UTF8SMTPSA id "));
    }

    #[test]
    fn http_and_ipv6_clients_are_written_as_address_literals() {
        let http = Trace {
            peer: "2001:db8::5".parse().unwrap(),
            via: Via::Http,
        };
        assert!(http
            .field("msg_2", "h", DATE)
            .starts_with("Received: from [IPv6:2001:db8::5] ([IPv6:2001:db8::5])\r\n\tby h (Mailroom) with HTTP id msg_2;"));
        // An IPv4 client on a dual-stack socket is written as IPv4.
        let mapped = Trace {
            peer: "::ffff:192.0.2.9".parse().unwrap(),
            via: Via::Http,
        };
        assert!(mapped
            .field("msg_3", "h", DATE)
            .starts_with("Received: from [192.0.2.9] ([192.0.2.9])"));
    }

    #[test]
    fn a_hostile_or_missing_client_name_is_written_unknown() {
        let long = "a".repeat(LONGEST_NAME + 1);
        for name in [
            None,
            Some("evil\r\nBcc: victim@example.org"),
            Some("HP LaserJet"),
            Some("x) by forged.example (y"),
            Some(""),
            Some("[]"),
            Some("[1.2.3.4"),
            Some("ünicode.example"),
            Some(long.as_str()),
        ] {
            let field = relay(name, true, true, true).field("msg_4", "h", DATE);
            assert!(
                field.starts_with("Received: from unknown ([192.0.2.7])\r\n"),
                "{name:?}: {field}"
            );
            assert_eq!(field.matches("\r\n").count(), 3, "{name:?}");
        }
        for name in ["[192.0.2.1]", "[IPv6:2001:db8::1]", "DESKTOP-7_AB", "a.b-c"] {
            let field = relay(Some(name), true, false, false).field("msg_5", "h", DATE);
            assert!(
                field.starts_with(&format!("Received: from {name} ([192.0.2.7])")),
                "{field}"
            );
        }
    }
}
