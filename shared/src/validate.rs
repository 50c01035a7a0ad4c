//! `validate()`: the rules the browser runs on every keystroke and the server runs
//! on every save and test. The texts here are the only copy of each message.

use serde::{Deserialize, Serialize};

use crate::catalogue;
use crate::field::Field;
use crate::messages::FieldMessages;
use crate::parse::{self, EmailError, GuidError, HostError};
use crate::powershell;
use crate::settings::{
    AuthMethod, ClientCredential, Cloud, Provider, Security, Settings, Transport,
};

/// The longest text accepted in most fields (Passbolt's limit).
pub const MAX_LEN: usize = 256;

/// The outcome of validation: errors block saving and testing, warnings only inform.
/// Both are keyed by SETTINGS field name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Problems that block save and test.
    pub errors: FieldMessages,
    /// Advice shown next to the field; never blocking.
    pub warnings: FieldMessages,
}

impl Report {
    /// True when there is no error (warnings do not count).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors of one field.
    pub fn errors_for(&self, field: Field) -> &[String] {
        self.errors
            .get(field.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The warnings of one field.
    pub fn warnings_for(&self, field: Field) -> &[String] {
        self.warnings
            .get(field.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The first field, in form order, that has an error.
    pub fn first_invalid_field(&self) -> Option<Field> {
        Field::ALL
            .iter()
            .copied()
            .find(|f| self.errors.contains_key(f.as_str()))
    }

    /// Records an error.
    pub fn error(&mut self, field: Field, message: impl Into<String>) {
        self.errors.push(field.as_str(), message);
    }

    /// Records a warning.
    pub fn warn(&mut self, field: Field, message: impl Into<String>) {
        self.warnings.push(field.as_str(), message);
    }
}

/// Which secrets the server already holds, so an empty field may mean "keep it".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredSecrets {
    /// A client secret is stored.
    pub client_secret: bool,
    /// A password is stored.
    pub password: bool,
    /// The settings now point somewhere other than where the stored secrets
    /// were saved for, so they are not reused ([`Settings::same_secret_destination`]).
    pub elsewhere: bool,
    /// A certificate these settings may use: a pending one, or the active one
    /// bound to these settings' destination (docs/API.md §13).
    pub certificate: bool,
    /// A certificate is stored but bound to another destination.
    pub certificate_elsewhere: bool,
}

impl StoredSecrets {
    /// These stored secrets as seen from `new`: marked [`StoredSecrets::elsewhere`]
    /// unless `new` keeps the destination of `saved`, the settings they were saved with.
    pub fn towards(self, saved: Option<&Settings>, new: &Settings) -> StoredSecrets {
        StoredSecrets {
            elsewhere: saved.is_none_or(|saved| !new.same_secret_destination(saved)),
            ..self
        }
    }

    /// A stored client secret exists and may be sent with these settings.
    pub fn client_secret_usable(&self) -> bool {
        self.client_secret && !self.elsewhere
    }

    /// A stored password exists and may be sent with these settings.
    pub fn password_usable(&self) -> bool {
        self.password && !self.elsewhere
    }
}

/// The message when the stored certificate is bound to another destination (docs/API.md §3).
pub const CERTIFICATE_AGAIN: &str = "Make or upload the certificate again: a stored certificate is only used for the tenant and app it was saved for.";

/// The message for a new profile that is to sign in with a certificate:
/// a certificate is made for one profile, so only once the profile exists.
pub const CERTIFICATE_AFTER_CREATE: &str = "A certificate is made for one profile, once it exists: save this new profile with a client secret first, then switch it to a certificate and generate one.";

/// The two boxes of a certificate brought to Mailroom (docs/API.md §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemBox {
    /// `certificate_pem`.
    Certificate,
    /// `private_key_pem`.
    PrivateKey,
}

/// A private key encrypted with a passphrase, which Mailroom cannot use.
pub const ENCRYPTED_KEY: &str = "The private key is encrypted with a passphrase. Decrypt it first (openssl pkcs8 -topk8 -nocrypt -in key.pem), then paste it; Mailroom stores it encrypted.";

/// A PEM block of another kind in a box, named with where the right one
/// goes, or an encrypted private key: checked on every keystroke in the
/// page, and by the server.
pub fn pem_mistake(pem_box: PemBox, text: &str) -> Option<&'static str> {
    let private = text.contains("PRIVATE KEY-----");
    let public = text.contains("PUBLIC KEY-----");
    let certificate = text.contains("BEGIN CERTIFICATE-----");
    match pem_box {
        // A file of both (the certificate, then its key) is a certificate.
        PemBox::Certificate if certificate => None,
        PemBox::Certificate if private => Some("This is a private key, not the certificate: it goes in the private key box (private_key_pem)."),
        PemBox::Certificate if text.contains("CERTIFICATE REQUEST-----") => Some("This is a certificate signing request (CSR), not a certificate. Use the certificate made from it (a .cer or .pem file), or let Mailroom generate one."),
        PemBox::Certificate if public => Some("This is a public key, not a certificate; Entra takes certificates."),
        PemBox::PrivateKey
            if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") =>
        {
            Some(ENCRYPTED_KEY)
        }
        PemBox::PrivateKey if !private && certificate => Some("This is a certificate, not its private key: it goes in the certificate box (certificate_pem)."),
        PemBox::PrivateKey if !private && public => Some("This is a public key; Mailroom needs the private key made with the certificate."),
        _ => None,
    }
}

/// The message when no certificate exists yet.
pub const CERTIFICATE_NEEDED: &str = "Generate a certificate or bring your own below, then upload its public part in Entra: Certificates & secrets \u{2192} Certificates \u{2192} Upload.";

/// Checks a `YYYY-MM-DD` date (the portal's *Expires* column); the error says why not.
pub fn check_date(text: &str) -> Result<(i32, u8, u8), &'static str> {
    const WANT: &str = "Enter the date as YYYY-MM-DD, like 2027-06-30, as the Expires column under Certificates & secrets shows it.";
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(WANT);
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return Err(WANT);
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err("There is no such month: enter the date as YYYY-MM-DD."),
    };
    if d == 0 || d > days {
        return Err("There is no such day in that month: enter the date as YYYY-MM-DD.");
    }
    if !(2000..=2199).contains(&y) {
        return Err("Enter the year in full, like 2027.");
    }
    Ok((y as i32, m as u8, d as u8))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Days before a credential's end that Mailroom warns (docs/API.md §13).
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// A warning for the secret's Expires date as it is typed, against the
/// day the page is on (`today`, year, month, day): a date that has passed,
/// usually a slip of the year, would be told only by the banner after the
/// save; one within [`EXPIRY_WARN_DAYS`] is said before it is saved.
/// `None` for a date further off, a certificate, or text that is no date
/// (its error says so).
pub fn secret_expiry_note(s: &Settings, today: (i32, u8, u8)) -> Option<String> {
    if s.auth_method != AuthMethod::OAuth2ClientCredentials || s.uses_certificate() {
        return None;
    }
    let date = s.client_secret_expires.as_deref()?.trim();
    let (y, m, d) = check_date(date).ok()?;
    let left = days_from_civil(y, m, d) - days_from_civil(today.0, today.1, today.2);
    match left {
        ..0 => Some(format!("{date} has passed: Entra refuses a secret after its Expires date (AADSTS7000222), so no mail would go out. Check the year; if the date is right, make a new secret under Certificates & secrets and enter its Value and Expires date.")),
        0 => Some("The secret expires today: make a new one under Certificates & secrets now and enter its Value and Expires date, or switch to a certificate.".into()),
        1..=EXPIRY_WARN_DAYS => Some(format!("The secret expires in {left} day{}: make a new one under Certificates & secrets before then, or switch to a certificate. Until then Mailroom warns on every page.", if left == 1 { "" } else { "s" })),
        _ => None,
    }
}

