//! The test email: `POST /api/settings/test` and `mailroom check` share
//! [`Tester::run`], which gets the Entra token (OAuth), runs the SMTP session,
//! and explains any failure.

pub mod check;
pub mod diagnose;
pub mod smtp;
pub mod token;

use std::time::Instant;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use mailroom_shared::api::{
    Stage, StageTiming, TestRequest, TestResult, TokenClaims, TranscriptLine,
};
use mailroom_shared::{catalogue, AuthMethod, Settings};

use crate::config::TestArgs;
use crate::crypto::Secret;
use crate::error::{ApiJson, AppError};
use crate::settings::SettingsRepo;
use smtp::{SmtpAuth, SmtpFailure, SmtpPlan, TlsTrust};
use token::{TokenClient, TokenRequest};

/// How long each part of a test may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The token request (15 s).
    pub token: std::time::Duration,
    /// Opening the SMTP connection (10 s).
    pub connect: std::time::Duration,
    /// The whole SMTP session (30 s).
    pub session: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            token: token::TOKEN_TIMEOUT,
            connect: smtp::CONNECT_TIMEOUT,
            session: smtp::SESSION_TIMEOUT,
        }
    }
}

/// How many test emails may run at once; the next one gets 429.
pub const MAX_CONCURRENT_TESTS: usize = 4;

/// Runs test emails; holds the token cache and the TLS trust.
#[derive(Debug)]
pub struct Tester {
    /// One permit per test email allowed to run at once over HTTP.
    pub slots: tokio::sync::Semaphore,
    timeouts: Timeouts,
    authority_override: Option<String>,
    trust: TlsTrust,
    tokens: TokenClient,
}

/// The forms in which a secret can show up: itself and its base64, padded or not.
fn needles(secrets: &[&str]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut needles: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        needles.push(s.to_string());
        needles.push(b64.encode(s));
        needles.push(b64.encode(s).trim_end_matches('=').to_string());
    }
    needles.retain(|n| !n.is_empty());
    needles
}

/// Replaces every form of every secret in `text` with `*****`.
pub fn mask_text(text: &mut String, secrets: &[&str]) {
    for n in needles(secrets) {
        if text.contains(n.as_str()) {
            *text = text.replace(n.as_str(), "*****");
        }
    }
}

/// Masks every secret in the transcript: structurally (AUTH lines and the
/// answers to 334 challenges) and by value (secrets and their base64 forms).
pub fn mask_transcript(lines: &mut [TranscriptLine], secrets: &[&str]) {
    let needles = needles(secrets);
    let mut in_auth = false;
    for line in lines.iter_mut() {
        match line.dir {
            mailroom_shared::api::Direction::Client => {
                let upper = line.line.to_ascii_uppercase();
                if upper.starts_with("AUTH ") {
                    let mut words = line.line.split_whitespace();
                    let (_, mech) = (words.next(), words.next().unwrap_or_default().to_string());
                    if words.next().is_some() {
                        line.line = format!("AUTH {mech} *****");
                    }
                    in_auth = true;
                } else if in_auth {
                    line.line = "*****".into();
                }
            }
            mailroom_shared::api::Direction::Server => {
                if !line.line.starts_with('3') {
                    in_auth = false;
                }
            }
        }
        for n in &needles {
            if line.line.contains(n.as_str()) {
                line.line = line.line.replace(n.as_str(), "*****");
            }
        }
    }
}

/// Whether an authority sends the client secret in clear text to another
/// machine: plain `http` to a host that is not a loopback address.
pub fn is_plain_http_to_remote(authority: &str) -> bool {
    let Some(rest) = authority.trim().strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    !mailroom_shared::parse::is_loopback_address(host)
}

fn warn_if_plain_http(authority: &str) {
    if is_plain_http_to_remote(authority) {
        tracing::warn!(
            authority,
            "--entra-authority is plain http to a host that is not loopback: the client secret would cross the network unencrypted; use https"
        );
    }
}

