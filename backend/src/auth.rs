//! Administrator sign-in: the admin token (Bearer or session cookie), the
//! login/logout routes, and a limit on failed sign-ins per address.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use mailroom_shared::api::LoginRequest;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::crypto::Secret;
use crate::error::{ApiJson, AppError};
use crate::store::{FailureStore, SessionStore, StoreError};

/// The session cookie's name.
pub const COOKIE: &str = "mailroom_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window over which failures count, and how long a blocked address waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Where the admin token came from.
#[derive(Debug)]
pub struct AdminToken {
    /// The token.
    pub token: Secret,
    /// Set when the token was generated now and must be printed once.
    pub generated_into: Option<std::path::PathBuf>,
}

/// The shortest `--admin-token` accepted (docs/API.md §2).
pub const MIN_TOKEN_LEN: usize = 24;

/// Takes the configured token (refusing one shorter than [`MIN_TOKEN_LEN`]), else reads `<data-dir>/admin-token`, else
/// generates one there with mode 0600.
pub fn resolve_admin_token(
    data_dir: &Path,
    configured: Option<String>,
) -> std::io::Result<AdminToken> {
    if let Some(t) = configured.filter(|t| !t.trim().is_empty()) {
        let len = unquoted(t.trim()).trim().chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the configured admin token (--admin-token or MAILROOM_ADMIN_TOKEN) is {len} characters long; use at least {MIN_TOKEN_LEN} random characters, for example from `openssl rand -hex 24`"),
            ));
        }
        return Ok(AdminToken {
            token: Secret::new(t.trim()),
            generated_into: None,
        });
    }
    let path = data_dir.join("admin-token");
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok(AdminToken {
                token: Secret::new(t.trim()),
                generated_into: None,
            });
        }
        // An empty file is replaced by a fresh token.
        Ok(_) => fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    crate::crypto::write_private_file(&path, token.as_bytes())?;
    Ok(AdminToken {
        token: Secret::new(token),
        generated_into: Some(path),
    })
}

/// The address limits count by: IPv4 as it is, IPv6 by its /64 (one
/// subscriber's whole network), an IPv4-mapped IPv6 address as IPv4.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(std::net::Ipv6Addr::from(o))
        }
        v4 => v4,
    }
}

