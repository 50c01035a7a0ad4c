//! The account the server signs in with: the Entra application (OAuth) or a
//! username and password.

use mailroom_shared::{catalogue, AuthMethod, ClientCredential, Cloud, EnumId, Provider};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::{described_by, field_messages};
use super::{stored_placeholder, Look, Section};
use crate::state::{Action, Field};

const GUID_PLACEHOLDER: AttrValue = AttrValue::Static("00000000-0000-0000-0000-000000000000");

/// Cloud, tenant and client IDs, the client secret (shown in clear while
/// `show_secret`) and the mailbox.
pub fn oauth_section(sec: &Section, show_secret: &UseStateHandle<bool>, panel: Html) -> Html {
    let form = sec.form;
    let s = &form.settings;
    let certificate = s.client_credential == ClientCredential::Certificate;
    let credential_errors = sec.errors(Field::ClientCredential);
    let kinds = ClientCredential::ALL.iter().map(|c| {
        let credential = *c;
        let id = ["client_credential-", credential.id()].concat();
        let form = form.clone();
        let onchange =
            Callback::from(move |_: Event| form.dispatch(Action::Credential(credential)));
        let (label, when) = match credential {
            ClientCredential::Secret => (
                "Client secret",
                "A Value from Certificates & secrets; it lasts at most 24 months.",
            ),
            ClientCredential::Certificate => (
                "Certificate (recommended by Microsoft)",
                "Mailroom makes the key and keeps it; you upload only the public certificate.",
            ),
        };
        html! {
            <label class="radio" for={id.clone()}>
                <input type="radio" id={id} name="client_credential" value={credential.id()}
                    checked={s.client_credential == credential} {onchange} />
                <strong>{ label }</strong>
                <span class="help">{ when }</span>
            </label>
        }
    });
    let warnings = |f: Field| sec.warnings(f);
    let shown = **show_secret;
    let on_cloud = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            form.dispatch(Action::Cloud(Cloud::from_id(&v).unwrap_or(Cloud::Global)));
        })
    };
    let toggle_secret = {
        let show_secret = show_secret.clone();
        Callback::from(move |_: MouseEvent| show_secret.set(!shown))
    };
    let cloud_warnings = warnings(Field::Cloud);
    html! {
        <section aria-labelledby="entra-heading">
            <h2 id="entra-heading">{ "Microsoft Entra ID application" }</h2>
            <div class="field">
                <label for="cloud">{ "Cloud" }</label>
                <select id="cloud" name="cloud" onchange={on_cloud}
                    aria-describedby={described_by("cloud", true, false, !cloud_warnings.is_empty())}>
                    { for catalogue::CLOUDS.iter().map(|c| html! {
                        <option value={c.id.id()} selected={c.id == s.cloud}>
                            { if c.documented { c.name.to_string() } else { format!("{} (not documented end to end by Microsoft)", c.name) } }
                        </option>
                    }) }
                </select>
                <p class="help" id="cloud-help">{ "Where your tenant lives. Most tenants are Global." }</p>
                { field_messages("cloud", &[], &cloud_warnings) }
            </div>
            { sec.text(Field::TenantId, "Directory (tenant) ID", s.tenant_id.clone().unwrap_or_default(),
                "Entra admin center › App registrations › your app › Overview › Directory (tenant) ID.",
                Look { placeholder: Some(GUID_PLACEHOLDER), ..Look::default() }) }
            { sec.text(Field::ClientId, "Application (client) ID", s.client_id.clone().unwrap_or_default(),
                "Entra admin center › App registrations › your app › Overview › Application (client) ID.",
                Look { placeholder: Some(GUID_PLACEHOLDER), ..Look::default() }) }
            <fieldset id="client_credential" class="ways" aria-invalid={if credential_errors.is_empty() { "false" } else { "true" }}
                aria-describedby={(!credential_errors.is_empty()).then_some("client_credential-error")}>
                <legend>{ "How the app proves itself" }</legend>
                { for kinds }
            </fieldset>
            { field_messages("client_credential", &credential_errors, &[]) }
            if certificate {
                { panel }
            } else {
            { sec.text(Field::ClientSecret, "Client secret", form.secret_text.clone(),
                "Entra admin center › App registrations › your app › Certificates & secrets › the Value column (shown only once), not the Secret ID.",
                Look {
                    input_type: if shown { "text" } else { "password" },
                    autocomplete: "new-password",
                    placeholder: stored_placeholder(form.stored_now().client_secret_usable()),
                    children: html! {
                        <button type="button" class="toggle" onclick={toggle_secret} aria-controls="client_secret" aria-pressed={if shown { "true" } else { "false" }}>
                            { if shown { "Hide" } else { "Show" } }
                        </button>
                    },
                    ..Look::default()
                }) }
            { sec.text(Field::ClientSecretExpires, "Secret expires (optional)", s.client_secret_expires.clone().unwrap_or_default(),
                "The Expires date next to the secret under Certificates & secrets. Mailroom warns 30 days before, on every page and in /metrics.",
                Look { input_type: "date", ..Look::default() }) }
            }
            { sec.text(Field::Username, "Username (the licensed mailbox)", s.username.clone().unwrap_or_default(),
                "The full address of the licensed Microsoft 365 mailbox that sends, the one the service principal has access to.",
                Look { input_type: "email", placeholder: Some(AttrValue::Static("mailer@contoso.com")), ..Look::default() }) }
        </section>
    }
}

/// Username, and the password when the method has one.
pub fn credentials_section(sec: &Section) -> Html {
    let form = sec.form;
    let s = &form.settings;
    let office365 = s.provider == Provider::Office365;
    html! {
        <section aria-labelledby="credentials-heading">
            <h2 id="credentials-heading">{ "SMTP credentials" }</h2>
            { sec.text(Field::Username, "Username", s.username.clone().unwrap_or_default(),
                if office365 { "The full address of the mailbox." } else { "The SMTP username your provider gave you." },
                Look { autocomplete: "username", ..Look::default() }) }
            if s.auth_method == AuthMethod::Password {
                { sec.text(Field::Password, if office365 { "Application password" } else { "Password" }, form.password_text.clone(),
                    if office365 { "An app password from Additional security verification › App passwords, not your sign-in password." } else { "The SMTP password, app password or API key." },
                    Look {
                        input_type: "password",
                        autocomplete: "new-password",
                        placeholder: stored_placeholder(form.stored_now().password_usable()),
                        ..Look::default()
                    }) }
            }
        </section>
    }
}