/// A date written another way than `YYYY-MM-DD`, as the portal shows it in
/// the browser's language (`6/30/2027`, `30.06.2027`, `2027/6/30`): the
/// message naming the `YYYY-MM-DD` form it is, or the two it may be when
/// day and month could be either. `None` when it is no such date.
fn date_as_written(text: &str) -> Option<String> {
    let parts: Vec<&str> = text
        .trim()
        .split(['/', '.', '-', ' '])
        .filter(|p| !p.is_empty())
        .collect();
    let [a, b, c] = parts[..] else { return None };
    if !parts
        .iter()
        .all(|p| p.len() <= 4 && p.bytes().all(|x| x.is_ascii_digit()))
    {
        return None;
    }
    let n = |p: &str| p.parse::<u32>().ok();
    let iso = |y: u32, m: u32, d: u32| {
        let text = format!("{y:04}-{m:02}-{d:02}");
        check_date(&text).is_ok().then_some(text)
    };
    let want = "Enter the date as YYYY-MM-DD";
    if a.len() == 4 {
        return iso(n(a)?, n(b)?, n(c)?).map(|d| format!("{want}: {d}."));
    }
    if c.len() != 4 {
        return None;
    }
    let (x, y, year) = (n(a)?, n(b)?, n(c)?);
    match (iso(year, x, y), iso(year, y, x)) {
        (Some(m_first), Some(d_first)) if m_first != d_first => Some(format!(
            "{want}: {m_first} if the month comes first, {d_first} if the day does."
        )),
        (Some(d), _) | (None, Some(d)) => Some(format!("{want}: {d}.")),
        (None, None) => None,
    }
}

/// The message for a left-out secret whose stored value is bound elsewhere (docs/API.md §3).
pub const SECRET_BOUND_ELSEWHERE: &str =
    "a stored secret is only sent to the server it was saved for.";

/// "Enter the client secret again: a stored secret is only sent to the server it was saved for."
pub fn secret_again(label: &str) -> String {
    format!("Enter the {label} again: {SECRET_BOUND_ELSEWHERE}")
}

/// The retirement of Office 365 basic authentication (docs/REFERENCE.md), as data:
/// the notice on the page and the validation warning are both made from it.
pub const BASIC_AUTH_RETIREMENT: &[Milestone] = &[
    Milestone {
        when: "End of December 2026",
        what: "disabled by default for existing tenants; admins can re-enable it for a while.",
    },
    Milestone {
        when: "Tenants created after December 2026",
        what: "not available; OAuth is the only method.",
    },
    Milestone {
        when: "Second half of 2027",
        what: "Microsoft announces the final removal date.",
    },
];

/// One date of the basic-authentication retirement and what happens then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Milestone {
    /// When.
    pub when: &'static str,
    /// What happens.
    pub what: &'static str,
}

/// What to do about the retirement.
pub const SWITCH_TO_OAUTH: &str = "Switch to OAuth 2.0 (Client Credentials).";

/// The retirement as one warning: each milestone, then what to do. The page
/// shows the same milestones as a list.
pub fn basic_auth_retirement() -> String {
    let mut text = String::from(
        "Microsoft is retiring basic authentication for SMTP AUTH in Exchange Online.",
    );
    for m in BASIC_AUTH_RETIREMENT {
        text.push(' ');
        text.push_str(m.when);
        text.push_str(": ");
        text.push_str(m.what);
    }
    text.push(' ');
    text.push_str(SWITCH_TO_OAUTH);
    text
}

/// Whether these settings sign in to Exchange Online with a password:
/// basic authentication for SMTP AUTH, which Microsoft is retiring
/// ([`BASIC_AUTH_RETIREMENT`]). Office 365 as the provider, or its host
/// typed under another.
pub fn uses_retiring_basic_auth(s: &Settings) -> bool {
    let host = s.host.trim().trim_end_matches('.').to_ascii_lowercase();
    s.auth_method == AuthMethod::Password
        && (s.provider == Provider::Office365
            || host == "office365.com"
            || host.ends_with(".office365.com"))
}

const GUID_EXAMPLE: &str = "00000000-0000-0000-0000-000000000000";

fn guid_message(short: &str, label: &str, err: &GuidError) -> String {
    let base = format!("{short} must be a GUID, like {GUID_EXAMPLE}.");
    match err {
        GuidError::Empty => format!(
            "Enter the {label}. It is on the app registration's Overview page in the Microsoft Entra admin center."
        ),
        GuidError::BadChar(c, pos) => format!(
            "{base} Character {pos} is “{}”, but a GUID has only the digits 0–9, the letters a–f and hyphens.",
            shown(*c)
        ),
        GuidError::Length(n) => format!(
            "{base} It has {n} hex digits instead of 32: copy it again, whole, from the app registration's Overview page."
        ),
        GuidError::Hyphens => format!(
            "{base} The 32 digits are there, but the hyphens are missing or misplaced: group them 8-4-4-4-12."
        ),
        GuidError::DomainName => format!(
            "{base} You entered a domain name: copy the {label} from the app registration's Overview page instead."
        ),
        GuidError::EmailAddress => format!(
            "{base} You entered an email address: the mailbox's address goes in Username; copy the {label} from the app registration's Overview page."
        ),
        GuidError::Within(guid) => format!(
            "{base} What you entered holds one with more around it: {guid}. If that is the {label}, enter only it."
        ),
        GuidError::Several(n) => format!(
            "{base} What you entered holds {n} GUIDs: copy the {label} alone from the app registration's Overview page."
        ),
    }
}

/// A character as a message shows it: itself, or `U+XXXX` when invisible.
/// (Not `escape_debug`: its Unicode tables cost KBs of wasm.)
fn shown(c: char) -> String {
    if c.is_control() || c.is_whitespace() || parse::is_invisible(c) {
        format!("U+{:04X}", c as u32)
    } else {
        c.to_string()
    }
}

