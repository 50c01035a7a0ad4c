//! The form's state and its reducer. Validation is the shared crate's
//! `validate_with`, run on every change; nothing here asks the server.

use mailroom_shared::FieldMessages;
use std::rc::Rc;

use mailroom_shared::api::{Certificates, SettingsResponse};
use mailroom_shared::validate::parse_port;
pub use mailroom_shared::Field;
use mailroom_shared::{
    catalogue, AuthMethod, ClientCredential, Cloud, Provider, Report, Security, Settings,
    StoredSecrets, Transport,
};
use yew::Reducible;

/// Everything the settings form holds.
#[derive(Clone, PartialEq)]
pub struct FormState {
    /// The settings being edited; secrets are kept in the `*_text` fields.
    pub settings: Settings,
    /// The port as typed.
    pub port_text: String,
    /// The client secret as typed; empty means "keep the stored one" when one is stored.
    pub secret_text: String,
    /// The password as typed; same rule.
    pub password_text: String,
    /// Which secrets the server holds.
    pub stored: StoredSecrets,
    /// The settings as saved on the server: stored secrets are bound to their
    /// destination there, and are not reused once it changes.
    pub saved: Option<Settings>,
    /// Fields the user has touched (a few at most: a list is smaller in
    /// the bundle than a set).
    pub touched: Vec<Field>,
    /// Set once the user tried to save or test: every error shows.
    pub submitted: bool,
    /// The version the edit started from.
    pub version: u64,
    /// Unsaved changes exist.
    pub dirty: bool,
    /// Messages from the server's last 422, by field.
    pub server_errors: FieldMessages,
    /// The Enterprise application's Object ID, for the checklist only.
    pub sp_object_id: String,
    /// The stored certificates (active and pending), as last read.
    pub certs: Certificates,
    /// The form makes a new profile: nothing is stored for it yet, and no
    /// other profile's history, certificate or secret is its own.
    pub new_profile: bool,
}

/// Prints `*****` for typed secrets (the settings' own `Debug` masks theirs).
impl std::fmt::Debug for FormState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |t: &str| if t.is_empty() { "" } else { "*****" };
        f.debug_struct("FormState")
            .field("settings", &self.settings)
            .field("port_text", &self.port_text)
            .field("secret_text", &masked(&self.secret_text))
            .field("password_text", &masked(&self.password_text))
            .field("stored", &self.stored)
            .field("version", &self.version)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Default for FormState {
    fn default() -> Self {
        FormState::from_response(&SettingsResponse::default())
    }
}

impl FormState {
    /// The form for what the server returned (defaults for Office 365 OAuth before the first save).
    pub fn from_response(r: &SettingsResponse) -> Self {
        let (settings, stored, saved) = match &r.settings {
            Some(p) => {
                let (settings, stored) = p.clone().into_parts();
                (settings.clone(), stored, Some(settings))
            }
            None => (
                Settings::for_provider(Provider::Office365),
                StoredSecrets::default(),
                None,
            ),
        };
        FormState {
            port_text: if settings.port == 0 {
                String::new()
            } else {
                settings.port.to_string()
            },
            settings,
            secret_text: String::new(),
            password_text: String::new(),
            stored,
            saved,
            touched: Vec::new(),
            submitted: false,
            version: r.version,
            dirty: false,
            server_errors: FieldMessages::new(),
            sp_object_id: String::new(),
            certs: Certificates::default(),
            new_profile: false,
        }
    }

