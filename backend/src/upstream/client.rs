//! [`Upstream::run`]: the Entra token (OAuth), the SMTP session or the Graph
//! request, and the diagnosis of any failure, shared by `POST
//! /api/settings/test`, `mailroom check` and delivery ([`Upstream::open_session`]).

use bytes::Bytes;
use reqwest::header::HeaderValue;
use std::sync::Arc;
use std::time::Instant;

use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use mailroom_shared::api::{Stage, StageTiming, TestResult, TokenClaims};
use mailroom_shared::{catalogue, AuthMethod, Settings, Transport};

use super::certificate::CertKey;
use super::diagnose;
use super::entra::{self, Credential, TokenClient, TokenRequest};
use super::graph::{self, GraphClient, GraphFailure};
use super::mask::{mask_text, mask_transcript};
use super::smtp::{self, Progress, SmtpAuth, SmtpFailure, SmtpPlan, SmtpSession, Target, TlsTrust};
use super::test_message::{build_message, TestMessage};
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
    /// One Microsoft Graph `sendMail` request, its answer read (60 s).
    pub graph: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            token: entra::TOKEN_TIMEOUT,
            connect: smtp::CONNECT_TIMEOUT,
            session: smtp::SESSION_TIMEOUT,
            graph: graph::REQUEST_TIMEOUT,
        }
    }
}

/// How a session signs in, and what the token said.
struct SignIn {
    auth: SmtpAuth,
    from_cache: bool,
    claims: Option<TokenClaims>,
    extra_hints: Vec<String>,
}

/// How a delivery session sends: an SMTP connection, or Graph requests
/// under one token.
pub enum Way {
    /// A signed-in SMTP connection (boxed: it holds its buffers).
    Smtp(Box<SmtpSession>),
    /// Graph's `sendMail` (boxed, like the SMTP session).
    Graph(Box<GraphWay>),
}

impl Way {
    /// Makes the session ready for the next message (RSET for SMTP).
    pub async fn reset(&mut self, p: &mut Progress) -> Result<(), SmtpFailure> {
        match self {
            Way::Smtp(s) => s.reset(p).await,
            Way::Graph(_) => Ok(()),
        }
    }

    /// Which way this is.
    pub fn transport(&self) -> Transport {
        match self {
            Way::Smtp(_) => Transport::Smtp,
            Way::Graph(_) => Transport::Graph,
        }
    }

    /// Ends the session (QUIT for SMTP; nothing to close for Graph).
    pub async fn quit(self) {
        if let Way::Smtp(s) = self {
            s.quit().await;
        }
    }
}

/// Graph's `sendMail` as one mailbox, with the token for it.
pub struct GraphWay {
    /// Where the requests go.
    pub endpoint: String,
    /// `sendMail` for the settings' username, under [`GraphWay::endpoint`].
    target: graph::SendTarget,
    /// `Authorization` with the token.
    authorization: Result<HeaderValue, String>,
    from_cache: bool,
    request: TokenRequest,
}

impl GraphWay {
    fn new(
        endpoint: String,
        mailbox: &str,
        token: &Secret,
        from_cache: bool,
        request: TokenRequest,
    ) -> Self {
        GraphWay {
            target: graph::SendTarget::new(&endpoint, mailbox),
            endpoint,
            authorization: graph::authorization(token),
            from_cache,
            request,
        }
    }
}

/// A signed-in session for delivery.
pub struct OpenSession {
    /// The session.
    pub session: Way,
    /// Its stages and transcript so far.
    pub progress: Progress,
    /// Everything to mask in what it records.
    pub secrets: Vec<String>,
}

/// Why a delivery session could not be opened, explained and masked.
#[derive(Debug)]
pub struct SessionFailure {
    /// Stage, code, message and fix.
    pub diagnosis: diagnose::Diagnosis,
    /// The masked conversation.
    pub transcript: Vec<mailroom_shared::api::TranscriptLine>,
}

/// Why the tester could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `--extra-ca-file` is unusable.
    #[error(transparent)]
    Trust(#[from] super::smtp::tls::TrustError),
    /// The HTTP client for the token endpoint could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// `--entra-authority` or `--graph-endpoint` is no usable URL.
    #[error("{0}")]
    Endpoint(String),
}

