//! A fake Microsoft Entra ID token endpoint: `POST /{tenant}/oauth2/v2.0/token`
//! with a form body, answering like the real one, error bodies included.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use rand::Rng;

/// How the fake answers, beyond checking the credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum EntraMode {
    /// Check tenant, client, secret and scope like Entra does.
    Normal,
    /// Always answer this Entra error.
    Error {
        /// HTTP status.
        status: u16,
        /// The OAuth `error`.
        error: &'static str,
        /// The AADSTS number.
        code: u64,
    },
    /// Answer 502 with an HTML page.
    BadGateway,
    /// Answer 200 with a body that is not JSON.
    NotJson,
    /// Answer 200 with a body that never ends.
    Endless,
    /// Wait this long before answering.
    Delay(Duration),
    /// Issue tokens without the SMTP.SendAsApp role.
    NoRole,
    /// Answer `307 Temporary Redirect` to the same URL: a client that follows
    /// it posts the form, client secret included, again.
    Redirect,
}

/// What an app registration proves itself with.
#[derive(Default, Clone)]
struct Creds {
    secret: Option<String>,
    certificates: Vec<Vec<u8>>,
}

struct Inner {
    mode: Mutex<EntraMode>,
    apps: Mutex<HashMap<(String, String), Creds>>,
    clock_offset: Mutex<i64>,
    expired_certificates: Mutex<bool>,
    last_assertion: Mutex<Option<serde_json::Value>>,
    issued: Arc<Mutex<HashSet<String>>>,
    requests: AtomicUsize,
    expires_in: Mutex<u64>,
    last_form: Mutex<Option<HashMap<String, String>>>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeEntra {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error_body(status: u16, error: &str, code: u64, description: &str) -> Response {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000aaaa-1111-bbbb-2222-cccc3333dddd\r\nCorrelation ID: 4444eeee-5555-ffff-6666-777788889999\r\nTimestamp: 2026-11-26 10:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-11-26 10:00:00Z",
        "trace_id": "0000aaaa-1111-bbbb-2222-cccc3333dddd",
        "correlation_id": "4444eeee-5555-ffff-6666-777788889999",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

/// The cloud's real token URL for a scope's resource (the fake serves every cloud).
fn real_token_url(scope: &str, tenant: &str) -> String {
    let login = if scope.contains(".cn/") || scope.contains("chinacloudapi") {
        "https://login.partner.microsoftonline.cn"
    } else if scope.contains(".us/") {
        "https://login.microsoftonline.us"
    } else {
        "https://login.microsoftonline.com"
    };
    format!("{login}/{tenant}/oauth2/v2.0/token")
}

/// Verifies a client assertion the way Entra does: the type, a registered
/// certificate named by `x5t#S256` (or `x5t`), its RS256/PS256 signature,
/// `aud`, `iss` = `sub` = the client, and the times. Answers the header on
/// success, Entra's refusal otherwise (a test fake: its size does not matter).
#[allow(clippy::result_large_err)]
fn check_assertion(
    form: &HashMap<String, String>,
    tenant: &str,
    client: &str,
    certificates: &[Vec<u8>],
    now: i64,
    expired: bool,
) -> Result<serde_json::Value, Response> {
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let malformed = || {
        error_body(
            400,
            "invalid_request",
            50027,
            "Invalid JWT token. The token is malformed.",
        )
    };
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return Err(error_body(
            400,
            "invalid_request",
            700025,
            "client_assertion_type is missing or not jwt-bearer.",
        ));
    }
    let jwt = form.get("client_assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(malformed());
    }
    let json = |p: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&b64.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(sig)) =
        (json(parts[0]), json(parts[1]), b64.decode(parts[2]))
    else {
        return Err(malformed());
    };
    let x5t256 = header
        .get("x5t#S256")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let x5t = header
        .get("x5t")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let cert = certificates.iter().find(|der| {
        b64.encode(sha2::Sha256::digest(der)) == x5t256
            || b64.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                der,
            )) == x5t
    });
    let Some(cert) = cert else {
        return Err(error_body(
            401,
            "invalid_client",
            700027,
            &format!("Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '{x5t256}{x5t}'] The certificate with identifier used to sign the client assertion is not registered on application {client}."),
        ));
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Err(malformed());
    };
    let alg = match header.get("alg").and_then(|v| v.as_str()) {
        Some("RS256") => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        _ => return Err(malformed()),
    };
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        alg,
        parsed.public_key().subject_public_key.data.to_vec(),
    );
    if public
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_err()
    {
        return Err(error_body(401, "invalid_client", 700027, "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]"));
    }
    if expired || parsed.validity().not_after.timestamp() < now {
        return Err(error_body(401, "invalid_client", 700027, &format!("Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{x5t256}']")));
    }
    let claim = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let want_aud = real_token_url(&scope, tenant);
    if claim("aud") != want_aud {
        return Err(error_body(
            400,
            "invalid_client",
            50027,
            &format!(
                "Invalid JWT token. The audience '{}' is not the token endpoint {want_aud}.",
                claim("aud")
            ),
        ));
    }
    if claim("iss") != client || claim("sub") != client {
        return Err(error_body(401, "invalid_client", 700021, &format!("Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials . (iss '{}', sub '{}')", claim("iss"), claim("sub"))));
    }
    if claim("jti").is_empty() {
        return Err(malformed());
    }
    let num = |k: &str| claims.get(k).and_then(|v| v.as_i64());
    let (Some(nbf), Some(exp)) = (num("nbf"), num("exp")) else {
        return Err(malformed());
    };
    const SKEW: i64 = 300;
    if now + SKEW < nbf || now - SKEW > exp || exp - nbf > 600 {
        return Err(error_body(400, "invalid_client", 700024, "Client assertion is not within its valid time range. Ensure that the access token is not expired before using it."));
    }
    Ok(header)
}