fn email_message(label: &str, err: &EmailError) -> String {
    match err {
        EmailError::Empty => format!("Enter the {label}."),
        EmailError::Whitespace => format!(
            "The {label} must not contain spaces or line breaks. Enter a single address, like name@example.com."
        ),
        EmailError::Invisible(c) => format!(
            "The {label} holds U+{:04X}, a character that shows as nothing, which came along when it was copied; type the address again.",
            *c as u32
        ),
        EmailError::AtCount(0) => format!(
            "The {label} needs an @ between the name and the domain, like name@example.com."
        ),
        EmailError::AtCount(_) => format!(
            "The {label} has more than one @. Enter a single address, like name@example.com."
        ),
        EmailError::NoLocalPart => format!(
            "The {label} needs a valid name before the @, like name@example.com."
        ),
        EmailError::LocalDots => format!(
            "The {label} has a dot at the start or end of the name before the @, or two in a row; no server takes that. Check for a typing slip, like name@example.com."
        ),
        EmailError::LocalTooLong(n) => format!(
            "The name before the @ in the {label} is {n} bytes long; a mailbox name holds at most 64 (RFC 5321)."
        ),
        EmailError::NoDot => format!(
            "The {label} needs a domain with a dot after the @, like name@example.com."
        ),
        EmailError::BadDomain(HostError::BadChar(c)) => format!(
            "The {label} has “{}” in the domain after the @: a domain has only letters, digits, hyphens and dots, like name@example.com.",
            shown(*c)
        ),
        EmailError::BadDomain(HostError::BadLabel) => format!(
            "The domain after the @ in the {label} has a dot at either end or two in a row, or a part that starts or ends with a hyphen or is longer than 63 characters; write it like name@example.com."
        ),
        EmailError::BadDomain(_) => format!(
            "The part after the @ in the {label} is not a domain name; write it like name@example.com."
        ),
        EmailError::IpAddress => format!(
            "The {label} has an IP address after the @; mail goes to a domain name, like name@example.com."
        ),
        EmailError::TooLong => format!("The {label} is longer than 254 characters; shorten it."),
        EmailError::Guid => format!(
            "The {label} is an ID (a GUID), not an email address: enter an address, like name@example.com. The app registration's IDs go in Tenant ID and Client ID."
        ),
        EmailError::Wrapped(address) => format!(
            "Enter only the address in the {label}, {address}, without a name, angle brackets, quotes, “mailto:” or “;” around it."
        ),
    }
}

fn host_message(label: &str, err: &HostError) -> String {
    match err {
        HostError::Empty => format!("Enter the {label}."),
        HostError::Placeholder => format!(
            "Replace the {{placeholder}} in the {label}, for example {{region}} with your AWS region such as us-east-1."
        ),
        HostError::UrlPasted => format!(
            "Enter only the {label}, without smtp:// or a path, like smtp.example.com."
        ),
        HostError::PortPasted => format!(
            "Enter the {label} without the port; put the port in the Port field."
        ),
        HostError::BadChar(c) => format!(
            "The {label} contains “{}”: a host name has only letters, digits, hyphens and dots.",
            shown(*c)
        ),
        HostError::BadLabel => format!(
            "The {label} is not a valid host name: each part between dots must be 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen."
        ),
        HostError::TooLong => format!("The {label} is longer than 253 characters; shorten it."),
    }
}

/// Checks a test recipient address; returns the message to show, if any.
pub fn check_recipient(recipient: &str) -> Option<String> {
    check_address("recipient address", recipient)
}

/// Checks an address that `label` names ("address 2 of cc"); returns what
/// is wrong with it and how to write it, if anything is.
pub fn check_address(label: &str, address: &str) -> Option<String> {
    parse::check_email(address)
        .err()
        .map(|e| email_message(label, &e))
}

/// Checks a port typed as text, as the form holds it.
pub fn parse_port(text: &str) -> Result<u16, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(port_message());
    }
    match t.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(port_message()),
    }
}

fn port_message() -> String {
    "Enter a port from 1 to 65535: 587 for STARTTLS, 465 for implicit TLS.".to_string()
}

fn check_length(report: &mut Report, field: Field, label: &str, value: &str) -> bool {
    let n = value.chars().count();
    if n > MAX_LEN {
        report.error(
            field,
            format!("The {label} is {n} characters long; the limit is {MAX_LEN}. Shorten it."),
        );
        return false;
    }
    true
}

/// A pasted secret or password that holds a line break or another control
/// character: no provider issues one, and a NUL would end the password early
/// in SMTP AUTH PLAIN. Returns whether the value passed.
/// Whether a value is wrapped in a pair of quotes, straight or curly.
fn in_quotes(value: &str) -> bool {
    parse::inside(value, &parse::QUOTES).is_some_and(|inner| !inner.is_empty())
}

fn check_pasted(report: &mut Report, field: Field, label: &str, value: &str) -> bool {
    if parse::has_line_break(value) {
        report.error(
            field,
            format!("The {label} contains a line break: it was copied across two lines. Paste it again as one line."),
        );
        return false;
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        report.error(
            field,
            format!(
                "The {label} holds the control character {}, which no {label} has. Copy it again from where it was shown.",
                shown(c)
            ),
        );
        return false;
    }
    if let Some(c) = parse::invisible_char(value) {
        report.error(
            field,
            format!(
                "The {label} holds U+{:04X}, a character that shows as nothing and that no {label} has: it came along when it was copied. Copy it again from where it was shown.",
                c as u32
            ),
        );
        return false;
    }
    true
}

impl Settings {
    /// Validates with no secret stored on the server.
    pub fn validate(&self) -> Report {
        self.validate_with(StoredSecrets::default())
    }

