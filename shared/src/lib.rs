//! Mailroom's shared heart: the settings schema, the provider catalogue, the
//! cloud table, the API bodies and `validate()`.
//!
//! It has no runtime dependency beyond serde, so it compiles natively for the
//! server and to wasm32 for the browser, and both run the very same rules.

pub mod api;
pub mod catalogue;
pub mod field;
pub mod fixtures;
pub mod messages;
pub mod parse;
pub mod powershell;
pub mod profiles;
pub mod sending;
pub mod settings;
pub mod validate;
pub mod webhooks;

pub use field::Field;
pub use messages::FieldMessages;
pub use settings::{
    AuthMethod, ClientCredential, Cloud, EnumId, Provider, Security, Settings, Transport,
};
pub use validate::{Report, StoredSecrets};

// The unit tests run as wasm in headless Chromium too (`cargo xtask test`).
#[cfg(all(test, target_arch = "wasm32", target_os = "unknown"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A count with its thousands grouped, as the page and its messages write
/// numbers: `10,000`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}