fn hint_for_claims(claims: &TokenClaims, s: &Settings) -> Vec<String> {
    let mut hints = Vec::new();
    let tenant = s.tenant_id.as_deref().unwrap_or_default();
    let client = s.client_id.as_deref().unwrap_or_default();
    if let Some(tid) = claims
        .tid
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case(tenant))
    {
        hints.push(format!("The token was issued by tenant {tid}, not the configured {tenant}; check the Directory (tenant) ID."));
    }
    if let Some(appid) = claims
        .appid
        .as_deref()
        .filter(|a| !a.eq_ignore_ascii_case(client))
    {
        hints.push(format!("The token was issued to application {appid}, not the configured {client}; check the Application (client) ID."));
    }
    if !claims.roles.iter().any(|r| r == "SMTP.SendAsApp") {
        hints.push("The token has no SMTP.SendAsApp role: add the SMTP.SendAsApp Application permission (Office 365 Exchange Online) and grant admin consent (step 2), unless you use Exchange RBAC for Applications.".into());
    }
    hints
}

fn join_hints(main: Option<String>, extra: &[String]) -> Option<String> {
    let mut all: Vec<String> = main.into_iter().collect();
    all.extend(extra.iter().cloned());
    (!all.is_empty()).then(|| all.join(" "))
}

/// Builds the test message: From `sender_name <sender_email>`, Date, Message-ID,
/// and a body saying what was tested.
pub fn build_message(s: &Settings, to: &Address) -> Result<(Address, Vec<u8>), String> {
    let from_addr: Address = s
        .sender_email
        .trim()
        .parse()
        .map_err(|e| format!("sender email: {e}"))?;
    let provider = catalogue::provider(s.provider).name;
    let method = catalogue::auth_method_label(s.provider, s.auth_method);
    let security = catalogue::security_label(s.security);
    let body = format!(
        "This is a test email from Mailroom.\r\n\r\nIt was sent with these settings:\r\n  Provider: {provider}\r\n  Authentication: {method}\r\n  SMTP server: {}:{}\r\n  Security: {security}\r\n  Username: {}\r\n  Sender: {} <{}>\r\n\r\nIf you can read this, the settings work. Remember to save them in Mailroom.\r\n",
        s.host,
        s.port,
        s.username.as_deref().unwrap_or("(none)"),
        s.sender_name,
        s.sender_email,
    );
    let message = Message::builder()
        .from(Mailbox::new(Some(s.sender_name.clone()), from_addr.clone()))
        .to(Mailbox::new(None, to.clone()))
        .subject(format!("Mailroom test email: {provider}, {method}"))
        .date_now()
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    Ok((from_addr, message.formatted()))
}

impl Tester {
    /// Loads the TLS trust and builds the token client, with the standard timeouts.
    pub fn new(args: &TestArgs) -> Result<Self, String> {
        Self::with_timeouts(args, Timeouts::default())
    }

