//! Turns Entra errors and SMTP replies into a sentence and the exact fix, with
//! PowerShell lines filled in from the settings (docs/REFERENCE.md tables).

use mailroom_shared::api::Stage;
use mailroom_shared::profiles::GRAPH_MAX_CONCURRENT;
use mailroom_shared::{catalogue, powershell as ps, AuthMethod, Settings};

use super::certificate::CertKey;
use super::entra::{Credential, TokenError, TokenRequest};
use super::graph::{GraphFailure, Unsendable};
use super::smtp::SmtpFailure;
use super::Timeouts;

/// What the result shows: stage, code, message, hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Where it stopped.
    pub stage: Stage,
    /// The most specific code.
    pub code: Option<String>,
    /// One sentence.
    pub message: String,
    /// The fix.
    pub hint: String,
    /// What delivery does about it: pause, defer or fail.
    pub kind: Kind,
}

/// What a failure means for the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// About this message, and it may work later: defer and retry.
    Temporary,
    /// About this message or recipient, for good: fail it.
    Permanent,
    /// Not about any one message (configuration, credentials, network): pause.
    Pause,
    /// The mailbox's sending quota: the message waits for the window without
    /// counting an attempt (docs/API.md §15).
    Quota,
}

/// Sorts a failure during a transaction (MAIL FROM, RCPT TO, DATA), using
/// Exchange's send-time replies (docs/REFERENCE.md).
pub fn classify(f: &SmtpFailure) -> Kind {
    match f {
        SmtpFailure::Reply { code, text, .. } => {
            let text = text.to_ascii_lowercase();
            // The mailbox's daily quota (554 5.2.0 or 5.2.2 …
            // SubmissionQuotaExceededException) is a wait, as a profile's
            // own `recipients_per_day` is (docs/API.md §15).
            if is_daily_quota(&text) || is_tenant_external_quota(&text) {
                Kind::Quota
            // A blocked sender, or sign-in trouble, is about the
            // configuration, not the message.
            } else if is_sender_blocked(&text)
                || is_sender_mailbox_full(&text)
                || *code == 530
                || *code == 535
            {
                Kind::Pause
            } else if (400..500).contains(code) {
                Kind::Temporary
            } else {
                Kind::Permanent
            }
        }
        SmtpFailure::Dropped(_) | SmtpFailure::Timeout(_) | SmtpFailure::Network(_, _) => {
            Kind::Temporary
        }
        _ => Kind::Pause,
    }
}

/// Whether a reply (lower case) is Microsoft blocking the sender itself,
/// whatever the message: the mailbox restricted (`5.1.8`), the account
/// banned for spam (`5.7.501` to `5.7.503`), or the whole tenant
/// (`5.7.705`). Every message would get the same, so delivery pauses.
fn is_sender_blocked(lower: &str) -> bool {
    ["5.1.8", "5.7.501", "5.7.502", "5.7.503", "5.7.705"]
        .iter()
        .any(|c| lower.contains(c))
}

/// Whether a reply (its enhanced code, its text in lower case) is Exchange's
/// Send-As refusal: `5.7.60`, or `SendAsDeniedException` after DATA.
fn is_send_as_denied(enhanced: Option<&str>, lower: &str) -> bool {
    enhanced == Some("5.7.60") || lower.contains("sendasdenied")
}

/// Whether a reply (lower case) is Exchange refusing to send because the
/// sending mailbox itself is full (`554 5.2.2 mailbox full;
/// STOREDRV.Submission.Exception:QuotaExceededException.MapiException…`):
/// every message would get the same until it has room, so delivery pauses.
/// The daily limit's `SubmissionQuotaExceededException` is another thing,
/// told apart first ([`is_daily_quota`]).
fn is_sender_mailbox_full(lower: &str) -> bool {
    lower.contains("quotaexceededexception") && !is_daily_quota(lower)
}

/// The fix for a sending mailbox that is full: Exchange keeps a copy of
/// every message sent (over SMTP AUTH or Graph) in its Sent Items.
fn sent_items_fix(user: &str) -> String {
    let [tag, policy, mailbox, assistant] = ps::sent_items_retention(user);
    format!("Free space in {user} (empty or archive its Sent Items), then keep it from filling again with a retention policy that deletes Sent Items after 30 days: `{tag}`, `{policy}`, `{mailbox}`, `{assistant}` (the policy replaces the mailbox's own, which suits a mailbox that only sends). Messages wait meanwhile; delivery resumes by itself once the mailbox has room, or at once when the settings are saved.")
}

/// Whether a reply (lower case) is Exchange's daily sending limit:
/// `SubmissionQuotaExceededException`, or the same in words.
fn is_daily_quota(lower: &str) -> bool {
    lower.contains("submissionquotaexceeded") || lower.contains("submission quota exceeded")
}

/// Whether a reply (lower case) is Exchange Online's tenant external
/// recipient rate limit (TERRL): `5.7.233` (`5.7.232` for a trial tenant),
/// a rolling 24 hours for the whole tenant, that frees by itself.
fn is_tenant_external_quota(lower: &str) -> bool {
    matches!(enhanced_code(lower).as_deref(), Some("5.7.232" | "5.7.233"))
        || lower.contains("external recipient rate limit")
}

fn sp_fix(s: &Settings) -> String {
    let client = s.client_id.as_deref().unwrap_or_default();
    let user = s.username.as_deref().unwrap_or_default();
    format!(
        "Register the app as a service principal in Exchange Online and give it the mailbox (step 4): `{}`, then `{}`. Use the Enterprise application's Object ID (Enterprise applications > your app > Object ID), not the App registration's. Also check that the username {} is that licensed mailbox.",
        ps::new_service_principal(client, ""),
        ps::add_mailbox_permission(user, ""),
        user
    )
}

/// The fix when Microsoft's login host or Graph presented a certificate
/// this machine does not trust: Microsoft's own always chain to a public
/// root, so something in between answered for it.
const TLS_INSPECTED: &str = "Something between this server and Microsoft presented a certificate this machine does not trust: usually a firewall or proxy that inspects TLS (Zscaler, Palo Alto, Fortinet and the like). Add that device's root certificate to this machine's trust store (Debian: copy it as a .crt file to /usr/local/share/ca-certificates/, run update-ca-certificates, then restart Mailroom), or have the login host and graph.microsoft.com exempted from inspection.";

/// The fix when the outgoing proxy (HTTPS_PROXY) could not be used.
const PROXY_FAILED: &str = "The outgoing proxy named by HTTPS_PROXY (or https_proxy, ALL_PROXY) in Mailroom's environment could not be used: check its address and port, and that it allows CONNECT to the login host and graph.microsoft.com on port 443; unset it if this server reaches Microsoft directly.";

/// The fix for a connection to Microsoft that failed, from its text.
fn connect_fix(detail: &str, otherwise: &str) -> String {
    if super::untrusted_certificate(detail) {
        TLS_INSPECTED.into()
    } else if detail.contains("tunnel error") {
        PROXY_FAILED.into()
    } else {
        otherwise.into()
    }
}