/// Open connections per client address (IPv6 by /64); a [`Slot`] gives its
/// place back when dropped.
#[derive(Default)]
pub struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A connection's place among its address's.
pub struct Slot(Arc<PerAddress>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

impl PerAddress {
    /// A place for a connection from `ip`, or none when it has `max` open.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let ip = bucket(ip);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Counts failed attempts per address: after [`MAX_FAILURES`] within
/// [`FAILURE_WINDOW`], the address is locked out until the window ends.
///
/// The check and the count happen under one lock ([`FailureLimit::attempt`]),
/// so a burst of parallel guesses gets no more tries than a sequence would.
pub struct FailureLimit {
    entries: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    clock: Arc<dyn Clock>,
    /// The store's counts, shared by every server, and this limit's scope
    /// in them; without it (or when the store fails), the counts above.
    shared: Option<(Arc<dyn FailureStore>, &'static str)>,
}

impl std::fmt::Debug for FailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureLimit { .. }")
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The credential was wrong; the failure is counted.
    Wrong,
    /// The address is locked out: wait this many seconds.
    LockedOut(u64),
}

impl FailureLimit {
    /// An empty limit on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        FailureLimit {
            entries: Mutex::new(HashMap::new()),
            clock,
            shared: None,
        }
    }

    /// A limit whose counts live in the store under `scope` (`admin`, `app`).
    pub fn shared(
        clock: Arc<dyn Clock>,
        store: Arc<dyn FailureStore>,
        scope: &'static str,
    ) -> Self {
        FailureLimit {
            shared: Some((store, scope)),
            ..FailureLimit::new(clock)
        }
    }

    fn left(&self, first_unix: i64) -> u64 {
        let now = self.clock.wall().unix_timestamp();
        (first_unix + FAILURE_WINDOW.as_secs() as i64 - now).max(1) as u64
    }

    /// As [`FailureLimit::attempt`], with the counts in the store when this
    /// limit is shared: one upsert counts and reads, so parallel guesses
    /// on several servers get no more tries than a sequence would.
    pub async fn check(&self, ip: IpAddr, ok: bool) -> Result<(), Refused> {
        let ip = bucket(ip);
        let Some((store, scope)) = &self.shared else {
            return self.attempt(ip, ok);
        };
        let key = format!("{scope}/{ip}");
        let now = self.clock.wall().unix_timestamp();
        let window = FAILURE_WINDOW.as_secs() as i64;
        if ok {
            // A right credential is always accepted (docs/API.md §2); its
            // success does not wipe an attacker's count either.
            return Ok(());
        }
        match store.add_failure(&key, now, window).await {
            Ok((count, first)) if count > MAX_FAILURES => Err(Refused::LockedOut(self.left(first))),
            Ok(_) => Err(Refused::Wrong),
            Err(e) => {
                tracing::warn!(error = %e, "failure counts unavailable; counting in memory");
                self.attempt(ip, ok)
            }
        }
    }

    /// As [`FailureLimit::locked_for`], from the store when shared.
    pub async fn locked(&self, ip: IpAddr) -> Option<u64> {
        let ip = bucket(ip);
        let Some((store, scope)) = &self.shared else {
            return self.locked_for(ip);
        };
        let now = self.clock.wall().unix_timestamp();
        match store
            .failures(
                &format!("{scope}/{ip}"),
                now,
                FAILURE_WINDOW.as_secs() as i64,
            )
            .await
        {
            Ok(Some((count, first))) if count >= MAX_FAILURES => Some(self.left(first)),
            Ok(_) => None,
            Err(_) => self.locked_for(ip),
        }
    }

    /// Decides one attempt whose credential was `ok`: a right one always
    /// passes; a wrong one is counted, and past [`MAX_FAILURES`] within the
    /// window it is answered as locked out (wait this long).
    pub fn attempt(&self, ip: IpAddr, ok: bool) -> Result<(), Refused> {
        if ok {
            return Ok(());
        }
        let ip = bucket(ip);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        entries.retain(|_, (_, first)| now.duration_since(*first) < FAILURE_WINDOW);
        let (count, first) = entries.entry(ip).or_insert((0, now));
        *count += 1;
        if *count > MAX_FAILURES {
            let left = FAILURE_WINDOW.saturating_sub(now.duration_since(*first));
            return Err(Refused::LockedOut(left.as_secs().max(1)));
        }
        Err(Refused::Wrong)
    }

    /// Seconds to wait when this address is locked out now.
    pub fn locked_for(&self, ip: IpAddr) -> Option<u64> {
        let ip = bucket(ip);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (count, first) = entries.get(&ip)?;
        let elapsed = self.clock.now().saturating_duration_since(*first);
        (*count >= MAX_FAILURES && elapsed < FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    /// How many addresses are being tracked (old ones are pruned on each attempt).
    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The origin (`scheme://host[:port]`) of `--public-url`, lower case.
pub fn parse_public_url(url: &str) -> Result<String, String> {
    use crate::config::UrlFault;
    let url = url.trim();
    let (scheme, host) = crate::config::base_url(url).map_err(|fault| match fault {
        UrlFault::NoScheme => {
            format!("--public-url {url} must be a full URL, like https://mail.contoso.com")
        }
        UrlFault::Scheme => format!("--public-url {url} must start with https:// (or http://)"),
        UrlFault::UserInfo => format!(
            "--public-url {url} must not hold a user name or password; give the page's address, like https://mail.contoso.com"
        ),
        UrlFault::NoHost => {
            format!("--public-url {url} must name a host, like https://mail.contoso.com")
        }
        UrlFault::QueryOrFragment => format!(
            "--public-url {url} must not hold a query (?…) or a fragment (#…): links to the page are made from it; give the page's address, like https://mail.contoso.com or https://contoso.com/mailroom"
        ),
    })?;
    if let Some(c) = mailroom_shared::parse::invisible_char(url) {
        return Err(format!(
            "--public-url {url} holds U+{:04X}, a character that shows as nothing; type it again",
            c as u32
        ));
    }
    // A host no browser's Origin can equal would refuse every request of
    // the signed-in page.
    mailroom_shared::webhooks::check_authority(host)
        .map_err(|e| format!("--public-url {url}: {e}"))?;
    Ok(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// The sign-in state: the token's digest, live sessions (in the store, so
/// every server sees them and they survive a restart), and failure counts.
pub struct AdminAuth {
    token_digest: [u8; 32],
    /// The configured token without its quotes, when it has them.
    unquoted_digest: Option<[u8; 32]>,
    sessions: Arc<dyn SessionStore>,
    /// Failed sign-ins and wrong bearer tokens, per address.
    pub failures: FailureLimit,
    /// The origin of `--public-url`, when set.
    public_origin: Option<String>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth { .. }")
    }
}

/// How a request proved it comes from an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    Bearer,
    Cookie,
}

impl AdminAuth {
    /// Sign-in for this token; `public_origin` from [`parse_public_url`].
    pub fn new(
        token: &Secret,
        public_origin: Option<String>,
        sessions: Arc<dyn SessionStore>,
        failures: FailureLimit,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // Docker's `--env-file` keeps the quotes of MAILROOM_ADMIN_TOKEN="…":
        // the token is then taken with them (as configured) and without.
        let inside = unquoted(token.expose().trim());
        let unquoted_digest = (inside != token.expose() && !inside.trim().is_empty()).then(|| {
            tracing::info!("the configured admin token is in quotes (Docker's --env-file keeps them); it is taken with and without them");
            digest(inside.trim())
        });
        AdminAuth {
            token_digest: digest(token.expose()),
            unquoted_digest,
            sessions,
            failures,
            public_origin,
            clock,
        }
    }

    /// Compares in constant time (over fixed-length digests), with the
    /// configured token and, when that is in quotes, with what they hold.
    pub fn token_matches(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        let inside = self.unquoted_digest.unwrap_or(self.token_digest);
        (candidate.ct_eq(&self.token_digest) | candidate.ct_eq(&inside)).into()
    }

    fn now_unix(&self) -> i64 {
        self.clock.wall().unix_timestamp()
    }

    /// What the store keeps of a session id: its HMAC under the admin
    /// token's digest. A session is then one of this token's: the token
    /// changed (it leaked, say) and restarted with, every session signed in
    /// with the old one ends, on every server, as a password change ends
    /// them. (They were kept for up to 12 hours.)
    fn session_key(&self, id: &str) -> [u8; 32] {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.token_digest);
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&key, id.as_bytes()).as_ref());
        out
    }

    /// A new session id; only its [`Self::session_key`] is stored.
    async fn new_session(&self) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let now = self.now_unix();
        self.sessions
            .create_session(
                self.session_key(&id),
                now + SESSION_TTL.as_secs() as i64,
                now,
            )
            .await?;
        Ok(id)
    }

    async fn session_valid(&self, id: &str) -> Result<bool, StoreError> {
        self.sessions
            .session_valid(self.session_key(id), self.now_unix())
            .await
    }

    async fn end_session(&self, id: &str) -> Result<(), StoreError> {
        self.sessions.end_session(self.session_key(id)).await
    }

    /// Whether the session cookie must be `Secure`: `--public-url` is https,
    /// or a TLS-terminating proxy says so.
    fn secure_cookie(&self, headers: &HeaderMap) -> bool {
        match &self.public_origin {
            Some(origin) => origin.starts_with("https://"),
            None => behind_tls(headers),
        }
    }

    /// Whether a request comes from the server's own origin: `Sec-Fetch-Site:
    /// same-origin`, or an `Origin` equal to `--public-url`'s (else to the
    /// request's own `Host`, with `X-Forwarded-Proto`).
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        if text(header::HeaderName::from_static("sec-fetch-site"))
            .is_some_and(|v| v.eq_ignore_ascii_case("same-origin"))
        {
            return true;
        }
        let Some(origin) = text(header::ORIGIN) else {
            return false;
        };
        let expected = match &self.public_origin {
            Some(o) => o.clone(),
            None => {
                let Some(host) = text(header::HOST) else {
                    return false;
                };
                let scheme = if behind_tls(headers) { "https" } else { "http" };
                format!("{scheme}://{}", host.to_ascii_lowercase())
            }
        };
        origin.trim().eq_ignore_ascii_case(&expected)
    }

    /// Who sent the request: a bearer token (counted against the failure
    /// limit when wrong) or a live session cookie.
    async fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Proof, AppError> {
        if let Some(bearer) = bearer(headers)? {
            let ok = self.token_matches(&bearer);
            if !ok && bearer.starts_with("mr_") {
                // An app's key sent to an admin route is a mistake, not a
                // guess at the admin token: not counted (docs/API.md §2).
                return Err(AppError::Unauthorized(
                    "This is an app key (mr_…); it only sends mail (POST /api/messages). Administrator routes need the admin token.".into(),
                ));
            }
            return match self.failures.check(ip, ok).await {
                Ok(()) => Ok(Proof::Bearer),
                Err(Refused::LockedOut(wait)) => Err(AppError::locked_out(wait)),
                Err(Refused::Wrong) => {
                    tracing::warn!(%ip, "wrong bearer token");
                    Err(AppError::Unauthorized(
                        "That admin token is not correct. Use the token from --admin-token, MAILROOM_ADMIN_TOKEN or the data dir's admin-token file.".into(),
                    ))
                }
            };
        }
        let valid = match CookieJar::from_headers(headers).get(COOKIE) {
            Some(c) => self.session_valid(c.value()).await?,
            None => false,
        };
        match valid {
            true => Ok(Proof::Cookie),
            false => Err(AppError::Unauthorized("Sign in first: send the admin token as `Authorization: Bearer <token>` or sign in on the settings page.".into())),
        }
    }
}

