//! The test message: From `sender_name <sender_email>`, Date, Message-ID,
//! and a body saying what was tested, built with lettre's message builder.

use lettre::message::{header::ContentType, Mailbox};
use lettre::{Address, Message};
use mailroom_shared::{catalogue, Settings};

/// The test message as built.
pub struct TestMessage {
    /// The envelope sender: the sender email.
    pub from: Address,
    /// Its Message-ID (`<…@…>`), which the result names, so that a test
    /// email that never arrives can be found in message trace.
    pub message_id: String,
    /// The whole message.
    pub bytes: Vec<u8>,
}

/// Builds the test message: From `sender_name <sender_email>`, Date, Message-ID,
/// and a body saying what was tested.
pub fn build_message(s: &Settings, to: &Address) -> Result<TestMessage, String> {
    let from_addr: Address = s
        .sender_email
        .trim()
        .parse()
        .map_err(|e| format!("sender email: {e}"))?;
    let provider = catalogue::provider(s.provider).name;
    let method = catalogue::auth_method_label(s.provider, s.auth_method);
    let security = catalogue::security_label(s.security);
    let way = match s.transport {
        mailroom_shared::Transport::Smtp => format!(
            "  SMTP server: {}:{}\r\n  Security: {security}\r\n",
            s.host, s.port
        ),
        mailroom_shared::Transport::Graph => {
            "  Way out: Microsoft Graph (sendMail)\r\n".to_string()
        }
    };
    let body = format!(
        "This is a test email from Mailroom.\r\n\r\nIt was sent with these settings:\r\n  Provider: {provider}\r\n  Authentication: {method}\r\n{way}  Username: {}\r\n  Sender: {} <{}>\r\n\r\nIf you can read this, the settings work. Remember to save them in Mailroom.\r\n",
        s.username.as_deref().unwrap_or("(none)"),
        s.sender_name,
        s.sender_email,
    );
    let message_id = crate::apps::header_message_id(from_addr.as_ref());
    let message = Message::builder()
        .from(Mailbox::new(Some(s.sender_name.clone()), from_addr.clone()))
        .to(Mailbox::new(None, to.clone()))
        .subject(format!("Mailroom test email: {provider}, {method}"))
        .date_now()
        .message_id(Some(message_id.clone()))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    Ok(TestMessage {
        from: from_addr,
        message_id,
        bytes: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test email shows whether mail gets through, so it carries a
    /// Message-ID on the sender's domain: lettre's own was on this
    /// machine's name (`<…@vm>`), which spam filters count against it.
    #[test]
    fn the_test_email_has_a_message_id_on_the_senders_domain() {
        let s = mailroom_shared::fixtures::office365_oauth("localhost", 587);
        let to: Address = format!("{}@{}", "you", "example.org").parse().unwrap();
        let m = build_message(&s, &to).unwrap();
        assert_eq!(m.from.domain(), "contoso.com");
        let ids = mailroom_fakes::graph::header_values(&m.bytes, "Message-ID");
        assert_eq!(ids, std::slice::from_ref(&m.message_id));
        assert!(
            ids[0].starts_with("<msg_") && ids[0].ends_with("@contoso.com>"),
            "{ids:?}"
        );
    }
}