/// `--entra-authority` and `--graph-endpoint` as the requests will use
/// them: an http or https URL with a host, and perhaps a path (a proxy's
/// prefix). Another scheme failed only at the first test email, as a
/// network error, and a query, fragment or user name would be lost or
/// sent where the path goes.
fn check_endpoint(option: &str, value: &str) -> Result<(), UpstreamError> {
    use crate::config::UrlFault;
    let fix = "give it as scheme and host, like http://127.0.0.1:9000";
    let refused = |why: String| UpstreamError::Endpoint(format!("{option} “{value}”: {why}"));
    let (_, authority) = crate::config::base_url(value.trim()).map_err(|fault| match fault {
        UrlFault::NoScheme | UrlFault::Scheme => {
            refused(format!("must start with http:// or https://; {fix}."))
        }
        UrlFault::NoHost => refused(format!("is not a URL (no host); {fix}.")),
        UrlFault::QueryOrFragment => refused(
            "has a query or fragment, which the requests' paths would follow; remove it.".into(),
        ),
        // Not repeated: the password would go to the terminal and the log.
        UrlFault::UserInfo => UpstreamError::Endpoint(format!(
            "{option} holds a user name or password, which is not how this endpoint signs in; remove it."
        )),
    })?;
    mailroom_shared::webhooks::check_authority(authority)
        .map_err(|e| refused(format!("is not a URL ({e}); {fix}.")))
}

/// How many test emails may run at once; the next one gets 429.
pub const MAX_CONCURRENT_TESTS: usize = 4;

/// Runs test emails; holds the token cache and the TLS trust.
#[derive(Debug)]
pub struct Upstream {
    /// One permit per test email allowed to run at once over HTTP.
    pub slots: tokio::sync::Semaphore,
    timeouts: Timeouts,
    authority_override: Option<String>,
    trust: TlsTrust,
    tokens: TokenClient,
    graph_override: Option<String>,
    graph: GraphClient,
}

