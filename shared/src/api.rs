//! The JSON bodies of the HTTP API (docs/API.md §2 and §5), shared so the
//! browser and the server cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::messages::FieldMessages;
use crate::settings::{
    AuthMethod, ClientCredential, Cloud, Provider, Security, Settings, Transport,
};
use crate::validate::StoredSecrets;

/// The message of a successful save, shown as "Success: …" in the form.
pub const SAVED_MESSAGE: &str = "The SMTP settings have been saved successfully";

/// Stored settings as `GET /api/settings` returns them: the SETTINGS fields
/// without `client_secret` and `password`, plus whether each is stored.
///
/// The fields are spelled out rather than `#[serde(flatten)]`ed: flattening
/// costs several KB of wasm in the browser bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PublicSettings {
    /// See [`Settings::provider`].
    pub provider: Provider,
    /// See [`Settings::auth_method`].
    pub auth_method: AuthMethod,
    /// See [`Settings::cloud`].
    pub cloud: Cloud,
    /// See [`Settings::tenant_id`].
    pub tenant_id: Option<String>,
    /// See [`Settings::client_id`].
    pub client_id: Option<String>,
    /// See [`Settings::client_credential`].
    pub client_credential: ClientCredential,
    /// See [`Settings::client_secret_expires`].
    pub client_secret_expires: Option<String>,
    /// See [`Settings::username`].
    pub username: Option<String>,
    /// See [`Settings::transport`].
    pub transport: Transport,
    /// See [`Settings::host`].
    pub host: String,
    /// See [`Settings::port`].
    pub port: u16,
    /// See [`Settings::security`].
    pub security: Security,
    /// See [`Settings::client_hostname`].
    pub client_hostname: Option<String>,
    /// See [`Settings::sender_name`].
    pub sender_name: String,
    /// See [`Settings::sender_email`].
    pub sender_email: String,
    /// See [`Settings::send_as_confirmed`].
    pub send_as_confirmed: bool,
    /// A client secret is stored.
    pub client_secret_set: bool,
    /// A password is stored.
    pub password_set: bool,
}

impl PublicSettings {
    /// The public view of stored settings; their secrets are dropped.
    pub fn new(s: Settings, stored: StoredSecrets) -> Self {
        PublicSettings {
            provider: s.provider,
            auth_method: s.auth_method,
            cloud: s.cloud,
            tenant_id: s.tenant_id,
            client_id: s.client_id,
            client_credential: s.client_credential,
            client_secret_expires: s.client_secret_expires,
            username: s.username,
            transport: s.transport,
            host: s.host,
            port: s.port,
            security: s.security,
            client_hostname: s.client_hostname,
            sender_name: s.sender_name,
            sender_email: s.sender_email,
            send_as_confirmed: s.send_as_confirmed,
            client_secret_set: stored.client_secret,
            password_set: stored.password,
        }
    }

    /// The settings (secrets absent, meaning "keep") and which secrets are stored.
    pub fn into_parts(self) -> (Settings, StoredSecrets) {
        let stored = StoredSecrets {
            client_secret: self.client_secret_set,
            password: self.password_set,
            ..StoredSecrets::default()
        };
        let settings = Settings {
            provider: self.provider,
            auth_method: self.auth_method,
            cloud: self.cloud,
            tenant_id: self.tenant_id,
            client_id: self.client_id,
            client_credential: self.client_credential,
            client_secret: None,
            client_secret_expires: self.client_secret_expires,
            username: self.username,
            password: None,
            transport: self.transport,
            host: self.host,
            port: self.port,
            security: self.security,
            client_hostname: self.client_hostname,
            sender_name: self.sender_name,
            sender_email: self.sender_email,
            send_as_confirmed: self.send_as_confirmed,
        };
        (settings, stored)
    }
}

/// The answer of `GET /api/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettingsResponse {
    /// The current settings, or `null` before the first save.
    pub settings: Option<PublicSettings>,
    /// The version to send back with the next `PUT`; 0 before the first save.
    pub version: u64,
    /// When the settings were last saved, RFC 3339.
    pub updated_at: Option<String>,
}

/// The body of `PUT /api/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSettings {
    /// The new settings; absent secrets keep the stored ones.
    pub settings: Settings,
    /// The version this edit started from.
    pub version: u64,
}

/// The answer of a successful `PUT /api/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Always [`SAVED_MESSAGE`].
    pub message: String,
    /// The new version.
    pub version: u64,
}

/// The body of `POST /api/settings/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRequest {
    /// The unsaved settings to test; absent secrets use the stored ones.
    pub settings: Settings,
    /// Where the test email goes.
    pub recipient: String,
}

/// The body of `POST /api/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The administrator token.
    pub token: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginRequest { token: \"*****\" }")
    }
}

/// Every 4xx answer: a sentence, and per-field messages where they apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    /// One sentence for a person.
    pub message: String,
    /// Messages keyed by SETTINGS field name (and `recipient`); `{}` when the
    /// problem is not tied to a field. Always present, as docs/API.md §2 shows it.
    #[serde(default)]
    pub errors: FieldMessages,
}

