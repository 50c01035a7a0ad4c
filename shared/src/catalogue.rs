//! The provider catalogue (docs/REFERENCE.md) and the cloud table (docs/API.md §4).

use crate::settings::{AuthMethod, Cloud, Provider, Security, Settings};

/// One entry of the provider catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's id.
    pub id: Provider,
    /// The name shown to people.
    pub name: &'static str,
    /// The default SMTP host; empty for `other`.
    pub host: &'static str,
    /// The default port; 0 (not set) for `other`.
    pub port: u16,
    /// The default security mode.
    pub security: Security,
    /// The authentication methods offered, the recommended one first.
    pub auth_methods: &'static [AuthMethod],
    /// SMTP connections Mailroom opens at once by default.
    pub connections: u32,
    /// Messages a minute Mailroom sends by default; 0 means no limit.
    pub rate_per_minute: u32,
}

const PASSWORD_FIRST: &[AuthMethod] =
    &[AuthMethod::Password, AuthMethod::Username, AuthMethod::None];

/// Every provider, in the order the form lists them.
pub const PROVIDERS: &[ProviderInfo] = &[
    ProviderInfo {
        id: Provider::Office365,
        name: "Office 365",
        host: "smtp.office365.com",
        port: 587,
        security: Security::Starttls,
        auth_methods: &[AuthMethod::OAuth2ClientCredentials, AuthMethod::Password],
        // Exchange Online: 3 concurrent connections and 30 messages a minute
        // per mailbox (docs/REFERENCE.md, "Sending limits").
        connections: 3,
        rate_per_minute: 30,
    },
    simple(Provider::Outlook, "Outlook.com", "smtp-mail.outlook.com"),
    simple(Provider::Gmail, "Gmail", "smtp.gmail.com"),
    simple(
        Provider::GoogleWorkspace,
        "Google Workspace (relay)",
        "smtp-relay.gmail.com",
    ),
    simple(
        Provider::AwsSes,
        "AWS SES",
        "email-smtp.{region}.amazonaws.com",
    ),
    simple(Provider::Mailgun, "Mailgun", "smtp.mailgun.org"),
    simple(Provider::Mailjet, "Mailjet", "in-v3.mailjet.com"),
    simple(Provider::Mandrill, "Mandrill", "smtp.mandrillapp.com"),
    simple(Provider::SendGrid, "SendGrid", "smtp.sendgrid.net"),
    simple(
        Provider::Brevo,
        "Brevo (Sendinblue)",
        "smtp-relay.brevo.com",
    ),
    simple(Provider::Zoho, "Zoho", "smtp.zoho.eu"),
    simple(
        Provider::ElasticEmail,
        "Elastic Email",
        "smtp.elasticemail.com",
    ),
    ProviderInfo {
        id: Provider::Other,
        name: "Other",
        host: "",
        port: 0,
        security: Security::Starttls,
        auth_methods: PASSWORD_FIRST,
        connections: 2,
        rate_per_minute: 0,
    },
];

const fn simple(id: Provider, name: &'static str, host: &'static str) -> ProviderInfo {
    ProviderInfo {
        id,
        name,
        host,
        port: 587,
        security: Security::Starttls,
        auth_methods: PASSWORD_FIRST,
        // No published per-connection limits are assumed: two connections, no rate limit.
        connections: 2,
        rate_per_minute: 0,
    }
}

/// The catalogue entry of a provider.
pub fn provider(id: Provider) -> &'static ProviderInfo {
    PROVIDERS
        .iter()
        .find(|p| p.id == id)
        .unwrap_or(&PROVIDERS[PROVIDERS.len() - 1])
}

/// One row of the cloud table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudInfo {
    /// The cloud's id.
    pub id: Cloud,
    /// The name shown to people.
    pub name: &'static str,
    /// The Entra login host, scheme included.
    pub login_host: &'static str,
    /// The SMTP host for this cloud.
    pub smtp_host: &'static str,
    /// The SMTP port for this cloud.
    pub smtp_port: u16,
    /// The token scope: the resource plus `/.default`.
    pub scope: &'static str,
    /// Microsoft Graph's endpoint in this cloud (docs/API.md §12); its token
    /// scope is this plus `/.default`.
    pub graph: &'static str,
    /// Whether Microsoft documents this flow end to end for this cloud.
    pub documented: bool,
}