/// The credentials of the request's `Authorization: Bearer …` header, or
/// `None` without one (or with another scheme, such as Basic).
///
/// The scheme is read without regard to case (RFC 9110 11.1): `bearer`
/// was taken for no credentials at all. Two `Authorization` headers are a
/// `400`: the field holds one credential (RFC 9110 11.6.2), and using the
/// first, as before, let the order of a proxy's header and the client's
/// decide who the request came from.
///
/// A credential holds no character that shows as nothing: one pasted along
/// (a key file's byte order mark, a chat's U+200B) is left out, where it
/// made a right key wrong.
pub fn bearer(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    if crate::error::sent_twice(headers, header::AUTHORIZATION) {
        return Err(crate::error::header_twice(
            "Authorization",
            "with one credential",
        ));
    }
    Ok(credentials_of(headers, "bearer").map(cleaned))
}

/// The user name and password of the request's `Authorization: Basic …`
/// header (RFC 7617), each read as [`bearer`] reads its credential; `None`
/// without one. Only app keys are taken so (the app's id and its key, as
/// the relay's AUTH takes them), for tools that can send nothing else;
/// [`bearer`] is asked first, and refuses two headers.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = credentials_of(headers, "basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((cleaned(user), cleaned(password)))
}

/// The credentials of the request's `Authorization: <scheme> …` header.
fn credentials_of<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()?;
    scheme_credentials(text, scheme)
}