/// The fix when the token endpoint's answer is not Entra's.
const PROXY_IN_THE_WAY: &str = "A proxy or captive portal may be in the way, or --entra-authority points at the wrong server. Check the outgoing HTTPS path to the login host.";

/// Explains a token failure.
pub fn token_error(
    e: &TokenError,
    s: &Settings,
    req: &TokenRequest,
    timeouts: &Timeouts,
) -> Diagnosis {
    let authority = req.authority.as_str();
    let cert = match &req.credential {
        Credential::Certificate { key, .. } => Some(key.as_ref()),
        _ => None,
    };
    let diag = |code: Option<String>, message: String, hint: String| Diagnosis {
        stage: Stage::Token,
        // A token error is never about one message.
        kind: Kind::Pause,
        code,
        message,
        hint,
    };
    match e {
        TokenError::Entra { status, error, codes, description, trace_id, correlation_id } => {
            let code = codes.first().map(|c| format!("AADSTS{c}"));
            let (message, hint) = match cert {
                Some(cert) => certificate_text(codes.first().copied(), description, cert, s),
                None => None,
            }
            .unwrap_or_else(|| entra_text(codes.first().copied(), error, s));
            let ids = match (trace_id, correlation_id) {
                (None, None) => String::new(),
                (t, c) => format!(
                    " Microsoft support asks for these: trace ID {}, correlation ID {}.",
                    t.as_deref().unwrap_or("none"),
                    c.as_deref().unwrap_or("none")
                ),
            };
            let message = if message.is_empty() {
                format!("Microsoft Entra ID refused the token request ({error}, HTTP {status}): {description}")
            } else {
                message
            };
            diag(code, format!("{message}{ids}"), hint)
        }
        TokenError::ServerError(status) => diag(
            Some(status.to_string()),
            format!("Microsoft Entra ID answered with a server error (HTTP {status})."),
            "This is on Microsoft's side; try again in a few minutes, and check the Microsoft 365 service health page.".into(),
        ),
        TokenError::Redirect(status) => diag(
            Some(status.to_string()),
            format!("The token endpoint {authority} answered with a redirect (HTTP {status}); Mailroom does not follow redirects, so the client secret is only ever sent to the token URL itself."),
            "Point --entra-authority (or the cloud) at the login host itself, not at an address that redirects, and check for a proxy rewriting the request.".into(),
        ),
        TokenError::NotJson(status) => diag(
            Some(status.to_string()),
            format!("The token endpoint {authority} answered HTTP {status} with something other than Entra's JSON."),
            PROXY_IN_THE_WAY.into(),
        ),
        TokenError::TooLarge(status) => diag(
            Some(status.to_string()),
            format!(
                "The token endpoint {authority} answered HTTP {status} with more than {} KB; Entra's answer is a few KB, so Mailroom read no further.",
                super::MAX_ANSWER_BYTES / 1024
            ),
            PROXY_IN_THE_WAY.into(),
        ),
        TokenError::Dns(detail) => diag(
            None,
            format!("The login host of {authority} could not be resolved ({detail})."),
            "Check this server's DNS and that it may reach the Microsoft login host over HTTPS (port 443).".into(),
        ),
        TokenError::Connect(detail) => diag(
            None,
            format!("Could not connect to the token endpoint at {authority} ({detail})."),
            connect_fix(detail, "Check that this server may reach the Microsoft login host over HTTPS (port 443), through any proxy or firewall."),
        ),
        TokenError::Assertion(detail) => diag(
            None,
            format!("Mailroom could not sign the client assertion with the certificate's key ({detail})."),
            "Make a new certificate under Settings (Generate a certificate), upload it in Entra, test and save.".into(),
        ),
        TokenError::NoCertificate => diag(
            None,
            "The settings sign in with a certificate, but no certificate is stored for them.".into(),
            "Generate a certificate (or bring your own) under Settings, upload it in Entra (Certificates & secrets → Certificates → Upload), send a test email and save.".into(),
        ),
        TokenError::Timeout => diag(
            None,
            format!(
                "Microsoft Entra ID at {authority} did not answer within {} seconds.",
                timeouts.token.as_secs()
            ),
            "Check the outgoing HTTPS path (firewall, proxy) to the Microsoft login host, then try again.".into(),
        ),
    }
}

/// The certificate's own refusals (docs/REFERENCE.md, "Certificate credentials").
fn certificate_text(
    code: Option<u64>,
    description: &str,
    cert: &CertKey,
    s: &Settings,
) -> Option<(String, String)> {
    let client = s.client_id.as_deref().unwrap_or_default();
    let thumb = &cert.info.thumbprint_sha1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let expired = description
        .to_ascii_lowercase()
        .contains("key used is expired")
        || cert.not_after_unix < now;
    let upload = "Certificates & secrets → Certificates → Upload";
    Some(match code? {
        700027 if expired => (
            format!(
                "The certificate (thumbprint {thumb}) expired on {}, so Microsoft Entra ID no longer accepts it.",
                cert.info.not_after.get(..10).unwrap_or_default()
            ),
            format!("Generate a new certificate under Settings, upload it in the app registration ({upload}), send a test email and save; then remove the expired one from the app registration."),
        ),
        700027 => (
            format!("Microsoft Entra ID does not accept the client assertion: the certificate with thumbprint {thumb} is not registered for the application {client}."),
            format!("Download the certificate from Settings and upload it in the app registration {client} ({upload}); the portal then lists thumbprint {thumb}. Check that it is the same app registration as the Application (client) ID."),
        ),
        700024 => (
            "Microsoft Entra ID says the client assertion is outside its valid time: this server's clock is off.".into(),
            "Set this server's clock right (enable NTP: timedatectl set-ntp true) and try again; an assertion is valid for 10 minutes from the server's current time.".into(),
        ),
        700021 => (
            format!("Microsoft Entra ID says the client assertion's issuer and subject are not the Application (client) ID {client}."),
            "Copy the Application (client) ID again from the app registration's Overview page (step 1); the assertion names it as issuer and subject.".into(),
        ),
        _ => return None,
    })
}

