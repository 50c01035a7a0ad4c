//! A webhook receiver on loopback: records every request (headers and body)
//! and answers as scripted: 200, another status, after a delay, a redirect,
//! or not at all until released.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// One request that arrived.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Its path.
    pub path: String,
    /// Its headers, names lower case.
    pub headers: HashMap<String, String>,
    /// Its body.
    pub body: String,
}

impl Hook {
    /// One header.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The headers as `http` has them (for a verifier).
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::try_from(k.as_str()),
                axum::http::HeaderValue::try_from(v.as_str()),
            ) {
                map.insert(k, v);
            }
        }
        map
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the next request is answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status.
    Status(u16),
    /// This status with this body, as JSON when it starts with `{` (Power
    /// Automate's `{"error": {"code", "message"}}`), else as text (Slack's
    /// `no_service`).
    Said(u16, String),
    /// 200 after this long.
    Delay(Duration),
    /// `302 Found` to this path on the same receiver.
    Redirect(&'static str),
    /// No answer until [`FakeReceiver::release`].
    Hang,
}

#[derive(Default)]
struct Inner {
    hooks: Mutex<Vec<Hook>>,
    script: Mutex<VecDeque<Answer>>,
    always: Mutex<Option<Answer>>,
    release: tokio::sync::Notify,
}

/// The running receiver.
#[derive(Clone)]
pub struct FakeReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = Hook {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    inner.hooks.lock().unwrap().push(hook);
    let answer = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| inner.always.lock().unwrap().clone())
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(s) => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "answer",
        )
            .into_response(),
        Answer::Said(s, body) => {
            let kind = if body.starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            (
                StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(axum::http::header::CONTENT_TYPE, kind)],
                body,
            )
                .into_response()
        }
        Answer::Delay(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
        Answer::Redirect(to) => (
            StatusCode::FOUND,
            [(axum::http::header::LOCATION, to)],
            "moved",
        )
            .into_response(),
        Answer::Hang => {
            inner.release.notified().await;
            (StatusCode::OK, "released").into_response()
        }
    }
}

impl FakeReceiver {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .fallback(post(receive))
            .with_state(inner.clone());
        let addr = crate::serve_loopback(app, "the webhook receiver").await;
        FakeReceiver { addr, inner }
    }

    /// Its URL, at `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests like this, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.script.lock().unwrap().extend(answers);
    }

    /// Answers every request (after the script) like this.
    pub fn always(&self, answer: Answer) {
        *self.inner.always.lock().unwrap() = Some(answer);
    }

    /// Lets hanging requests answer.
    pub fn release(&self) {
        *self.inner.always.lock().unwrap() = None;
        self.inner.release.notify_waiters();
    }

    /// Every request so far.
    pub fn hooks(&self) -> Vec<Hook> {
        self.inner.hooks.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (at most 20 seconds).
    pub async fn wait_for(&self, n: usize) -> Vec<Hook> {
        let started = std::time::Instant::now();
        loop {
            let hooks = self.hooks();
            if hooks.len() >= n {
                return hooks;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {n} webhook requests arrived",
                hooks.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
