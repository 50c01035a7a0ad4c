//! The Exchange Online PowerShell lines of the setup guide, filled in from the
//! settings; shared by the server's hints and the form's checklist.

/// Placeholder shown when the client ID is not known yet.
pub const CLIENT_ID_PLACEHOLDER: &str = "<CLIENT_ID>";
/// Placeholder shown when the service principal's object ID is not known yet.
pub const SP_PLACEHOLDER: &str = "<SERVICE_PRINCIPAL_OBJECT_ID>";
/// Placeholder shown when the mailbox is not known yet.
pub const MAILBOX_PLACEHOLDER: &str = "<MAILBOX>";

fn or<'a>(value: &'a str, placeholder: &'a str) -> &'a str {
    let v = value.trim();
    if v.is_empty() {
        placeholder
    } else {
        v
    }
}

/// `Connect-ExchangeOnline`, the first line of step 4.
pub fn connect() -> &'static str {
    "Connect-ExchangeOnline"
}

/// Registers the app as a service principal in Exchange (step 4).
pub fn new_service_principal(client_id: &str, sp_object_id: &str) -> String {
    format!(
        "New-ServicePrincipal -AppId {} -ServiceId {} -DisplayName \"Mailroom SMTP\"",
        or(client_id, CLIENT_ID_PLACEHOLDER),
        or(sp_object_id, SP_PLACEHOLDER)
    )
}

/// Gives the service principal full access to the sending mailbox (step 4).
pub fn add_mailbox_permission(mailbox: &str, sp_object_id: &str) -> String {
    format!(
        "Add-MailboxPermission -Identity \"{}\" -User {} -AccessRights FullAccess",
        or(mailbox, MAILBOX_PLACEHOLDER),
        or(sp_object_id, SP_PLACEHOLDER)
    )
}

/// Lets `trustee` send as `sender` (fixes 550 5.7.60 and SendAsDenied).
pub fn add_recipient_permission(sender: &str, trustee: &str) -> String {
    format!(
        "Add-RecipientPermission -Identity \"{}\" -Trustee \"{}\" -AccessRights SendAs",
        or(sender, "<SENDER>"),
        or(trustee, "<USERNAME>")
    )
}

/// Turns SMTP AUTH back on for one mailbox (fixes 535 5.7.139 … for the Mailbox).
pub fn enable_smtp_auth_mailbox(mailbox: &str) -> String {
    format!(
        "Set-CASMailbox -Identity \"{}\" -SmtpClientAuthenticationDisabled $false",
        or(mailbox, MAILBOX_PLACEHOLDER)
    )
}

/// Turns SMTP AUTH back on for the tenant (fixes 535 5.7.139 … for the Tenant).
pub fn enable_smtp_auth_tenant() -> &'static str {
    "Set-TransportConfig -SmtpClientAuthenticationDisabled $false"
}

/// Graph, way 1 (RBAC for Applications, no Entra consent for `Mail.Send`):
/// a management scope holding only the sending mailbox.
pub fn new_management_scope(mailbox: &str) -> String {
    format!(
        "New-ManagementScope -Name \"Mailroom senders\" -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{}'\"",
        or(mailbox, MAILBOX_PLACEHOLDER)
    )
}

/// Graph, way 1: the "Application Mail.Send" role for the app, limited to
/// that scope.
pub fn new_mail_send_assignment(client_id: &str) -> String {
    format!(
        "New-ManagementRoleAssignment -App {} -Role \"Application Mail.Send\" -CustomResourceScope \"Mailroom senders\"",
        or(client_id, CLIENT_ID_PLACEHOLDER)
    )
}

/// Graph, way 2 (Entra consent for `Mail.Send`): an Application Access
/// Policy limiting the app to a mail-enabled group's mailboxes.
pub fn new_application_access_policy(client_id: &str, group: &str) -> String {
    format!(
        "New-ApplicationAccessPolicy -AppId {} -PolicyScopeGroupId \"{}\" -AccessRight RestrictAccess -Description \"Mailroom may send only as these mailboxes\"",
        or(client_id, CLIENT_ID_PLACEHOLDER),
        or(group, "<MAIL_ENABLED_GROUP>")
    )
}

/// Graph: checks what the policy or the role lets the app do for a mailbox.
pub fn test_service_principal_authorization(client_id: &str, mailbox: &str) -> String {
    format!(
        "Test-ServicePrincipalAuthorization -Identity {} -Resource \"{}\"",
        or(client_id, CLIENT_ID_PLACEHOLDER),
        or(mailbox, MAILBOX_PLACEHOLDER)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn lines_are_filled_in_or_show_placeholders() {
        assert_eq!(
            new_service_principal("6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab", ""),
            "New-ServicePrincipal -AppId 6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab -ServiceId <SERVICE_PRINCIPAL_OBJECT_ID> -DisplayName \"Mailroom SMTP\""
        );
        let mailbox = format!("{}@{}", "mailer", "contoso.com");
        assert_eq!(
            add_mailbox_permission(&mailbox, "1111"),
            format!(
                "Add-MailboxPermission -Identity \"{mailbox}\" -User 1111 -AccessRights FullAccess"
            )
        );
        assert!(enable_smtp_auth_mailbox("").contains("<MAILBOX>"));
    }
}
