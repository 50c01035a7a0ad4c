//! Exchange replies mapped to a stage, a code and the exact fix, as a table.

use super::*;

/// One scripted Exchange reply and what the result must say about it.
struct ReplyCase {
    /// What the server does differently.
    smtp: fn(&mut SmtpConfig),
    /// What the settings do differently.
    settings: fn(&mut Settings),
    stage: Stage,
    code: &'static str,
    /// Texts the hint must contain.
    hint: fn() -> Vec<String>,
}

fn no_change<T>(_: &mut T) {}

fn reply_cases() -> Vec<ReplyCase> {
    vec![
        ReplyCase {
            smtp: |c| c.auth_reply = Some("535 5.7.3 Authentication unsuccessful [X]".into()),
            settings: no_change,
            stage: Stage::Auth,
            code: "5.7.3",
            hint: || {
                vec![
                    format!("New-ServicePrincipal -AppId {CLIENT}"),
                    format!("Add-MailboxPermission -Identity \"{}\"", mailer()),
                    "Enterprise application's Object ID".into(),
                ]
            },
        },
        ReplyCase {
            smtp: |c| {
                c.auth_reply = Some("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled".into())
            },
            settings: no_change,
            stage: Stage::Auth,
            code: "5.7.139",
            hint: || vec!["Set-TransportConfig -SmtpClientAuthenticationDisabled $false".into()],
        },
        ReplyCase {
            smtp: |c| {
                c.auth_reply = Some("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.".into())
            },
            settings: no_change,
            stage: Stage::Auth,
            code: "5.7.139",
            hint: || {
                vec![format!(
                    "Set-CASMailbox -Identity \"{}\" -SmtpClientAuthenticationDisabled $false",
                    mailer()
                )]
            },
        },
        ReplyCase {
            smtp: |c| {
                c.auth_reply = Some(
                    "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
                        .into(),
                )
            },
            settings: |s| {
                s.auth_method = AuthMethod::Password;
                s.password = Some("app-password".into());
            },
            stage: Stage::Auth,
            code: "5.7.139",
            hint: || vec!["Move to OAuth".into()],
        },
        ReplyCase {
            smtp: |c| c.auth_reply = Some("501 5.5.124 Invalid XOAUTH2 auth data".into()),
            settings: no_change,
            stage: Stage::Auth,
            code: "5.5.124",
            hint: Vec::new,
        },
        ReplyCase {
            smtp: |c| {
                c.mail_reply = Some("530 5.7.57 Client not authenticated to send mail.".into())
            },
            settings: no_change,
            stage: Stage::Send,
            code: "5.7.57",
            hint: || vec!["authentication method".into()],
        },
        ReplyCase {
            smtp: no_change,
            settings: |s| {
                s.sender_email = addr("notifications", "contoso.com");
                s.send_as_confirmed = true;
            },
            stage: Stage::Send,
            code: "5.7.60",
            hint: || {
                vec![format!(
                    "Add-RecipientPermission -Identity \"{}\" -Trustee \"{}\" -AccessRights SendAs",
                    addr("notifications", "contoso.com"),
                    mailer()
                )]
            },
        },
        ReplyCase {
            smtp: |c| {
                c.data_reply = Some("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message".into())
            },
            settings: no_change,
            stage: Stage::Send,
            code: "5.2.0",
            hint: || vec!["Add-RecipientPermission".into()],
        },
        ReplyCase {
            smtp: |c| c.data_reply = Some("430 4.2.0 STOREDRV; mailbox logon failure".into()),
            settings: no_change,
            stage: Stage::Send,
            code: "4.2.0",
            hint: || vec!["licensed mailbox".into()],
        },
    ]
}

#[tokio::test]
async fn exchange_replies_map_to_stage_code_and_powershell_fix() {
    for (i, case) in reply_cases().into_iter().enumerate() {
        let mut config = SmtpConfig::default();
        (case.smtp)(&mut config);
        let (r, _) = scripted(config, case.settings).await;
        assert_fails(&r, case.stage, Some(case.code));
        let hint = r.hint.clone().unwrap_or_default();
        for needle in (case.hint)() {
            assert!(
                hint.contains(&needle),
                "case {i} ({}): {needle} not in {hint}",
                case.code
            );
        }
    }
}

#[tokio::test]
async fn send_as_granted_sender_is_delivered() {
    let shared = addr("notifications", "contoso.com");
    let mut config = SmtpConfig::default();
    config.send_as.insert((mailer(), shared.clone()));
    let sender = shared.clone();
    let (r, rig) = scripted(config, move |s| {
        s.sender_email = sender;
        s.send_as_confirmed = true;
    })
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(rig.smtp.messages()[0].mail_from, shared);
}