    /// The settings as they would be sent: typed secrets, or `None` to keep stored ones.
    pub fn to_settings(&self) -> Settings {
        let mut s = self.settings.clone();
        s.port = parse_port(&self.port_text).unwrap_or(0);
        let secret = |text: &str, stored: bool| {
            if text.is_empty() && stored {
                None
            } else {
                Some(text.to_string())
            }
        };
        s.client_secret = match s.auth_method {
            AuthMethod::OAuth2ClientCredentials if s.uses_certificate() => None,
            AuthMethod::OAuth2ClientCredentials => {
                secret(&self.secret_text, self.stored.client_secret)
            }
            _ => None,
        };
        s.password = match s.auth_method {
            AuthMethod::Password => secret(&self.password_text, self.stored.password),
            _ => None,
        };
        if s.client_hostname
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            s.client_hostname = None;
        }
        s
    }

    /// The stored secrets as the current values may use them: none once a
    /// field they are bound to differs from the saved settings.
    pub fn stored_now(&self) -> StoredSecrets {
        let mut s = self.settings.clone();
        s.port = parse_port(&self.port_text).unwrap_or(0);
        let mut stored = self.stored.towards(self.saved.as_ref(), &s);
        // The active certificate is bound to the saved settings (when they
        // use it); a pending one is new and may be tried (docs/API.md §13).
        let bound = self.certs.active.is_some()
            && self
                .saved
                .as_ref()
                .is_some_and(|saved| saved.uses_certificate() && s.same_secret_destination(saved));
        stored.certificate = self.certs.pending.is_some() || bound;
        stored.certificate_elsewhere = self.certs.active.is_some() && !bound;
        stored
    }

    /// The shared validation report, with the typed port's own message.
    pub fn report(&self) -> Report {
        let settings = self.to_settings();
        let mut report = settings.validate_with(self.stored_now());
        // The secret's Expires date against the day here (the browser's).
        if let Some(note) =
            today().and_then(|t| mailroom_shared::validate::secret_expiry_note(&settings, t))
        {
            report.warn(Field::ClientSecretExpires, note);
        }
        if let Err(msg) = parse_port(&self.port_text) {
            report.errors.insert("port".into(), vec![msg]);
        }
        if self.new_profile && self.settings.uses_certificate() {
            report.errors.insert(
                "client_credential".into(),
                vec![mailroom_shared::validate::CERTIFICATE_AFTER_CREATE.into()],
            );
        }
        report
    }

    /// Whether a field's messages are shown now: once touched or submitted,
    /// and at once for a stored secret that the current destination may not use.
    pub fn shows(&self, field: Field) -> bool {
        let unbound = match field {
            Field::ClientSecret => self.stored.client_secret,
            Field::Password => self.stored.password,
            _ => false,
        } && self.stored_now().elsewhere;
        self.submitted || self.touched.contains(&field) || unbound
    }

    /// Errors to show next to a field: validation's, then the server's.
    pub fn errors_for(&self, report: &Report, field: Field) -> Vec<String> {
        let mut out = Vec::new();
        if self.shows(field) {
            out.extend(report.errors_for(field).iter().cloned());
        }
        if let Some(server) = self.server_errors.get(field.as_str()) {
            out.extend(
                server
                    .iter()
                    .filter(|m| !out.contains(m))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        out
    }

    /// Warnings to show next to a field: once its messages show, and always for
    /// the fields whose advice matters before typing (the secret, the cloud).
    pub fn warnings_for(&self, report: &Report, field: Field) -> Vec<String> {
        if self.shows(field) || matches!(field, Field::ClientSecret | Field::Cloud) {
            report.warnings_for(field).to_vec()
        } else {
            Vec::new()
        }
    }

    /// The first field, in form order, with an error of validation or of the server.
    pub fn first_invalid(&self, report: &Report) -> Option<Field> {
        report.first_invalid_field().or_else(|| {
            Field::ALL
                .iter()
                .copied()
                .find(|f| self.server_errors.contains_key(f.as_str()))
        })
    }
}

/// What can happen to the form.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace everything with what the server returned.
    Load(SettingsResponse),
    /// Take the server's newer version number and stored flags, keeping the typed values.
    Rebase(SettingsResponse),
    /// A text field changed.
    Set(Field, String),
    /// The checklist's service principal object ID changed.
    SpObjectId(String),
    /// A field lost focus.
    Touch(Field),
    /// The provider changed: fills host, port and security.
    Provider(Provider),
    /// The authentication method changed.
    Auth(AuthMethod),
    /// The cloud changed.
    Cloud(Cloud),
    /// The security mode changed.
    Security(Security),
    /// The way out changed (SMTP or Microsoft Graph).
    Transport(Transport),
    /// The app's credential changed (client secret or certificate).
    Credential(ClientCredential),
    /// The stored certificates were read again.
    Certificates(Certificates),
    /// The Send-As confirmation changed.
    SendAs(bool),
    /// The user tried to save or test.
    Submit,
    /// The server refused with per-field messages.
    ServerErrors(FieldMessages),
    /// The save went through.
    Saved(u64),
}

