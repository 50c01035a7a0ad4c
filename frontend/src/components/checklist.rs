//! The Office 365 OAuth setup checklist: the guide's four steps, with the
//! PowerShell lines filled in from the form.

use mailroom_shared::powershell as ps;
use yew::prelude::*;

use super::field::{text_field, TextFieldProps};
use crate::markup::command_html;

/// What the checklist fills in.
pub struct ChecklistProps {
    /// The Application (client) ID typed so far.
    pub client_id: AttrValue,
    /// The username (the licensed mailbox).
    pub username: AttrValue,
    /// The sender email.
    pub sender: AttrValue,
    /// The username needs Send-As rights on the sender (`Settings::needs_send_as`).
    pub needs_send_as: bool,
    /// The optional service principal object ID.
    pub sp_object_id: AttrValue,
    /// Called as the object ID is typed.
    pub on_sp_input: Callback<String>,
}

/// The four setup steps (a view function, not a component: smaller).
pub fn checklist(p: &ChecklistProps) -> Html {
    html! {
        <section class="checklist" aria-labelledby="checklist-heading">
            <h2 id="checklist-heading">{ "Setup checklist for Office 365 OAuth" }</h2>
            <ol>
                <li>
                    <h3>{ "Register the application" }</h3>
                    <p>{ "Microsoft Entra admin center › App registrations › New registration: a single-tenant app (for example “Mailroom SMTP”). Its Overview page shows the Directory (tenant) ID and the Application (client) ID." }</p>
                </li>
                <li>
                    <h3>{ "Grant the API permission" }</h3>
                    <p>{ "API permissions › Add a permission › APIs my organization uses › Office 365 Exchange Online › Application permissions › SMTP.SendAsApp. Then Grant admin consent for your tenant." }</p>
                </li>
                <li>
                    <h3>{ "Create a client secret" }</h3>
                    <p>{ "Certificates & secrets › New client secret. Copy the Value column right away: it is shown only once. The Secret ID is not the secret." }</p>
                </li>
                <li>
                    <h3>{ "Register the service principal in Exchange Online" }</h3>
                    <p>{ "In Exchange Online PowerShell, run:" }</p>
                    { command_html(ps::connect()) }
                    { command_html(&ps::new_service_principal(&p.client_id, &p.sp_object_id)) }
                    { command_html(&ps::add_mailbox_permission(&p.username, &p.sp_object_id)) }
                    if p.needs_send_as {
                        <p>{ "The sender differs from the username, so also give the username Send-As rights on the sender:" }</p>
                        { command_html(&ps::add_recipient_permission(&p.sender, &p.username)) }
                    }
                    { text_field(TextFieldProps {
                        id: AttrValue::Static("sp_object_id"),
                        label: AttrValue::Static("Service principal object ID (optional)"),
                        value: p.sp_object_id.clone(),
                        help: Some(AttrValue::Static("Enterprise applications › your app › Overview › Object ID. This is the Enterprise application's Object ID, not the App registration's: using the wrong one is a common cause of 535 5.7.3.")),
                        placeholder: Some(AttrValue::Static("00000000-0000-0000-0000-000000000000")),
                        on_input: p.on_sp_input.clone(),
                        ..TextFieldProps::default()
                    }) }
                </li>
            </ol>
        </section>
    }
}