async fn token(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    *inner.last_form.lock().unwrap() = Some(form.clone());
    let mode = inner.mode.lock().unwrap().clone();
    match mode {
        EntraMode::Error {
            status,
            error,
            code,
        } => return error_body(status, error, code, "Scripted error."),
        EntraMode::BadGateway => {
            return (
                StatusCode::BAD_GATEWAY,
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response()
        }
        EntraMode::NotJson => {
            return (StatusCode::OK, "<html>captive portal</html>").into_response()
        }
        EntraMode::Endless => return crate::endless_answer(200),
        EntraMode::Delay(d) => tokio::time::sleep(d).await,
        EntraMode::Redirect => {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    axum::http::header::LOCATION,
                    format!("/{tenant}/oauth2/v2.0/token"),
                )],
            )
                .into_response()
        }
        EntraMode::Normal | EntraMode::NoRole => {}
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return error_body(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let client = get("client_id");
    let expected = inner
        .apps
        .lock()
        .unwrap()
        .get(&(tenant.clone(), client.clone()))
        .cloned();
    let tenant_known = inner.apps.lock().unwrap().keys().any(|(t, _)| *t == tenant);
    if !tenant_known {
        return error_body(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(creds) = expected else {
        return error_body(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client}' was not found in the directory."),
        );
    };
    if form.contains_key("client_assertion") {
        if form.contains_key("client_secret") {
            return error_body(
                400,
                "invalid_request",
                90014,
                "Only one of client_secret and client_assertion may be sent.",
            );
        }
        let now = now() as i64 + *inner.clock_offset.lock().unwrap();
        let expired = *inner.expired_certificates.lock().unwrap();
        match check_assertion(&form, &tenant, &client, &creds.certificates, now, expired) {
            Ok(header) => *inner.last_assertion.lock().unwrap() = Some(header),
            Err(refusal) => return refusal,
        }
    } else if creds.secret.is_none()
        || get("client_secret") != creds.secret.clone().unwrap_or_default()
    {
        return error_body(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    if !get("scope").ends_with("/.default") {
        return error_body(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
        );
    }
    // The token is for the resource the scope names: Exchange Online's
    // SMTP.SendAsApp, or Graph's Mail.Send.
    let aud = get("scope").trim_end_matches("/.default").to_string();
    let graph = aud.contains("graph") || aud.contains("microsoftgraph");
    let roles: Vec<&str> = if mode == EntraMode::NoRole {
        vec![]
    } else if graph {
        vec!["Mail.Send"]
    } else {
        vec!["SMTP.SendAsApp"]
    };
    let expires_in = *inner.expires_in.lock().unwrap();
    let claims = serde_json::json!({
        "aud": aud,
        "tid": tenant,
        "appid": client,
        "roles": roles,
        "exp": now().saturating_add(expires_in),
        "jti": format!("{:032x}", rand::thread_rng().gen::<u128>()),
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let access_token = format!(
        "{}.{}.{}",
        b64.encode(r#"{"typ":"JWT","alg":"RS256"}"#),
        b64.encode(claims.to_string()),
        b64.encode(rand::thread_rng().gen::<[u8; 16]>())
    );
    inner.issued.lock().unwrap().insert(access_token.clone());
    axum::Json(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    }))
    .into_response()
}

impl FakeEntra {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            mode: Mutex::new(EntraMode::Normal),
            apps: Mutex::new(HashMap::new()),
            issued: Arc::new(Mutex::new(HashSet::new())),
            clock_offset: Mutex::new(0),
            expired_certificates: Mutex::new(false),
            last_assertion: Mutex::new(None),
            requests: AtomicUsize::new(0),
            expires_in: Mutex::new(3599),
            last_form: Mutex::new(None),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(inner.clone());
        let addr = crate::serve_loopback(app, "fake Entra").await;
        FakeEntra { addr, inner }
    }

    /// The value for `--entra-authority`.
    pub fn authority(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers an app: tokens are issued for this tenant, client and secret.
    pub fn register(&self, tenant: &str, client: &str, secret: &str) {
        self.app(tenant, client, |c| c.secret = Some(secret.into()));
    }

    fn app(&self, tenant: &str, client: &str, change: impl FnOnce(&mut Creds)) {
        change(
            self.inner
                .apps
                .lock()
                .unwrap()
                .entry((tenant.into(), client.into()))
                .or_default(),
        );
    }

    /// Uploads a certificate (DER) to an app registration: assertions signed
    /// by its key are accepted.
    pub fn register_certificate(&self, tenant: &str, client: &str, der: &[u8]) {
        self.app(tenant, client, |c| c.certificates.push(der.to_vec()));
    }

    /// Shifts the fake's clock against this machine's, as if one were off.
    pub fn set_clock_offset(&self, secs: i64) {
        *self.inner.clock_offset.lock().unwrap() = secs;
    }

    /// Treats every registered certificate as expired (Entra's "The key used is expired").
    pub fn set_certificates_expired(&self, expired: bool) {
        *self.inner.expired_certificates.lock().unwrap() = expired;
    }

    /// The JOSE header of the last accepted client assertion (its `x5t#S256`).
    pub fn last_assertion_header(&self) -> Option<serde_json::Value> {
        self.inner.last_assertion.lock().unwrap().clone()
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: EntraMode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// The `expires_in` of new tokens.
    pub fn set_expires_in(&self, secs: u64) {
        *self.inner.expires_in.lock().unwrap() = secs;
    }

    /// How many token requests arrived.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// The last form body received.
    pub fn last_form(&self) -> Option<HashMap<String, String>> {
        self.inner.last_form.lock().unwrap().clone()
    }

    /// The set of tokens issued so far, shared with a [`crate::FakeSmtp`] that checks them.
    pub fn issued_tokens(&self) -> Arc<Mutex<HashSet<String>>> {
        self.inner.issued.clone()
    }

    /// Forgets every issued token, as if they were revoked.
    pub fn revoke_all(&self) {
        self.inner.issued.lock().unwrap().clear();
    }
}