fn entra_text(code: Option<u64>, error: &str, s: &Settings) -> (String, String) {
    let tenant = s.tenant_id.as_deref().unwrap_or_default();
    let client = s.client_id.as_deref().unwrap_or_default();
    let pair = |m: &str, h: &str| (m.to_string(), h.to_string());
    match code {
        Some(90002) => pair(
            &format!("Microsoft Entra ID does not know the tenant {tenant}."),
            "Copy the Directory (tenant) ID from the app registration's Overview page (step 1), and check that the Cloud matches where the tenant lives.",
        ),
        Some(900023) => pair(
            "Microsoft Entra ID says the tenant ID is malformed.",
            "Copy the Directory (tenant) ID again from the app registration's Overview page (step 1).",
        ),
        Some(700016) => pair(
            &format!("The application {client} was not found in the tenant."),
            "Copy the Application (client) ID from the app registration's Overview page (step 1); it must be registered in this same tenant.",
        ),
        Some(7000215) => pair(
            "Microsoft Entra ID rejected the client secret.",
            "Copy the secret's Value, not its Secret ID (step 3 of the setup): under Certificates & secrets the Value is shown only right after creation, so create a new secret if it is hidden.",
        ),
        Some(7000222) => pair(
            "The client secret has expired, so Microsoft Entra ID no longer accepts it.",
            "Create a new client secret under Certificates & secrets → Client secrets (step 3), paste its Value and its Expires date here, test and save; secrets last at most 24 months. Or switch to a certificate, which Mailroom can make and warns about before it expires.",
        ),
        Some(7000112) => pair(
            "The application is disabled in the tenant.",
            "Enable it in the Microsoft Entra admin center: Enterprise applications > your app > Properties > Enabled for users to sign in.",
        ),
        Some(1002012) | Some(70011) => pair(
            "Microsoft Entra ID refused the requested scope.",
            "The scope must be the resource plus /.default (Mailroom sends it per cloud); if a proxy rewrites it, stop it. Do not ask for SMTP.SendAsApp as a scope.",
        ),
        Some(500011) => pair(
            "The Exchange Online resource is not in the tenant.",
            "Usually the Cloud setting is wrong: pick the cloud the tenant lives in. Check that the tenant has Exchange Online.",
        ),
        Some(53003) => pair(
            "Conditional Access blocked the token request.",
            "Exclude this app (a workload identity) from the Conditional Access policy, or allow this server's address, in the Microsoft Entra admin center.",
        ),
        Some(900382) | Some(90038) => pair(
            "The token request went to the wrong Microsoft cloud.",
            "Set Cloud to where the tenant lives: US Government (GCC High/DoD) and China tenants use their own login hosts.",
        ),
        Some(50196) => pair(
            "Microsoft Entra ID detected a loop: too many token requests.",
            "Wait a few minutes before testing again; Mailroom caches tokens, so this comes from several servers or tools sharing the app.",
        ),
        _ => match error {
            "invalid_client" => pair(
                "Microsoft Entra ID rejected the client credentials.",
                "Check the Application (client) ID and paste the client secret's Value again (step 3).",
            ),
            "unauthorized_client" => pair(
                "The application may not use the client credentials flow in this tenant.",
                "Check the Application (client) ID and that the app is enabled (step 1).",
            ),
            "invalid_scope" => pair(
                "Microsoft Entra ID refused the requested scope.",
                "The scope must be the resource plus /.default.",
            ),
            _ => (String::new(), "Check the tenant ID, client ID and client secret against the app registration (steps 1–3).".into()),
        },
    }
}

/// The other way out where SMTP AUTH must stay off (OAuth only).
fn graph_way_out(s: &Settings) -> String {
    if s.auth_method != AuthMethod::OAuth2ClientCredentials {
        return String::new();
    }
    " If SMTP AUTH must stay off, send through Microsoft Graph instead: choose “Microsoft Graph (sendMail)” as the way out, and give the app Mail.Send for this mailbox only (the setup checklist shows both ways).".into()
}

/// How to let the app send as the mailbox over Graph, and only as it.
fn mail_send_fix(s: &Settings) -> String {
    let client = s.client_id.as_deref().unwrap_or_default();
    let user = s.username.as_deref().unwrap_or_default();
    format!(
        "Let the app send as {user} and only as it: either RBAC for Applications, without Entra consent for Mail.Send: `{}`, `{}`, `{}`; or Entra consent for Mail.Send (Graph, Application) plus an Application Access Policy whose mail-enabled group holds {user}: `{}`. Check with `{}`.",
        ps::new_service_principal(client, ""),
        ps::new_management_scope(user),
        ps::new_mail_send_assignment(client),
        ps::new_application_access_policy(client, ""),
        ps::test_service_principal_authorization(client, user),
    )
}

/// Why a message cannot go through Graph as submitted: fails it at once.
pub fn graph_unsendable(u: &Unsendable) -> Diagnosis {
    let (code, message, hint) = match u {
        Unsendable::OutsideEnvelope(names) => (
            None,
            format!(
                "The message's To or Cc name {} outside its envelope recipients; Microsoft Graph sends to every address in To and Cc, so it cannot send this message as submitted.",
                names.join(", ")
            ),
            "Submit it with every To and Cc address as a recipient (sendmail -t, or the API's to and cc), or send this app's mail over SMTP.".to_string(),
        ),
        Unsendable::TooLarge(size) => (
            Some("413".to_string()),
            format!(
                "The message is {size} bytes in base64, over the 4,000,000 bytes Microsoft Graph's sendMail takes."
            ),
            "Send large messages over SMTP (a profile with the SMTP way out), or make the attachments smaller.".to_string(),
        ),
        Unsendable::Unreadable => (
            None,
            "The message's header block cannot be read, so its recipients cannot be matched.".to_string(),
            "Submit the message again as a well-formed RFC 5322 message.".to_string(),
        ),
    };
    Diagnosis {
        stage: Stage::Send,
        code,
        message,
        hint,
        kind: Kind::Permanent,
    }
}

