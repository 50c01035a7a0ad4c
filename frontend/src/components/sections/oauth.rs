//! The account the server signs in with: the Entra application (OAuth) or a
//! username and password.

use mailroom_shared::{catalogue, AuthMethod, Cloud, EnumId, Provider};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::{described_by, field_messages, TextField};
use super::{stored_placeholder, Section};
use crate::state::{Action, Field};

const GUID_PLACEHOLDER: AttrValue = AttrValue::Static("00000000-0000-0000-0000-000000000000");

/// Cloud, tenant and client IDs, the client secret (shown in clear while
/// `show_secret`) and the mailbox.
pub fn oauth_section(sec: &Section, show_secret: &UseStateHandle<bool>) -> Html {
    let form = sec.form;
    let s = &form.settings;
    let errors = |f: Field| sec.errors(f);
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
            <TextField id="tenant_id" label="Directory (tenant) ID" value={s.tenant_id.clone().unwrap_or_default()}
                help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Directory (tenant) ID.")}
                placeholder={GUID_PLACEHOLDER}
                errors={errors(Field::TenantId)} warnings={warnings(Field::TenantId)}
                on_input={sec.set(Field::TenantId)} on_blur={sec.touch(Field::TenantId)} />
            <TextField id="client_id" label="Application (client) ID" value={s.client_id.clone().unwrap_or_default()}
                help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Application (client) ID.")}
                placeholder={GUID_PLACEHOLDER}
                errors={errors(Field::ClientId)} warnings={warnings(Field::ClientId)}
                on_input={sec.set(Field::ClientId)} on_blur={sec.touch(Field::ClientId)} />
            <TextField id="client_secret" label="Client secret" value={form.secret_text.clone()}
                input_type={if shown { "text" } else { "password" }}
                autocomplete="new-password"
                help={AttrValue::Static("Entra admin center › App registrations › your app › Certificates & secrets › the Value column (shown only once), not the Secret ID.")}
                placeholder={stored_placeholder(form.stored_now().client_secret_usable())}
                errors={errors(Field::ClientSecret)} warnings={warnings(Field::ClientSecret)}
                on_input={sec.set(Field::ClientSecret)} on_blur={sec.touch(Field::ClientSecret)}>
                <button type="button" class="toggle" onclick={toggle_secret} aria-controls="client_secret" aria-pressed={if shown { "true" } else { "false" }}>
                    { if shown { "Hide" } else { "Show" } }
                </button>
            </TextField>
            <TextField id="username" label="Username (the licensed mailbox)" value={s.username.clone().unwrap_or_default()} input_type="email"
                help={AttrValue::Static("The full address of the licensed Microsoft 365 mailbox that sends, the one the service principal has access to.")}
                placeholder={AttrValue::Static("mailer@contoso.com")}
                errors={errors(Field::Username)} warnings={warnings(Field::Username)}
                on_input={sec.set(Field::Username)} on_blur={sec.touch(Field::Username)} />
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
            <TextField id="username" label="Username" value={s.username.clone().unwrap_or_default()} autocomplete="username"
                help={AttrValue::Static(if office365 { "The full address of the mailbox." } else { "The SMTP username your provider gave you." })}
                errors={sec.errors(Field::Username)} warnings={sec.warnings(Field::Username)}
                on_input={sec.set(Field::Username)} on_blur={sec.touch(Field::Username)} />
            if s.auth_method == AuthMethod::Password {
                <TextField id="password" label={if office365 { "Application password" } else { "Password" }} value={form.password_text.clone()}
                    input_type="password" autocomplete="new-password"
                    help={AttrValue::Static(if office365 { "An app password from Additional security verification › App passwords, not your sign-in password." } else { "The SMTP password, app password or API key." })}
                    placeholder={stored_placeholder(form.stored_now().password_usable())}
                    errors={sec.errors(Field::Password)} warnings={sec.warnings(Field::Password)}
                    on_input={sec.set(Field::Password)} on_blur={sec.touch(Field::Password)} />
            }
        </section>
    }
}
