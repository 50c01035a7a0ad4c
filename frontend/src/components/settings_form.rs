//! The settings form: provider, authentication, OAuth fields, sender, advanced
//! server settings, the setup checklist, test and save.

use gloo_net::http::Method;
use mailroom_shared::api::{PutSettings, Saved, SettingsResponse, SAVED_MESSAGE};
use mailroom_shared::validate::BASIC_AUTH_RETIREMENT;
use mailroom_shared::{catalogue, powershell as ps, AuthMethod, Cloud, EnumId, Provider, Security};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::checklist::Checklist;
use super::code::Command;
use super::field::TextField;
use super::test_dialog::TestDialog;
use crate::api::{call, ApiError};
use crate::state::{Action, Field, FormState, ADVANCED_FIELDS};

#[derive(Properties, PartialEq)]
pub struct SettingsFormProps {
    /// What the server holds.
    pub initial: SettingsResponse,
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
    /// The user signed out.
    #[prop_or_default]
    pub on_sign_out: Callback<()>,
}

#[derive(Clone, PartialEq)]
enum Banner {
    Success(String),
    Error(String),
    Conflict(String),
}

fn focus(id: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

/// The whole settings page below the header.
#[function_component(SettingsForm)]
pub fn settings_form(p: &SettingsFormProps) -> Html {
    let form = use_reducer(|| FormState::from_response(&p.initial));
    let banner = use_state(|| None::<Banner>);
    let saving = use_state(|| false);
    let show_secret = use_state(|| false);
    let test_open = use_state(|| false);
    let advanced_open = use_state(|| form.settings.provider == Provider::Other);
    let focus_target = use_state(|| None::<(String, u32)>);
    let unload = use_mut_ref(|| None::<Closure<dyn Fn(web_sys::BeforeUnloadEvent)>>);

    // Ask before leaving with unsaved changes.
    {
        let dirty = form.dirty;
        use_effect_with(dirty, move |dirty| {
            if let Some(w) = web_sys::window() {
                if *dirty {
                    let handler = Closure::<dyn Fn(web_sys::BeforeUnloadEvent)>::new(
                        |e: web_sys::BeforeUnloadEvent| {
                            e.prevent_default();
                            e.set_return_value("You have unsaved changes.");
                        },
                    );
                    w.set_onbeforeunload(Some(handler.as_ref().unchecked_ref()));
                    *unload.borrow_mut() = Some(handler);
                } else {
                    w.set_onbeforeunload(None);
                    unload.borrow_mut().take();
                }
            }
        });
    }
    // Move focus after the render that made the target visible.
    use_effect_with((*focus_target).clone(), |target| {
        if let Some((id, _)) = target {
            focus(id);
        }
    });

    let report = form.report();
    let s = &form.settings;
    let office365 = s.provider == Provider::Office365;
    let oauth = s.auth_method == AuthMethod::OAuth2ClientCredentials;
    let provider = catalogue::provider(s.provider);

    let set = |field: Field| {
        let form = form.clone();
        Callback::from(move |v: String| form.dispatch(Action::Set(field, v)))
    };
    let touch = |name: &'static str| {
        let form = form.clone();
        Callback::from(move |()| form.dispatch(Action::Touch(name)))
    };
    let errors = |name: &str| form.errors_for(&report, name);
    let warnings = |name: &str| {
        if form.shows(name) || name == "client_secret" || name == "cloud" {
            report.warnings_for(name).to_vec()
        } else {
            Vec::new()
        }
    };

    // Validates everything; on errors, shows them and focuses the first.
    let check_all = {
        let (form, advanced_open, focus_target) =
            (form.clone(), advanced_open.clone(), focus_target.clone());
        move || -> bool {
            form.dispatch(Action::Submit);
            let report = form.report();
            let mut first = report.first_invalid_field();
            if first.is_none() {
                first = mailroom_shared::validate::FIELD_ORDER
                    .iter()
                    .copied()
                    .find(|f| form.server_errors.contains_key(*f));
            }
            match first {
                Some(field) => {
                    if ADVANCED_FIELDS.contains(&field) {
                        advanced_open.set(true);
                    }
                    let n = focus_target.as_ref().map(|(_, n)| n + 1).unwrap_or(0);
                    focus_target.set(Some((field.to_string(), n)));
                    false
                }
                None => report.is_valid(),
            }
        }
    };

    let on_save = {
        let (form, banner, saving, unauthorized, check_all) = (
            form.clone(),
            banner.clone(),
            saving.clone(),
            p.on_unauthorized.clone(),
            check_all.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *saving || !check_all() {
                return;
            }
            let body = PutSettings {
                settings: form.to_settings(),
                version: form.version,
            };
            let (form, banner, saving, unauthorized) = (
                form.clone(),
                banner.clone(),
                saving.clone(),
                unauthorized.clone(),
            );
            saving.set(true);
            banner.set(None);
            wasm_bindgen_futures::spawn_local(async move {
                let r: Result<Saved, ApiError> =
                    call(Method::PUT, "/api/settings", Some(&body)).await;
                saving.set(false);
                match r {
                    Ok(saved) => {
                        form.dispatch(Action::Saved(saved.version));
                        banner.set(Some(Banner::Success(format!(
                            "Success: {}",
                            if saved.message.is_empty() {
                                SAVED_MESSAGE
                            } else {
                                &saved.message
                            }
                        ))));
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Conflict(m)) => banner.set(Some(Banner::Conflict(m))),
                    Err(ApiError::Invalid(m, errors)) => {
                        form.dispatch(Action::ServerErrors(errors));
                        banner.set(Some(Banner::Error(m)));
                    }
                    Err(e) => banner.set(Some(Banner::Error(e.message().to_string()))),
                }
            });
        })
    };
    let reload = |keep_edits: bool| {
        let (form, banner, unauthorized) =
            (form.clone(), banner.clone(), p.on_unauthorized.clone());
        Callback::from(move |_: MouseEvent| {
            let (form, banner, unauthorized) = (form.clone(), banner.clone(), unauthorized.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match call::<SettingsResponse, ()>(Method::GET, "/api/settings", None).await {
                    Ok(r) => {
                        if keep_edits {
                            form.dispatch(Action::Rebase(r));
                            banner.set(Some(Banner::Success("Your edits are kept and now based on the latest saved version. Review them and save again.".into())));
                        } else {
                            form.dispatch(Action::Load(r));
                            banner.set(None);
                        }
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => banner.set(Some(Banner::Error(e.message().to_string()))),
                }
            });
        })
    };
    let open_test = {
        let (test_open, check_all) = (test_open.clone(), check_all.clone());
        Callback::from(move |_: MouseEvent| {
            if check_all() {
                test_open.set(true);
            }
        })
    };
    let close_test = {
        let test_open = test_open.clone();
        Callback::from(move |()| test_open.set(false))
    };
    let sign_out = {
        let cb = p.on_sign_out.clone();
        Callback::from(move |_: MouseEvent| {
            let cb = cb.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = call::<(), ()>(Method::POST, "/api/logout", None).await;
                cb.emit(());
            });
        })
    };
    let on_provider = {
        let (form, advanced_open) = (form.clone(), advanced_open.clone());
        Callback::from(move |e: Event| {
            let p = Provider::from_id(&e.target_unchecked_into::<HtmlSelectElement>().value())
                .unwrap_or(Provider::Other);
            advanced_open.set(p == Provider::Other);
            form.dispatch(Action::Provider(p));
        })
    };
    let on_cloud = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            let c = Cloud::from_id(&v).unwrap_or(Cloud::Global);
            form.dispatch(Action::Cloud(c));
        })
    };
    let on_security = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            let sec = Security::from_id(&v).unwrap_or_default();
            form.dispatch(Action::Security(sec));
        })
    };
    let on_send_as = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            form.dispatch(Action::SendAs(
                e.target_unchecked_into::<HtmlInputElement>().checked(),
            ))
        })
    };
    let toggle_secret = {
        let show_secret = show_secret.clone();
        Callback::from(move |_: MouseEvent| show_secret.set(!*show_secret))
    };
    let on_advanced_toggle = {
        let advanced_open = advanced_open.clone();
        Callback::from(move |e: Event| {
            advanced_open.set(
                e.target_unchecked_into::<web_sys::HtmlDetailsElement>()
                    .open(),
            );
        })
    };

    let auth_radios = provider.auth_methods.iter().map(|m| {
        let method = *m;
        let id = format!("auth-{}", method.id());
        let form = form.clone();
        let onchange = Callback::from(move |_: Event| form.dispatch(Action::Auth(method)));
        html! {
            <label class="radio" for={id.clone()}>
                <input type="radio" id={id} name="auth_method" value={method.id()} checked={s.auth_method == method} {onchange} />
                { catalogue::auth_method_label(s.provider, method) }
            </label>
        }
    });

    let secret_placeholder = |stored: bool| -> Option<AttrValue> {
        stored.then_some(AttrValue::Static("stored — leave empty to keep"))
    };
    let username = s.username.clone().unwrap_or_default();

    html! {
        <>
        <header class="top">
            <h1>{ "Mailroom" }<span>{ " · Email server" }</span></h1>
            <button type="button" class="link" onclick={sign_out}>{ "Sign out" }</button>
        </header>
        <main class="page">
            if let Some(b) = &*banner {
                { match b {
                    Banner::Success(m) => html! { <div class="banner success" role="status">{ m.clone() }</div> },
                    Banner::Error(m) => html! { <div class="banner error" role="alert">{ m.clone() }</div> },
                    Banner::Conflict(m) => html! {
                        <div class="banner conflict" role="alert">
                            <p>{ m.clone() }</p>
                            <button type="button" onclick={reload(true)}>{ "Keep my edits and use the latest version" }</button>
                            <button type="button" onclick={reload(false)}>{ "Discard my edits and load theirs" }</button>
                        </div>
                    },
                } }
            }
            <form id="settings" onsubmit={on_save} novalidate=true>
                <section aria-labelledby="provider-heading">
                    <h2 id="provider-heading">{ "Email provider" }</h2>
                    <div class="field">
                        <label for="provider">{ "Provider" }</label>
                        <select id="provider" name="provider" onchange={on_provider} aria-describedby="provider-help">
                            { for catalogue::PROVIDERS.iter().map(|p| html! {
                                <option value={p.id.id()} selected={p.id == s.provider}>{ p.name }</option>
                            }) }
                        </select>
                        <p class="help" id="provider-help">{ "Choosing a provider fills in the server's host, port and security." }</p>
                    </div>
                </section>

                <section aria-labelledby="auth-heading">
                    <h2 id="auth-heading">{ "Authentication" }</h2>
                    <fieldset id="auth_method" aria-invalid={if errors("auth_method").is_empty() { "false" } else { "true" }}>
                        <legend>{ "Authentication method" }</legend>
                        { for auth_radios }
                    </fieldset>
                    { for errors("auth_method").iter().map(|e| html! { <div class="error" role="alert"><p>{ e.clone() }</p></div> }) }
                    if office365 && s.auth_method == AuthMethod::Password {
                        <div class="notice retirement" id="retirement-notice" role="note">
                            <h3>{ "Basic authentication is being retired" }</h3>
                            <ul>
                                <li><strong>{ "End of December 2026: " }</strong>{ "disabled by default for existing tenants; admins can re-enable it for a while." }</li>
                                <li><strong>{ "Tenants created after December 2026: " }</strong>{ "not available; OAuth is the only method." }</li>
                                <li><strong>{ "Second half of 2027: " }</strong>{ "Microsoft announces the final removal date." }</li>
                            </ul>
                            <p>{ BASIC_AUTH_RETIREMENT }</p>
                        </div>
                    }
                </section>

                if oauth {
                    <section aria-labelledby="entra-heading">
                        <h2 id="entra-heading">{ "Microsoft Entra ID application" }</h2>
                        <div class="field">
                            <label for="cloud">{ "Cloud" }</label>
                            <select id="cloud" name="cloud" onchange={on_cloud} aria-describedby="cloud-help cloud-warning">
                                { for catalogue::CLOUDS.iter().map(|c| html! {
                                    <option value={c.id.id()} selected={c.id == s.cloud}>
                                        { if c.documented { c.name.to_string() } else { format!("{} (not documented end to end by Microsoft)", c.name) } }
                                    </option>
                                }) }
                            </select>
                            <p class="help" id="cloud-help">{ "Where your tenant lives. Most tenants are Global." }</p>
                            if !warnings("cloud").is_empty() {
                                <div class="warning" id="cloud-warning">{ for warnings("cloud").iter().map(|w| html! { <p>{ w.clone() }</p> }) }</div>
                            }
                        </div>
                        <TextField id="tenant_id" label="Directory (tenant) ID" value={s.tenant_id.clone().unwrap_or_default()}
                            help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Directory (tenant) ID.")}
                            placeholder={AttrValue::Static("00000000-0000-0000-0000-000000000000")}
                            errors={errors("tenant_id")} warnings={warnings("tenant_id")}
                            on_input={set(Field::TenantId)} on_blur={touch("tenant_id")} />
                        <TextField id="client_id" label="Application (client) ID" value={s.client_id.clone().unwrap_or_default()}
                            help={AttrValue::Static("Entra admin center › App registrations › your app › Overview › Application (client) ID.")}
                            placeholder={AttrValue::Static("00000000-0000-0000-0000-000000000000")}
                            errors={errors("client_id")} warnings={warnings("client_id")}
                            on_input={set(Field::ClientId)} on_blur={touch("client_id")} />
                        <TextField id="client_secret" label="Client secret" value={form.secret_text.clone()}
                            input_type={if *show_secret { "text" } else { "password" }}
                            autocomplete="new-password"
                            help={AttrValue::Static("Entra admin center › App registrations › your app › Certificates & secrets › the Value column (shown only once), not the Secret ID.")}
                            placeholder={secret_placeholder(form.stored_now().client_secret_usable())}
                            errors={errors("client_secret")} warnings={warnings("client_secret")}
                            on_input={set(Field::ClientSecret)} on_blur={touch("client_secret")}>
                            <button type="button" class="toggle" onclick={toggle_secret} aria-controls="client_secret" aria-pressed={if *show_secret { "true" } else { "false" }}>
                                { if *show_secret { "Hide" } else { "Show" } }
                            </button>
                        </TextField>
                        <TextField id="username" label="Username (the licensed mailbox)" value={username.clone()} input_type="email"
                            help={AttrValue::Static("The full address of the licensed Microsoft 365 mailbox that sends, the one the service principal has access to.")}
                            placeholder={AttrValue::Static("mailer@contoso.com")}
                            errors={errors("username")} warnings={warnings("username")}
                            on_input={set(Field::Username)} on_blur={touch("username")} />
                    </section>
                } else if matches!(s.auth_method, AuthMethod::Username | AuthMethod::Password) {
                    <section aria-labelledby="credentials-heading">
                        <h2 id="credentials-heading">{ "SMTP credentials" }</h2>
                        <TextField id="username" label="Username" value={username.clone()} autocomplete="username"
                            help={AttrValue::Static(if office365 { "The full address of the mailbox." } else { "The SMTP username your provider gave you." })}
                            errors={errors("username")} warnings={warnings("username")}
                            on_input={set(Field::Username)} on_blur={touch("username")} />
                        if s.auth_method == AuthMethod::Password {
                            <TextField id="password" label={if office365 { "Application password" } else { "Password" }} value={form.password_text.clone()}
                                input_type="password" autocomplete="new-password"
                                help={AttrValue::Static(if office365 { "An app password from Additional security verification › App passwords, not your sign-in password." } else { "The SMTP password, app password or API key." })}
                                placeholder={secret_placeholder(form.stored_now().password_usable())}
                                errors={errors("password")} warnings={warnings("password")}
                                on_input={set(Field::Password)} on_blur={touch("password")} />
                        }
                    </section>
                }

                <section aria-labelledby="sender-heading">
                    <h2 id="sender-heading">{ "Sender" }</h2>
                    <TextField id="sender_name" label="Sender name" value={s.sender_name.clone()}
                        help={AttrValue::Static("The display name recipients see.")}
                        errors={errors("sender_name")} warnings={warnings("sender_name")}
                        on_input={set(Field::SenderName)} on_blur={touch("sender_name")} />
                    <TextField id="sender_email" label="Sender email" value={s.sender_email.clone()} input_type="email"
                        help={AttrValue::Static(if office365 { "The username above, or a shared mailbox the username may send as." } else { "The From address." })}
                        errors={errors("sender_email")} warnings={warnings("sender_email")}
                        on_input={set(Field::SenderEmail)} on_blur={touch("sender_email")} />
                    if form.sender_differs() {
                        <div class="send-as" id="send-as">
                            <label class="checkbox" for="send_as_confirmed">
                                <input type="checkbox" id="send_as_confirmed" checked={s.send_as_confirmed} onchange={on_send_as} />
                                { format!("The username {} has Send-As rights on this mailbox", username) }
                            </label>
                            <p class="help">{ "If it does not yet, grant them in Exchange Online PowerShell:" }</p>
                            <Command command={ps::add_recipient_permission(&s.sender_email, &username)} />
                        </div>
                    }
                </section>

                <details id="advanced" open={*advanced_open} ontoggle={on_advanced_toggle}>
                    <summary>{ "Advanced server settings" }</summary>
                    <TextField id="host" label="SMTP host" value={s.host.clone()}
                        help={AttrValue::Static("The server's host name or IP address.")}
                        errors={errors("host")} warnings={warnings("host")}
                        on_input={set(Field::Host)} on_blur={touch("host")} />
                    <TextField id="port" label="Port" value={form.port_text.clone()} inputmode={AttrValue::Static("numeric")}
                        help={AttrValue::Static("587 for STARTTLS, 465 for implicit TLS.")}
                        errors={errors("port")} warnings={warnings("port")}
                        on_input={set(Field::Port)} on_blur={touch("port")} />
                    <div class={classes!("field", (!errors("security").is_empty()).then_some("invalid"))}>
                        <label for="security">{ "Security" }</label>
                        <select id="security" name="security" onchange={on_security}
                            aria-invalid={if errors("security").is_empty() { "false" } else { "true" }}
                            aria-describedby="security-error security-warning">
                            { for Security::ALL.iter().copied().map(|x| html! {
                                <option value={x.id()} selected={x == s.security}>{ catalogue::security_label(x) }</option>
                            }) }
                        </select>
                        if !errors("security").is_empty() {
                            <div class="error" id="security-error" role="alert">{ for errors("security").iter().map(|e| html! { <p>{ e.clone() }</p> }) }</div>
                        }
                        if !warnings("security").is_empty() {
                            <div class="warning" id="security-warning">{ for warnings("security").iter().map(|w| html! { <p>{ w.clone() }</p> }) }</div>
                        }
                    </div>
                    <TextField id="client_hostname" label="Client host name (optional)" value={s.client_hostname.clone().unwrap_or_default()}
                        help={AttrValue::Static("The name Mailroom sends in EHLO; leave empty for this machine's name.")}
                        errors={errors("client_hostname")} warnings={warnings("client_hostname")}
                        on_input={set(Field::ClientHostname)} on_blur={touch("client_hostname")} />
                </details>

                <div class="actions">
                    <button type="button" id="test-button" onclick={open_test}>{ "Send test email" }</button>
                    <button type="submit" id="save-button" class="primary" disabled={*saving}>{ if *saving { "Saving…" } else { "Save" } }</button>
                </div>
            </form>

            if office365 && oauth {
                <Checklist client_id={s.client_id.clone().unwrap_or_default()} username={username.clone()}
                    sender={s.sender_email.clone()} sp_object_id={form.sp_object_id.clone()} on_sp_input={set(Field::SpObjectId)} />
            }
        </main>
        if *test_open {
            <TestDialog settings={form.to_settings()} default_recipient={AttrValue::from(username.clone())}
                on_close={close_test} on_unauthorized={p.on_unauthorized.clone()} />
        }
        </>
    }
}
