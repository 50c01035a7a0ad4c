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

/// `value` inside a PowerShell double-quoted string: `$` would start a
/// variable (`pay$roll@contoso.com` became `pay@contoso.com`, another
/// mailbox), and a backtick or `"` would escape or end the string; each
/// gets PowerShell's escape character, the backtick.
fn in_quotes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '`' | '$' | '"') {
            out.push('`');
        }
        out.push(c);
    }
    out
}

/// `value` inside an OPATH filter's single quotes: a `'` (as in
/// `o'brien@contoso.com`) is doubled, else it ends the value and the
/// filter is refused.
fn in_filter_quotes(value: &str) -> String {
    value.replace('\'', "''")
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
        in_quotes(or(mailbox, MAILBOX_PLACEHOLDER)),
        or(sp_object_id, SP_PLACEHOLDER)
    )
}

/// Lets `trustee` send as `sender` (fixes 550 5.7.60 and SendAsDenied).
pub fn add_recipient_permission(sender: &str, trustee: &str) -> String {
    format!(
        "Add-RecipientPermission -Identity \"{}\" -Trustee \"{}\" -AccessRights SendAs",
        in_quotes(or(sender, "<SENDER>")),
        in_quotes(or(trustee, "<USERNAME>"))
    )
}

/// Turns SMTP AUTH back on for one mailbox (fixes 535 5.7.139 … for the Mailbox).
pub fn enable_smtp_auth_mailbox(mailbox: &str) -> String {
    format!(
        "Set-CASMailbox -Identity \"{}\" -SmtpClientAuthenticationDisabled $false",
        in_quotes(or(mailbox, MAILBOX_PLACEHOLDER))
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
        in_quotes(&in_filter_quotes(or(mailbox, MAILBOX_PLACEHOLDER)))
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
        in_quotes(or(group, "<MAIL_ENABLED_GROUP>"))
    )
}

/// Graph: checks what the policy or the role lets the app do for a mailbox.
pub fn test_service_principal_authorization(client_id: &str, mailbox: &str) -> String {
    format!(
        "Test-ServicePrincipalAuthorization -Identity {} -Resource \"{}\"",
        or(client_id, CLIENT_ID_PLACEHOLDER),
        in_quotes(or(mailbox, MAILBOX_PLACEHOLDER))
    )
}

/// The name of the Sent Items retention tag of [`sent_items_retention`].
pub const SENT_ITEMS_TAG: &str = "Mailroom Sent Items 30 days";
/// The name of the retention policy of [`sent_items_retention`].
pub const SENT_ITEMS_POLICY: &str = "Mailroom sending mailbox";

/// Keeps a sending mailbox from filling up: Exchange keeps a copy of every
/// message sent over SMTP AUTH or Graph in its Sent Items, and a full
/// mailbox may send nothing. A tag that deletes Sent Items after 30 days,
/// a policy with it, that policy on the mailbox (it replaces the mailbox's
/// policy, so for a mailbox that only sends), and the assistant run at once
/// rather than within the week.
pub fn sent_items_retention(mailbox: &str) -> [String; 4] {
    let mailbox = in_quotes(or(mailbox, MAILBOX_PLACEHOLDER));
    [
        format!("New-RetentionPolicyTag \"{SENT_ITEMS_TAG}\" -Type SentItems -AgeLimitForRetention 30 -RetentionEnabled $true -RetentionAction DeleteAndAllowRecovery"),
        format!("New-RetentionPolicy \"{SENT_ITEMS_POLICY}\" -RetentionPolicyTagLinks \"{SENT_ITEMS_TAG}\""),
        format!("Set-Mailbox -Identity \"{mailbox}\" -RetentionPolicy \"{SENT_ITEMS_POLICY}\""),
        format!("Start-ManagedFolderAssistant -Identity \"{mailbox}\""),
    ]
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
        // The policy links the tag by its name, and the mailbox gets that policy.
        let [tag, policy, mailbox_line, assistant] = sent_items_retention(&mailbox);
        assert!(tag.starts_with("New-RetentionPolicyTag \"Mailroom Sent Items 30 days\" -Type SentItems -AgeLimitForRetention 30 "));
        assert!(
            policy.ends_with("-RetentionPolicyTagLinks \"Mailroom Sent Items 30 days\""),
            "{policy}"
        );
        assert!(
            policy.starts_with("New-RetentionPolicy \"Mailroom sending mailbox\""),
            "{policy}"
        );
        assert_eq!(
            mailbox_line,
            format!(
                "Set-Mailbox -Identity \"{mailbox}\" -RetentionPolicy \"Mailroom sending mailbox\""
            )
        );
        assert_eq!(
            assistant,
            format!("Start-ManagedFolderAssistant -Identity \"{mailbox}\"")
        );
        assert!(sent_items_retention("")[2].contains("<MAILBOX>"));
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
    #[test]
    fn addresses_are_quoted_as_powershell_and_opath_read_them() {
        // `$roll` was a variable, so the line named pay@contoso.com.
        let payroll = format!("{}@{}", "pay$roll", "contoso.com");
        let quoted = format!("{}@{}", "pay`$roll", "contoso.com");
        assert_eq!(
            enable_smtp_auth_mailbox(&payroll),
            format!(
                "Set-CASMailbox -Identity \"{quoted}\" -SmtpClientAuthenticationDisabled $false"
            )
        );
        for line in [
            add_mailbox_permission(&payroll, "1111"),
            add_recipient_permission(&payroll, &payroll),
            test_service_principal_authorization("2222", &payroll),
            new_application_access_policy("2222", &payroll),
            sent_items_retention(&payroll)[2].clone(),
            sent_items_retention(&payroll)[3].clone(),
        ] {
            assert!(line.contains(&format!("\"{quoted}\"")), "{line}");
            assert!(!line.contains(&payroll), "{line}");
        }
        // A ' is doubled inside the filter's quotes; the filter's own
        // quotes stay.
        let obrien = format!("{}@{}", "o'brien", "contoso.com");
        assert_eq!(
            new_management_scope(&obrien),
            format!("New-ManagementScope -Name \"Mailroom senders\" -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{}@{}'\"", "o''brien", "contoso.com")
        );
        // A backtick and a " are escaped with a backtick.
        assert!(add_recipient_permission("a`b\"c", "x").contains("\"a``b`\"c\""));
    }
}
