//! The SETTINGS schema of docs/API.md §3, exactly as it travels as JSON.

use serde::{Deserialize, Serialize};

/// The email provider the administrator picked; each fills in host, port and security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Microsoft 365 / Exchange Online, the only provider offering OAuth client credentials.
    #[default]
    #[serde(rename = "office365")]
    Office365,
    /// Outlook.com consumer mail.
    Outlook,
    /// Gmail.
    Gmail,
    /// Google Workspace's SMTP relay.
    GoogleWorkspace,
    /// Amazon Simple Email Service.
    AwsSes,
    /// Mailgun.
    Mailgun,
    /// Mailjet.
    Mailjet,
    /// Mandrill (Mailchimp transactional).
    Mandrill,
    /// SendGrid.
    #[serde(rename = "sendgrid")]
    SendGrid,
    /// Brevo, formerly Sendinblue.
    Brevo,
    /// Zoho Mail.
    Zoho,
    /// Elastic Email.
    ElasticEmail,
    /// Any other SMTP server; host and port are typed by hand.
    Other,
}

/// How Mailroom signs in to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No AUTH command at all.
    None,
    /// A username only: the server needs no password, nothing is sent but the envelope.
    Username,
    /// Username and password (PLAIN or LOGIN); for Office 365 the legacy app-password path.
    Password,
    /// OAuth 2.0 client credentials from Microsoft Entra ID, then SASL XOAUTH2 (Office 365 only).
    #[default]
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials,
}

/// The Microsoft cloud the tenant lives in (docs/API.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// The worldwide cloud; the only one Microsoft documents end to end for this flow.
    #[default]
    Global,
    /// US Government GCC High.
    Usgov,
    /// US Government DoD.
    UsgovDod,
    /// Microsoft 365 operated by 21Vianet in China.
    China,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, normally on port 587. Required, never optional.
    #[default]
    Starttls,
    /// Implicit TLS from the first byte, normally on port 465.
    Tls,
    /// No encryption at all; credentials are only allowed towards loopback.
    None,
}

/// Which way out the mail takes (docs/API.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// SMTP to the host, with the authentication method (XOAUTH2 for OAuth).
    #[default]
    Smtp,
    /// Microsoft Graph's `sendMail` with an app token (Office 365 OAuth only),
    /// where SMTP AUTH is switched off.
    Graph,
}

/// What the app proves itself with to Entra ID (docs/API.md §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientCredential {
    /// The client secret's Value, sent in the token request.
    #[default]
    Secret,
    /// A certificate's key signs a client assertion; no secret is sent.
    Certificate,
}

/// `null` read as the type's default (fields that a transport leaves unused).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The outgoing mail settings an administrator edits, tests and saves.
///
/// Missing fields take empty values, so that validation, not the JSON parser,
/// explains what is missing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    /// An id from the provider catalogue.
    pub provider: Provider,
    /// How to authenticate.
    pub auth_method: AuthMethod,
    /// OAuth only: the Microsoft cloud.
    pub cloud: Cloud,
    /// OAuth only: the Directory (tenant) ID, a GUID.
    pub tenant_id: Option<String>,
    /// OAuth only: the Application (client) ID, a GUID.
    pub client_id: Option<String>,
    /// OAuth only: a client secret or a certificate.
    pub client_credential: ClientCredential,
    /// OAuth only, write-only: the client secret's Value. `None` keeps the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// OAuth only: the secret's *Expires* date from the portal, `YYYY-MM-DD`.
    pub client_secret_expires: Option<String>,
    /// The SMTP username; for OAuth the licensed mailbox's full address.
    pub username: Option<String>,
    /// Write-only: the password or app password. `None` keeps the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// SMTP or Microsoft Graph.
    pub transport: Transport,
    /// The SMTP server's host name or IP address (unused, and may be null, with Graph).
    #[serde(deserialize_with = "null_default")]
    pub host: String,
    /// The SMTP server's port, 1 to 65535 (unused, and may be null, with Graph).
    #[serde(deserialize_with = "null_default")]
    pub port: u16,
    /// STARTTLS, implicit TLS, or none (unused, and may be null, with Graph).
    #[serde(deserialize_with = "null_default")]
    pub security: Security,
    /// The name sent in EHLO, when set.
    pub client_hostname: Option<String>,
    /// The display name in the From header.
    pub sender_name: String,
    /// The address in the From header.
    pub sender_email: String,
    /// Office 365: the username has Send-As rights on `sender_email`.
    pub send_as_confirmed: bool,
}

