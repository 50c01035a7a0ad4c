//! End-to-end harness: the real `mailroom` binary serving the release UI, the
//! loopback fakes beside it, and headless Chromium driven over WebDriver.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// The admin token every scenario signs in with.
pub const TOKEN: &str = "e2e-admin-token-0123456789abcdef";
/// The app registered with the fake Entra.
pub use mailroom_shared::fixtures::{
    billing, mailer, CLIENT, CLIENT_B, SECRET, SECRET_B, TENANT, TENANT_B,
};
/// How long any wait in the UI may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Where screenshots go: under `target/`, never committed from there.
/// axe-core's script in the tools folder (`$MAILROOM_TOOLS`, else
/// `~/.cache/mailroom-tools`), where `scripts/setup.sh` puts it.
fn axe_path() -> PathBuf {
    std::env::var_os("MAILROOM_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/mailroom-tools")
        })
        .join("node_modules/axe-core/axe.min.js")
}

pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("e2e-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot dir");
    dir
}

/// The `mailroom` binary, built (or found up to date) by cargo once per test
/// run, so a scenario never runs a stale binary. It embeds the UI in `dist/`.
pub fn mailroom_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mailroom-backend",
                    "--bin",
                    "mailroom",
                ])
                .current_dir(workspace())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the mailroom binary failed");
            target_dir().join("debug/mailroom")
        })
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("port")
        .port()
}

/// The fakes one scenario talks to: Entra and a STARTTLS SMTP server whose
/// certificate `ca_file` vouches for, with [`CLIENT`]/[`SECRET`] registered.
pub use mailroom_fakes::Loopback as Fakes;

/// The real server, on port 0, with a fresh data dir.
pub struct Mailroom {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The SMTP relay's `127.0.0.1:PORT`.
    pub smtp: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mailroom {
    /// Starts `mailroom serve` pointed at the fakes; it serves the release UI it embeds.
    pub async fn start(fakes: &Fakes) -> Mailroom {
        let dist = workspace().join("dist");
        assert!(
            dist.join("index.html").is_file(),
            "the UI is not built: run `cargo xtask build-ui` (cargo xtask test does it first)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(mailroom_binary())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-token", TOKEN])
            .args(["--smtp-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--entra-authority", &fakes.entra.authority()])
            .args(["--graph-endpoint", &fakes.graph_endpoint()])
            .arg("--extra-ca-file")
            .arg(&fakes.ca_file)
            .env("MAILROOM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mailroom");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (url, smtp) = tokio::time::timeout(WAIT, async {
            let mut smtp = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("smtp listening on ") {
                    smtp = addr.to_string();
                } else if let Some(url) = line.strip_prefix("listening on ") {
                    return (url.to_string(), smtp);
                }
            }
            panic!("mailroom exited before listening");
        })
        .await
        .expect("mailroom did not start in time");
        Mailroom {
            url,
            smtp,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Mailroom {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A headless Chromium session with its own profile (and so its own cookies).
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver (apt-get install chromium-driver, or run cargo xtask test)");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,1800",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let started = Instant::now();
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(e) if started.elapsed() < WAIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("could not open a WebDriver session: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Closes the session and stops the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.start_kill();
    }

    /// Waits until an element matches `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {WAIT:?}: {e}"))
    }

    /// Waits until the text of `css` contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < WAIT {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                last = el.text().await.unwrap_or_default();
                if last.contains(needle) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} never contained {needle:?}; last text: {last:?}");
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            if self.client.find(Locator::Css(css)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} is still there after {WAIT:?}");
    }

    /// Replaces the value of an input by typing, as a person would.
    pub async fn type_in(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        // Select all and delete with real keys (Ctrl+A, release, Backspace), so the
        // app sees input events; WebDriver's clear() fires none and the app would
        // put the old value back.
        el.send_keys("\u{E009}a\u{E000}\u{E003}")
            .await
            .expect("select all and delete");
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The `value` property of an input.
    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    /// Clicks an element. One the page replaced between finding it and
    /// clicking (a list read again as it shows) is found again, as a
    /// person's click lands on what is there.
    pub async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && started.elapsed() < WAIT =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Saves a PNG screenshot of the page under `target/e2e-screenshots/`.
    ///
    /// Every state worth a screenshot is also checked for accessibility
    /// first ([`Browser::audit`]).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.audit(name).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Checks the page as it is now with axe-core (the engine of Chrome's
    /// Lighthouse and of most accessibility audits) against WCAG 2.0, 2.1
    /// and 2.2 A and AA and axe's best practices: every violation fails the
    /// test, each named with its rule, its elements and what to fix.
    /// axe-core is installed by `scripts/setup.sh --with-browser` into the
    /// tools folder.
    pub async fn audit(&self, what: &str) {
        let found = self.violations().await;
        assert!(
            found.is_empty(),
            "{what}: {} accessibility violation(s) (WCAG 2.2 AA, axe best practices):\n{}",
            found.len(),
            found.join("\n")
        );
    }

    /// What axe-core finds (the rules of [`Browser::audit`]) in the page as it is
    /// now, one entry per rule broken: `rule (impact): help` and a line for
    /// each element.
    pub async fn violations(&self) -> Vec<String> {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object'", vec![])
            .await
            .expect("axe loaded?");
        if loaded != serde_json::json!(true) {
            let path = axe_path();
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "axe-core is not at {}: {e} (run scripts/setup.sh --with-browser)",
                    path.display()
                )
            });
            self.client
                .execute(&[source.as_str(), "\nreturn true;"].concat(), vec![])
                .await
                .expect("load axe-core");
        }
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, {
                runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
                resultTypes: ['violations'],
            }).then(r => done(r.violations.map(v =>
                v.id + ' (' + v.impact + '): ' + v.help + '\n' + v.nodes.map(n =>
                    '    ' + n.target.join(' ') + ': ' + n.failureSummary.replace(/\n/g, ' ')
                ).join('\n'))), e => done(['axe failed: ' + e]));
        "#;
        let found = self
            .client
            .execute_async(script, vec![])
            .await
            .expect("run axe-core");
        serde_json::from_value(found).expect("axe's answer")
    }

    /// Sets the window's size in CSS pixels (390 wide is a phone's).
    pub async fn window_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("window size {width}x{height}: {e}"));
    }

    /// Scrolls the first element `css` matches into view.
    pub async fn scroll_to(&self, css: &str) {
        let script = ["document.querySelector('", css, "').scrollIntoView()"].concat();
        self.client
            .execute(&script, vec![])
            .await
            .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    }

    /// The elements inside `css` (itself included) that reach past the
    /// window's right edge, as `tag.class`: on a phone, what would have to
    /// be scrolled sideways.
    pub async fn wider_than_the_window(&self, css: &str) -> serde_json::Value {
        let script = [
            "return [...document.querySelectorAll('",
            css,
            ", ",
            css,
            " *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)\
               .map(e => e.tagName + '.' + e.className);",
        ]
        .concat();
        self.client
            .execute(&script, vec![])
            .await
            .unwrap_or_else(|e| panic!("measure {css}: {e}"))
    }

    /// Opens the app and signs in with the admin token.
    pub async fn sign_in(&self, url: &str) {
        self.client.goto(url).await.expect("open the app");
        self.type_in("#admin-token", TOKEN).await;
        self.click("button[type=submit]").await;
        self.find("#provider").await;
    }
}

