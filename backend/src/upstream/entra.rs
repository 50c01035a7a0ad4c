//! The Entra ID client-credentials token: the form POST, a cache keyed by
//! authority, tenant, client, secret hash and scope, and the unverified claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use mailroom_shared::api::TokenClaims;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::crypto::Secret;

/// The token request's timeout.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Tokens are dropped this long before they expire.
pub const EARLY_REFRESH: Duration = Duration::from_secs(5 * 60);

/// What a token is requested with.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Login host, scheme included, without a trailing slash.
    pub authority: String,
    /// Directory (tenant) ID.
    pub tenant: String,
    /// Application (client) ID.
    pub client_id: String,
    /// The client secret, or the certificate that signs an assertion.
    pub credential: Credential,
    /// The resource plus `/.default`.
    pub scope: String,
}

/// How the app proves itself (docs/API.md §13).
#[derive(Debug, Clone)]
pub enum Credential {
    /// The client secret's Value.
    Secret(Secret),
    /// A client assertion signed by this certificate's key, for `audience`:
    /// the cloud's real token URL, even when requests go elsewhere.
    Certificate {
        /// The certificate and key.
        key: std::sync::Arc<super::certificate::CertKey>,
        /// The assertion's `aud`.
        audience: String,
    },
    /// The settings name a certificate but none is stored for them.
    NoCertificate,
}

impl TokenRequest {
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority.trim_end_matches('/'),
            self.tenant
        )
    }

    fn cache_key(&self) -> String {
        let secret_hash = match &self.credential {
            Credential::Secret(secret) => hex::encode(Sha256::digest(secret.expose().as_bytes())),
            Credential::Certificate { key, .. } => format!("cert:{}", key.info.thumbprint_sha256),
            Credential::NoCertificate => "no certificate".into(),
        };
        format!(
            "{}|{}|{}|{}|{}",
            self.authority, self.tenant, self.client_id, secret_hash, self.scope
        )
    }
}

/// A token ready for XOAUTH2.
#[derive(Debug, Clone)]
pub struct Token {
    /// The access token.
    pub access_token: Secret,
    /// Whether it came from the cache.
    pub from_cache: bool,
}