    /// As [`Tester::new`], with other timeouts (tests use short ones).
    pub fn with_timeouts(args: &TestArgs, timeouts: Timeouts) -> Result<Self, String> {
        if let Some(authority) = args.entra_authority.as_deref() {
            warn_if_plain_http(authority);
        }
        Ok(Tester {
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_TESTS),
            timeouts,
            authority_override: args
                .entra_authority
                .clone()
                .map(|a| a.trim_end_matches('/').to_string()),
            trust: TlsTrust::load(args.extra_ca_file.as_deref())?,
            tokens: TokenClient::new(timeouts.token)?,
        })
    }

    fn authority(&self, s: &Settings) -> String {
        self.authority_override
            .clone()
            .unwrap_or_else(|| catalogue::cloud(s.cloud).login_host.to_string())
    }

    /// Runs a test of valid, secret-complete settings. Never fails: every
    /// problem becomes a [`TestResult`] with a stage, a message and a hint.
    /// No secret (client secret, password, token, or their base64) is in the
    /// result: the transcript, the message, the hint and the code are masked.
    pub async fn run(&self, settings: &Settings, recipient: &str) -> TestResult {
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(settings.client_secret.clone());
        secrets.extend(settings.password.clone());
        let mut result = self.run_unmasked(settings, recipient, &mut secrets).await;
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        mask_transcript(&mut result.transcript, &refs);
        mask_text(&mut result.message, &refs);
        for text in [&mut result.hint, &mut result.code].into_iter().flatten() {
            mask_text(text, &refs);
        }
        result
    }

    async fn run_unmasked(
        &self,
        settings: &Settings,
        recipient: &str,
        secrets: &mut Vec<String>,
    ) -> TestResult {
        let s = settings.normalized();
        let mut stages: Vec<StageTiming> = Vec::new();
        let fail = |stages: Vec<StageTiming>,
                    d: diagnose::Diagnosis,
                    transcript,
                    claims,
                    extra: &[String]| TestResult {
            ok: false,
            stage: Some(d.stage),
            code: d.code,
            message: d.message,
            hint: join_hints(Some(d.hint), extra),
            stages,
            transcript,
            token_claims: claims,
        };
        let to: Address = match recipient.trim().parse() {
            Ok(a) => a,
            Err(e) => {
                let d = diagnose::Diagnosis {
                    stage: Stage::Send,
                    code: None,
                    message: format!("The recipient address is not usable: {e}."),
                    hint: "Enter a single address, like name@example.com.".into(),
                };
                return fail(stages, d, Vec::new(), None, &[]);
            }
        };
        let (from, message) = match build_message(&s, &to) {
            Ok(m) => m,
            Err(e) => {
                let d = diagnose::Diagnosis {
                    stage: Stage::Send,
                    code: None,
                    message: format!("The test message could not be built: {e}."),
                    hint: "Check the sender name and sender email.".into(),
                };
                return fail(stages, d, Vec::new(), None, &[]);
            }
        };
        let hello = s
            .client_hostname
            .clone()
            .map(ClientId::Domain)
            .unwrap_or_default();
        let user = s.username.clone().unwrap_or_default();
        let oauth = s.auth_method == AuthMethod::OAuth2ClientCredentials;

        let token_request = oauth.then(|| TokenRequest {
            authority: self.authority(&s),
            tenant: s.tenant_id.clone().unwrap_or_default(),
            client_id: s.client_id.clone().unwrap_or_default(),
            secret: Secret::new(s.client_secret.clone().unwrap_or_default()),
            scope: catalogue::cloud(s.cloud).scope.to_string(),
        });

        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut claims = None;
            let mut extra_hints = Vec::new();
            let mut from_cache = false;
            let auth = match (&token_request, s.auth_method) {
                (Some(req), _) => {
                    let t = Instant::now();
                    match self.tokens.get(req).await {
                        Ok(token) => {
                            stages.push(StageTiming {
                                name: Stage::Token,
                                ok: true,
                                ms: t.elapsed().as_millis() as u64,
                            });
                            from_cache = token.from_cache;
                            let c = token::claims(token.access_token.expose());
                            if let Some(c) = &c {
                                extra_hints = hint_for_claims(c, &s);
                            }
                            claims = c;
                            secrets.push(token.access_token.expose().to_string());
                            SmtpAuth::Xoauth2(user.clone(), token.access_token)
                        }
                        Err(e) => {
                            stages.push(StageTiming {
                                name: Stage::Token,
                                ok: false,
                                ms: t.elapsed().as_millis() as u64,
                            });
                            let d = diagnose::token_error(&e, &s, &req.authority);
                            return fail(stages, d, Vec::new(), None, &[]);
                        }
                    }
                }
                (None, AuthMethod::Password) => SmtpAuth::Password(
                    user.clone(),
                    Secret::new(s.password.clone().unwrap_or_default()),
                ),
                (None, AuthMethod::Username) => SmtpAuth::UsernameOnly(user.clone()),
                (None, _) => SmtpAuth::None,
            };
            let plan = SmtpPlan {
                host: s.host.clone(),
                port: s.port,
                security: s.security,
                hello: hello.clone(),
                auth,
                from: from.clone(),
                to: to.clone(),
                message: message.clone(),
                connect_timeout: self.timeouts.connect,
                session_timeout: self.timeouts.session,
            };
            let outcome = smtp::run(&plan, &self.trust).await;
            stages.extend(outcome.stages);
            let transcript = outcome.transcript;
            match outcome.failure {
                None => {
                    return TestResult {
                        ok: true,
                        stage: None,
                        code: None,
                        message: format!("The server accepted the test email for {recipient}."),
                        hint: None,
                        stages,
                        transcript,
                        token_claims: claims,
                    }
                }
                Some(SmtpFailure::Reply {
                    code: 535,
                    stage: Stage::Auth,
                    ..
                }) if from_cache && attempts == 1 => {
                    // The cached token may have been revoked: drop it and try once more.
                    if let Some(req) = &token_request {
                        self.tokens.invalidate(req).await;
                    }
                    continue;
                }
                Some(f) => {
                    let d = diagnose::smtp_failure(&f, &s);
                    return fail(stages, d, transcript, claims, &extra_hints);
                }
            }
        }
    }
}

