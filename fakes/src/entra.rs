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
    /// Wait this long before answering.
    Delay(Duration),
    /// Issue tokens without the SMTP.SendAsApp role.
    NoRole,
    /// Answer `307 Temporary Redirect` to the same URL: a client that follows
    /// it posts the form, client secret included, again.
    Redirect,
}

struct Inner {
    mode: Mutex<EntraMode>,
    apps: Mutex<HashMap<(String, String), String>>,
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
    let Some(secret) = expected else {
        return error_body(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client}' was not found in the directory."),
        );
    };
    if get("client_secret") != secret {
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
        "exp": now() + expires_in,
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
            requests: AtomicUsize::new(0),
            expires_in: Mutex::new(3599),
            last_form: Mutex::new(None),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Entra");
        let addr = listener.local_addr().expect("fake Entra address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeEntra { addr, inner }
    }

    /// The value for `--entra-authority`.
    pub fn authority(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers an app: tokens are issued for this tenant, client and secret.
    pub fn register(&self, tenant: &str, client: &str, secret: &str) {
        self.inner
            .apps
            .lock()
            .unwrap()
            .insert((tenant.into(), client.into()), secret.into());
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