/// A reverse proxy on 127.0.0.1 serving `upstream` under `/mailroom/`, as
/// nginx's `location /mailroom/ { proxy_pass http://127.0.0.1:8080/; }`
/// does (with its redirect of `/mailroom` to `/mailroom/`); answers the
/// page's address there, `http://127.0.0.1:PORT/mailroom/`.
pub async fn proxy_under_path(upstream: &str) -> String {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::http::{header, StatusCode};
    use axum::response::Response;
    let upstream = upstream.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("proxy client");
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if path == "/mailroom" {
                return Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, "/mailroom/")
                    .body(Body::empty())
                    .expect("redirect");
            }
            let Some(rest) = path.strip_prefix("/mailroom") else {
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::from("not under /mailroom/"))
                    .expect("404");
            };
            let method = req.method().clone();
            let headers = req.headers().clone();
            let body = to_bytes(req.into_body(), 64 * 1024 * 1024)
                .await
                .unwrap_or_default();
            // The browser's Host and Origin go on, as nginx's
            // `proxy_set_header Host $host` sends them.
            let mut forward = client.request(method, format!("{upstream}{rest}"));
            let hop = |name: &header::HeaderName| {
                matches!(
                    name.as_str(),
                    "connection" | "transfer-encoding" | "keep-alive"
                )
            };
            for (name, value) in headers.iter().filter(|(n, _)| !hop(n)) {
                forward = forward.header(name, value);
            }
            let Ok(answer) = forward.body(body).send().await else {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::empty())
                    .expect("502");
            };
            let mut out = Response::builder().status(answer.status());
            for (name, value) in answer.headers().iter().filter(|(n, _)| !hop(n)) {
                out = out.header(name, value);
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            out.body(Body::from(bytes)).expect("answer")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/mailroom/")
}