/// Where a test stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Getting the token from Microsoft Entra ID.
    Token,
    /// Opening the TCP connection and reading the greeting.
    Connect,
    /// STARTTLS or implicit TLS.
    Tls,
    /// The AUTH exchange.
    Auth,
    /// MAIL FROM, RCPT TO and DATA.
    Send,
}

impl Stage {
    /// Every stage, in the order a test runs them.
    pub const ALL: [Stage; 5] = [
        Stage::Token,
        Stage::Connect,
        Stage::Tls,
        Stage::Auth,
        Stage::Send,
    ];

    /// The stage with this JSON name.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The stage's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Token => "token",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Send => "send",
        }
    }
}

/// One stage that ran, with its outcome and duration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTiming {
    /// Which stage.
    pub name: Stage,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

/// Who sent a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Mailroom.
    Client,
    /// The SMTP server.
    Server,
}

/// One line of the SMTP conversation, with secrets replaced by `*****`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Who sent it.
    pub dir: Direction,
    /// The line, without its CRLF.
    pub line: String,
}

/// Claims read, unverified, from the access token; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenClaims {
    /// The audience: the Exchange Online resource.
    pub aud: Option<String>,
    /// The tenant the token was issued in.
    pub tid: Option<String>,
    /// The application the token was issued to.
    pub appid: Option<String>,
    /// The application roles, normally `SMTP.SendAsApp`.
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<i64>,
}

/// The outcome of a test email (docs/API.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// The server accepted the test email for delivery.
    pub ok: bool,
    /// Where it stopped; `None` when `ok`.
    pub stage: Option<Stage>,
    /// The most specific code seen: `AADSTS…`, an enhanced status or a reply code.
    pub code: Option<String>,
    /// One sentence for a person.
    pub message: String,
    /// What to change; `None` when `ok`.
    pub hint: Option<String>,
    /// Each stage run, in order.
    pub stages: Vec<StageTiming>,
    /// The SMTP conversation with secrets masked.
    pub transcript: Vec<TranscriptLine>,
    /// OAuth only, once a token was obtained.
    pub token_claims: Option<TokenClaims>,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn request_bodies_never_debug_print_a_secret() {
        let mut settings = crate::fixtures::office365_oauth("smtp.office365.com", 587);
        settings.password = Some("pw-never-printed".into());
        let put = PutSettings {
            settings: settings.clone(),
            version: 1,
        };
        let test = TestRequest {
            settings,
            recipient: crate::fixtures::mailer(),
        };
        let shown = format!("{put:?} {test:#?}");
        assert!(!shown.contains(crate::fixtures::SECRET), "{shown}");
        assert!(!shown.contains("pw-never-printed"), "{shown}");
        assert!(shown.contains("*****"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn public_settings_flatten_and_hide_secrets() {
        let mut settings = Settings::for_provider(Provider::Office365);
        settings.client_secret = Some("never shown".into());
        let public = PublicSettings::new(
            settings.clone(),
            StoredSecrets {
                client_secret: true,
                password: false,
                ..StoredSecrets::default()
            },
        );
        let v = serde_json::to_value(&public).unwrap();
        assert_eq!(v["provider"], "office365");
        assert_eq!(v["client_secret_set"], true);
        assert!(v.get("client_secret").is_none());
        assert_eq!(
            v.as_object().unwrap().len(),
            18,
            "16 SETTINGS fields and 2 flags"
        );
        let back: PublicSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back, public);
        let (parts, stored) = back.into_parts();
        assert_eq!(
            parts,
            Settings {
                client_secret: None,
                ..settings
            }
        );
        assert!(stored.client_secret && !stored.password);
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn test_result_matches_contract_shape() {
        let json = r#"{"ok": false, "stage": "token", "code": "AADSTS7000215",
          "message": "m", "hint": "h", "stages": [{"name": "token", "ok": false, "ms": 182}],
          "transcript": [{"dir": "client", "line": "EHLO mailroom"}], "token_claims": null}"#;
        let r: TestResult = serde_json::from_str(json).unwrap();
        assert_eq!(r.stage, Some(Stage::Token));
        assert_eq!(r.transcript[0].dir, Direction::Client);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["stages"][0]["name"],
            "token"
        );
    }
}

/// CERT (docs/API.md §13): a certificate the token request can prove the app with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The subject, as `CN=…`.
    pub subject: String,
    /// SHA-1 of the DER, upper-case hex: what the Entra portal lists as the thumbprint.
    pub thumbprint_sha1: String,
    /// SHA-256 of the DER, upper-case hex.
    pub thumbprint_sha256: String,
    /// Valid from, RFC 3339.
    pub not_before: String,
    /// Valid until, RFC 3339.
    pub not_after: String,
    /// Made by Mailroom (its key never left the server), not brought.
    pub generated: bool,
}

/// `GET /api/settings/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Certificates {
    /// The certificate delivery uses.
    pub active: Option<CertInfo>,
    /// A new one: tests use it; a save after a passing test makes it active.
    pub pending: Option<CertInfo>,
}

/// `POST /api/settings/certificate`: `{}` to generate, or both PEMs to bring one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NewCertificate {
    /// The public certificate, PEM.
    pub certificate_pem: Option<String>,
    /// Its private key, PEM (PKCS#8 or PKCS#1), unencrypted.
    pub private_key_pem: Option<String>,
}
