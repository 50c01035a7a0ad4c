//! [`Tester::run`]: the Entra token (OAuth), the SMTP session, and the
//! diagnosis of any failure, shared by `POST /api/settings/test` and
//! `mailroom check`.

use std::time::Instant;

use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use mailroom_shared::api::{Stage, StageTiming, TestResult, TokenClaims};
use mailroom_shared::{catalogue, AuthMethod, Settings};

use super::diagnose;
use super::mask::{mask_text, mask_transcript};
use super::message::build_message;
use super::smtp::{self, SmtpAuth, SmtpFailure, SmtpPlan, TlsTrust};
use super::token::{self, TokenClient, TokenRequest};
use crate::config::TestArgs;
use crate::crypto::Secret;

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

/// Why the tester could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TesterError {
    /// `--extra-ca-file` is unusable.
    #[error(transparent)]
    Trust(#[from] super::smtp::tls::TrustError),
    /// The HTTP client for the token endpoint could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
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

impl Tester {
    /// Loads the TLS trust and builds the token client, with the standard timeouts.
    pub fn new(args: &TestArgs) -> Result<Self, TesterError> {
        Self::with_timeouts(args, Timeouts::default())
    }

    /// As [`Tester::new`], with other timeouts (tests use short ones).
    pub fn with_timeouts(args: &TestArgs, timeouts: Timeouts) -> Result<Self, TesterError> {
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
            tokens: TokenClient::new(timeouts.token).map_err(TesterError::HttpClient)?,
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
                            let d = diagnose::token_error(&e, &s, &req.authority, &self.timeouts);
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
                    let d = diagnose::smtp_failure(&f, &s, &self.timeouts);
                    return fail(stages, d, transcript, claims, &extra_hints);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