/// Prints `*****` for a present secret, so a log line or panic message never holds one.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| "*****");
        f.debug_struct("Settings")
            .field("provider", &self.provider)
            .field("auth_method", &self.auth_method)
            .field("cloud", &self.cloud)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_credential", &self.client_credential)
            .field("client_secret", &masked(&self.client_secret))
            .field("client_secret_expires", &self.client_secret_expires)
            .field("username", &self.username)
            .field("password", &masked(&self.password))
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("client_hostname", &self.client_hostname)
            .field("sender_name", &self.sender_name)
            .field("sender_email", &self.sender_email)
            .field("send_as_confirmed", &self.send_as_confirmed)
            .finish()
    }
}

impl Settings {
    /// The same settings with IDs and addresses in canonical form: GUIDs lower case
    /// without braces or spaces, addresses and host names trimmed, a host
    /// without a final dot.
    ///
    /// Normalising twice gives the same result as normalising once.
    pub fn normalized(&self) -> Settings {
        let mut s = self.clone();
        s.tenant_id = s.tenant_id.as_deref().map(crate::parse::normalize_guid);
        s.client_id = s.client_id.as_deref().map(crate::parse::normalize_guid);
        s.username = s.username.as_deref().map(|u| u.trim().to_string());
        s.client_secret_expires = s
            .client_secret_expires
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        s.sender_email = s.sender_email.trim().to_string();
        s.sender_name = s.sender_name.trim().to_string();
        // A host written as a full name, with its final dot
        // (`smtp.office365.com.`), is that host; the dot made it a name
        // this machine's resolver and the server's certificate may not know.
        s.host = s
            .host
            .trim_start()
            .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
            .to_string();
        s.client_hostname = s
            .client_hostname
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string);
        s
    }

    /// Whether a secret saved with `saved` may be sent with these settings
    /// (docs/API.md §3): `auth_method`, `transport` and `username`, for SMTP
    /// `host`, `port` and `security`, and for OAuth also `client_credential`,
    /// `cloud`, `tenant_id` and `client_id`, are unchanged. Values are compared in their
    /// normalised form.
    pub fn same_secret_destination(&self, saved: &Settings) -> bool {
        let (a, b) = (self.normalized(), saved.normalized());
        let same_user =
            a.username.as_deref().unwrap_or_default() == b.username.as_deref().unwrap_or_default();
        let same_smtp = a.transport == Transport::Graph
            || (a.host.eq_ignore_ascii_case(&b.host)
                && a.port == b.port
                && a.security == b.security);
        let basic =
            a.auth_method == b.auth_method && a.transport == b.transport && same_smtp && same_user;
        if !basic || a.auth_method != AuthMethod::OAuth2ClientCredentials {
            return basic;
        }
        a.client_credential == b.client_credential
            && a.cloud == b.cloud
            && a.tenant_id == b.tenant_id
            && a.client_id == b.client_id
    }

    /// The same settings without the write-only secrets.
    pub fn without_secrets(&self) -> Settings {
        Settings {
            client_secret: None,
            password: None,
            ..self.clone()
        }
    }

    /// Whether the token request proves the app with a certificate.
    pub fn uses_certificate(&self) -> bool {
        self.auth_method == AuthMethod::OAuth2ClientCredentials
            && self.client_credential == ClientCredential::Certificate
    }

    /// Office 365 with a sender other than the username: the username then
    /// needs Send-As rights on the sender's mailbox (docs/REFERENCE.md, 5.7.60).
    /// The one place this rule is decided: validation, the form and the
    /// setup checklist all ask here.
    pub fn needs_send_as(&self) -> bool {
        let user = self.username.as_deref().unwrap_or_default().trim();
        let sender = self.sender_email.trim();
        self.provider == Provider::Office365
            && !user.is_empty()
            && !sender.is_empty()
            && !user.eq_ignore_ascii_case(sender)
    }

    /// Whether this configuration sends credentials of any kind.
    pub fn sends_credentials(&self) -> bool {
        matches!(
            self.auth_method,
            AuthMethod::Password | AuthMethod::OAuth2ClientCredentials
        )
    }
}