impl Reducible for FormState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut st = (*self).clone();
        match action {
            Action::Load(r) => {
                let mut loaded = FormState::from_response(&r);
                loaded.certs = st.certs;
                return Rc::new(loaded);
            }
            Action::Rebase(r) => {
                st.version = r.version;
                if let Some(p) = r.settings {
                    let (saved, stored) = p.into_parts();
                    st.stored = stored;
                    st.saved = Some(saved);
                }
                st.server_errors.clear();
                return Rc::new(st);
            }
            Action::Set(field, value) => {
                let s = &mut st.settings;
                let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
                match field {
                    Field::TenantId => s.tenant_id = opt(&value),
                    Field::ClientId => s.client_id = opt(&value),
                    Field::ClientSecret => st.secret_text = value.clone(),
                    Field::ClientSecretExpires => s.client_secret_expires = opt(&value),
                    Field::Username => s.username = opt(&value),
                    Field::Password => st.password_text = value.clone(),
                    Field::Host => s.host = value.clone(),
                    Field::Port => st.port_text = value.clone(),
                    Field::ClientHostname => s.client_hostname = opt(&value),
                    Field::SenderName => s.sender_name = value.clone(),
                    Field::SenderEmail => s.sender_email = value.clone(),
                    // Not text fields: chosen through their own actions.
                    Field::Provider
                    | Field::AuthMethod
                    | Field::Cloud
                    | Field::SendAsConfirmed
                    | Field::Security
                    | Field::Transport
                    | Field::ClientCredential
                    | Field::Recipient => return self,
                }
                if !st.touched.contains(&field) {
                    st.touched.push(field);
                }
                st.server_errors.remove(field.as_str());
            }
            Action::SpObjectId(value) => {
                st.sp_object_id = value;
                return Rc::new(st);
            }
            Action::Touch(field) => {
                if st.touched.contains(&field) {
                    return self;
                }
                st.touched.push(field);
                return Rc::new(st);
            }
            Action::Provider(p) => {
                st.settings.apply_provider(p);
                if p != Provider::Office365 {
                    st.settings.transport = Transport::Smtp;
                }
                st.port_text = if st.settings.port == 0 {
                    String::new()
                } else {
                    st.settings.port.to_string()
                };
                st.server_errors.clear();
            }
            Action::Auth(m) => {
                st.settings.auth_method = m;
                // Graph is a way out for OAuth only: other methods use SMTP.
                if m != AuthMethod::OAuth2ClientCredentials {
                    st.settings.transport = Transport::Smtp;
                    st.settings.client_credential = ClientCredential::Secret;
                }
            }
            Action::Transport(t) => st.settings.transport = t,
            Action::Credential(c) => {
                st.settings.client_credential = c;
                st.server_errors.remove(Field::ClientCredential.as_str());
            }
            Action::Certificates(certs) => {
                st.certs = certs;
                st.server_errors.remove(Field::ClientCredential.as_str());
                return Rc::new(st);
            }
            Action::Cloud(c) => {
                let old_host = catalogue::cloud(st.settings.cloud).smtp_host;
                if st.settings.host.trim().eq_ignore_ascii_case(old_host) {
                    st.settings.host = catalogue::cloud(c).smtp_host.to_string();
                }
                st.settings.cloud = c;
            }
            Action::Security(sec) => st.settings.security = sec,
            Action::SendAs(v) => st.settings.send_as_confirmed = v,
            Action::Submit => {
                st.submitted = true;
                return Rc::new(st);
            }
            Action::ServerErrors(errors) => {
                st.server_errors = errors;
                st.submitted = true;
                return Rc::new(st);
            }
            Action::Saved(version) => {
                st.version = version;
                st.dirty = false;
                // The server keeps only the secret of the method in use, bound
                // to what was just saved.
                let usable = st.stored_now();
                let method = st.settings.auth_method;
                st.stored = StoredSecrets {
                    client_secret: method == AuthMethod::OAuth2ClientCredentials
                        && !st.settings.uses_certificate()
                        && (!st.secret_text.is_empty() || usable.client_secret_usable()),
                    password: method == AuthMethod::Password
                        && (!st.password_text.is_empty() || usable.password_usable()),
                    ..StoredSecrets::default()
                };
                let mut saved = st.settings.clone();
                saved.port = parse_port(&st.port_text).unwrap_or(0);
                st.saved = Some(saved);
                st.secret_text.clear();
                st.password_text.clear();
                st.server_errors.clear();
                return Rc::new(st);
            }
        }
        st.dirty = true;
        Rc::new(st)
    }
}