/// Explains a Graph failure (docs/REFERENCE.md's Graph table): the code is
/// Graph's `error.code`, else the HTTP status.
pub fn graph_failure(f: &GraphFailure, s: &Settings, endpoint: &str) -> Diagnosis {
    let user = s.username.as_deref().unwrap_or_default();
    let d = |kind: Kind, code: Option<String>, message: String, hint: String| Diagnosis {
        stage: Stage::Send,
        code,
        message,
        hint,
        kind,
    };
    let (status, code, text) = match f {
        GraphFailure::Reply {
            status,
            code,
            message,
            ..
        } => (*status, code.clone(), message.clone()),
        GraphFailure::Redirect(status) => {
            return d(
                Kind::Pause,
                Some(status.to_string()),
                format!("{endpoint} answered with a redirect ({status}); Mailroom never follows one, so the token goes to one host only."),
                "Check --graph-endpoint (or the proxy in front of Graph): it must be Graph's own address.".into(),
            )
        }
        GraphFailure::Timeout(limit) => {
            return d(
                Kind::Temporary,
                None,
                format!("Microsoft Graph ({endpoint}) did not answer within {} seconds.", limit.as_secs()),
                "Mailroom tries again later. If it keeps happening, check the network path to Graph.".into(),
            )
        }
        GraphFailure::Connect(e) => {
            return d(
                Kind::Pause,
                None,
                format!("Mailroom could not reach Microsoft Graph at {endpoint}: {e}."),
                connect_fix(e, "Check that this server can reach it over HTTPS (port 443): DNS, firewall and any proxy."),
            )
        }
    };
    let said = format!(
        "Graph answered {status} {}: “{text}”.",
        code.as_deref().unwrap_or("")
    );
    let shown = code.clone().or(Some(status.to_string()));
    let c = code.as_deref().unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    if c == "SubmissionQuotaExceeded" || lower.contains("submissionquotaexceeded") {
        return d(
            Kind::Quota,
            Some("SubmissionQuotaExceeded".into()),
            format!("The mailbox {user} has reached its daily sending limit. {said}"),
            "Messages wait until the 24-hour window frees; nothing fails. Spread the mail over several sending profiles (mailboxes) if this happens often.".into(),
        );
    }
    if c == "ErrorQuotaExceeded" {
        return d(
            Kind::Pause,
            shown,
            format!("The mailbox {user} is full, so Sent Items cannot take the copy Graph keeps. {said}"),
            sent_items_fix(user),
        );
    }
    match (status, c) {
        (401, _) => d(
            Kind::Pause,
            shown,
            format!("Microsoft Graph refused the token. {said}"),
            format!(
                "The token must be for Graph ({}): check the cloud, and that the app registration is in tenant {}.",
                super::graph::scope(s.cloud),
                s.tenant_id.as_deref().unwrap_or_default()
            ),
        ),
        (403, "ErrorSendAsDenied") => d(
            Kind::Permanent,
            shown,
            format!("{user} may not send as {}. {said}", s.sender_email),
            format!(
                "Give {user} Send-As rights on the sender: `{}`, or send from {user}.",
                ps::add_recipient_permission(&s.sender_email, user)
            ),
        ),
        (403, _) => d(
            Kind::Pause,
            shown,
            format!("The app may not send as {user} through Graph. {said}"),
            mail_send_fix(s),
        ),
        (404 | 400, "MailboxNotEnabledForRESTAPI") => d(
            Kind::Pause,
            shown,
            format!("The mailbox {user} cannot use Graph: it has no Exchange Online licence, or it is on-premises. {said}"),
            format!("Give {user} an Exchange Online licence, or send over SMTP."),
        ),
        (404, _) => d(
            Kind::Pause,
            shown,
            format!("Microsoft Graph has no mailbox {user}. {said}"),
            "Check that the username is the sending mailbox's user principal name (its sign-in address), in the configured tenant.".into(),
        ),
        (413, _) => d(
            Kind::Permanent,
            shown,
            format!("The message is too large for Microsoft Graph. {said}"),
            "Send large messages over SMTP, or make the attachments smaller.".into(),
        ),
        // Graph says it as `ApplicationThrottled` with "… over its
        // MailboxConcurrency limit", or as the code itself.
        (429, _) if c == "MailboxConcurrency" || lower.contains("mailboxconcurrency") => d(
            Kind::Temporary,
            shown,
            format!("Microsoft Graph had more requests at once for {user} than it takes ({GRAPH_MAX_CONCURRENT} per app and mailbox). {said}"),
            format!("Mailroom sends at most {GRAPH_MAX_CONCURRENT} at once per profile, so something else is sending as this mailbox with the same app at the same time: another profile with the same mailbox and app, or another program. Give each its own mailbox or app registration. Mailroom waits as long as Graph asks (Retry-After) before the next message."),
        ),
        (429, _) => d(
            Kind::Temporary,
            shown,
            format!("Microsoft Graph is throttling this app and mailbox. {said}"),
            "Mailroom waits as long as Graph asks (Retry-After, a day at most) before the next message. Lower the delivery rate if this happens often.".into(),
        ),
        (500..=599, _) => d(
            Kind::Temporary,
            shown,
            format!("Microsoft Graph is busy or failing. {said}"),
            "Mailroom tries again later, honouring Retry-After.".into(),
        ),
        (400, _) => d(
            Kind::Permanent,
            shown,
            format!("Microsoft Graph refused this message. {said}"),
            "Check the message's recipients and MIME form; the other messages go on.".into(),
        ),
        _ => d(
            Kind::Pause,
            shown,
            format!("Microsoft Graph answered unexpectedly. {said}"),
            "Check the settings and Microsoft 365's service health; save the settings to try again.".into(),
        ),
    }
}

/// The enhanced status code (`5.7.139`) at the start of a reply text, if any.
pub fn enhanced_code(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| first.to_string())
}

/// Explains an SMTP failure.
/// An SMTP failure explained, with its kind ([`classify`]).
pub fn smtp_failure(f: &SmtpFailure, s: &Settings, timeouts: &Timeouts) -> Diagnosis {
    Diagnosis {
        kind: classify(f),
        ..explain(f, s, timeouts)
    }
}

/// The settings as one message was sent: its envelope sender in place of
/// the settings' sender, so that a Send-As refusal's words and fix name
/// the address that was refused. An app's `allowed_from` address is not the
/// settings' sender, and the fix named the latter: `Add-RecipientPermission`
/// on a mailbox that had the right already.
pub fn as_sent(s: &Settings, mail_from: &str) -> Settings {
    Settings {
        sender_email: mail_from.to_string(),
        ..s.clone()
    }
}

/// A Send-As refusal (5.7.60, `SendAsDeniedException`) of the settings' own
/// sender, `from`: every message sent as it would fail the same, so it is
/// the configuration's, a pause (REFERENCE.md: "a pause if every message
/// fails it"). An app's `allowed_from` address refused so stays that
/// message's failure (docs/API.md §6).
pub fn settings_sender_refused(mut d: Diagnosis, from: &str, s: &Settings) -> Diagnosis {
    let send_as = is_send_as_denied(d.code.as_deref(), &d.message.to_ascii_lowercase());
    if send_as && d.kind == Kind::Permanent && from.eq_ignore_ascii_case(&s.sender_email) {
        d.kind = Kind::Pause;
        d.message = format!(
            "{} Every message sent as the settings' sender {} fails the same, so delivery waits.",
            d.message, s.sender_email
        );
    }
    d
}

/// A Send-As refusal (5.7.60, `ErrorSendAsDenied`) of an address an app
/// sends as (its `allowed_from`), `from`, not the settings' sender: the fix
/// gives the right on that address, or has the app send as the settings'
/// sender instead. The fix for the settings' sender ends "or use {user} as
/// the sender email", which for an app's own address means its settings.
pub fn app_address_refused(mut d: Diagnosis, from: &str, s: &Settings) -> Diagnosis {
    let send_as = is_send_as_denied(d.code.as_deref(), &d.message.to_ascii_lowercase());
    let user = s.username.as_deref().unwrap_or_default();
    let is = |a: &str| from.eq_ignore_ascii_case(a);
    if send_as && !is(&s.sender_email) && !is(user) {
        d.hint = format!(
            "Give {user} Send-As rights on {from}: `{}`. If the app should not send as {from}, take it out of the app's allowed_from, or turn on the app's rewrite_from so that its mail goes as {sender}.",
            ps::add_recipient_permission(from, user),
            sender = s.sender_email,
        );
    }
    d
}

/// Where the settings' provider takes mail, for a hint: "Office 365 uses
/// smtp.office365.com port 587 with STARTTLS" (the configured cloud's host),
/// Gmail's and the others' from the catalogue; for `other`, the usual ports.
fn provider_endpoint(s: &Settings) -> String {
    use mailroom_shared::{Provider, Security};
    let p = catalogue::provider(s.provider);
    let host = match s.provider {
        // GCC High and China have their own.
        Provider::Office365 => catalogue::cloud(s.cloud).smtp_host,
        _ => p.host,
    };
    if host.is_empty() {
        return "your provider's documentation names them; most servers take port 587 with STARTTLS or port 465 with implicit TLS".into();
    }
    let security = match p.security {
        Security::Starttls => "STARTTLS",
        Security::Tls => "implicit TLS",
        Security::None => "no TLS",
    };
    format!("{} uses {host} port {} with {security}", p.name, p.port)
}