    /// Validates, knowing which secrets the server already holds: an absent
    /// (`None`) secret then means "keep the stored one".
    pub fn validate_with(&self, stored: StoredSecrets) -> Report {
        let mut r = Report::default();
        let s = self.normalized();
        let provider = catalogue::provider(s.provider);
        let office365 = s.provider == Provider::Office365;
        let oauth = s.auth_method == AuthMethod::OAuth2ClientCredentials;

        if !provider.auth_methods.contains(&s.auth_method) {
            let msg = if oauth {
                format!(
                    "OAuth 2.0 (Client Credentials) is offered only for Office 365. Choose another authentication method for {}.",
                    provider.name
                )
            } else {
                format!(
                    "{} does not offer this authentication method. Choose one from the list.",
                    provider.name
                )
            };
            r.error(Field::AuthMethod, msg);
        }

        if oauth {
            self.validate_oauth(&mut r, &s, stored);
        }
        if !oauth && s.client_credential == ClientCredential::Certificate {
            r.error(
                Field::ClientCredential,
                "A certificate proves the app only with OAuth 2.0 (Client Credentials). Choose the client secret, or choose OAuth.",
            );
        }
        let graph = s.transport == Transport::Graph;
        if graph && !(office365 && oauth) {
            r.error(
                Field::Transport,
                "Microsoft Graph is a way out only for Office 365 with OAuth 2.0 (Client Credentials). Choose SMTP, or choose Office 365 and OAuth.",
            );
        }

        // Username.
        let needs_username = matches!(
            s.auth_method,
            AuthMethod::Username | AuthMethod::Password | AuthMethod::OAuth2ClientCredentials
        );
        if let Some(user) = s.username.as_deref().filter(|_| needs_username) {
            if check_length(&mut r, Field::Username, "username", user) {
                if oauth {
                    if let Err(e) = parse::check_email(user) {
                        r.error(
                            Field::Username,
                            email_message("username (the licensed mailbox's full address)", &e),
                        );
                    }
                } else if user.is_empty() {
                    r.error(Field::Username, "Enter the username.");
                } else if parse::has_line_break(user) {
                    r.error(
                        Field::Username,
                        "The username must not contain line breaks.",
                    );
                }
            }
        } else if needs_username {
            r.error(
                Field::Username,
                if oauth {
                    "Enter the username: the full address of the licensed mailbox that sends, like mailer@contoso.com."
                } else {
                    "Enter the username."
                },
            );
        }

        // Password.
        if s.auth_method == AuthMethod::Password {
            match s.password.as_deref() {
                None if stored.password_usable() => {}
                None if stored.password => r.error(Field::Password, secret_again("password")),
                None | Some("") => r.error(
                    Field::Password,
                    if office365 {
                        "Enter the application password (not your sign-in password)."
                    } else {
                        "Enter the password."
                    },
                ),
                Some(p) => {
                    if check_length(&mut r, Field::Password, "password", p)
                        && check_pasted(&mut r, Field::Password, "password", p)
                        && in_quotes(p)
                    {
                        r.warn(
                            Field::Password,
                            "The password is in quotes, as a file or a script writes it: unless the quotes are part of it, paste it without them.",
                        );
                    }
                }
            }
            if uses_retiring_basic_auth(&s) {
                r.warn(Field::AuthMethod, basic_auth_retirement());
            }
        }

        // Host and port: unused with Graph.
        if !graph {
            self.validate_smtp_target(&mut r, &s);
        }

        // Sender.
        if check_length(&mut r, Field::SenderName, "sender name", &s.sender_name) {
            if parse::has_line_break(&s.sender_name) {
                r.error(
                    Field::SenderName,
                    "The sender name must not contain line breaks; put it on one line.",
                );
            } else if s.sender_name.chars().any(char::is_control) {
                r.error(
                    Field::SenderName,
                    "The sender name may not hold control characters (a tab, NUL or escape code); type it as plain text.",
                );
            } else if let Some(m) = parse::reordering_mark("sender name", &s.sender_name)
                .or_else(|| parse::invisible_mark("sender name", &s.sender_name))
            {
                r.error(Field::SenderName, m);
            } else if s.sender_name.is_empty() {
                r.error(
                    Field::SenderName,
                    "Enter a sender name: the display name recipients see, like “Contoso notifications”.",
                );
            } else if in_quotes(&s.sender_name) {
                r.warn(
                    Field::SenderName,
                    "The sender name is in quotes, which recipients would see as part of it: type it without them (the message gets the quotes it needs).",
                );
            } else if s
                .sender_name
                .split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .is_some_and(|(inside, _)| inside.contains('@'))
            {
                r.warn(
                    Field::SenderName,
                    "The sender name holds an address in < >, which recipients would see as part of the name: the address goes in Sender email.",
                );
            }
        }
        let sender_ok = check_length(&mut r, Field::SenderEmail, "sender email", &s.sender_email)
            && match parse::check_email(&s.sender_email) {
                Ok(()) => true,
                Err(e) => {
                    r.error(Field::SenderEmail, email_message("sender email", &e));
                    false
                }
            };
        if sender_ok && !s.send_as_confirmed && s.needs_send_as() {
            // An invalid username has its own message; the Send-As one needs both addresses.
            if let Some(user) = s
                .username
                .as_deref()
                .filter(|u| parse::check_email(u).is_ok())
            {
                r.error(
                    Field::SenderEmail,
                    format!(
                        "The sender {sender} differs from the username {user}. Use {user} as the sender, or give {user} Send-As rights on {sender} with `{cmd}` and tick the Send-As confirmation.",
                        sender = s.sender_email,
                        cmd = powershell::add_recipient_permission(&s.sender_email, user),
                    ),
                );
            }
        }
        r
    }

    /// The SMTP server: host, port, security and the EHLO name.
    fn validate_smtp_target(&self, r: &mut Report, s: &Settings) {
        if check_length(r, Field::Host, "SMTP host", &s.host) {
            if let Err(e) = parse::check_host(&s.host) {
                r.error(Field::Host, host_message("SMTP host", &e));
            }
        }
        if s.port == 0 {
            r.error(Field::Port, port_message());
        }
        match (s.security, s.port) {
            (Security::Starttls, 465) => r.warn(
                Field::Security,
                "Port 465 normally uses implicit TLS, not STARTTLS. Choose “Implicit TLS” or port 587.",
            ),
            (Security::Tls, 587) => r.warn(
                Field::Security,
                "Port 587 normally uses STARTTLS, not implicit TLS. Choose “STARTTLS” or port 465.",
            ),
            _ => {}
        }
        if s.security == Security::None
            && s.auth_method != AuthMethod::None
            && !parse::is_loopback_address(&s.host)
        {
            r.error(
                Field::Security,
                "Credentials would be sent unencrypted. Choose STARTTLS or implicit TLS; “None” is allowed with a username or credentials only for a relay on this machine, named by its loopback address (127.0.0.1 or ::1).",
            );
        }
        if let Some(h) = s.client_hostname.as_deref() {
            if check_length(r, Field::ClientHostname, "client host name", h) {
                if let Err(e) = parse::check_host_name(h) {
                    r.error(Field::ClientHostname, host_message("client host name", &e));
                }
            }
        }
    }

    fn validate_oauth(&self, r: &mut Report, s: &Settings, stored: StoredSecrets) {
        let tenant = s.tenant_id.as_deref().unwrap_or_default();
        let client = s.client_id.as_deref().unwrap_or_default();
        let tenant_ok = match parse::check_guid(tenant) {
            Ok(_) => true,
            Err(e) => {
                r.error(
                    Field::TenantId,
                    guid_message("Tenant ID", "Directory (tenant) ID", &e),
                );
                false
            }
        };
        let client_ok = match parse::check_guid(client) {
            Ok(_) => true,
            Err(e) => {
                r.error(
                    Field::ClientId,
                    guid_message("Client ID", "Application (client) ID", &e),
                );
                false
            }
        };
        if tenant_ok && client_ok && tenant == client {
            r.error(
                Field::ClientId,
                "The Application (client) ID is the same as the Directory (tenant) ID: the same ID was pasted twice. Copy the Application (client) ID from the app registration's Overview page.",
            );
        }
        if s.client_credential == ClientCredential::Certificate {
            if !stored.certificate {
                r.error(
                    Field::ClientCredential,
                    if stored.certificate_elsewhere {
                        CERTIFICATE_AGAIN
                    } else {
                        CERTIFICATE_NEEDED
                    },
                );
            }
            return self.validate_cloud(r, s);
        }
        if let Some(date) = s.client_secret_expires.as_deref() {
            if let Err(e) = check_date(date) {
                r.error(
                    Field::ClientSecretExpires,
                    date_as_written(date).unwrap_or_else(|| e.to_string()),
                );
            }
        }
        match self.client_secret.as_deref() {
            None if stored.client_secret_usable() => {}
            None if stored.client_secret => r.error(Field::ClientSecret, secret_again("client secret")),
            None | Some("") => r.error(
                Field::ClientSecret,
                "Enter the client secret's Value from Certificates & secrets (step 3 of the setup).",
            ),
            Some(secret) => {
                if check_length(r, Field::ClientSecret, "client secret", secret) {
                    // A line break (a trailing one too) is named as one,
                    // before the spaces around or inside.
                    if check_pasted(r, Field::ClientSecret, "client secret", secret) {
                        if secret.trim() != secret {
                            r.error(
                                Field::ClientSecret,
                                "The client secret starts or ends with a space. Paste the Value again without surrounding spaces.",
                            );
                        } else if secret.contains(char::is_whitespace) {
                            r.error(
                                Field::ClientSecret,
                                "The client secret contains a space, which a secret's Value never has: two things were pasted together. Copy the Value column again, alone.",
                            );
                        }
                    }
                    if in_quotes(secret) {
                        r.warn(
                            Field::ClientSecret,
                            "The client secret is in quotes, which Entra's secret Values never have: they came along from a file or a script. Paste the Value without them.",
                        );
                    }
                    if parse::is_guid(secret) {
                        r.warn(
                            Field::ClientSecret,
                            "This looks like the Secret ID, not its Value. Copy the Value column under Certificates & secrets (step 3); it is shown only once.",
                        );
                    }
                }
            }
        }
        self.validate_cloud(r, s)
    }

