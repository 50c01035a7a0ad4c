//! The advanced server settings: host, port, security and EHLO name, in a
//! collapsible section that opens by itself when one of them needs attention.

use mailroom_shared::{catalogue, EnumId, Security};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::{described_by, FieldMessages, TextField};
use super::{set, touch};
use crate::state::{Action, Field, FormState};

#[derive(Properties, PartialEq)]
pub struct AdvancedSectionProps {
    /// The form.
    pub form: UseReducerHandle<FormState>,
    /// Whether the section is open.
    pub open: bool,
    /// The user opened or closed it.
    pub on_toggle: Callback<bool>,
}

/// Host, port, security, client host name.
#[function_component(AdvancedSection)]
pub fn advanced_section(p: &AdvancedSectionProps) -> Html {
    let form = &p.form;
    let s = &form.settings;
    let report = form.report();
    let errors = |f: Field| form.errors_for(&report, f);
    let warnings = |f: Field| form.warnings_for(&report, f);
    let on_security = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            form.dispatch(Action::Security(Security::from_id(&v).unwrap_or_default()));
        })
    };
    let ontoggle = {
        let cb = p.on_toggle.clone();
        Callback::from(move |e: Event| {
            cb.emit(
                e.target_unchecked_into::<web_sys::HtmlDetailsElement>()
                    .open(),
            )
        })
    };
    let (security_errors, security_warnings) = (errors(Field::Security), warnings(Field::Security));
    html! {
        <details id="advanced" open={p.open} {ontoggle}>
            <summary>{ "Advanced server settings" }</summary>
            <TextField id="host" label="SMTP host" value={s.host.clone()}
                help={AttrValue::Static("The server's host name or IP address.")}
                errors={errors(Field::Host)} warnings={warnings(Field::Host)}
                on_input={set(form, Field::Host)} on_blur={touch(form, Field::Host)} />
            <TextField id="port" label="Port" value={form.port_text.clone()} inputmode={AttrValue::Static("numeric")}
                help={AttrValue::Static("587 for STARTTLS, 465 for implicit TLS.")}
                errors={errors(Field::Port)} warnings={warnings(Field::Port)}
                on_input={set(form, Field::Port)} on_blur={touch(form, Field::Port)} />
            <div class={classes!("field", (!security_errors.is_empty()).then_some("invalid"))}>
                <label for="security">{ "Security" }</label>
                <select id="security" name="security" onchange={on_security}
                    aria-invalid={if security_errors.is_empty() { "false" } else { "true" }}
                    aria-describedby={described_by("security", false, !security_errors.is_empty(), !security_warnings.is_empty())}>
                    { for Security::ALL.iter().copied().map(|x| html! {
                        <option value={x.id()} selected={x == s.security}>{ catalogue::security_label(x) }</option>
                    }) }
                </select>
                <FieldMessages id="security" errors={security_errors} warnings={security_warnings} />
            </div>
            <TextField id="client_hostname" label="Client host name (optional)" value={s.client_hostname.clone().unwrap_or_default()}
                help={AttrValue::Static("The name Mailroom sends in EHLO; leave empty for this machine's name.")}
                errors={errors(Field::ClientHostname)} warnings={warnings(Field::ClientHostname)}
                on_input={set(form, Field::ClientHostname)} on_blur={touch(form, Field::ClientHostname)} />
        </details>
    }
}