fn explain(f: &SmtpFailure, s: &Settings, timeouts: &Timeouts) -> Diagnosis {
    let host = format!("{}:{}", s.host, s.port);
    // The Office 365 host of the configured cloud (GCC High and China have their own).
    let o365 = catalogue::cloud(s.cloud).smtp_host;
    let endpoint = provider_endpoint(s);
    let d = |stage: Stage, code: Option<String>, message: String, hint: String| Diagnosis {
        stage,
        kind: Kind::Pause,
        code,
        message,
        hint,
    };
    match f {
        SmtpFailure::Reply { stage, code, text } => reply(*stage, *code, text, s),
        SmtpFailure::Refused => d(
            Stage::Connect,
            None,
            format!("Nothing accepted the connection at {host} (connection refused)."),
            format!("Check the host and port: {endpoint}. If they are right, a firewall may refuse outgoing SMTP."),
        ),
        SmtpFailure::Dns(detail) => d(
            Stage::Connect,
            None,
            format!("The SMTP host {} could not be resolved ({detail}).", s.host),
            "Check the spelling of the SMTP host, and this server's DNS.".into(),
        ),
        SmtpFailure::ConnectTimeout => d(
            Stage::Connect,
            None,
            format!(
                "No answer from {host} within {} seconds: the connection could not be opened.",
                timeouts.connect.as_secs()
            ),
            "A firewall may block outgoing SMTP (many hosting providers block 25 and 587); check the host, port and the network path.".into(),
        ),
        SmtpFailure::Timeout(stage) => d(
            *stage,
            None,
            if *stage == Stage::Connect {
                format!("The server at {host} accepted the connection but sent no greeting in time.")
            } else {
                format!("The SMTP server at {host} stopped answering during the {} stage.", stage.as_str())
            },
            "The server may be overloaded, or something other than an SMTP server listens there: check the host and port, and try again.".into(),
        ),
        SmtpFailure::NoStarttls => d(
            Stage::Tls,
            None,
            format!("The server at {host} does not offer STARTTLS, so Mailroom stopped before sending any credentials."),
            format!("Check the host and port ({endpoint}), or choose implicit TLS if the server uses port 465."),
        ),
        SmtpFailure::Tls { detail, subject, issuer } => {
            let cert = match (subject, issuer) {
                (Some(sub), Some(iss)) => format!(" The server's certificate is for “{sub}”, issued by “{iss}”."),
                _ => String::new(),
            };
            d(
                Stage::Tls,
                None,
                format!("The TLS handshake with {host} failed: {detail}.{cert}"),
                "If the server uses a private CA, add its root certificate with --extra-ca-file; check that the host name matches the certificate. Mailroom never switches certificate checks off.".into(),
            )
        }
        SmtpFailure::Dropped(stage) => d(
            *stage,
            None,
            format!("The server at {host} closed the connection during the {} stage.", stage.as_str()),
            "The server may limit connections or dislike the client host name; check its logs, the security mode and the port.".into(),
        ),
        SmtpFailure::NoMechanism(wanted) => d(
            Stage::Auth,
            None,
            format!("The server at {host} does not offer {wanted} authentication."),
            if s.auth_method == AuthMethod::OAuth2ClientCredentials {
                format!("Exchange offers XOAUTH2 only after STARTTLS on {o365}:587; check the host and security.")
            } else {
                "Choose another authentication method, or check that STARTTLS/TLS is on (many servers offer AUTH only after it).".into()
            },
        ),
        SmtpFailure::Network(stage, detail) => d(
            *stage,
            None,
            format!("The connection to {host} failed during the {} stage: {detail}.", stage.as_str()),
            "Check the host, port and security mode, then try again.".into(),
        ),
    }
}