/// Every cloud, `global` first.
pub const CLOUDS: &[CloudInfo] = &[
    CloudInfo {
        id: Cloud::Global,
        name: "Global",
        login_host: "https://login.microsoftonline.com",
        smtp_host: "smtp.office365.com",
        smtp_port: 587,
        scope: "https://outlook.office365.com/.default",
        graph: "https://graph.microsoft.com",
        documented: true,
    },
    CloudInfo {
        id: Cloud::Usgov,
        name: "US Government GCC High",
        login_host: "https://login.microsoftonline.us",
        smtp_host: "smtp.office365.us",
        smtp_port: 587,
        scope: "https://outlook.office365.us/.default",
        graph: "https://graph.microsoft.us",
        documented: false,
    },
    CloudInfo {
        id: Cloud::UsgovDod,
        name: "US Government DoD",
        login_host: "https://login.microsoftonline.us",
        smtp_host: "outlook-dod.office365.us",
        smtp_port: 587,
        scope: "https://outlook-dod.office365.us/.default",
        graph: "https://dod-graph.microsoft.us",
        documented: false,
    },
    CloudInfo {
        id: Cloud::China,
        name: "China (21Vianet)",
        login_host: "https://login.partner.microsoftonline.cn",
        smtp_host: "smtp.partner.outlook.cn",
        smtp_port: 587,
        scope: "https://partner.outlook.cn/.default",
        graph: "https://microsoftgraph.chinacloudapi.cn",
        documented: false,
    },
];

/// The table row of a cloud.
pub fn cloud(id: Cloud) -> &'static CloudInfo {
    CLOUDS.iter().find(|c| c.id == id).unwrap_or(&CLOUDS[0])
}

/// The label of an authentication method as the form shows it.
pub fn auth_method_label(provider: Provider, method: AuthMethod) -> &'static str {
    match (provider, method) {
        (_, AuthMethod::OAuth2ClientCredentials) => "OAuth 2.0 (Client Credentials) — recommended",
        (Provider::Office365, AuthMethod::Password) => {
            "Basic authentication with an application password — legacy"
        }
        (_, AuthMethod::Password) => "Username and password",
        (_, AuthMethod::Username) => "Username only (no password)",
        (_, AuthMethod::None) => "No authentication",
    }
}

/// The label of a transport as the form shows it, and when to pick it.
pub fn transport_label(transport: crate::Transport) -> (&'static str, &'static str) {
    match transport {
        crate::Transport::Smtp => (
            "SMTP AUTH (XOAUTH2)",
            "The usual way: pick it while SMTP AUTH is allowed for the mailbox.",
        ),
        crate::Transport::Graph => (
            "Microsoft Graph (sendMail)",
            "Pick it where SMTP AUTH is switched off for the tenant or mailbox (535 5.7.139): it needs the Mail.Send application permission, not SMTP AUTH.",
        ),
    }
}

/// The label of a security mode as the form shows it.
pub fn security_label(security: Security) -> &'static str {
    match security {
        Security::Starttls => "STARTTLS (port 587): plain connection upgraded to TLS",
        Security::Tls => "Implicit TLS (port 465): TLS from the first byte",
        Security::None => "None: no encryption (only for a relay on this machine)",
    }
}

/// Filling settings in from the catalogue (here, so the settings types
/// need not know the catalogue).
impl Settings {
    /// Settings pre-filled for a provider: its host, port and security, and its
    /// recommended authentication method.
    pub fn for_provider(provider: Provider) -> Self {
        let mut settings = Settings {
            provider,
            ..Settings::default()
        };
        settings.apply_provider(provider);
        settings
    }

    /// Switches provider, filling in host, port, security and a fitting auth method.
    pub fn apply_provider(&mut self, provider: Provider) {
        let info = crate::catalogue::provider(provider);
        self.provider = provider;
        self.host = info.host.to_string();
        self.port = info.port;
        self.security = info.security;
        if !info.auth_methods.contains(&self.auth_method) {
            self.auth_method = info.auth_methods[0];
        }
        if provider == Provider::Office365 {
            self.host = cloud(self.cloud).smtp_host.to_string();
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
    fn catalogue_matches_reference() {
        assert_eq!(PROVIDERS.len(), 13);
        let o365 = provider(Provider::Office365);
        assert_eq!(
            (o365.host, o365.port, o365.security),
            ("smtp.office365.com", 587, Security::Starttls)
        );
        assert_eq!(o365.auth_methods[0], AuthMethod::OAuth2ClientCredentials);
        assert_eq!(provider(Provider::Zoho).host, "smtp.zoho.eu");
        for p in PROVIDERS.iter().filter(|p| p.id != Provider::Office365) {
            assert!(
                !p.auth_methods
                    .contains(&AuthMethod::OAuth2ClientCredentials),
                "{} must not offer OAuth",
                p.name
            );
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn clouds_match_contract() {
        assert_eq!(
            cloud(Cloud::Global).scope,
            "https://outlook.office365.com/.default"
        );
        assert_eq!(
            cloud(Cloud::China).login_host,
            "https://login.partner.microsoftonline.cn"
        );
        assert_eq!(cloud(Cloud::UsgovDod).smtp_host, "outlook-dod.office365.us");
        assert_eq!(cloud(Cloud::Global).graph, "https://graph.microsoft.com");
        assert_eq!(
            cloud(Cloud::UsgovDod).graph,
            "https://dod-graph.microsoft.us"
        );
        assert_eq!(
            cloud(Cloud::China).graph,
            "https://microsoftgraph.chinacloudapi.cn"
        );
        assert!(CLOUDS.iter().filter(|c| c.documented).count() == 1);
    }
}
