//! Every field the settings form shows, once: its JSON name, its place in the
//! form, and whether it lives in the advanced section. The validation report's
//! keys, the order in which the first error is found, and the page's field
//! list all come from here.

/// A field of SETTINGS (docs/API.md §3), plus the test email's `recipient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `provider`
    Provider,
    /// `auth_method`
    AuthMethod,
    /// `cloud`
    Cloud,
    /// `tenant_id`
    TenantId,
    /// `client_id`
    ClientId,
    /// `client_credential`
    ClientCredential,
    /// `client_secret`
    ClientSecret,
    /// `client_secret_expires`
    ClientSecretExpires,
    /// `username`
    Username,
    /// `password`
    Password,
    /// `sender_name`
    SenderName,
    /// `sender_email`
    SenderEmail,
    /// `send_as_confirmed`
    SendAsConfirmed,
    /// `transport`
    Transport,
    /// `host`
    Host,
    /// `port`
    Port,
    /// `security`
    Security,
    /// `client_hostname`
    ClientHostname,
    /// `recipient`, the test email's address.
    Recipient,
}

impl Field {
    /// Every field, in the order the form shows them.
    pub const ALL: &'static [Field] = &[
        Field::Provider,
        Field::AuthMethod,
        Field::Transport,
        Field::Cloud,
        Field::TenantId,
        Field::ClientId,
        Field::ClientCredential,
        Field::ClientSecret,
        Field::ClientSecretExpires,
        Field::Username,
        Field::Password,
        Field::SenderName,
        Field::SenderEmail,
        Field::SendAsConfirmed,
        Field::Host,
        Field::Port,
        Field::Security,
        Field::ClientHostname,
        Field::Recipient,
    ];

    /// The JSON name, also the input's id on the page.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Provider => "provider",
            Field::AuthMethod => "auth_method",
            Field::Cloud => "cloud",
            Field::TenantId => "tenant_id",
            Field::ClientId => "client_id",
            Field::ClientCredential => "client_credential",
            Field::ClientSecret => "client_secret",
            Field::ClientSecretExpires => "client_secret_expires",
            Field::Username => "username",
            Field::Password => "password",
            Field::SenderName => "sender_name",
            Field::SenderEmail => "sender_email",
            Field::SendAsConfirmed => "send_as_confirmed",
            Field::Transport => "transport",
            Field::Host => "host",
            Field::Port => "port",
            Field::Security => "security",
            Field::ClientHostname => "client_hostname",
            Field::Recipient => "recipient",
        }
    }

    /// The field with this JSON name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.as_str() == name)
    }

    /// Whether the form keeps it in the collapsible advanced section.
    pub const fn is_advanced(self) -> bool {
        matches!(
            self,
            Field::Host | Field::Port | Field::Security | Field::ClientHostname
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn names_round_trip_and_match_the_settings_json() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.as_str()), Some(*f));
        }
        assert_eq!(Field::from_name("nope"), None);
        let json = serde_json::to_value(crate::Settings::default()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in keys {
            assert!(Field::from_name(key).is_some(), "{key} has no Field");
        }
        let advanced: Vec<&str> = Field::ALL
            .iter()
            .filter(|f| f.is_advanced())
            .map(|f| f.as_str())
            .collect();
        assert_eq!(advanced, ["host", "port", "security", "client_hostname"]);
    }
}
