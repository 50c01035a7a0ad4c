//! Provider and authentication method, with the basic-authentication
//! retirement notice for Office 365 with a password.

use mailroom_shared::validate::{uses_retiring_basic_auth, BASIC_AUTH_RETIREMENT, SWITCH_TO_OAUTH};
use mailroom_shared::{catalogue, AuthMethod, EnumId, Provider, Transport};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::field_messages;
use super::Section;
use crate::state::{Action, Field};

/// The provider select and the authentication radios; `on_provider` hears
/// of a new provider (the form opens the advanced section for Other).
pub fn provider_section(sec: &Section, on_provider: Callback<Provider>) -> Html {
    let form = sec.form;
    let s = &form.settings;
    let auth_errors = sec.errors(Field::AuthMethod);
    let info = catalogue::provider(s.provider);
    let on_provider = {
        let (form, cb) = (form.clone(), on_provider);
        Callback::from(move |e: Event| {
            let p = Provider::from_id(&e.target_unchecked_into::<HtmlSelectElement>().value())
                .unwrap_or(Provider::Other);
            form.dispatch(Action::Provider(p));
            cb.emit(p);
        })
    };
    let radios = info.auth_methods.iter().map(|m| {
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
    let transport_errors = sec.errors(Field::Transport);
    let ways = Transport::ALL.iter().map(|t| {
        let transport = *t;
        let id = format!("transport-{}", transport.id());
        let help = format!("{id}-help");
        let (label, when) = catalogue::transport_label(transport);
        let form = form.clone();
        let onchange = Callback::from(move |_: Event| form.dispatch(Action::Transport(transport)));
        html! {
            <label class="radio" for={id.clone()}>
                <input type="radio" id={id} name="transport" value={transport.id()}
                    checked={s.transport == transport} aria-describedby={help.clone()} {onchange} />
                <strong>{ label }</strong>
                <span class="help" id={help}>{ when }</span>
            </label>
        }
    });
    let offers_graph =
        s.provider == Provider::Office365 && s.auth_method == AuthMethod::OAuth2ClientCredentials;
    html! {
        <>
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
            <fieldset id="auth_method" aria-invalid={if auth_errors.is_empty() { "false" } else { "true" }}
                aria-describedby={(!auth_errors.is_empty()).then_some("auth_method-error")}>
                <legend>{ "Authentication method" }</legend>
                { for radios }
            </fieldset>
            { field_messages("auth_method", &auth_errors, &[]) }
            if offers_graph || s.transport == Transport::Graph {
                <fieldset id="transport" class="ways" aria-invalid={if transport_errors.is_empty() { "false" } else { "true" }}
                    aria-describedby={(!transport_errors.is_empty()).then_some("transport-error")}>
                    <legend>{ "Way out" }</legend>
                    { for ways }
                </fieldset>
                { field_messages("transport", &transport_errors, &[]) }
            }
            // The server's rule for its banner: Office 365, or its host
            // typed under another provider.
            if uses_retiring_basic_auth(s) {
                <div class="notice retirement" id="retirement-notice" role="note">
                    <h3>{ "Basic authentication is being retired" }</h3>
                    <ul>
                        { for BASIC_AUTH_RETIREMENT.iter().map(|m| html! {
                            <li><strong>{ m.when }{ ": " }</strong>{ m.what }</li>
                        }) }
                    </ul>
                    <p>{ SWITCH_TO_OAUTH }</p>
                </div>
            }
        </section>
        </>
    }
}
