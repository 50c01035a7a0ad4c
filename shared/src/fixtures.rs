//! Sample values for tests, benchmarks and examples: one valid Office 365
//! OAuth configuration. Addresses are built from parts, so no editor or
//! scraper can rewrite them.

use crate::settings::{Provider, Settings};

/// A Directory (tenant) ID.
pub const TENANT: &str = "0b4f1c2a-1234-4abc-9def-0123456789ab";
/// An Application (client) ID.
pub const CLIENT: &str = "6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab";
/// A client secret's Value (not GUID-shaped, so no Secret ID warning).
pub const SECRET: &str = "Xy8Q~abcDEFghiJKLmnoPQRstuVWXyz0123456789";

/// `mailer` at `contoso.com`: the licensed mailbox.
pub fn mailer() -> String {
    format!("{}@{}", "mailer", "contoso.com")
}

/// Valid Office 365 OAuth settings sending as [`mailer`] through `host:port`.
pub fn office365_oauth(host: &str, port: u16) -> Settings {
    Settings {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret: Some(SECRET.into()),
        username: Some(mailer()),
        sender_name: "Contoso notifications".into(),
        sender_email: mailer(),
        host: host.into(),
        port,
        ..Settings::for_provider(Provider::Office365)
    }
}

/// A second tenant's Directory (tenant) ID, for a second sending profile.
pub const TENANT_B: &str = "1c5e2d3b-2345-4bcd-8ef0-123456789abc";
/// The second tenant's Application (client) ID.
pub const CLIENT_B: &str = "7a2b3c4d-bbbb-4ccc-9ddd-123456789abc";
/// The second tenant's client secret Value.
pub const SECRET_B: &str = "Ab1C~secondTenantSecretValue0123456789xy";

/// `billing` at `fabrikam.com`: the second tenant's mailbox.
pub fn billing() -> String {
    format!("{}@{}", "billing", "fabrikam.com")
}

/// Valid Office 365 OAuth settings of the second tenant, sending as
/// [`billing`] through `host:port` with `secret`.
pub fn office365_second_tenant(host: &str, port: u16, secret: &str) -> Settings {
    Settings {
        tenant_id: Some(TENANT_B.into()),
        client_id: Some(CLIENT_B.into()),
        client_secret: Some(secret.into()),
        username: Some(billing()),
        sender_email: billing(),
        ..office365_oauth(host, port)
    }
}