fn reply(stage: Stage, code: u16, text: &str, s: &Settings) -> Diagnosis {
    let enhanced = enhanced_code(text);
    let user = s.username.as_deref().unwrap_or_default();
    let sender = s.sender_email.as_str();
    let lower = text.to_ascii_lowercase();
    let oauth = s.auth_method == AuthMethod::OAuth2ClientCredentials;
    let said = format!("The server answered “{code} {text}”.");
    let (message, hint): (String, String) = match (code, enhanced.as_deref()) {
        _ if is_tenant_external_quota(&lower) => (
            format!("The tenant has reached its daily limit of external recipients (Exchange Online's tenant external recipient rate limit, over the last 24 hours for every mailbox and app of the tenant together). {said}"),
            "Mail to recipients outside the tenant's domains waits until the 24-hour window frees; nothing fails. The limit and its use are in the Exchange admin center: Reports > Mail flow > Tenant outbound external recipients (500 × licences^0.7 + 9,500 a day; a trial tenant 5,000). For bulk mail Microsoft points to Azure Communication Services Email.".into(),
        ),
        _ if is_daily_quota(&lower) => (
            format!("The mailbox {user} has reached its daily sending limit (Exchange Online: 10,000 recipients in 24 hours). {said}"),
            "Messages wait until the 24-hour window frees; nothing fails. Spread the mail over several sending profiles (mailboxes) if this happens often, and lower this profile's recipients_per_day so Mailroom waits before Exchange refuses.".into(),
        ),
        _ if is_sender_mailbox_full(&lower) => (
            format!("The mailbox {user} is full, so Exchange Online sends nothing from it: it keeps a copy of every message sent in the mailbox's Sent Items. {said}"),
            sent_items_fix(user),
        ),
        (_, Some("5.1.8")) => (
            format!("Microsoft has blocked {user} from sending, usually after suspected spam or a compromised account. {said}"),
            format!("A Microsoft 365 admin must check the account (reset its password if it was compromised) and release it in Microsoft Defender: Email & collaboration > Review > Restricted entities (security.microsoft.com/restrictedentities). Delivery resumes by itself once {user} is released, or at once when the settings are saved."),
        ),
        (_, Some("5.7.501" | "5.7.502" | "5.7.503")) => (
            format!("Microsoft has banned {user} from sending after spam was detected from it, most often from a compromised account. {said}"),
            format!("A Microsoft 365 admin must secure the account (reset its password, check its sign-ins and the app's secret), then ask Microsoft support to restore its sending, and check Microsoft Defender: Email & collaboration > Review > Restricted entities (security.microsoft.com/restrictedentities). Messages wait meanwhile; delivery resumes by itself once {user} may send again, or at once when the settings are saved."),
        ),
        (_, Some("5.7.705")) => (
            format!("Microsoft has blocked the whole tenant from sending: most of its recent mail looked like spam. {said}"),
            "A Microsoft 365 admin must look for compromised accounts and open a support request in the Microsoft 365 admin center; no setting in Mailroom changes this. Messages wait meanwhile; delivery resumes by itself once the tenant may send again.".into(),
        ),
        (535, Some("5.7.139")) if lower.contains("basic authentication is disabled") => (
            format!("Basic authentication (the app password) is disabled for this tenant. {said}"),
            "Move to OAuth 2.0 (Client Credentials): choose it as the authentication method and follow the setup checklist.".into(),
        ),
        (535, Some("5.7.139")) if lower.contains("for the mailbox") => (
            format!("SMTP AUTH is switched off for the mailbox {user}. {said}"),
            format!(
                "Turn it on for that mailbox: `{}`.{}",
                ps::enable_smtp_auth_mailbox(user),
                graph_way_out(s)
            ),
        ),
        (535, Some("5.7.139")) => (
            format!("SMTP AUTH is switched off for the tenant (security defaults switch it off too). {said}"),
            format!(
                "Turn it on for the tenant with `{}`, or only for this mailbox with `{}`.{}",
                ps::enable_smtp_auth_tenant(),
                ps::enable_smtp_auth_mailbox(user),
                graph_way_out(s)
            ),
        ),
        (535, _) if oauth => (format!("Exchange Online rejected the token. {said}"), sp_fix(s)),
        (535, _) => (
            format!("The server rejected the username or password. {said}"),
            if s.provider == mailroom_shared::Provider::Office365 {
                "Use an application password, not the sign-in password, and check the username. Better: switch to OAuth 2.0 before basic authentication is retired.".into()
            } else {
                "Check the username and password (many providers want an app password or an API key).".into()
            },
        ),
        (530, _) => (
            format!("The server requires authentication before sending. {said}"),
            "Choose an authentication method: for Office 365, OAuth 2.0 (Client Credentials).".into(),
        ),
        _ if code >= 500 && is_send_as_denied(enhanced.as_deref(), &lower) => (
            format!("{user} may not send as {sender}. {said}"),
            format!(
                "Give the username Send-As rights on the sender: `{}`, or use {user} as the sender email.",
                ps::add_recipient_permission(sender, user)
            ),
        ),
        (_, Some("4.3.2"))
            if lower.contains("thread limit") || lower.contains("concurrent connection") =>
        (
            format!("Exchange takes at most 3 SMTP connections at once for {user}, and this one was past them. {said}"),
            format!("Mailroom tries this message again. Lower this profile's connections (limits, or --delivery-connections) to 3 or fewer in all, counting every server, and check that no other program or device signs in as {user} at the same time: each takes one of its 3."),
        ),
        (_, Some(e)) if e.starts_with("4.") && lower.contains("submission rate") => (
            format!("Exchange refused more messages from {user} for now: it takes 30 a minute per mailbox. {said}"),
            format!("Mailroom tries this message again later. Keep this profile's messages_per_minute (limits, or --delivery-rate) at 30 or less, and check that nothing else sends as {user} at the same time; spread heavier mail over several profiles (mailboxes)."),
        ),
        (_, Some("5.1.1" | "5.1.10")) => (
            format!("The server has no such recipient. {said}"),
            "Check the recipient's address for a typo, or whether that mailbox still exists; the message's other recipients are not affected.".into(),
        ),
        (_, Some("5.3.4")) => (
            if s.provider == mailroom_shared::Provider::Office365 {
                format!("The message is larger than the server takes (Exchange Online refuses messages over about 35 MB, though it advertises 150 MB). {said}")
            } else {
                format!("The message is larger than the server takes. {said}")
            },
            "Send the attachments as a link, or split them over several messages; --max-message-size can refuse such messages when they are submitted instead.".into(),
        ),
        (430, _) | (_, Some("4.2.0")) => (
            format!("Exchange could not open the mailbox {user}. {said}"),
            format!("Check that {user} is a licensed mailbox with Exchange Online, then try again in a few minutes."),
        ),
        (_, Some("5.6.7")) => (
            said.clone(),
            "The address has characters beyond ASCII (an internationalised address, RFC 6531), which needs the server's SMTPUTF8 extension. Use the mailbox's ASCII address, or send through a server that offers SMTPUTF8 (Office 365 and Gmail do).".into(),
        ),
        (501, Some("5.5.124")) => (
            format!("The server says the XOAUTH2 data is malformed. {said}"),
            "The username must be the mailbox's full address; check it, and that the token was issued for the right cloud.".into(),
        ),
        _ => (
            said.clone(),
            match stage {
                Stage::Auth => "Check the username and credentials for this server.".into(),
                Stage::Send => "Check the sender and recipient addresses, and the server's sending policy.".into(),
                _ => "Check the host, port and security mode.".into(),
            },
        ),
    };
    Diagnosis {
        stage,
        kind: Kind::Pause,
        code: Some(enhanced.unwrap_or_else(|| code.to_string())),
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection hints name the settings' own provider's host and port:
    /// every provider was told "Office 365 uses smtp.office365.com port 587".
    #[test]
    fn connection_hints_name_the_providers_own_host_and_port() {
        use mailroom_shared::{Cloud, Provider};
        let hint = |s: &Settings, f: SmtpFailure| explain(&f, s, &Timeouts::default()).hint;
        let mut s = mailroom_shared::fixtures::office365_oauth("127.0.0.1", 9);
        let said = hint(&s, SmtpFailure::Refused);
        assert!(
            said.contains("Office 365 uses smtp.office365.com port 587 with STARTTLS"),
            "{said}"
        );
        s.cloud = Cloud::Usgov;
        let said = hint(&s, SmtpFailure::NoStarttls);
        assert!(
            said.contains(catalogue::cloud(Cloud::Usgov).smtp_host),
            "{said}"
        );
        let mut gmail = Settings::for_provider(Provider::Gmail);
        gmail.host = "127.0.0.1".into();
        let said = hint(&gmail, SmtpFailure::Refused);
        assert!(
            said.contains("Gmail uses smtp.gmail.com port 587 with STARTTLS"),
            "{said}"
        );
        assert!(!said.contains("Office 365"), "{said}");
        let other = Settings::for_provider(Provider::Other);
        for f in [SmtpFailure::Refused, SmtpFailure::NoStarttls] {
            let said = hint(&other, f);
            assert!(
                said.contains("your provider's documentation") && !said.contains("Office 365"),
                "{said}"
            );
        }
    }

    fn graph(status: u16, code: &str, message: &str) -> GraphFailure {
        GraphFailure::Reply {
            status,
            code: (!code.is_empty()).then(|| code.to_string()),
            message: message.into(),
            retry_after: None,
        }
    }

    /// Every row of docs/REFERENCE.md's Graph table: its kind, its code
    /// (Graph's `error.code`, else the status), and a fix that names what to do.
    #[test]
    fn every_graph_reply_has_its_kind_code_and_fix() {
        let mut s = mailroom_shared::fixtures::office365_oauth("", 0);
        s.transport = mailroom_shared::Transport::Graph;
        let rows: &[(u16, &str, Kind, &str)] = &[
            (
                401,
                "InvalidAuthenticationToken",
                Kind::Pause,
                "graph.microsoft.com/.default",
            ),
            (
                403,
                "ErrorAccessDenied",
                Kind::Pause,
                "New-ManagementRoleAssignment",
            ),
            (404, "ErrorInvalidUser", Kind::Pause, "user principal name"),
            (404, "ResourceNotFound", Kind::Pause, "user principal name"),
            (404, "MailboxNotEnabledForRESTAPI", Kind::Pause, "licence"),
            (400, "MailboxNotEnabledForRESTAPI", Kind::Pause, "licence"),
            (400, "ErrorInvalidRecipients", Kind::Permanent, "recipients"),
            (
                400,
                "ErrorMimeContentInvalidBase64String",
                Kind::Permanent,
                "MIME",
            ),
            (
                403,
                "ErrorSendAsDenied",
                Kind::Permanent,
                "Add-RecipientPermission",
            ),
            (413, "RequestEntityTooLarge", Kind::Permanent, "SMTP"),
            (413, "ErrorMessageSizeExceeded", Kind::Permanent, "SMTP"),
            (429, "ApplicationThrottled", Kind::Temporary, "Retry-After"),
            (429, "MailboxConcurrency", Kind::Temporary, "Retry-After"),
            (503, "", Kind::Temporary, "Retry-After"),
            (504, "", Kind::Temporary, "Retry-After"),
            (403, "SubmissionQuotaExceeded", Kind::Quota, "profiles"),
            (403, "ErrorQuotaExceeded", Kind::Pause, "-Type SentItems"),
        ];
        let concurrency = graph_failure(
            &graph(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            ),
            &s,
            "https://graph.microsoft.com",
        );
        assert_eq!(concurrency.kind, Kind::Temporary);
        assert!(
            concurrency.hint.contains("at most 4 at once")
                && concurrency
                    .hint
                    .contains("another profile with the same mailbox"),
            "{}",
            concurrency.hint
        );
        for (status, code, kind, fix) in rows {
            let d = graph_failure(
                &graph(*status, code, "text"),
                &s,
                "https://graph.microsoft.com",
            );
            assert_eq!(d.kind, *kind, "{status} {code}: {d:?}");
            assert_eq!(d.stage, Stage::Send);
            let want = if code.is_empty() {
                status.to_string()
            } else {
                code.to_string()
            };
            assert_eq!(d.code.as_deref(), Some(want.as_str()), "{status} {code}");
            assert!(d.hint.contains(fix), "{status} {code}: {}", d.hint);
        }
        // The quota named only in the message's text is the quota too.
        let d = graph_failure(
            &graph(
                403,
                "ErrorAccessDenied",
                "SubmissionQuotaExceeded: the mailbox sent too much",
            ),
            &s,
            "x",
        );
        assert_eq!(d.kind, Kind::Quota);
        assert_eq!(
            graph_failure(
                &GraphFailure::Timeout(std::time::Duration::from_secs(60)),
                &s,
                "x"
            )
            .kind,
            Kind::Temporary
        );
        assert_eq!(
            graph_failure(&GraphFailure::Redirect(302), &s, "x").kind,
            Kind::Pause
        );
        assert_eq!(
            graph_failure(&GraphFailure::Connect("refused".into()), &s, "x").kind,
            Kind::Pause
        );
    }

    #[test]
    fn smtp_auth_switched_off_offers_graph_next_to_set_casmailbox() {
        let s = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        let f = SmtpFailure::Reply {
            stage: Stage::Auth,
            code: 535,
            text: "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.".into(),
        };
        let d = smtp_failure(&f, &s, &Timeouts::default());
        assert!(d.hint.contains("Set-CASMailbox"), "{}", d.hint);
        assert!(d.hint.contains("Microsoft Graph (sendMail)"), "{}", d.hint);
        let mut password = s.clone();
        password.auth_method = AuthMethod::Password;
        let d = smtp_failure(&f, &password, &Timeouts::default());
        assert!(!d.hint.contains("Graph"), "Graph needs OAuth: {}", d.hint);
    }

    fn failure(code: u16, text: &str) -> SmtpFailure {
        SmtpFailure::Reply {
            stage: Stage::Send,
            code,
            text: text.into(),
        }
    }

    #[test]
    fn send_time_replies_are_sorted_as_reference_md_says() {
        assert_eq!(
            classify(&failure(
                432,
                "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
            )),
            Kind::Temporary
        );
        assert_eq!(classify(&failure(421, "4.4.2 timeout")), Kind::Temporary);
        assert_eq!(
            classify(&failure(550, "5.1.1 RESOLVER.ADR.RecipNotFound")),
            Kind::Permanent
        );
        assert_eq!(
            classify(&failure(
                552,
                "5.3.4 Message size exceeds fixed maximum message size"
            )),
            Kind::Permanent
        );
        assert_eq!(
            classify(&failure(
                550,
                "5.7.60 SMTP; Client does not have permissions"
            )),
            Kind::Permanent
        );
        // The daily quota is a wait (docs/API.md §15), in both of
        // Exchange's wordings.
        assert_eq!(
            classify(&failure(
                554,
                "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            )),
            Kind::Quota
        );
        assert_eq!(
            classify(&failure(
                554,
                "5.2.2 mailbox full; STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"
            )),
            Kind::Quota
        );
        assert_eq!(
            classify(&failure(554, "5.2.2 Submission quota exceeded")),
            Kind::Quota
        );
        // The sending mailbox itself full (Microsoft's two wordings, for
        // SMTP AUTH submission): every message would get it, so delivery
        // pauses with the Sent Items fix instead of failing each message.
        for text in [
            "5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
            "5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded; Failed to process message due to a permanent exception with message Cannot save changes made to an item to store.",
        ] {
            assert_eq!(classify(&failure(554, text)), Kind::Pause, "{text}");
            let s = mailroom_shared::fixtures::office365_oauth("", 0);
            let user = s.username.clone().unwrap_or_default();
            let d = reply(Stage::Send, 554, text, &s);
            assert!(d.message.starts_with(&format!("The mailbox {user} is full")), "{}", d.message);
            assert!(d.message.contains(text), "{}", d.message);
            assert!(d.hint.contains(&format!("`Set-Mailbox -Identity \"{user}\" -RetentionPolicy \"Mailroom sending mailbox\"`")), "{}", d.hint);
            assert!(d.hint.contains("-Type SentItems -AgeLimitForRetention 30"), "{}", d.hint);
        }
        // The tenant's external recipient rate limit (TERRL) frees by
        // itself within 24 hours: a wait too, never a failure.
        for text in [
            "5.7.233 Your message can't be sent because your tenant exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
            "5.7.232 Your message can't be sent because your trial tenant has exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
        ] {
            assert_eq!(classify(&failure(550, text)), Kind::Quota, "{text}");
            let s = mailroom_shared::fixtures::office365_oauth("", 0);
            let d = reply(Stage::Send, 550, text, &s);
            assert!(d.message.contains("external recipients"), "{}", d.message);
            assert!(d.hint.contains("nothing fails"), "{}", d.hint);
            assert!(!d.message.contains("10,000 recipients"), "{}", d.message);
        }
        // A recipient's full mailbox is that recipient's, for good.
        assert_eq!(
            classify(&failure(552, "5.2.2 Mailbox full")),
            Kind::Permanent
        );
        assert_eq!(
            classify(&failure(550, "5.1.8 Access denied, bad outbound sender")),
            Kind::Pause
        );
        assert_eq!(
            classify(&failure(530, "5.7.57 Client not authenticated")),
            Kind::Pause
        );
        // The account or the tenant banned for spam: every message would
        // get the same, so delivery pauses with who must do what.
        let (s, _) = office365();
        for (text, says, fix) in [
            (
                "5.7.501 Access denied, spam abuse detected",
                "banned",
                "Restricted entities",
            ),
            (
                "5.7.503 Access denied, banned sender",
                "banned",
                "Microsoft support",
            ),
            (
                "5.7.705 Access denied, tenant has exceeded threshold",
                "whole tenant",
                "support request",
            ),
        ] {
            assert_eq!(classify(&failure(550, text)), Kind::Pause, "{text}");
            let d = reply(Stage::Send, 550, text, &s);
            assert!(
                d.message.contains(says) && d.message.contains(text),
                "{}",
                d.message
            );
            assert!(d.hint.contains(fix), "{}", d.hint);
        }
        assert_eq!(
            classify(&SmtpFailure::Dropped(Stage::Send)),
            Kind::Temporary
        );
        assert_eq!(classify(&SmtpFailure::Refused), Kind::Pause);
    }

    /// Office 365 settings, and ten seconds for each timeout.
    fn office365() -> (Settings, Timeouts) {
        let ten = std::time::Duration::from_secs(10);
        let timeouts = Timeouts {
            token: ten,
            connect: ten,
            session: ten,
            graph: ten,
        };
        let s = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        (s, timeouts)
    }

    /// REFERENCE.md's throttling replies say which limit, and which of
    /// Mailroom's settings keeps under it.
    #[test]
    fn throttling_replies_name_the_limit_and_the_setting() {
        let (s, timeouts) = office365();
        for (reply, limit, setting) in [
            (
                failure(432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"),
                "3 SMTP connections",
                "--delivery-connections",
            ),
            (
                failure(432, "4.3.2 STOREDRV.ClientSubmit; concurrent connection limit exceeded"),
                "3 SMTP connections",
                "--delivery-connections",
            ),
            (
                failure(450, "4.7.0 Message submission rate for this client has exceeded the configured limit"),
                "30 a minute",
                "messages_per_minute",
            ),
        ] {
            let d = smtp_failure(&reply, &s, &timeouts);
            assert_eq!(d.kind, Kind::Temporary, "{}", d.message);
            assert!(d.message.contains(limit), "{}", d.message);
            assert!(d.hint.contains(setting), "{}", d.hint);
        }
    }

    /// A missing recipient and a message too large say so, with the fix.
    #[test]
    fn a_missing_recipient_and_a_message_too_large_say_so() {
        let (s, timeouts) = office365();
        for (reply, said, fix) in [
            (failure(550, "5.1.1 RESOLVER.ADR.RecipNotFound; not found"), "no such recipient", "typo"),
            (failure(550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"), "no such recipient", "typo"),
            (failure(552, "5.3.4 Message size exceeds fixed maximum message size"), "35 MB", "--max-message-size"),
        ] {
            let d = smtp_failure(&reply, &s, &timeouts);
            assert_eq!(d.kind, Kind::Permanent, "{}", d.message);
            assert!(d.message.contains(said), "{}", d.message);
            assert!(d.hint.contains(fix), "{}", d.hint);
        }
    }

    #[test]
    fn enhanced_codes_are_found() {
        assert_eq!(
            enhanced_code("5.7.139 Authentication unsuccessful").as_deref(),
            Some("5.7.139")
        );
        assert_eq!(enhanced_code("Authentication unsuccessful"), None);
        assert_eq!(enhanced_code("2.0.0 OK").as_deref(), Some("2.0.0"));
    }

    #[test]
    fn hints_name_the_clouds_host_and_the_real_timeouts() {
        let mut s = mailroom_shared::fixtures::office365_oauth("smtp.office365.us", 587);
        s.cloud = mailroom_shared::Cloud::Usgov;
        let timeouts = Timeouts {
            token: std::time::Duration::from_secs(7),
            connect: std::time::Duration::from_secs(3),
            session: std::time::Duration::from_secs(9),
            graph: std::time::Duration::from_secs(11),
        };
        let refused = smtp_failure(&SmtpFailure::Refused, &s, &timeouts);
        assert!(
            refused.hint.contains("smtp.office365.us port 587"),
            "{}",
            refused.hint
        );
        let slow = smtp_failure(&SmtpFailure::ConnectTimeout, &s, &timeouts);
        assert!(
            slow.message.contains("within 3 seconds"),
            "{}",
            slow.message
        );
        let req = TokenRequest {
            authority: "https://login.microsoftonline.us".into(),
            tenant: String::new(),
            client_id: String::new(),
            credential: Credential::NoCertificate,
            scope: String::new(),
        };
        let token = token_error(&TokenError::Timeout, &s, &req, &timeouts);
        assert!(
            token.message.contains("within 7 seconds"),
            "{}",
            token.message
        );
        let graph = graph_failure(&GraphFailure::Timeout(timeouts.graph), &s, "x");
        assert!(
            graph.message.contains("within 11 seconds"),
            "{}",
            graph.message
        );
        // A certificate nobody here trusts, from the login host or Graph:
        // a TLS-inspecting firewall, whose root goes in the trust store.
        let inspected = "invalid peer certificate: UnknownIssuer";
        let token = token_error(&TokenError::Connect(inspected.into()), &s, &req, &timeouts);
        let graph = graph_failure(&GraphFailure::Connect(inspected.into()), &s, "x");
        for hint in [&token.hint, &graph.hint] {
            assert!(
                hint.contains("inspects TLS") && hint.contains("trust store"),
                "{hint}"
            );
        }
        let refused = token_error(
            &TokenError::Connect("Connection refused".into()),
            &s,
            &req,
            &timeouts,
        );
        assert!(!refused.hint.contains("inspects TLS"), "{}", refused.hint);
        // HTTPS_PROXY set to a proxy that cannot be used (reqwest's words).
        let tunnel = "tunnel error: failed to create underlying connection: tcp connect error: Connection refused (os error 111)";
        let token = token_error(&TokenError::Connect(tunnel.into()), &s, &req, &timeouts);
        let graph = graph_failure(&GraphFailure::Connect(tunnel.into()), &s, "x");
        for hint in [&token.hint, &graph.hint] {
            assert!(hint.contains("HTTPS_PROXY"), "{hint}");
        }
        assert!(!refused.hint.contains("HTTPS_PROXY"), "{}", refused.hint);
    }
}
