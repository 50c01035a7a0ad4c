//! The advanced server settings: host, port, security and EHLO name, in a
//! collapsible section that opens by itself when one of them needs attention.

use mailroom_shared::{catalogue, EnumId, Security};
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::super::field::{described_by, field_messages};
use super::{Look, Section};
use crate::state::{Action, Field};

/// Host, port, security, client host name; `open` and `on_toggle` for the
/// collapsible section.
pub fn advanced_section(sec: &Section, open: bool, on_toggle: Callback<bool>) -> Html {
    let form = sec.form;
    let s = &form.settings;
    let errors = |f: Field| sec.errors(f);
    let warnings = |f: Field| sec.warnings(f);
    let on_security = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            form.dispatch(Action::Security(Security::from_id(&v).unwrap_or_default()));
        })
    };
    let ontoggle = {
        let cb = on_toggle;
        Callback::from(move |e: Event| {
            cb.emit(
                e.target_unchecked_into::<web_sys::HtmlDetailsElement>()
                    .open(),
            )
        })
    };
    let (security_errors, security_warnings) = (errors(Field::Security), warnings(Field::Security));
    if s.transport == mailroom_shared::Transport::Graph {
        return html! {
            <p class="help" id="advanced-unused">{ "Microsoft Graph needs no SMTP server: host, port and security are not used." }</p>
        };
    }
    html! {
        <details id="advanced" {open} {ontoggle}>
            <summary>{ "Advanced server settings" }</summary>
            { sec.text(Field::Host, "SMTP host", s.host.clone(), "The server's host name or IP address.", Look::default()) }
            { sec.text(Field::Port, "Port", form.port_text.clone(), "587 for STARTTLS, 465 for implicit TLS.",
                Look { inputmode: Some(AttrValue::Static("numeric")), ..Look::default() }) }
            <div class={classes!("field", (!security_errors.is_empty()).then_some("invalid"))}>
                <label for="security">{ "Security" }</label>
                <select id="security" name="security" onchange={on_security}
                    aria-invalid={if security_errors.is_empty() { "false" } else { "true" }}
                    aria-describedby={described_by("security", false, !security_errors.is_empty(), !security_warnings.is_empty())}>
                    { for Security::ALL.iter().copied().map(|x| html! {
                        <option value={x.id()} selected={x == s.security}>{ catalogue::security_label(x) }</option>
                    }) }
                </select>
                { field_messages("security", &security_errors, &security_warnings) }
            </div>
            { sec.text(Field::ClientHostname, "Client host name (optional)", s.client_hostname.clone().unwrap_or_default(),
                "The name Mailroom sends in EHLO; leave empty for this machine's name.", Look::default()) }
        </details>
    }
}