/// The JSON ids of a settings enum, without going through a serializer (the
/// browser bundle stays small).
pub trait EnumId: Sized + Copy + PartialEq + 'static {
    /// Every value, in the order the form lists them.
    const ALL: &'static [Self];
    /// The JSON id, as serde writes it.
    fn id(self) -> &'static str;
    /// The value for a JSON id.
    fn from_id(id: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.id() == id)
    }
}

impl EnumId for Provider {
    const ALL: &'static [Self] = &[
        Provider::Office365,
        Provider::Outlook,
        Provider::Gmail,
        Provider::GoogleWorkspace,
        Provider::AwsSes,
        Provider::Mailgun,
        Provider::Mailjet,
        Provider::Mandrill,
        Provider::SendGrid,
        Provider::Brevo,
        Provider::Zoho,
        Provider::ElasticEmail,
        Provider::Other,
    ];
    fn id(self) -> &'static str {
        match self {
            Provider::Office365 => "office365",
            Provider::Outlook => "outlook",
            Provider::Gmail => "gmail",
            Provider::GoogleWorkspace => "google-workspace",
            Provider::AwsSes => "aws-ses",
            Provider::Mailgun => "mailgun",
            Provider::Mailjet => "mailjet",
            Provider::Mandrill => "mandrill",
            Provider::SendGrid => "sendgrid",
            Provider::Brevo => "brevo",
            Provider::Zoho => "zoho",
            Provider::ElasticEmail => "elastic-email",
            Provider::Other => "other",
        }
    }
}

impl EnumId for AuthMethod {
    const ALL: &'static [Self] = &[
        AuthMethod::None,
        AuthMethod::Username,
        AuthMethod::Password,
        AuthMethod::OAuth2ClientCredentials,
    ];
    fn id(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Username => "username",
            AuthMethod::Password => "password",
            AuthMethod::OAuth2ClientCredentials => "oauth2_client_credentials",
        }
    }
}

impl EnumId for Cloud {
    const ALL: &'static [Self] = &[Cloud::Global, Cloud::Usgov, Cloud::UsgovDod, Cloud::China];
    fn id(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::Usgov => "usgov",
            Cloud::UsgovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }
}

impl EnumId for Transport {
    const ALL: &'static [Self] = &[Transport::Smtp, Transport::Graph];
    fn id(self) -> &'static str {
        match self {
            Transport::Smtp => "smtp",
            Transport::Graph => "graph",
        }
    }
}

impl EnumId for ClientCredential {
    const ALL: &'static [Self] = &[ClientCredential::Secret, ClientCredential::Certificate];
    fn id(self) -> &'static str {
        match self {
            ClientCredential::Secret => "secret",
            ClientCredential::Certificate => "certificate",
        }
    }
}