async fn test_settings(
    State(repo): State<SettingsRepo>,
    State(tester): State<Arc<Tester>>,
    ApiJson(body): ApiJson<TestRequest>,
) -> Result<Json<TestResult>, AppError> {
    let current = repo.load_current().await?;
    let mut report = body
        .settings
        .validate_with(current.stored_for(&body.settings));
    if let Some(msg) = mailroom_shared::validate::check_recipient(&body.recipient) {
        report.error("recipient", msg);
    }
    if !report.is_valid() {
        return Err(AppError::Invalid(report.errors));
    }
    let Ok(_slot) = tester.slots.try_acquire() else {
        return Err(AppError::Busy(
            format!("{MAX_CONCURRENT_TESTS} test emails are already running. Wait a few seconds for one to finish, then try again."),
            5,
        ));
    };
    let mut settings = body.settings;
    current.fill_secrets(&mut settings);
    let result = tester.run(&settings, &body.recipient).await;
    tracing::info!(ok = result.ok, stage = ?result.stage, code = ?result.code, "test email");
    Ok(Json(result))
}

/// `POST /api/settings/test` (administrators only).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SettingsRepo: FromRef<S>,
    Arc<Tester>: FromRef<S>,
{
    Router::new().route("/api/settings/test", post(test_settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_shared::api::Direction;

    fn line(dir: Direction, l: &str) -> TranscriptLine {
        TranscriptLine {
            dir,
            line: l.into(),
        }
    }

    #[test]
    fn claims_that_do_not_match_the_settings_get_hints() {
        let s = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
        let matching = TokenClaims {
            tid: s.tenant_id.clone(),
            appid: s.client_id.clone(),
            roles: vec!["SMTP.SendAsApp".into()],
            ..TokenClaims::default()
        };
        assert!(hint_for_claims(&matching, &s).is_empty());
        let other = TokenClaims {
            tid: Some("11111111-2222-4333-8444-555555555555".into()),
            appid: Some("99999999-2222-4333-8444-555555555555".into()),
            roles: vec![],
            ..TokenClaims::default()
        };
        let hints = hint_for_claims(&other, &s).join(" ");
        assert!(hints.contains("issued by tenant 11111111"), "{hints}");
        assert!(hints.contains("issued to application 99999999"), "{hints}");
        assert!(hints.contains("no SMTP.SendAsApp role"), "{hints}");
    }

    #[test]
    fn plain_http_authority_is_flagged_unless_loopback() {
        assert!(is_plain_http_to_remote("http://login.example.net"));
        assert!(is_plain_http_to_remote("http://localhost:9000"));
        assert!(!is_plain_http_to_remote("http://127.0.0.1:9000/"));
        assert!(!is_plain_http_to_remote("http://[::1]:9000"));
        assert!(!is_plain_http_to_remote(
            "https://login.microsoftonline.com"
        ));
    }

    #[test]
    fn mask_text_covers_plain_and_base64_forms() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut t = format!("bad pw-secret and {}", b64.encode("pw-secret"));
        mask_text(&mut t, &["pw-secret"]);
        assert_eq!(t, "bad ***** and *****");
    }

    #[test]
    fn masking_covers_auth_lines_challenges_and_values() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut t = vec![
            line(
                Direction::Client,
                &format!("AUTH PLAIN {}", b64.encode("\0u\0pw-secret")),
            ),
            line(Direction::Server, "235 2.7.0 ok"),
            line(Direction::Client, "AUTH LOGIN"),
            line(Direction::Server, "334 VXNlcm5hbWU6"),
            line(Direction::Client, &b64.encode("user")),
            line(Direction::Server, "334 UGFzc3dvcmQ6"),
            line(Direction::Client, &b64.encode("pw-secret")),
            line(Direction::Server, "535 5.7.3 no"),
            line(Direction::Client, "MAIL FROM:<a@b.c> pw-secret"),
        ];
        mask_transcript(&mut t, &["pw-secret"]);
        assert_eq!(t[0].line, "AUTH PLAIN *****");
        assert_eq!(t[2].line, "AUTH LOGIN");
        assert_eq!(t[4].line, "*****");
        assert_eq!(t[6].line, "*****");
        assert_eq!(t[8].line, "MAIL FROM:<a@b.c> *****");
    }
}
