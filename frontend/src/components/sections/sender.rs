//! The sender: display name, address, and the Send-As confirmation when the
//! address is not the username's.

use mailroom_shared::{powershell as ps, Provider};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::super::code::Command;
use super::super::field::TextField;
use super::{set, touch, SectionProps};
use crate::state::{Action, Field};

/// Sender name and email, and Send-As.
#[function_component(SenderSection)]
pub fn sender_section(p: &SectionProps) -> Html {
    let form = &p.form;
    let s = &form.settings;
    let report = form.report();
    let username = s.username.clone().unwrap_or_default();
    let on_send_as = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            form.dispatch(Action::SendAs(
                e.target_unchecked_into::<HtmlInputElement>().checked(),
            ))
        })
    };
    html! {
        <section aria-labelledby="sender-heading">
            <h2 id="sender-heading">{ "Sender" }</h2>
            <TextField id="sender_name" label="Sender name" value={s.sender_name.clone()}
                help={AttrValue::Static("The display name recipients see.")}
                errors={form.errors_for(&report, Field::SenderName)} warnings={form.warnings_for(&report, Field::SenderName)}
                on_input={set(form, Field::SenderName)} on_blur={touch(form, Field::SenderName)} />
            <TextField id="sender_email" label="Sender email" value={s.sender_email.clone()} input_type="email"
                help={AttrValue::Static(if s.provider == Provider::Office365 { "The username above, or a shared mailbox the username may send as." } else { "The From address." })}
                errors={form.errors_for(&report, Field::SenderEmail)} warnings={form.warnings_for(&report, Field::SenderEmail)}
                on_input={set(form, Field::SenderEmail)} on_blur={touch(form, Field::SenderEmail)} />
            if s.needs_send_as() {
                <div class="send-as" id="send-as">
                    <label class="checkbox" for="send_as_confirmed">
                        <input type="checkbox" id="send_as_confirmed" checked={s.send_as_confirmed} onchange={on_send_as} />
                        { format!("The username {username} has Send-As rights on this mailbox") }
                    </label>
                    <p class="help">{ "If it does not yet, grant them in Exchange Online PowerShell:" }</p>
                    <Command command={ps::add_recipient_permission(&s.sender_email, &username)} />
                </div>
            }
        </section>
    }
}
