//! Turns Entra errors and SMTP replies into a sentence and the exact fix, with
//! PowerShell lines filled in from the settings (docs/REFERENCE.md tables).

use mailroom_shared::api::Stage;
use mailroom_shared::{catalogue, powershell as ps, AuthMethod, Settings};

use super::entra::TokenError;
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
}

/// Sorts a failure during a transaction (MAIL FROM, RCPT TO, DATA), using
/// Exchange's send-time replies (docs/REFERENCE.md).
pub fn classify(f: &SmtpFailure) -> Kind {
    match f {
        SmtpFailure::Reply { code, text, .. } => {
            let text = text.to_ascii_lowercase();
            // The mailbox's daily quota, a blocked sender, or sign-in trouble
            // is about the configuration, not the message.
            if text.contains("submissionquotaexceeded")
                || text.contains("5.1.8")
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

/// Explains a token failure.
pub fn token_error(
    e: &TokenError,
    s: &Settings,
    authority: &str,
    timeouts: &Timeouts,
) -> Diagnosis {
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
            let (message, hint) = entra_text(codes.first().copied(), error, s);
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
            "A proxy or captive portal may be in the way, or --entra-authority points at the wrong server. Check the outgoing HTTPS path to the login host.".into(),
        ),
        TokenError::Dns(detail) => diag(
            None,
            format!("The login host of {authority} could not be resolved ({detail})."),
            "Check this server's DNS and that it may reach the Microsoft login host over HTTPS (port 443).".into(),
        ),
        TokenError::Connect(detail) => diag(
            None,
            format!("Could not connect to the token endpoint at {authority} ({detail})."),
            "Check that this server may reach the Microsoft login host over HTTPS (port 443), through any proxy or firewall.".into(),
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
            "The client secret has expired.",
            "Create a new client secret under Certificates & secrets (step 3), paste its Value here and save; secrets last 3 to 24 months.",
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

fn explain(f: &SmtpFailure, s: &Settings, timeouts: &Timeouts) -> Diagnosis {
    let host = format!("{}:{}", s.host, s.port);
    // The Office 365 host of the configured cloud (GCC High and China have their own).
    let o365 = catalogue::cloud(s.cloud).smtp_host;
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
            format!("Check the host and port: Office 365 uses {o365} port 587 with STARTTLS. If they are right, a firewall may refuse outgoing SMTP."),
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
            format!("Check the host and port (Office 365: {o365}, 587), or choose implicit TLS if the server uses port 465."),
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
        (535, Some("5.7.139")) if lower.contains("basic authentication is disabled") => (
            format!("Basic authentication (the app password) is disabled for this tenant. {said}"),
            "Move to OAuth 2.0 (Client Credentials): choose it as the authentication method and follow the setup checklist.".into(),
        ),
        (535, Some("5.7.139")) if lower.contains("for the mailbox") => (
            format!("SMTP AUTH is switched off for the mailbox {user}. {said}"),
            format!("Turn it on for that mailbox: `{}`.", ps::enable_smtp_auth_mailbox(user)),
        ),
        (535, Some("5.7.139")) => (
            format!("SMTP AUTH is switched off for the tenant (security defaults switch it off too). {said}"),
            format!(
                "Turn it on for the tenant with `{}`, or only for this mailbox with `{}`.",
                ps::enable_smtp_auth_tenant(),
                ps::enable_smtp_auth_mailbox(user)
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
        _ if code >= 500 && (enhanced.as_deref() == Some("5.7.60") || lower.contains("sendasdenied")) => (
            format!("{user} may not send as {sender}. {said}"),
            format!(
                "Give the username Send-As rights on the sender: `{}`, or use {user} as the sender email.",
                ps::add_recipient_permission(sender, user)
            ),
        ),
        (430, _) | (_, Some("4.2.0")) => (
            format!("Exchange could not open the mailbox {user}. {said}"),
            format!("Check that {user} is a licensed mailbox with Exchange Online, then try again in a few minutes."),
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
        assert_eq!(
            classify(&failure(
                554,
                "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            )),
            Kind::Pause
        );
        assert_eq!(
            classify(&failure(550, "5.1.8 Access denied, bad outbound sender")),
            Kind::Pause
        );
        assert_eq!(
            classify(&failure(530, "5.7.57 Client not authenticated")),
            Kind::Pause
        );
        assert_eq!(
            classify(&SmtpFailure::Dropped(Stage::Send)),
            Kind::Temporary
        );
        assert_eq!(classify(&SmtpFailure::Refused), Kind::Pause);
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
        let token = token_error(
            &TokenError::Timeout,
            &s,
            "https://login.microsoftonline.us",
            &timeouts,
        );
        assert!(
            token.message.contains("within 7 seconds"),
            "{}",
            token.message
        );
    }
}