/// The browser's today (year, month, day). None natively, where the unit
/// tests of this module run and the browser's clock is not there.
fn today() -> Option<(i32, u8, u8)> {
    #[cfg(target_arch = "wasm32")]
    {
        let now = js_sys::Date::new_0();
        Some((
            now.get_full_year() as i32,
            (now.get_month() + 1) as u8,
            now.get_date() as u8,
        ))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_shared::api::PublicSettings;

    fn stored_oauth() -> Rc<FormState> {
        let saved = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        let stored = StoredSecrets {
            client_secret: true,
            ..StoredSecrets::default()
        };
        Rc::new(FormState::from_response(&SettingsResponse {
            settings: Some(PublicSettings::new(saved, stored)),
            version: 4,
            updated_at: None,
        }))
    }

    #[test]
    fn a_loaded_form_is_valid_clean_and_keeps_the_stored_secret() {
        let st = stored_oauth();
        assert!(!st.dirty && st.version == 4);
        assert!(st.report().is_valid(), "{:?}", st.report());
        assert_eq!(
            st.to_settings().client_secret,
            None,
            "None keeps the stored one"
        );
    }

    #[test]
    fn typing_marks_dirty_touches_and_clears_the_servers_message() {
        let st = stored_oauth().reduce(Action::ServerErrors(FieldMessages::from([(
            "tenant_id".to_string(),
            vec!["from the server".to_string()],
        )])));
        assert_eq!(
            st.errors_for(&st.report(), Field::TenantId),
            ["from the server"]
        );
        let st = st.reduce(Action::Set(Field::TenantId, "nope".into()));
        assert!(st.dirty && st.touched.contains(&Field::TenantId));
        let errors = st.errors_for(&st.report(), Field::TenantId);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("Tenant ID must be a GUID"), "{errors:?}");
    }

    #[test]
    fn moving_the_destination_asks_for_the_secret_again_and_saving_rebinds_it() {
        let st = stored_oauth().reduce(Action::Set(Field::Host, "smtp.attacker.example".into()));
        assert!(st.stored_now().elsewhere);
        assert!(
            st.shows(Field::ClientSecret),
            "shown without touching the field"
        );
        let errors = st.errors_for(&st.report(), Field::ClientSecret);
        assert!(
            errors[0].starts_with("Enter the client secret again"),
            "{errors:?}"
        );
        let st = st
            .reduce(Action::Set(
                Field::ClientSecret,
                "a-new-secret-value".into(),
            ))
            .reduce(Action::Saved(5));
        assert!(!st.dirty && st.secret_text.is_empty() && st.version == 5);
        assert!(
            st.stored_now().client_secret_usable(),
            "bound to the new host now"
        );
        assert!(st.report().is_valid(), "{:?}", st.report());
    }

    #[test]
    fn switching_to_a_password_forgets_the_client_secret_after_saving() {
        let st = stored_oauth()
            .reduce(Action::Auth(AuthMethod::Password))
            .reduce(Action::Set(Field::Password, "app-password".into()))
            .reduce(Action::Saved(5));
        assert!(st.stored.password && !st.stored.client_secret);
    }

    #[test]
    fn provider_and_cloud_fill_host_port_and_security() {
        let st = Rc::new(FormState::default()).reduce(Action::Provider(Provider::Gmail));
        assert_eq!(
            (st.settings.host.as_str(), st.port_text.as_str()),
            ("smtp.gmail.com", "587")
        );
        let st = st
            .reduce(Action::Provider(Provider::Office365))
            .reduce(Action::Cloud(Cloud::Usgov));
        assert_eq!(
            st.settings.host, "smtp.office365.us",
            "the cloud's host follows"
        );
        let st = st
            .reduce(Action::Set(Field::Host, "relay.contoso.com".into()))
            .reduce(Action::Cloud(Cloud::Global));
        assert_eq!(st.settings.host, "relay.contoso.com", "a typed host stays");
    }

    #[test]
    fn the_first_invalid_field_follows_the_form_order() {
        let st = Rc::new(FormState::default()).reduce(Action::Submit);
        assert_eq!(st.first_invalid(&st.report()), Some(Field::TenantId));
        assert!(Field::Host.is_advanced() && !Field::TenantId.is_advanced());
    }
}