/// The credentials of `<scheme> <credentials>`, the scheme in any case;
/// `None` for another scheme or none.
fn scheme_credentials<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, credentials) = text.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim())
}

/// A credential without the characters that show as nothing, trimmed.
fn cleaned(credential: &str) -> String {
    mailroom_shared::parse::without_invisible(credential)
        .trim()
        .to_string()
}

fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The client's address as [`client_addr`] found it for this request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: set by [`client_addr`], else the connection's peer.
pub fn client_ip(req: &Request) -> IpAddr {
    if let Some(ClientAddr(ip)) = req.extensions().get::<ClientAddr>() {
        return *ip;
    }
    peer_ip(req)
}

fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The client behind `--trusted-proxy` reverse proxies (docs/API.md §2): the
/// socket's peer, or, when that is a trusted proxy, the last address of
/// `X-Forwarded-For` that is not itself a trusted proxy. Anything a client
/// could forge (addresses left of the last untrusted one) is never used.
pub fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim())
        .map(|hop| hop.parse::<IpAddr>().map(|ip| ip.to_canonical()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Middleware: puts the client's address ([`forwarded_client`]) on the request.
pub async fn client_addr(
    State(trusted): State<Arc<Vec<ipnet::IpNet>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = forwarded_client(peer_ip(&req), req.headers(), &trusted);
    req.extensions_mut().insert(ClientAddr(ip));
    next.run(req).await
}

/// Middleware: 401 unless the request is from a signed-in administrator; 403
/// for a state-changing cookie request from another origin (docs/API.md §2).
pub async fn require_admin(
    State(auth): State<Arc<AdminAuth>>,
    req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    let proof = match auth.authenticate(req.headers(), ip).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let changes_state = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    if proof == Proof::Cookie && changes_state && !auth.same_origin(req.headers()) {
        tracing::warn!(%ip, path = %req.uri().path(), "cross-origin request refused");
        return AppError::Forbidden(
            "This request came from another site. Use the settings page itself, or send the admin token as `Authorization: Bearer <token>`.".into(),
        )
        .into_response();
    }
    next.run(req).await
}

fn session_cookie(id: String, secure: bool, max_age: Duration) -> Cookie<'static> {
    Cookie::build((COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(time::Duration::seconds(max_age.as_secs() as i64))
        .build()
}

async fn login(
    State(auth): State<Arc<AdminAuth>>,
    jar: CookieJar,
    req: Request,
) -> Result<(CookieJar, StatusCode), AppError> {
    let ip = client_ip(&req);
    let secure = auth.secure_cookie(req.headers());
    let ApiJson(body): ApiJson<LoginRequest> = ApiJson::from_request(req, &()).await?;
    // A token copied from a header line (`Bearer …`, as the docs and the
    // API examples write it) is that token: it was a wrong token, and
    // counted as a guess. So is one copied with a character that shows as
    // nothing, which chats put in long words (no token holds one).
    // So is one copied from the environment file or a script: with its
    // variable's name (`MAILROOM_ADMIN_TOKEN=…`) or in quotes.
    let visible = mailroom_shared::parse::without_invisible(&body.token);
    let ok = [body.token.as_str(), visible.as_str()]
        .into_iter()
        .flat_map(|pasted| {
            let trimmed = pasted.trim();
            let value = trimmed
                .strip_prefix("MAILROOM_ADMIN_TOKEN=")
                .unwrap_or(trimmed)
                .trim();
            [trimmed, value, unquoted(value)]
        })
        .any(|token| {
            auth.token_matches(token)
                || scheme_credentials(token, "bearer").is_some_and(|t| auth.token_matches(t))
        });
    match auth.failures.check(ip, ok).await {
        Ok(()) => {}
        Err(Refused::LockedOut(wait)) => return Err(AppError::locked_out(wait)),
        Err(Refused::Wrong) => {
            tracing::warn!(%ip, "failed sign-in");
            return Err(AppError::Unauthorized(
                "That admin token is not correct. Use the token from --admin-token, MAILROOM_ADMIN_TOKEN or the data dir's admin-token file.".into(),
            ));
        }
    }
    let id = auth.new_session().await?;
    Ok((
        jar.add(session_cookie(id, secure, SESSION_TTL)),
        StatusCode::NO_CONTENT,
    ))
}

/// A value without the pair of quotes around it, as a shell or an
/// environment file writes it; the value itself when there is none.
pub(crate) fn unquoted(value: &str) -> &str {
    mailroom_shared::parse::inside(value, &mailroom_shared::parse::QUOTES[..2]).unwrap_or(value)
}

/// Ends the session and clears the cookie.
pub async fn logout(
    State(auth): State<Arc<AdminAuth>>,
    jar: CookieJar,
    headers: HeaderMap,
) -> (CookieJar, StatusCode) {
    if let Some(c) = jar.get(COOKIE) {
        if let Err(e) = auth.end_session(c.value()).await {
            tracing::warn!(error = %e, "cannot end a session in the store");
        }
    }
    let secure = auth.secure_cookie(&headers);
    (
        jar.add(session_cookie(String::new(), secure, Duration::ZERO)),
        StatusCode::NO_CONTENT,
    )
}

/// `/api/login`, open to everyone.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<AdminAuth>: FromRef<S>,
{
    Router::new().route("/api/login", post(login))
}

/// `/api/logout`, for a signed-in administrator (behind [`require_admin`]).
pub fn protected_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<AdminAuth>: FromRef<S>,
{
    Router::new().route("/api/logout", post(logout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};

    #[test]
    fn token_file_is_generated_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = resolve_admin_token(dir.path(), None).unwrap();
        assert!(first.generated_into.is_some());
        let mode = fs::metadata(dir.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = resolve_admin_token(dir.path(), None).unwrap();
        assert!(second.generated_into.is_none());
        assert_eq!(first.token, second.token);
        let long = "from-flag-0123456789abcdef";
        let flag = resolve_admin_token(dir.path(), Some(long.into())).unwrap();
        assert_eq!(flag.token.expose(), long);
        let short = resolve_admin_token(dir.path(), Some("from-flag".into()));
        assert!(short.unwrap_err().to_string().contains("at least 24"));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temporary file is left behind"
        );
    }

    /// Docker's `--env-file` passes MAILROOM_ADMIN_TOKEN="…" on with its
    /// quotes: the token typed without them was refused (and counted).
    #[test]
    fn a_configured_token_in_quotes_is_taken_with_and_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("a.db")).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let token = "0123456789abcdef01234567";
        let auth = |configured: &str| {
            AdminAuth::new(
                &Secret::new(configured),
                None,
                store.clone(),
                FailureLimit::new(clock.clone()),
                clock.clone(),
            )
        };
        for configured in [format!("\"{token}\""), format!("'{token}'")] {
            let quoted = auth(&configured);
            assert!(quoted.token_matches(token), "{configured}");
            assert!(quoted.token_matches(&configured), "{configured}");
            assert!(!quoted.token_matches(&token[1..]), "{configured}");
            assert!(!quoted.token_matches(""), "{configured}");
        }
        let plain = auth(token);
        assert!(plain.token_matches(token));
        assert!(!plain.token_matches(&format!("\"{token}\"x")));
        // Quotes around a short token do not make it long enough.
        let short = resolve_admin_token(dir.path(), Some(format!("\"{}\"", &token[..22])));
        assert!(short.unwrap_err().to_string().contains("22 characters"));
    }

    #[test]
    fn wrong_tokens_are_slowed_after_the_limit_but_the_right_one_always_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("a.db")).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let auth = AdminAuth::new(
            &Secret::new("t"),
            None,
            store,
            FailureLimit::new(clock.clone()),
            clock,
        );
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..MAX_FAILURES {
            assert!(auth.failures.locked_for(ip).is_none());
            assert_eq!(auth.failures.attempt(ip, false), Err(Refused::Wrong));
        }
        assert!(auth.failures.locked_for(ip).unwrap() > 800);
        assert!(matches!(
            auth.failures.attempt(ip, false),
            Err(Refused::LockedOut(w)) if w > 800
        ));
        assert_eq!(
            auth.failures.attempt(ip, true),
            Ok(()),
            "a right credential is accepted during a lockout"
        );
        assert!(
            auth.failures.locked_for(ip).is_some(),
            "and does not wipe the guesser's count"
        );
        assert!(auth.token_matches("t") && !auth.token_matches("T"));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limit = FailureLimit::new(Arc::new(SystemClock));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for i in 0..MAX_FAILURES {
            let ip = if i % 2 == 0 { a } else { b };
            assert_eq!(limit.attempt(ip, false), Err(Refused::Wrong));
        }
        assert!(matches!(
            limit.attempt(b, false),
            Err(Refused::LockedOut(_))
        ));
        assert_eq!(limit.locked_for(other), None);
        assert_eq!(
            bucket("::ffff:10.0.0.7".parse().unwrap()),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
    }

    /// Connections count per address as the failures do: one IPv6 /64 is
    /// one client, an IPv4-mapped address is its IPv4 one, and a place is
    /// given back when its connection ends.
    #[test]
    fn connections_are_counted_per_address_and_given_back() {
        let places = Arc::new(PerAddress::default());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let first = places.take(a, 2).expect("a first place");
        let second = places.take(same_64, 2).expect("a second place");
        assert!(places.take(a, 2).is_none(), "a /64 has two places");
        assert!(places.take(other, 2).is_some(), "another /64 has its own");
        drop(first);
        let third = places.take(same_64, 2).expect("the place given back");
        drop((second, third));
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        let held = places.take(v4, 1).expect("a place");
        assert!(places.take(mapped, 1).is_none(), "the same client");
        drop(held);
        assert!(
            places.0.lock().unwrap().is_empty(),
            "no address is kept once its connections end"
        );
    }

    #[test]
    fn the_client_is_found_behind_trusted_proxies_only() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.3".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let outsider: IpAddr = "192.0.2.1".parse().unwrap();
        // The last untrusted hop, never one a client could have written before it.
        assert_eq!(
            forwarded_client(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // A client that is not a proxy cannot name another address.
        assert_eq!(forwarded_client(outsider, &h, &trusted), outsider);
        // Without trusted proxies the header means nothing.
        assert_eq!(forwarded_client(proxy, &h, &[]), proxy);
        // Garbage in the header: the proxy itself is the client.
        let mut bad = HeaderMap::new();
        bad.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(forwarded_client(proxy, &bad, &trusted), proxy);
    }

    #[test]
    fn a_parallel_burst_gets_no_extra_tries() {
        let limit = Arc::new(FailureLimit::new(Arc::new(SystemClock)));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let wrong: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let limit = limit.clone();
                    scope.spawn(move || limit.attempt(ip, false) == Err(Refused::Wrong))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .filter(|wrong| *wrong)
                .count()
        });
        assert_eq!(
            wrong, MAX_FAILURES as usize,
            "only five guesses were judged"
        );
    }

    #[test]
    fn the_lockout_ends_with_its_window_and_old_entries_are_pruned() {
        let clock = Arc::new(ManualClock::default());
        let limit = FailureLimit::new(clock.clone());
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..MAX_FAILURES {
            let _ = limit.attempt(ip, false);
        }
        clock.advance(FAILURE_WINDOW - Duration::from_secs(10));
        assert_eq!(limit.locked_for(ip), Some(10));
        assert_eq!(limit.attempt(ip, false), Err(Refused::LockedOut(10)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(limit.locked_for(ip), None);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
        assert_eq!(limit.attempt(other, false), Err(Refused::Wrong));
        assert_eq!(limit.tracked(), 1, "the expired entry was pruned");
        assert_eq!(limit.attempt(ip, true), Ok(()));
    }

    /// Sign-in for `token` over `store`, on `clock`, without --public-url.
    fn auth_over(
        store: &Arc<crate::store::SqliteStore>,
        clock: &Arc<ManualClock>,
        token: &str,
    ) -> AdminAuth {
        AdminAuth::new(
            &Secret::new(token),
            None,
            store.clone(),
            FailureLimit::new(clock.clone()),
            clock.clone(),
        )
    }

    #[tokio::test]
    async fn sessions_expire_after_their_lifetime_and_end_on_sign_out() {
        let clock = Arc::new(ManualClock::default());
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("a.db")).unwrap());
        let auth = auth_over(&store, &clock, "t");
        let id = auth.new_session().await.unwrap();
        assert!(auth.session_valid(&id).await.unwrap());
        clock.advance(SESSION_TTL - Duration::from_secs(1));
        assert!(auth.session_valid(&id).await.unwrap());
        clock.advance(Duration::from_secs(1));
        assert!(
            !auth.session_valid(&id).await.unwrap(),
            "expired at 12 hours"
        );
        let other = auth.new_session().await.unwrap();
        assert!(auth.session_valid(&other).await.unwrap());
        auth.end_session(&other).await.unwrap();
        assert!(!auth.session_valid(&other).await.unwrap(), "signed out");
    }

    /// A session belongs to the token it was signed in with: another server
    /// with the same token takes it; a restart with a new token (the old one
    /// leaked) ends it, and a session of the new token is not the old one's.
    #[tokio::test]
    async fn a_new_admin_token_ends_the_sessions_of_the_old_one() {
        let clock = Arc::new(ManualClock::default());
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("a.db")).unwrap());
        let with = |token: &str| auth_over(&store, &clock, token);
        let (old, same, new) = (with("leaked"), with("leaked"), with("fresh"));
        let id = old.new_session().await.unwrap();
        assert!(same.session_valid(&id).await.unwrap(), "another server");
        assert!(!new.session_valid(&id).await.unwrap(), "the token changed");
        let fresh = new.new_session().await.unwrap();
        assert!(new.session_valid(&fresh).await.unwrap());
        assert!(!old.session_valid(&fresh).await.unwrap());
    }

    #[test]
    fn public_url_gives_the_origin() {
        assert_eq!(
            parse_public_url("HTTPS://Mail.Contoso.com/settings/").unwrap(),
            "https://mail.contoso.com"
        );
        assert_eq!(
            parse_public_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_public_url("mail.contoso.com").is_err());
        assert!(parse_public_url("ftp://x").is_err());
        // A path is a prefix behind a proxy; the rest cannot be the page's
        // address: a host no Origin can equal locked the page's sign-in out
        // (every cookie request was 403), and a query or fragment broke the
        // links in webhook posts.
        assert_eq!(
            parse_public_url("https://contoso.com/mailroom").unwrap(),
            "https://contoso.com"
        );
        for (url, says) in [
            ("https://mail room.example", "not a host name"),
            ("https://mail.contoso.com:99999", "port"),
            ("https://mail..contoso.com", "not a host name"),
            ("https://mail.contoso.com/?x=1", "query"),
            ("https://mail.contoso.com/#/activity", "fragment"),
            ("https://admin:pw@mail.contoso.com", "user name or password"),
            ("https://mail.contoso.com\u{200B}", "shows as nothing"),
        ] {
            let e = parse_public_url(url).unwrap_err();
            assert!(
                e.starts_with(&format!("--public-url {url}")) && e.contains(says),
                "{url}: {e}"
            );
        }
    }
}
