//! The test message: From `sender_name <sender_email>`, Date, Message-ID,
//! and a body saying what was tested, built with lettre's message builder.

use lettre::message::{header::ContentType, Mailbox};
use lettre::{Address, Message};
use mailroom_shared::{catalogue, Settings};

/// Builds the test message: From `sender_name <sender_email>`, Date, Message-ID,
/// and a body saying what was tested.
pub fn build_message(s: &Settings, to: &Address) -> Result<(Address, Vec<u8>), String> {
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
    let message = Message::builder()
        .from(Mailbox::new(Some(s.sender_name.clone()), from_addr.clone()))
        .to(Mailbox::new(None, to.clone()))
        .subject(format!("Mailroom test email: {provider}, {method}"))
        .date_now()
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    Ok((from_addr, message.formatted()))
}