    fn validate_cloud(&self, r: &mut Report, s: &Settings) {
        let cloud = catalogue::cloud(s.cloud);
        if s.cloud != Cloud::Global {
            r.warn(
                Field::Cloud,
                format!(
                    "Microsoft documents this flow end to end only for the Global cloud; {} should work the same way but is not documented end to end.",
                    cloud.name
                ),
            );
        }
        if s.transport == Transport::Smtp
            && !s.host.eq_ignore_ascii_case(cloud.smtp_host)
            && !parse::is_loopback(&s.host)
        {
            r.warn(
                Field::Host,
                format!(
                    "The {} cloud's SMTP host is {}; other hosts may not accept its tokens.",
                    cloud.name, cloud.smtp_host
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    use crate::fixtures::{mailer, TENANT};

    fn oauth() -> Settings {
        crate::fixtures::office365_oauth("smtp.office365.com", 587)
    }

    fn errors(s: &Settings, field: Field) -> Vec<String> {
        s.validate().errors_for(field).to_vec()
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_pem_block_in_the_wrong_box_or_an_encrypted_key_is_named_and_the_right_ones_pass() {
        let block = |kind: &str| format!("-----BEGIN {kind}-----\nMIIB\n-----END {kind}-----\n");
        let (cert, key) = (block("CERTIFICATE"), block("PRIVATE KEY"));
        let wrong = |b, text: &str| pem_mistake(b, text).unwrap_or_default();
        assert!(wrong(PemBox::Certificate, &key).starts_with("This is a private key"));
        assert!(wrong(PemBox::Certificate, &block("RSA PRIVATE KEY")).contains("private_key_pem"));
        assert!(wrong(PemBox::Certificate, &block("CERTIFICATE REQUEST")).contains("(CSR)"));
        assert!(
            wrong(PemBox::Certificate, &block("PUBLIC KEY")).starts_with("This is a public key")
        );
        assert!(wrong(PemBox::PrivateKey, &cert).contains("certificate_pem"));
        assert!(wrong(PemBox::PrivateKey, &block("PUBLIC KEY")).starts_with("This is a public key"));
        assert_eq!(
            wrong(PemBox::PrivateKey, &block("ENCRYPTED PRIVATE KEY")),
            ENCRYPTED_KEY
        );
        let traditional = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n";
        assert_eq!(wrong(PemBox::PrivateKey, traditional), ENCRYPTED_KEY);
        // The right blocks, a file of both, a paste in progress and nothing pass.
        for (b, text) in [
            (PemBox::Certificate, cert.clone()),
            (PemBox::Certificate, format!("{cert}{key}")),
            (PemBox::PrivateKey, key.clone()),
            (PemBox::PrivateKey, block("RSA PRIVATE KEY")),
            (PemBox::PrivateKey, format!("{cert}{key}")),
            (PemBox::Certificate, "-----BEGIN CERT".into()),
            (PemBox::PrivateKey, String::new()),
        ] {
            assert_eq!(pem_mistake(b, &text), None, "{b:?} {text}");
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn valid_oauth_settings_pass_without_warnings() {
        let r = oauth().validate();
        assert!(r.is_valid(), "{r:?}");
        assert!(r.warnings.is_empty(), "{r:?}");
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn tenant_id_rules() {
        let mut s = oauth();
        s.tenant_id = Some(" {0B4F1C2A-1234-4ABC-9DEF-0123456789AB} ".into());
        assert!(
            errors(&s, Field::TenantId).is_empty(),
            "braces, spaces and case are tolerated"
        );
        s.tenant_id = Some("0b4f1c2a-1234-4abc-9def-0123456789a".into());
        let e = errors(&s, Field::TenantId);
        assert_eq!(e.len(), 1);
        assert!(e[0]
            .starts_with("Tenant ID must be a GUID, like 00000000-0000-0000-0000-000000000000."));
        assert!(e[0].contains("31 hex digits instead of 32"), "{e:?}");
        s.tenant_id = Some("0b4f1c2a-1234-4abc-9def-0123456789az".into());
        assert!(errors(&s, Field::TenantId)[0].contains("Character 36 is “z”"));
        s.tenant_id = Some("0b4f1c2a12344abc9def0123456789ab".into());
        assert!(errors(&s, Field::TenantId)[0].contains("hyphens are missing"));
        s.tenant_id = None;
        assert!(errors(&s, Field::TenantId)[0].starts_with("Enter the Directory (tenant) ID."));
        s.tenant_id = Some("contoso.onmicrosoft.com".into());
        assert!(errors(&s, Field::TenantId)[0].contains("domain name"));
        // The admin's own sign-in name, one box too early.
        s.tenant_id = Some(mailer());
        let e = errors(&s, Field::TenantId);
        assert!(
            e[0].contains("an email address") && e[0].contains("Username"),
            "{e:?}"
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn an_id_pasted_with_what_surrounds_it_is_named() {
        // Entra shows the tenant ID inside its endpoint URLs and the client
        // ID inside the Application ID URI (`api://…`); both get pasted
        // whole, and were "a domain name" or "Character 2 is p".
        let mut s = oauth();
        s.tenant_id = Some(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
        ));
        let e = errors(&s, Field::TenantId);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains(TENANT) && e[0].contains("only"), "{e:?}");
        s.tenant_id = Some(TENANT.into());
        let client = "6f1e2d3c-aaaa-4bbb-8ccc-123456789abc";
        for pasted in [
            format!("api://{client}"),
            format!("Application (client) ID: {}", client.to_uppercase()),
            format!("{client}\tCopy to clipboard"),
        ] {
            s.client_id = Some(pasted.clone());
            let e = errors(&s, Field::ClientId);
            assert_eq!(e.len(), 1, "{pasted}: {e:?}");
            assert!(
                e[0].contains(client) && e[0].contains("only"),
                "{pasted}: {e:?}"
            );
        }
        // Two GUIDs: which one is meant is not guessed.
        s.client_id = Some(format!("appId/{client}/objectId/{TENANT}"));
        let e = errors(&s, Field::ClientId);
        assert!(e[0].contains("2 GUIDs") && !e[0].contains(client), "{e:?}");
        // A GUID with a digit too many is still a length error, not one inside.
        s.client_id = Some(format!("{client}0"));
        assert!(errors(&s, Field::ClientId)[0].contains("33 hex digits"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn client_id_rules_and_same_id_twice() {
        let mut s = oauth();
        s.client_id = Some("6f1e2d3c-aaaa-4bbb-8ccc".into());
        assert!(errors(&s, Field::ClientId)[0].starts_with("Client ID must be a GUID"));
        s.client_id = Some(TENANT.to_uppercase());
        let e = errors(&s, Field::ClientId);
        assert!(e[0].contains("the same ID was pasted twice"), "{e:?}");
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn client_secret_rules() {
        let mut s = oauth();
        s.client_secret = Some("9a8b7c6d-1111-4222-8333-444455556666".into());
        let r = s.validate();
        assert!(r.is_valid(), "a GUID-shaped secret only warns");
        assert!(r.warnings_for(Field::ClientSecret)[0]
            .contains("looks like the Secret ID, not its Value"));
        // Copied from a JSON file or a script, quotes and all.
        for quoted in ["\"Abc8Q~x.y_z-1\"", "'Abc8Q~x.y_z-1'", "“Abc8Q~x.y_z-1”"] {
            s.client_secret = Some(quoted.into());
            let r = s.validate();
            assert!(r.is_valid(), "{quoted}: quotes only warn");
            let w = r.warnings_for(Field::ClientSecret);
            assert!(
                w.len() == 1 && w[0].contains("in quotes"),
                "{quoted}: {w:?}"
            );
        }
        s.client_secret = Some("Abc8Q~x\"y".into());
        assert!(s.validate().warnings_for(Field::ClientSecret).is_empty());
        s.client_secret = None;
        assert!(errors(&s, Field::ClientSecret)[0].contains("Enter the client secret's Value"));
        let kept = s.validate_with(StoredSecrets {
            client_secret: true,
            password: false,
            ..StoredSecrets::default()
        });
        assert!(
            kept.errors_for(Field::ClientSecret).is_empty(),
            "None keeps a stored secret"
        );
        let stored = StoredSecrets {
            client_secret: true,
            ..StoredSecrets::default()
        };
        let mut other_tenant = s.clone();
        other_tenant.tenant_id = Some("11111111-2222-4333-8444-555555555555".into());
        assert_eq!(
            other_tenant
                .validate_with(stored.towards(Some(&s), &other_tenant))
                .errors_for(Field::ClientSecret),
            ["Enter the client secret again: a stored secret is only sent to the server it was saved for."]
        );
        s.client_secret = Some(String::new());
        let empty = s.validate_with(StoredSecrets {
            client_secret: true,
            password: false,
            ..StoredSecrets::default()
        });
        assert!(
            !empty.errors_for(Field::ClientSecret).is_empty(),
            "an empty string is an error"
        );
        s.client_secret = Some(" value ".into());
        assert!(errors(&s, Field::ClientSecret)[0].contains("space"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn graph_only_with_office365_oauth_and_without_an_smtp_server() {
        let mut s = oauth();
        s.transport = Transport::Graph;
        // Host, port and security are unused: empty is fine.
        s.host = String::new();
        s.port = 0;
        s.security = Security::None;
        let r = s.validate();
        assert!(r.is_valid(), "{r:?}");
        assert!(r.warnings_for(Field::Host).is_empty(), "{r:?}");
        let mut password = s.clone();
        password.auth_method = AuthMethod::Password;
        password.password = Some("app password".into());
        assert!(errors(&password, Field::Transport)[0].contains("only for Office 365 with OAuth"));
        let mut gmail = s.clone();
        gmail.provider = Provider::Gmail;
        assert!(!errors(&gmail, Field::Transport).is_empty());
        // The Send-As rule holds for Graph too (ErrorSendAsDenied).
        let mut other = s.clone();
        other.sender_email = format!("{}@{}", "notifications", "contoso.com");
        other.send_as_confirmed = false;
        assert!(errors(&other, Field::SenderEmail)[0].contains("Send-As"));
        // Null host, port and security are read as unused.
        let mut v = serde_json::to_value(&s).unwrap();
        for k in ["host", "port", "security"] {
            v[k] = serde_json::Value::Null;
        }
        let back: Settings = serde_json::from_value(v).unwrap();
        assert_eq!((back.transport, back.port), (Transport::Graph, 0));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_secret_saved_for_smtp_is_not_sent_to_graph() {
        let smtp = oauth();
        let mut graph = smtp.clone();
        graph.transport = Transport::Graph;
        assert!(!graph.same_secret_destination(&smtp));
        assert!(!smtp.same_secret_destination(&graph));
        // With Graph the SMTP server is unused: changing it keeps the binding.
        let mut moved = graph.clone();
        moved.host = "elsewhere.example".into();
        moved.port = 25;
        assert!(moved.same_secret_destination(&graph));
        let mut other_user = graph.clone();
        other_user.username = Some(format!("{}@{}", "other", "contoso.com"));
        assert!(!other_user.same_secret_destination(&graph));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn oauth_only_for_office365() {
        let mut s = oauth();
        s.provider = Provider::Gmail;
        assert!(errors(&s, Field::AuthMethod)[0].contains("only for Office 365"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn oauth_username_must_be_an_address() {
        let mut s = oauth();
        s.username = Some("mailer".into());
        assert!(errors(&s, Field::Username)[0].contains("needs an @"));
        s.username = None;
        assert!(errors(&s, Field::Username)[0].contains("licensed mailbox"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn sender_rules() {
        let mut s = oauth();
        s.sender_name = "Contoso\r\nBcc: victim".into();
        assert!(errors(&s, Field::SenderName)[0].contains("line breaks"));
        for name in ["Contoso\u{0}", "Con\ttoso", "\u{1b}[2JContoso"] {
            s.sender_name = name.into();
            assert!(
                errors(&s, Field::SenderName)[0].contains("control characters"),
                "{name:?}"
            );
        }
        // A mark that reorders what follows would let a name end in what
        // reads as another address.
        s.sender_name = "Contoso \u{202E}moc.osotnoc@ecivres".into();
        assert!(errors(&s, Field::SenderName)[0].contains("in another order"));
        s.sender_name = "Contoso\u{200B} IT".into();
        assert!(errors(&s, Field::SenderName)[0].contains("shows as nothing"));
        s.sender_name = "Contoso – Zürich".into();
        assert!(errors(&s, Field::SenderName).is_empty());
        assert!(s.validate().warnings_for(Field::SenderName).is_empty());
        s.sender_name = "R&D <Team 4>".into();
        assert!(s.validate().warnings_for(Field::SenderName).is_empty());
        // The whole mailbox pasted into the name box, or the name in quotes.
        for (name, says) in [
            ("\"Contoso IT\"".to_string(), "in quotes"),
            (format!("Contoso IT <{}>", mailer()), "goes in Sender email"),
        ] {
            s.sender_name = name.clone();
            let r = s.validate();
            assert!(r.errors_for(Field::SenderName).is_empty(), "{name}");
            assert!(
                r.warnings_for(Field::SenderName)[0].contains(says),
                "{name}: {r:?}"
            );
        }
        s.sender_name = "x".repeat(257);
        assert!(errors(&s, Field::SenderName)[0].contains("the limit is 256"));
        s.sender_name = String::new();
        assert!(errors(&s, Field::SenderName)[0].starts_with("Enter a sender name"));
        let mut s = oauth();
        s.sender_email = format!("{}@{}\nBcc: x", "a", "contoso.com");
        assert!(errors(&s, Field::SenderEmail)[0].contains("spaces or line breaks"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn send_as_rule_names_both_addresses_and_the_fix() {
        let mut s = oauth();
        let shared = format!("{}@{}", "notifications", "contoso.com");
        s.sender_email = shared.clone();
        let e = errors(&s, Field::SenderEmail);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains(&shared) && e[0].contains(&mailer()), "{e:?}");
        assert!(e[0].contains(&format!(
            "Add-RecipientPermission -Identity \"{shared}\" -Trustee \"{}\" -AccessRights SendAs",
            mailer()
        )));
        s.send_as_confirmed = true;
        assert!(errors(&s, Field::SenderEmail).is_empty());
        s.send_as_confirmed = false;
        s.sender_email = mailer().to_uppercase();
        assert!(
            errors(&s, Field::SenderEmail).is_empty(),
            "case-insensitive"
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn host_port_and_security_rules() {
        let mut s = Settings::for_provider(Provider::Other);
        s.username = Some("relay".into());
        s.password = Some("pw".into());
        s.sender_name = "Relay".into();
        s.sender_email = mailer();
        assert!(errors(&s, Field::Host)[0].starts_with("Enter the SMTP host"));
        assert_eq!(errors(&s, Field::Port)[0], port_message());
        // A character that shows as nothing is named by its code, not shown
        // as an empty pair of quotes.
        s.host = "smtp.contoso.com\u{200B}".into();
        assert!(
            errors(&s, Field::Host)[0].starts_with("The SMTP host contains “U+200B”"),
            "{:?}",
            errors(&s, Field::Host)
        );
        s.host = "smtp.contoso.com".into();
        s.port = 465;
        let r = s.validate();
        assert!(r.is_valid(), "{r:?}");
        assert!(r.warnings_for(Field::Security)[0].contains("Port 465 normally uses implicit TLS"));
        s.port = 587;
        s.security = Security::Tls;
        assert!(s.validate().warnings_for(Field::Security)[0]
            .contains("Port 587 normally uses STARTTLS"));
        s.security = Security::None;
        assert!(errors(&s, Field::Security)[0].contains("unencrypted"));
        s.host = "localhost".into();
        assert!(
            errors(&s, Field::Security)[0].contains("unencrypted"),
            "a name is not proof of loopback"
        );
        s.host = "127.0.0.1".into();
        assert!(
            errors(&s, Field::Security).is_empty(),
            "loopback may go plain"
        );
        s.auth_method = AuthMethod::Username;
        s.host = "smtp.contoso.com".into();
        assert!(
            errors(&s, Field::Security)[0].contains("unencrypted"),
            "a username is a credential too"
        );
        s.auth_method = AuthMethod::None;
        s.host = "smtp.contoso.com".into();
        assert!(
            errors(&s, Field::Security).is_empty(),
            "no credentials, no problem"
        );
        s.client_hostname = Some("bad host".into());
        assert!(errors(&s, Field::ClientHostname)[0].contains("contains"));
        s.client_hostname = Some("mailroom.contoso.com".into());
        assert!(errors(&s, Field::ClientHostname).is_empty());
        assert!(
            parse_port("0").is_err() && parse_port("70000").is_err() && parse_port("x").is_err()
        );
        assert_eq!(parse_port(" 2525 "), Ok(2525));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_secret_or_password_pasted_with_a_break_or_control_character_is_refused() {
        let mut s = oauth();
        for (secret, says) in [
            ("abc8Q~def\r\nghi", "contains a line break"),
            ("abc8Q~def\nghi", "contains a line break"),
            ("abc8Q~def\u{0}ghi", "control character U+0000"),
            ("abc8Q~def\u{1b}ghi", "control character U+001B"),
            ("abc8Q~def ghi", "contains a space"),
            ("abc8Q~def\tghi", "control character U+0009"),
            ("abc8Q~defghi\n", "contains a line break"),
            (" abc8Q~defghi", "starts or ends with a space"),
            // Pasted from a chat or a web page along with the secret.
            (
                "abc8Q~def\u{200B}ghi",
                "U+200B, a character that shows as nothing",
            ),
            (
                "\u{FEFF}abc8Q~defghi",
                "U+FEFF, a character that shows as nothing",
            ),
        ] {
            s.client_secret = Some(secret.into());
            let e = errors(&s, Field::ClientSecret);
            assert_eq!(e.len(), 1, "{secret:?}: {e:?}");
            assert!(e[0].contains(says), "{secret:?}: {e:?}");
        }
        s.client_secret = Some("abc8Q~def.ghi_jkl-mno".into());
        assert!(errors(&s, Field::ClientSecret).is_empty());
        s.auth_method = AuthMethod::Password;
        for (password, says) in [
            ("correct horse\r\n", "contains a line break"),
            ("correct\u{0}horse", "control character U+0000"),
            (
                "correct\u{AD}horse",
                "U+00AD, a character that shows as nothing",
            ),
        ] {
            s.password = Some(password.into());
            let e = errors(&s, Field::Password);
            assert_eq!(e.len(), 1, "{password:?}: {e:?}");
            assert!(e[0].contains(says), "{password:?}: {e:?}");
        }
        // Google shows app passwords in groups of four, with spaces.
        s.password = Some("abcd efgh ijkl mnop".into());
        assert!(errors(&s, Field::Password).is_empty());
        s.password = Some("'abcd efgh ijkl mnop'".into());
        let r = s.validate();
        assert!(r.errors_for(Field::Password).is_empty());
        assert!(r.warnings_for(Field::Password)[0].contains("in quotes"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn legacy_password_warns_with_dates() {
        let mut s = oauth();
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        let r = s.validate();
        assert!(r.is_valid(), "{r:?}");
        let w = &r.warnings_for(Field::AuthMethod)[0];
        assert!(w.contains("End of December 2026") && w.contains("Second half of 2027"));
        for m in BASIC_AUTH_RETIREMENT {
            assert!(w.contains(m.when) && w.contains(m.what), "{w}");
        }
        s.password = None;
        assert!(errors(&s, Field::Password)[0].contains("application password"));
        let stored = StoredSecrets {
            client_secret: false,
            password: true,
            ..StoredSecrets::default()
        };
        assert!(s.validate_with(stored).is_valid());
        let mut moved = s.clone();
        moved.host = "smtp.attacker.example".into();
        let r = moved.validate_with(stored.towards(Some(&s), &moved));
        assert_eq!(
            r.errors_for(Field::Password),
            ["Enter the password again: a stored secret is only sent to the server it was saved for."]
        );
        assert!(s.validate_with(stored.towards(Some(&s), &s)).is_valid());
        assert!(
            !s.validate_with(stored.towards(None, &s)).is_valid(),
            "nothing saved, nothing bound"
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn exchange_online_typed_under_another_provider_is_still_retiring_basic_auth() {
        let mut s = oauth();
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password".into());
        assert!(uses_retiring_basic_auth(&s));
        s.provider = Provider::Other;
        s.host = "SMTP.Office365.com.".into();
        assert!(uses_retiring_basic_auth(&s));
        assert_eq!(
            s.validate().warnings_for(Field::AuthMethod),
            [basic_auth_retirement()]
        );
        // Another server, or Office 365 with OAuth: nothing to retire.
        s.host = "smtp.office365.com.example.org".into();
        assert!(!uses_retiring_basic_auth(&s));
        assert!(s.validate().warnings_for(Field::AuthMethod).is_empty());
        assert!(!uses_retiring_basic_auth(&oauth()));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn other_clouds_warn_and_hosts_follow_the_cloud() {
        let mut s = oauth();
        s.cloud = Cloud::Usgov;
        let r = s.validate();
        assert!(r.warnings_for(Field::Cloud)[0].contains("not documented end to end"));
        assert!(r.warnings_for(Field::Host)[0].contains("smtp.office365.us"));
        // The cloud's own host written as a full name, with its final dot,
        // is that host: it was warned of as another.
        let mut s = oauth();
        s.host = "SMTP.office365.com.".into();
        assert!(s.validate().warnings_for(Field::Host).is_empty());
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn an_address_copied_with_more_around_it_is_named_alone() {
        // As Outlook, a mailto: link or an address book copy it; each was
        // "needs a valid name before the @" or "must not contain spaces".
        let address = mailer();
        for pasted in [
            format!("Mailer <{address}>"),
            format!("<{address}>"),
            format!("mailto:{address}"),
            format!("MAILTO:{address}?subject=hi"),
            format!("\"{address}\""),
            format!("“{address}”"),
            format!("{address};"),
            format!("\"Doe, Ann\" <{address}>; "),
        ] {
            let said = check_recipient(&pasted).unwrap_or_default();
            assert!(
                said.starts_with("Enter only the address") && said.contains(&address),
                "{pasted}: {said}"
            );
            let mut s = oauth();
            s.sender_email = pasted.clone();
            let e = errors(&s, Field::SenderEmail);
            assert!(
                e[0].contains(&address) && e[0].contains("sender email"),
                "{pasted}: {e:?}"
            );
        }
        // An apostrophe is part of many names; nothing around a broken
        // address makes it whole.
        assert!(check_recipient(&format!("o'{address}")).is_none());
        let broken = format!("<{}>", address.replace('@', "@@"));
        assert!(!check_recipient(&broken)
            .unwrap_or_default()
            .contains("Enter only"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn an_id_in_an_address_field_is_named_as_one() {
        // The Client ID pasted into Username, one box too far.
        let mut s = oauth();
        let id = s.client_id.clone().unwrap();
        s.username = Some(id.to_uppercase());
        s.sender_email = format!("{{{id}}}");
        let r = s.validate();
        for field in [Field::Username, Field::SenderEmail] {
            let e = r.errors_for(field);
            assert!(
                e[0].contains("is an ID (a GUID)") && e[0].contains("Tenant ID"),
                "{e:?}"
            );
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn recipient_and_first_invalid_field() {
        assert!(check_recipient(&mailer()).is_none());
        assert!(check_recipient("nobody")
            .unwrap()
            .contains("recipient address"));
        let mut s = oauth();
        s.sender_email = String::new();
        s.client_id = Some("x".into());
        assert_eq!(s.validate().first_invalid_field(), Some(Field::ClientId));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn over_long_fields_are_refused() {
        let mut s = oauth();
        s.username = Some(format!("{}@{}", "a".repeat(250), "contoso.com"));
        assert!(errors(&s, Field::Username)[0].contains("the limit is 256"));
        s.client_secret = Some("s".repeat(300));
        assert!(errors(&s, Field::ClientSecret)[0].contains("the limit is 256"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_certificate_replaces_the_secret_and_must_exist_for_this_destination() {
        let mut s = oauth();
        s.client_secret = None;
        s.client_credential = ClientCredential::Certificate;
        let none = StoredSecrets::default();
        let r = s.validate_with(none);
        assert_eq!(r.errors["client_credential"], vec![CERTIFICATE_NEEDED]);
        assert!(!r.errors.contains_key("client_secret"), "no secret needed");
        let bound_elsewhere = StoredSecrets {
            certificate_elsewhere: true,
            ..none
        };
        assert_eq!(
            s.validate_with(bound_elsewhere).errors["client_credential"],
            vec![CERTIFICATE_AGAIN]
        );
        let usable = StoredSecrets {
            certificate: true,
            ..none
        };
        assert!(s.validate_with(usable).is_valid());
        // Only with OAuth.
        s.auth_method = AuthMethod::Password;
        s.password = Some("app-password-123".into());
        assert!(s.validate_with(usable).errors["client_credential"][0]
            .starts_with("A certificate proves the app only with OAuth"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn the_secret_expiry_date_is_checked_while_typing() {
        let mut s = oauth();
        for good in ["2027-06-30", " 2028-02-29 ", ""] {
            s.client_secret_expires = Some(good.into());
            assert!(errors(&s, Field::ClientSecretExpires).is_empty(), "{good}");
        }
        for (bad, says) in [
            ("30/06/2027", "YYYY-MM-DD"),
            ("2027-6-30", "YYYY-MM-DD"),
            ("2027-13-01", "no such month"),
            ("2027-02-29", "no such day"),
            ("1999-01-01", "year in full"),
            ("2027-0x-01", "YYYY-MM-DD"),
        ] {
            s.client_secret_expires = Some(bad.into());
            let e = errors(&s, Field::ClientSecretExpires);
            assert!(e.len() == 1 && e[0].contains(says), "{bad}: {e:?}");
        }
        assert_eq!(check_date("2026-12-31"), Ok((2026, 12, 31)));
        // As the portal shows it in the browser's language.
        for (written, says) in [
            ("6/30/2027", "YYYY-MM-DD: 2027-06-30."),
            ("30.06.2027", "YYYY-MM-DD: 2027-06-30."),
            ("2027/6/30", "YYYY-MM-DD: 2027-06-30."),
            ("2027-6-30", "YYYY-MM-DD: 2027-06-30."),
            (
                "6/7/2027",
                "2027-06-07 if the month comes first, 2027-07-06 if the day does.",
            ),
            ("7/7/2027", "YYYY-MM-DD: 2027-07-07."),
            (
                "31/31/2027",
                "Enter the date as YYYY-MM-DD, like 2027-06-30",
            ),
        ] {
            s.client_secret_expires = Some(written.into());
            let e = errors(&s, Field::ClientSecretExpires);
            assert!(e.len() == 1 && e[0].contains(says), "{written}: {e:?}");
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_secret_expiry_date_passed_or_near_is_told_while_typing() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2027, 1, 1) - days_from_civil(2026, 12, 31),
            1
        );
        let mut s = oauth();
        let today = (2026, 12, 6);
        let note = |s: &Settings| secret_expiry_note(s, today).unwrap_or_default();
        for (date, says) in [
            ("2025-12-06", "2025-12-06 has passed: Entra refuses"),
            ("2026-12-05", "has passed"),
            ("2026-12-06", "expires today"),
            ("2026-12-07", "expires in 1 day:"),
            (" 2027-01-05 ", "expires in 30 days:"),
        ] {
            s.client_secret_expires = Some(date.into());
            assert!(note(&s).contains(says), "{date}: {}", note(&s));
        }
        for quiet in ["2027-01-06", "2028-12-31", "not a date", ""] {
            s.client_secret_expires = Some(quiet.into());
            assert_eq!(secret_expiry_note(&s, today), None, "{quiet}");
        }
        // A certificate's own date is what counts then.
        s.client_secret_expires = Some("2025-12-06".into());
        s.client_credential = ClientCredential::Certificate;
        assert_eq!(secret_expiry_note(&s, today), None);
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn the_credential_kind_binds_stored_secrets() {
        let s = oauth();
        let mut cert = s.clone();
        cert.client_credential = ClientCredential::Certificate;
        assert!(s.same_secret_destination(&s));
        assert!(!cert.same_secret_destination(&s));
        assert!(cert.uses_certificate() && !s.uses_certificate());
    }
}
