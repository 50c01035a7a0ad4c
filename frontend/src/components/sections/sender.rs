//! The sender: display name, address, and the Send-As confirmation when the
//! address is not the username's.

use mailroom_shared::{powershell as ps, Provider};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::{Look, Section};
use crate::markup::command_html;
use crate::state::{Action, Field};

/// Sender name and email, and Send-As.
pub fn sender_section(sec: &Section) -> Html {
    let form = sec.form;
    let s = &form.settings;
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
            { sec.text(Field::SenderName, "Sender name", s.sender_name.clone(), "The display name recipients see.", Look::default()) }
            { sec.text(Field::SenderEmail, "Sender email", s.sender_email.clone(),
                if s.provider == Provider::Office365 { "The username above, or a shared mailbox the username may send as." } else { "The From address." },
                Look { input_type: "email", ..Look::default() }) }
            if s.needs_send_as() {
                <div class="send-as" id="send-as">
                    <label class="checkbox" for="send_as_confirmed">
                        <input type="checkbox" id="send_as_confirmed" checked={s.send_as_confirmed} onchange={on_send_as} />
                        { ["The username ", username.as_str(), " has Send-As rights on this mailbox"].concat() }
                    </label>
                    <p class="help">{ "If it does not yet, grant them in Exchange Online PowerShell:" }</p>
                    { command_html(&ps::add_recipient_permission(&s.sender_email, &username)) }
                </div>
            }
        </section>
    }
}