/// Whether an authority sends the client secret in clear text to another
/// machine: plain `http` to a host that is not a loopback address.
pub fn is_plain_http_to_remote(authority: &str) -> bool {
    let Some(rest) = authority.trim().strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    !mailroom_shared::parse::is_loopback_address(mailroom_shared::parse::authority_host(host_port))
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

impl Upstream {
    /// Loads the TLS trust and builds the token client, with the standard timeouts.
    pub fn new(args: &TestArgs) -> Result<Self, UpstreamError> {
        Self::with_timeouts(args, Timeouts::default())
    }

    /// As [`Upstream::new`], with other timeouts (tests use short ones).
    pub fn with_timeouts(args: &TestArgs, timeouts: Timeouts) -> Result<Self, UpstreamError> {
        if let Some(authority) = args.entra_authority.as_deref() {
            check_endpoint("--entra-authority", authority)?;
            warn_if_plain_http(authority);
        }
        if let Some(endpoint) = args.graph_endpoint.as_deref() {
            check_endpoint("--graph-endpoint", endpoint)?;
            if is_plain_http_to_remote(endpoint) {
                tracing::warn!(
                    endpoint,
                    "--graph-endpoint is plain http to a host that is not loopback: tokens and mail would cross the network unencrypted; use https"
                );
            }
        }
        Ok(Upstream {
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_TESTS),
            timeouts,
            authority_override: args
                .entra_authority
                .as_deref()
                .map(|a| a.trim().trim_end_matches('/').to_string()),
            trust: TlsTrust::load(args.extra_ca_file.as_deref())?,
            tokens: TokenClient::new(timeouts.token).map_err(UpstreamError::HttpClient)?,
            graph_override: args.graph_endpoint.as_deref().map(|g| g.trim().to_string()),
            graph: GraphClient::new(timeouts.graph).map_err(UpstreamError::HttpClient)?,
        })
    }

    fn authority(&self, s: &Settings) -> String {
        self.authority_override
            .clone()
            .unwrap_or_else(|| catalogue::cloud(s.cloud).login_host.to_string())
    }

    /// The counter of token requests, for `/metrics`.
    pub fn token_requests(&self) -> prometheus_client::metrics::counter::Counter {
        self.tokens.requests.clone()
    }

    /// The time limits in use.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Where Graph requests go for these settings.
    pub fn graph_endpoint(&self, s: &Settings) -> String {
        graph::endpoint(s.cloud, self.graph_override.as_deref())
    }

    /// The token request for OAuth: for Exchange Online (SMTP) or for Graph,
    /// always with the cloud's real scope.
    fn token_request(&self, s: &Settings, cert: Option<&Arc<CertKey>>) -> Option<TokenRequest> {
        let tenant = s.tenant_id.clone().unwrap_or_default();
        let credential = match (s.uses_certificate(), cert) {
            (false, _) => {
                Credential::Secret(Secret::new(s.client_secret.clone().unwrap_or_default()))
            }
            (true, Some(key)) => Credential::Certificate {
                key: key.clone(),
                // The cloud's real token URL, even when requests go elsewhere.
                audience: format!(
                    "{}/{}/oauth2/v2.0/token",
                    catalogue::cloud(s.cloud).login_host,
                    tenant
                ),
            },
            (true, None) => Credential::NoCertificate,
        };
        (s.auth_method == AuthMethod::OAuth2ClientCredentials).then(|| TokenRequest {
            authority: self.authority(s),
            tenant,
            client_id: s.client_id.clone().unwrap_or_default(),
            credential,
            scope: match s.transport {
                Transport::Smtp => catalogue::cloud(s.cloud).scope.to_string(),
                Transport::Graph => graph::scope(s.cloud),
            },
        })
    }

    /// Sends one prepared message over Graph; a `401` with a cached token
    /// gets one more try with a fresh token (it may have been revoked).
    pub async fn graph_send(
        &self,
        way: &mut GraphWay,
        body_b64: Bytes,
        transcript: &mut Vec<mailroom_shared::api::TranscriptLine>,
        secrets: &mut Vec<String>,
    ) -> Result<graph::Accepted, GraphFailure> {
        let first = self
            .graph
            .send_mail(
                &way.target,
                &way.authorization,
                body_b64.clone(),
                transcript,
            )
            .await;
        match first {
            Err(GraphFailure::Reply { status: 401, .. }) if way.from_cache => {
                self.tokens.invalidate(&way.request).await;
                let Ok(token) = self.tokens.get(&way.request).await else {
                    return first;
                };
                secrets.push(token.access_token.expose().to_string());
                way.authorization = graph::authorization(&token.access_token);
                way.from_cache = false;
                self.graph
                    .send_mail(&way.target, &way.authorization, body_b64, transcript)
                    .await
            }
            other => other,
        }
    }

    /// How to sign in: the Entra token (from the cache when fresh) for OAuth,
    /// else the credentials; records the token stage and keeps the token in
    /// `secrets` for masking.
    async fn credentials(
        &self,
        s: &Settings,
        req: Option<&TokenRequest>,
        stages: &mut Vec<StageTiming>,
        secrets: &mut Vec<String>,
    ) -> Result<SignIn, diagnose::Diagnosis> {
        let user = s.username.clone().unwrap_or_default();
        let Some(req) = req else {
            let auth = match s.auth_method {
                AuthMethod::Password => {
                    SmtpAuth::Password(user, Secret::new(s.password.clone().unwrap_or_default()))
                }
                AuthMethod::Username => SmtpAuth::UsernameOnly(user),
                _ => SmtpAuth::None,
            };
            return Ok(SignIn {
                auth,
                from_cache: false,
                claims: None,
                extra_hints: Vec::new(),
            });
        };
        let t = Instant::now();
        let fetched = self.tokens.get(req).await;
        stages.push(StageTiming {
            name: Stage::Token,
            ok: fetched.is_ok(),
            ms: t.elapsed().as_millis() as u64,
        });
        let token = fetched.map_err(|e| diagnose::token_error(&e, s, req, &self.timeouts))?;
        let claims = entra::claims(token.access_token.expose());
        secrets.push(token.access_token.expose().to_string());
        Ok(SignIn {
            extra_hints: claims
                .as_ref()
                .map(|c| hint_for_claims(c, s))
                .unwrap_or_default(),
            claims,
            from_cache: token.from_cache,
            auth: SmtpAuth::Xoauth2(user, token.access_token),
        })
    }

    fn target(&self, s: &Settings) -> Target {
        Target {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            hello: s
                .client_hostname
                .clone()
                .map(ClientId::Domain)
                .unwrap_or_default(),
            connect_timeout: self.timeouts.connect,
        }
    }

    /// Opens a signed-in session for delivery with these (secret-complete)
    /// settings: the same token cache, XOAUTH2 and retry on a 535 with a fresh
    /// token as the test email. A failure comes diagnosed, its transcript masked.
    pub async fn open_session(
        &self,
        settings: &Settings,
        cert: Option<&Arc<CertKey>>,
    ) -> Result<OpenSession, SessionFailure> {
        let s = settings.normalized();
        let mut secrets: Vec<String> = s.client_secret.iter().chain(&s.password).cloned().collect();
        let req = self.token_request(&s, cert);
        if let (Transport::Graph, Some(req)) = (s.transport, &req) {
            let mut stages = Vec::new();
            return match self
                .credentials(&s, Some(req), &mut stages, &mut secrets)
                .await
            {
                Ok(SignIn {
                    auth: SmtpAuth::Xoauth2(_, token),
                    from_cache,
                    ..
                }) => Ok(OpenSession {
                    session: Way::Graph(Box::new(GraphWay::new(
                        self.graph_endpoint(&s),
                        s.username.as_deref().unwrap_or_default(),
                        &token,
                        from_cache,
                        req.clone(),
                    ))),
                    progress: Progress::default(),
                    secrets,
                }),
                Ok(_) => unreachable!("OAuth signs in with a token"),
                Err(mut d) => {
                    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    mask_text(&mut d.message, &refs);
                    mask_text(&mut d.hint, &refs);
                    Err(SessionFailure {
                        diagnosis: d,
                        transcript: Vec::new(),
                    })
                }
            };
        }
        let opened = tokio::time::timeout(self.timeouts.session, async {
            let mut retried = false;
            loop {
                let mut stages = Vec::new();
                let sign_in = self
                    .credentials(&s, req.as_ref(), &mut stages, &mut secrets)
                    .await
                    .map_err(|d| (d, Vec::new()))?;
                let mut progress = Progress::default();
                match SmtpSession::open(&self.target(&s), &sign_in.auth, &self.trust, &mut progress)
                    .await
                {
                    Ok(session) => return Ok((session, progress)),
                    Err(SmtpFailure::Reply {
                        code: 535,
                        stage: Stage::Auth,
                        ..
                    }) if sign_in.from_cache && !retried => {
                        retried = true;
                        if let Some(req) = &req {
                            self.tokens.invalidate(req).await;
                        }
                    }
                    Err(f) => {
                        let d = diagnose::smtp_failure(&f, &s, &self.timeouts);
                        return Err((d, progress.take_transcript()));
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            let d =
                diagnose::smtp_failure(&SmtpFailure::Timeout(Stage::Connect), &s, &self.timeouts);
            Err((d, Vec::new()))
        });
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        match opened {
            Ok((session, progress)) => Ok(OpenSession {
                session: Way::Smtp(Box::new(session)),
                progress,
                secrets: secrets.clone(),
            }),
            Err((mut d, mut transcript)) => {
                mask_transcript(&mut transcript, &refs);
                mask_text(&mut d.message, &refs);
                mask_text(&mut d.hint, &refs);
                Err(SessionFailure {
                    diagnosis: d,
                    transcript,
                })
            }
        }
    }

    /// Signs in as delivery does, with a fresh token (a cached one would hide
    /// a secret deleted since), sends nothing and quits: Graph's way is the
    /// token alone, SMTP's also the connection, TLS and AUTH. A failure comes
    /// diagnosed, as [`Upstream::open_session`]'s.
    pub async fn check_sign_in(
        &self,
        settings: &Settings,
        cert: Option<&Arc<CertKey>>,
    ) -> Result<(), SessionFailure> {
        if let Some(req) = self.token_request(&settings.normalized(), cert) {
            self.tokens.invalidate(&req).await;
        }
        let open = self.open_session(settings, cert).await?;
        open.session.quit().await;
        Ok(())
    }

    /// Runs a test of valid, secret-complete settings. Never fails: every
    /// problem becomes a [`TestResult`] with a stage, a message and a hint.
    /// No secret (client secret, password, token, or their base64) is in the
    /// result: the transcript, the message, the hint and the code are masked.
    pub async fn run(
        &self,
        settings: &Settings,
        cert: Option<&Arc<CertKey>>,
        recipient: &str,
    ) -> TestResult {
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(settings.client_secret.clone());
        secrets.extend(settings.password.clone());
        let mut result = self
            .run_unmasked(settings, cert, recipient, &mut secrets)
            .await;
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
        cert: Option<&Arc<CertKey>>,
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
                    kind: diagnose::Kind::Permanent,
                    stage: Stage::Send,
                    code: None,
                    message: format!("The recipient address is not usable: {e}."),
                    hint: "Enter a single address, like name@example.com.".into(),
                };
                return fail(stages, d, Vec::new(), None, &[]);
            }
        };
        let built = match build_message(&s, &to) {
            Ok(m) => m,
            Err(e) => {
                let d = diagnose::Diagnosis {
                    kind: diagnose::Kind::Permanent,
                    stage: Stage::Send,
                    code: None,
                    message: format!("The test message could not be built: {e}."),
                    hint: "Check the sender name and sender email.".into(),
                };
                return fail(stages, d, Vec::new(), None, &[]);
            }
        };
        let token_request = self.token_request(&s, cert);
        if let (Transport::Graph, Some(req)) = (s.transport, &token_request) {
            return self
                .run_graph(&s, req, recipient, &built, stages, secrets)
                .await;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sign_in = match self
                .credentials(&s, token_request.as_ref(), &mut stages, secrets)
                .await
            {
                Ok(sign_in) => sign_in,
                Err(d) => return fail(stages, d, Vec::new(), None, &[]),
            };
            let SignIn {
                auth,
                from_cache,
                claims,
                extra_hints,
            } = sign_in;
            let target = self.target(&s);
            let plan = SmtpPlan {
                host: target.host,
                port: target.port,
                security: target.security,
                hello: target.hello,
                auth,
                from: built.from.clone(),
                to: to.clone(),
                message: built.bytes.clone(),
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
                        message: format!(
                            "The server accepted the test email for {recipient} (Message-ID {}).",
                            built.message_id
                        ),
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

impl Upstream {
    /// The test email over Graph: the token (stage `token`), then one
    /// `sendMail` (stage `send`) whose request line, status and Graph's ids
    /// make the transcript.
    async fn run_graph(
        &self,
        s: &Settings,
        req: &TokenRequest,
        recipient: &str,
        built: &TestMessage,
        mut stages: Vec<StageTiming>,
        secrets: &mut Vec<String>,
    ) -> TestResult {
        let fail = |stages, d: diagnose::Diagnosis, transcript, claims| TestResult {
            ok: false,
            stage: Some(d.stage),
            code: d.code,
            message: d.message,
            hint: Some(d.hint),
            stages,
            transcript,
            token_claims: claims,
        };
        let sign_in = match self.credentials(s, Some(req), &mut stages, secrets).await {
            Ok(sign_in) => sign_in,
            Err(d) => return fail(stages, d, Vec::new(), None),
        };
        let SmtpAuth::Xoauth2(_, token) = sign_in.auth else {
            unreachable!("OAuth signs in with a token")
        };
        let body = match graph::prepare(&built.bytes, &[recipient.trim().to_string()]) {
            Ok(b) => b,
            Err(u) => {
                return fail(
                    stages,
                    diagnose::graph_unsendable(&u),
                    Vec::new(),
                    sign_in.claims,
                )
            }
        };
        let mut way = GraphWay::new(
            self.graph_endpoint(s),
            s.username.as_deref().unwrap_or_default(),
            &token,
            sign_in.from_cache,
            req.clone(),
        );
        let mut transcript = Vec::new();
        let t = Instant::now();
        let sent = self
            .graph_send(&mut way, body, &mut transcript, secrets)
            .await;
        stages.push(StageTiming {
            name: Stage::Send,
            ok: sent.is_ok(),
            ms: t.elapsed().as_millis() as u64,
        });
        match sent {
            Ok(accepted) => TestResult {
                ok: true,
                stage: None,
                code: None,
                message: format!(
                    "Microsoft Graph accepted the test email for {recipient} (Message-ID {}, request-id {}).",
                    built.message_id,
                    accepted.request_id.as_deref().unwrap_or("none")
                ),
                hint: None,
                stages,
                transcript,
                token_claims: sign_in.claims,
            },
            Err(f) => {
                let d = diagnose::graph_failure(&f, s, &way.endpoint);
                fail(stages, d, transcript, sign_in.claims)
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
    fn a_test_endpoint_must_be_an_http_url_without_query_or_credentials() {
        let with = |authority: Option<&str>, graph: Option<&str>| {
            Upstream::new(&TestArgs {
                entra_authority: authority.map(String::from),
                graph_endpoint: graph.map(String::from),
                extra_ca_file: None,
            })
        };
        for (url, words) in [
            ("ftp://127.0.0.1:9000", "http:// or https://"),
            ("127.0.0.1:9000", "http:// or https://"),
            ("http://", "not a URL"),
            ("http://127.0.0.1:9000/?x=1", "query"),
            ("http://127.0.0.1:9000/#top", "query"),
            ("http://u:pw123@127.0.0.1:9000", "user name"),
            ("http://127.0.0.1:99999", "not a URL"),
        ] {
            for (option, authority, graph) in [
                ("--entra-authority", Some(url), None),
                ("--graph-endpoint", None, Some(url)),
            ] {
                let e = with(authority, graph).expect_err(url).to_string();
                assert!(e.contains(option) && e.contains(words), "{url}: {e}");
                assert!(!e.contains("pw123"), "{e}");
            }
        }
        for url in [
            "http://127.0.0.1:9000",
            "https://graph.example.net/prefix/",
            "http://[::1]:1",
        ] {
            assert!(with(Some(url), Some(url)).is_ok(), "{url}");
        }
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
