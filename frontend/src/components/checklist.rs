//! The Office 365 OAuth setup checklist: the guide's four steps (SMTP) or
//! the two ways to grant Graph's Mail.Send for one mailbox, then a Sent
//! Items retention policy, with the PowerShell lines filled in from the form.

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
    /// The way out is Microsoft Graph: its permission steps instead of SMTP's.
    pub graph: bool,
    /// The app proves itself with a certificate: upload it instead of making a secret.
    pub certificate: bool,
}

/// The service principal's object ID, typed to fill the commands in.
fn sp_field(p: &ChecklistProps) -> Html {
    text_field(TextFieldProps {
        id: AttrValue::Static("sp_object_id"),
        label: AttrValue::Static("Service principal object ID (optional)"),
        value: p.sp_object_id.clone(),
        help: Some(AttrValue::Static("Enterprise applications › your app › Overview › Object ID. This is the Enterprise application's Object ID, not the App registration's: using the wrong one is a common cause of 535 5.7.3.")),
        placeholder: Some(AttrValue::Static("00000000-0000-0000-0000-000000000000")),
        on_input: p.on_sp_input.clone(),
        ..TextFieldProps::default()
    })
}

/// The setup steps (a view function, not a component: smaller): for SMTP
/// the guide's four, for Graph the two correct ways to grant Mail.Send.
pub fn checklist(p: &ChecklistProps) -> Html {
    html! {
        <section class="checklist" aria-labelledby="checklist-heading">
            <h2 id="checklist-heading">{ if p.graph { "Setup checklist for Office 365 OAuth over Microsoft Graph" } else { "Setup checklist for Office 365 OAuth" } }</h2>
            <ol>
                <li>
                    <h3>{ "Register the application" }</h3>
                    <p>{ "Microsoft Entra admin center › App registrations › New registration: a single-tenant app (for example “Mailroom SMTP”). Its Overview page shows the Directory (tenant) ID and the Application (client) ID." }</p>
                </li>
                if !p.graph {
                    <li>
                        <h3>{ "Grant the API permission" }</h3>
                        <p>{ "API permissions › Add a permission › APIs my organization uses › Office 365 Exchange Online › Application permissions › SMTP.SendAsApp. Then Grant admin consent for your tenant." }</p>
                    </li>
                }
                if p.certificate {
                    <li id="checklist-certificate">
                        <h3>{ "Upload the certificate" }</h3>
                        <p>{ "Download the public certificate from the form above, then Certificates & secrets › Certificates › Upload certificate. The portal then lists its thumbprint, which must match the SHA-1 thumbprint above. The private key never leaves Mailroom." }</p>
                    </li>
                } else {
                    <li>
                        <h3>{ "Create a client secret" }</h3>
                        <p>{ "Certificates & secrets › New client secret. Copy the Value column right away: it is shown only once. The Secret ID is not the secret. Note its Expires date: Mailroom warns 30 days before." }</p>
                    </li>
                }
                if p.graph {
                    <li>
                        <h3>{ "Choose how the app may send: only as its mailbox" }</h3>
                        <p class="notice" id="consent-warning" role="note">{ "Microsoft Graph's Mail.Send granted in Entra with admin consent alone lets the app send as every mailbox in the tenant. Use one of the two ways below, never consent alone." }</p>
                    </li>
                    <li id="graph-way-rbac">
                        <h3>{ "Way 1 (recommended): RBAC for Applications, without Entra consent" }</h3>
                        <p>{ "Do not grant Mail.Send in Entra: RBAC grants add to consent, so a consented Mail.Send would still reach every mailbox. In Exchange Online PowerShell, register the app, make a scope that holds only the mailbox, and give the app the Application Mail.Send role in that scope:" }</p>
                        { sp_field(p) }
                        { command_html(ps::connect()) }
                        { command_html(&ps::new_service_principal(&p.client_id, &p.sp_object_id)) }
                        { command_html(&ps::new_management_scope(&p.username)) }
                        { command_html(&ps::new_mail_send_assignment(&p.client_id)) }
                        { command_html(&ps::test_service_principal_authorization(&p.client_id, &p.username)) }
                    </li>
                    <li id="graph-way-policy">
                        <h3>{ "Way 2: Entra consent plus an Application Access Policy" }</h3>
                        <p>{ "API permissions › Add a permission › Microsoft Graph › Application permissions › Mail.Send, then Grant admin consent. Then limit it to a mail-enabled security group that holds the mailbox:" }</p>
                        { command_html(&ps::new_application_access_policy(&p.client_id, "")) }
                        <p>{ "Do not stop after the consent: it is the policy that limits the app to the group's mailboxes." }</p>
                    </li>
                    if p.needs_send_as {
                        <li>
                            <h3>{ "Send-As rights on the sender" }</h3>
                            <p>{ "The sender differs from the username, so give the username Send-As rights on the sender:" }</p>
                            { command_html(&ps::add_recipient_permission(&p.sender, &p.username)) }
                        </li>
                    }
                } else {
                    <li>
                        <h3>{ "Register the service principal in Exchange Online" }</h3>
                        { sp_field(p) }
                        <p>{ "In Exchange Online PowerShell, run:" }</p>
                        { command_html(ps::connect()) }
                        { command_html(&ps::new_service_principal(&p.client_id, &p.sp_object_id)) }
                        { command_html(&ps::add_mailbox_permission(&p.username, &p.sp_object_id)) }
                        if p.needs_send_as {
                            <p>{ "The sender differs from the username, so also give the username Send-As rights on the sender:" }</p>
                            { command_html(&ps::add_recipient_permission(&p.sender, &p.username)) }
                        }
                    </li>
                }
                <li id="checklist-sent-items">
                    <h3>{ "Keep the mailbox from filling up" }</h3>
                    <p>{ "Exchange keeps a copy of every message Mailroom sends in the mailbox's Sent Items, and a full mailbox sends nothing (delivery then pauses, and Mailroom says why). For a mailbox that only sends, delete Sent Items after 30 days:" }</p>
                    { for ps::sent_items_retention(&p.username).iter().map(|c| command_html(c)) }
                </li>
            </ol>
        </section>
    }
}
