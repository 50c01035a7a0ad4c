//! Property tests: `validate()` never panics, and normalisation is idempotent.
#![cfg(not(target_arch = "wasm32"))]

use mailroom_shared::{
    parse, AuthMethod, ClientCredential, Cloud, Provider, Security, Settings, Transport,
};
use proptest::prelude::*;

fn any_provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(
        mailroom_shared::catalogue::PROVIDERS
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
    )
}

fn any_auth() -> impl Strategy<Value = AuthMethod> {
    prop::sample::select(vec![
        AuthMethod::None,
        AuthMethod::Username,
        AuthMethod::Password,
        AuthMethod::OAuth2ClientCredentials,
    ])
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[ {}0-9a-fA-F-]{0,40}",
        "[a-z@. \r\n]{0,30}",
        Just(String::new()),
    ]
}

prop_compose! {
    fn any_settings()(
        provider in any_provider(),
        auth_method in any_auth(),
        cloud in prop::sample::select(vec![Cloud::Global, Cloud::Usgov, Cloud::UsgovDod, Cloud::China]),
        tenant in proptest::option::of(any_text()),
        client in proptest::option::of(any_text()),
        secret in proptest::option::of(any_text()),
        username in proptest::option::of(any_text()),
        password in proptest::option::of(any_text()),
        host in any_text(),
        port in any::<u16>(),
        security in prop::sample::select(vec![Security::Starttls, Security::Tls, Security::None]),
        client_hostname in proptest::option::of(any_text()),
        sender_name in any_text(),
        sender_email in any_text(),
        send_as_confirmed in any::<bool>(),
        transport in prop::sample::select(vec![Transport::Smtp, Transport::Graph]),
        client_credential in prop::sample::select(vec![ClientCredential::Secret, ClientCredential::Certificate]),
        client_secret_expires in proptest::option::of(any_text()),
    ) -> Settings {
        Settings {
            provider, auth_method, cloud, tenant_id: tenant, client_id: client,
            client_credential, client_secret: secret, client_secret_expires, username, password, transport, host, port, security,
            client_hostname, sender_name, sender_email, send_as_confirmed,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validate_never_panics_and_errors_name_known_fields(s in any_settings()) {
        let report = s.validate();
        for field in report.errors.keys().chain(report.warnings.keys()) {
            prop_assert!(mailroom_shared::Field::from_name(field).is_some(), "unknown field {field}");
        }
        for msgs in report.errors.values() {
            for m in msgs {
                prop_assert!(m.ends_with('.') || m.ends_with(')'), "not a sentence: {m}");
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent(s in any_settings()) {
        let once = s.normalized();
        prop_assert_eq!(once.normalized(), once.clone());
        prop_assert_eq!(once.validate(), s.validate());
    }

    #[test]
    fn guid_normalisation_is_idempotent(t in any_text()) {
        let once = parse::normalize_guid(&t);
        prop_assert_eq!(parse::normalize_guid(&once), once);
    }

    #[test]
    fn any_formatted_guid_is_accepted(bytes in any::<[u8; 16]>(), upper in any::<bool>(), braces in any::<bool>()) {
        let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut g = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
        if upper { g = g.to_uppercase(); }
        if braces { g = format!(" {{{g}}} "); }
        prop_assert_eq!(parse::check_guid(&g).map(|x| x.len()), Ok(36));
    }
}