/// Why no token was obtained.
#[derive(Debug, Clone)]
pub enum TokenError {
    /// Entra answered with its JSON error body.
    Entra {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` value.
        error: String,
        /// The AADSTS numbers.
        codes: Vec<u64>,
        /// `error_description`, first line only.
        description: String,
        /// Microsoft's trace ID.
        trace_id: Option<String>,
        /// Microsoft's correlation ID.
        correlation_id: Option<String>,
    },
    /// A 5xx without a usable body.
    ServerError(u16),
    /// A 3xx: redirects are never followed, so the secret goes to one URL only.
    Redirect(u16),
    /// A body that is not Entra's JSON.
    NotJson(u16),
    /// A body longer than [`super::MAX_ANSWER_BYTES`]: not Entra's answer.
    TooLarge(u16),
    /// The host name did not resolve.
    Dns(String),
    /// The connection failed (refused, reset, TLS).
    Connect(String),
    /// No answer within [`TOKEN_TIMEOUT`].
    Timeout,
    /// The client assertion could not be signed.
    Assertion(String),
    /// No certificate is stored for these settings.
    NoCertificate,
}

/// `client_assertion_type` for a certificate.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Deserialize)]
struct SuccessBody {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    valid_until: Instant,
}

/// Fetches tokens and keeps them until shortly before they expire.
pub struct TokenClient {
    /// Token requests sent, for `/metrics`.
    pub requests: prometheus_client::metrics::counter::Counter,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenClient { .. }")
    }
}

/// The innermost causes of an error, without reqwest's "error sending request
/// for url (…)" wrapper, which only repeats what the message already says.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let useful: Vec<String> = parts
        .into_iter()
        .filter(|p| !p.starts_with("error sending request") && !p.starts_with("client error"))
        .collect();
    if useful.is_empty() {
        e.to_string()
    } else {
        useful.join(": ")
    }
}

/// Whether an error text says the host name did not resolve.
pub fn is_dns_failure(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("dns error")
        || t.contains("failed to lookup address")
        || t.contains("name or service not known")
        || t.contains("no address associated")
        || t.contains("nodename nor servname")
        || t.contains("temporary failure in name resolution")
}

impl TokenClient {
    /// A client with the given timeout (normally [`TOKEN_TIMEOUT`]), trusting the system roots.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            // The form carries the client secret: it goes to the token URL and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("Mailroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(TokenClient {
            requests: Default::default(),
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Evict entries nobody is using whose token has expired (or never came):
        // a changed secret or tenant must not leave old tokens behind for good.
        let now = Instant::now();
        cache.retain(|k, slot| {
            k == key
                || Arc::strong_count(slot) > 1
                || slot.try_lock().map_or(true, |cached| {
                    cached.as_ref().is_some_and(|c| c.valid_until > now)
                })
        });
        cache.entry(key.to_string()).or_default().clone()
    }

    /// How many tokens (or token requests) the cache holds.
    pub fn cached_entries(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A cached token when one is still fresh, else a new one. Concurrent
    /// callers with the same key wait for one request.
    pub async fn get(&self, req: &TokenRequest) -> Result<Token, TokenError> {
        let slot = self.slot(&req.cache_key());
        let mut guard = slot.lock().await;
        if let Some(cached) = guard.as_ref().filter(|c| c.valid_until > Instant::now()) {
            return Ok(Token {
                access_token: cached.token.clone(),
                from_cache: true,
            });
        }
        let (token, lifetime) = self.fetch(req).await?;
        let valid_until = Instant::now() + lifetime.saturating_sub(EARLY_REFRESH);
        *guard = Some(Cached {
            token: token.clone(),
            valid_until,
        });
        Ok(Token {
            access_token: token,
            from_cache: false,
        })
    }

    /// Forgets the cached token for this request (after SMTP rejected it).
    pub async fn invalidate(&self, req: &TokenRequest) {
        let slot = self.slot(&req.cache_key());
        *slot.lock().await = None;
    }

    async fn fetch(&self, req: &TokenRequest) -> Result<(Secret, Duration), TokenError> {
        let proof = match &req.credential {
            Credential::Secret(secret) => vec![("client_secret", secret.clone())],
            Credential::Certificate { key, audience } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let assertion = key
                    .assertion(audience, &req.client_id, now)
                    .map_err(|e| TokenError::Assertion(e.to_string()))?;
                vec![
                    ("client_assertion_type", Secret::new(ASSERTION_TYPE)),
                    ("client_assertion", assertion),
                ]
            }
            Credential::NoCertificate => return Err(TokenError::NoCertificate),
        };
        self.requests.inc();
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", req.client_id.as_str()),
        ];
        form.extend(proof.iter().map(|(k, v)| (*k, v.expose())));
        form.push(("scope", req.scope.as_str()));
        let response = self
            .http
            .post(req.url())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let text = error_chain(&e);
                if e.is_timeout() {
                    TokenError::Timeout
                } else if e.is_connect() && is_dns_failure(&text) {
                    // hyper reports a failed lookup as a connect error whose
                    // resolver cause has no public type: only its text tells.
                    TokenError::Dns(text)
                } else {
                    TokenError::Connect(text)
                }
            })?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(TokenError::Redirect(status));
        }
        let (body, whole) = super::read_capped(response, super::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TokenError::Timeout
                } else {
                    TokenError::Connect(error_chain(&e))
                }
            })?;
        if !whole {
            return Err(TokenError::TooLarge(status));
        }
        if (200..300).contains(&status) {
            let ok: SuccessBody =
                serde_json::from_slice(&body).map_err(|_| TokenError::NotJson(status))?;
            return Ok((Secret::new(ok.access_token), lifetime(ok.expires_in)));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            // Its words are kept short (each is shown, and stored with a pause).
            Ok(err) => Err(TokenError::Entra {
                status,
                error: super::cut_text(err.error),
                codes: err.error_codes,
                description: super::cut_text(
                    err.error_description
                        .unwrap_or_default()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                ),
                trace_id: err.trace_id.map(super::cut_text),
                correlation_id: err.correlation_id.map(super::cut_text),
            }),
            Err(_) if status >= 500 => Err(TokenError::ServerError(status)),
            Err(_) => Err(TokenError::NotJson(status)),
        }
    }
}

/// Reads the JWT payload without verifying it.
pub fn claims(token: &str) -> Option<TokenClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Some(TokenClaims {
        aud: s("aud"),
        tid: s("tid"),
        appid: s("appid").or_else(|| s("azp")),
        roles: v
            .get("roles")
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        exp: v.get("exp").and_then(|x| x.as_i64()),
    })
}

/// The longest a token is kept: Entra's access tokens last 60 to 90 minutes
/// (a day at most with a lifetime policy).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a token lives, from its `expires_in` (a number, or a string as
/// the v1 endpoint wrote it): an hour when it is missing or unreadable, and
/// never more than [`MAX_TOKEN_LIFETIME`], whatever an answer claims.
fn lifetime(expires_in: Option<serde_json::Value>) -> Duration {
    let secs = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3599),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(3599),
        _ => 3599,
    };
    Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_lifetime_is_read_and_kept_within_a_day() {
        let life = |v: serde_json::Value| lifetime(Some(v)).as_secs();
        assert_eq!(life(serde_json::json!(3599)), 3599);
        assert_eq!(life(serde_json::json!("4999")), 4999);
        assert_eq!(life(serde_json::json!(0)), 0);
        assert_eq!(lifetime(None).as_secs(), 3599);
        for odd in [
            serde_json::json!(-5),
            serde_json::json!(1.5),
            serde_json::json!("soon"),
            serde_json::json!(null),
            serde_json::json!([1]),
        ] {
            assert_eq!(life(odd.clone()), 3599, "{odd}");
        }
        for huge in [
            serde_json::json!(u64::MAX),
            serde_json::json!(u64::MAX.to_string()),
        ] {
            assert_eq!(life(huge.clone()), 86_400, "{huge}");
        }
    }

    #[test]
    fn claims_are_read_without_verification() {
        let payload = serde_json::json!({"aud": "https://outlook.office365.com", "tid": "t", "appid": "a", "roles": ["SMTP.SendAsApp"], "exp": 42});
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
        let c = claims(&format!("eyJhbGciOiJub25lIn0.{b64}.sig")).unwrap();
        assert_eq!(c.roles, vec!["SMTP.SendAsApp"]);
        assert_eq!(
            (c.tid.as_deref(), c.appid.as_deref(), c.exp),
            (Some("t"), Some("a"), Some(42))
        );
        assert!(claims("not-a-jwt").is_none());
    }

    #[test]
    fn dns_failures_are_recognised() {
        assert!(is_dns_failure(
            "error sending request: dns error: failed to lookup address information"
        ));
        assert!(!is_dns_failure("connection refused"));
    }
}
