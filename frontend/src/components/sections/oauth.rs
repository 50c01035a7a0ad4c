//! The account the server signs in with: the Entra application (OAuth) or a
//! username and password.

use mailroom_shared::{catalogue, AuthMethod, Cloud, EnumId, Provider};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::{described_by, FieldMessages, TextField};
use super::{set, stored_placeholder, touch, SectionProps};
use crate::state::{Action, Field};

const GUID_PLACEHOLDER: AttrValue = AttrValue::Static("00000000-0000-0000-0000-000000000000");

/// Cloud, tenant and client IDs, the client secret and the mailbox.
#[function_component(OAuthSection)]
pub fn oauth_section(p: &SectionProps) -> Html {
    let form = &p.form;
    let s = &form.settings;
    let report = form.report();
    let show_secret = use_state(|| false);
    let errors = |f: Field| form.errors_for(&report, f);
    let warnings = |f: Field| form.warnings_for(&report, f);
    let on_cloud = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            form.dispatch(Action::Cloud(Cloud::from_id(&v).unwrap_or(Cloud::Global)));
        })
    };
    let toggle_secret = {
        let show_secret = show_secret.clone();
        Callback::from(move |_: MouseEvent| show_secret.set(!*show_secret))
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
                <FieldMessages id="cloud" warnings={cloud_warnings} />
            </div>
            <TextField id="tenant_id" label="Directory (tenant) ID" value={s.tenant_id.clone().unwrap_or_default()}
                help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Directory (tenant) ID.")}
                placeholder={GUID_PLACEHOLDER}
                errors={errors(Field::TenantId)} warnings={warnings(Field::TenantId)}
                on_input={set(form, Field::TenantId)} on_blur={touch(form, Field::TenantId)} />
            <TextField id="client_id" label="Application (client) ID" value={s.client_id.clone().unwrap_or_default()}
                help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Application (client) ID.")}
                placeholder={GUID_PLACEHOLDER}
                errors={errors(Field::ClientId)} warnings={warnings(Field::ClientId)}
                on_input={set(form, Field::ClientId)} on_blur={touch(form, Field::ClientId)} />
            <TextField id="client_secret" label="Client secret" value={form.secret_text.clone()}
                input_type={if *show_secret { "text" } else { "password" }}
                autocomplete="new-password"
                help={AttrValue::Static("Entra admin center › App registrations › your app › Certificates & secrets › the Value column (shown only once), not the Secret ID.")}
                placeholder={stored_placeholder(form.stored_now().client_secret_usable())}
                errors={errors(Field::ClientSecret)} warnings={warnings(Field::ClientSecret)}
                on_input={set(form, Field::ClientSecret)} on_blur={touch(form, Field::ClientSecret)}>
                <button type="button" class="toggle" onclick={toggle_secret} aria-controls="client_secret" aria-pressed={if *show_secret { "true" } else { "false" }}>
                    { if *show_secret { "Hide" } else { "Show" } }
                </button>
            </TextField>
            <TextField id="username" label="Username (the licensed mailbox)" value={s.username.clone().unwrap_or_default()} input_type="email"
                help={AttrValue::Static("The full address of the licensed Microsoft 365 mailbox that sends, the one the service principal has access to.")}
                placeholder={AttrValue::Static("mailer@contoso.com")}
                errors={errors(Field::Username)} warnings={warnings(Field::Username)}
                on_input={set(form, Field::Username)} on_blur={touch(form, Field::Username)} />
        </section>
    }
}

/// Username, and the password when the method has one.
#[function_component(CredentialsSection)]
pub fn credentials_section(p: &SectionProps) -> Html {
    let form = &p.form;
    let s = &form.settings;
    let report = form.report();
    let office365 = s.provider == Provider::Office365;
    html! {
        <section aria-labelledby="credentials-heading">
            <h2 id="credentials-heading">{ "SMTP credentials" }</h2>
            <TextField id="username" label="Username" value={s.username.clone().unwrap_or_default()} autocomplete="username"
                help={AttrValue::Static(if office365 { "The full address of the mailbox." } else { "The SMTP username your provider gave you." })}
                errors={form.errors_for(&report, Field::Username)} warnings={form.warnings_for(&report, Field::Username)}
                on_input={set(form, Field::Username)} on_blur={touch(form, Field::Username)} />
            if s.auth_method == AuthMethod::Password {
                <TextField id="password" label={if office365 { "Application password" } else { "Password" }} value={form.password_text.clone()}
                    input_type="password" autocomplete="new-password"
                    help={AttrValue::Static(if office365 { "An app password from Additional security verification › App passwords, not your sign-in password." } else { "The SMTP password, app password or API key." })}
                    placeholder={stored_placeholder(form.stored_now().password_usable())}
                    errors={form.errors_for(&report, Field::Password)} warnings={form.warnings_for(&report, Field::Password)}
                    on_input={set(form, Field::Password)} on_blur={touch(form, Field::Password)} />
            }
        </section>
    }
}