impl EnumId for Security {
    const ALL: &'static [Self] = &[Security::Starttls, Security::Tls, Security::None];
    fn id(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn contract_example_round_trips() {
        let u = format!("{}@{}", "mailer", "contoso.com");
        let sender = format!("{}@{}", "notifications", "contoso.com");
        let json = format!(
            r#"{{"provider":"office365","auth_method":"oauth2_client_credentials","cloud":"global",
            "tenant_id":"0b4f1c2a-1234-4abc-9def-0123456789ab","client_id":"6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab",
            "client_secret":"the secret's Value","username":"{u}","password":null,
            "host":"smtp.office365.com","port":587,"security":"starttls","client_hostname":null,
            "sender_name":"Contoso notifications","sender_email":"{s}","send_as_confirmed":true}}"#,
            s = sender,
        );
        let s: Settings = serde_json::from_str(&json).unwrap();
        assert_eq!(s.provider, Provider::Office365);
        assert_eq!(s.auth_method, AuthMethod::OAuth2ClientCredentials);
        assert_eq!(s.port, 587);
        assert_eq!(s.password, None);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["provider"], "office365");
        assert_eq!(back["auth_method"], "oauth2_client_credentials");
        assert_eq!(back["security"], "starttls");
        assert!(
            back.get("password").is_none(),
            "absent secrets are not serialised"
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn enum_ids_match_the_contract() {
        let ids = |v: serde_json::Value| v.as_str().unwrap().to_string();
        assert_eq!(
            ids(serde_json::to_value(Provider::GoogleWorkspace).unwrap()),
            "google-workspace"
        );
        assert_eq!(
            ids(serde_json::to_value(Provider::AwsSes).unwrap()),
            "aws-ses"
        );
        assert_eq!(
            ids(serde_json::to_value(Provider::SendGrid).unwrap()),
            "sendgrid"
        );
        assert_eq!(
            ids(serde_json::to_value(Provider::ElasticEmail).unwrap()),
            "elastic-email"
        );
        assert_eq!(
            ids(serde_json::to_value(Cloud::UsgovDod).unwrap()),
            "usgov-dod"
        );
        assert_eq!(ids(serde_json::to_value(AuthMethod::None).unwrap()), "none");
        assert!(serde_json::from_str::<Provider>("\"yahoo\"").is_err());
    }

    fn assert_ids<T: EnumId + Serialize + std::fmt::Debug>() {
        for v in T::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.id(), "{v:?}");
            assert_eq!(T::from_id(v.id()), Some(*v));
        }
        assert_eq!(T::from_id("nope"), None);
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn enum_ids_equal_serde_names() {
        assert_ids::<Provider>();
        assert_ids::<AuthMethod>();
        assert_ids::<Cloud>();
        assert_ids::<Security>();
        assert_eq!(Provider::ALL.len(), crate::catalogue::PROVIDERS.len());
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn send_as_is_needed_only_for_another_office365_sender() {
        let mut s = crate::fixtures::office365_oauth("smtp.office365.com", 587);
        assert!(!s.needs_send_as(), "sender is the username");
        s.sender_email = format!(" {} ", crate::fixtures::mailer().to_uppercase());
        assert!(!s.needs_send_as(), "case and spaces do not count");
        s.sender_email = format!("{}@{}", "notifications", "contoso.com");
        assert!(s.needs_send_as());
        s.username = None;
        assert!(!s.needs_send_as(), "nothing to compare yet");
        s.username = Some(crate::fixtures::mailer());
        s.provider = Provider::Gmail;
        assert!(!s.needs_send_as(), "Office 365 only");
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn debug_never_prints_a_secret() {
        let mut s = crate::fixtures::office365_oauth("smtp.office365.com", 587);
        s.client_secret = Some("very-secret-value".into());
        s.password = Some("pass-word-value".into());
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("very-secret-value") && !shown.contains("pass-word-value"));
        assert!(shown.contains("client_secret: Some(\"*****\")"), "{shown}");
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn a_secret_is_bound_to_its_destination() {
        let saved = crate::fixtures::office365_oauth("smtp.office365.com", 587);
        let mut same = saved.clone();
        same.tenant_id = same
            .tenant_id
            .map(|t| format!(" {{{}}} ", t.to_uppercase()));
        same.sender_name = "Another name".into();
        assert!(
            same.same_secret_destination(&saved),
            "normalised values and unbound fields"
        );
        let changes: [fn(&mut Settings); 8] = [
            |s| s.host = "evil.example.net".into(),
            |s| s.port = 25,
            |s| s.security = Security::Tls,
            |s| s.username = Some(format!("{}@{}", "other", "contoso.com")),
            |s| s.auth_method = AuthMethod::Password,
            |s| s.cloud = Cloud::China,
            |s| s.tenant_id = Some("11111111-2222-4333-8444-555555555555".into()),
            |s| s.client_id = Some("11111111-2222-4333-8444-555555555555".into()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut moved = saved.clone();
            change(&mut moved);
            assert!(!moved.same_secret_destination(&saved), "change {i}");
        }
        let mut plain = saved.clone();
        plain.auth_method = AuthMethod::Password;
        let mut plain_other_tenant = plain.clone();
        plain_other_tenant.tenant_id = Some("11111111-2222-4333-8444-555555555555".into());
        assert!(
            plain_other_tenant.same_secret_destination(&plain),
            "tenant binds OAuth only"
        );
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn apply_provider_fills_host_port_security_and_auth() {
        let mut s = Settings::for_provider(Provider::Office365);
        assert_eq!(s.host, "smtp.office365.com");
        assert_eq!(s.auth_method, AuthMethod::OAuth2ClientCredentials);
        s.apply_provider(Provider::Gmail);
        assert_eq!((s.host.as_str(), s.port), ("smtp.gmail.com", 587));
        assert_eq!(
            s.auth_method,
            AuthMethod::Password,
            "Gmail offers no OAuth here"
        );
        s.apply_provider(Provider::Other);
        assert_eq!((s.host.as_str(), s.port), ("", 0));
    }
}
