//! Developer commands, run as `cargo xtask <command>`:
//!
//! - `run`: install missing tools, build the UI with Trunk, start `mailroom serve`.
//! - `test`: install missing tools, build the UI, run every test suite (native,
//!   wasm in headless Chromium, end to end) and print one closing summary.
//! - `build-ui`: only build the UI into `dist/`.
//! - `bench`: measure the product against its budgets and write docs/PERFORMANCE.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

mod bench;
mod dist;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub(crate) fn tools_dir() -> PathBuf {
    std::env::var_os("MAILROOM_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/mailroom-tools")
        })
}

/// PATH with the npm wasm-opt and cargo's bin folder first.
pub(crate) fn tool_path() -> String {
    let mut parts = vec![
        tools_dir().join("node_modules/.bin").display().to_string(),
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cargo/bin")
            .display()
            .to_string(),
    ];
    if let Ok(p) = std::env::var("PATH") {
        parts.push(p);
    }
    parts.join(":")
}

pub(crate) fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root()).env("PATH", tool_path());
    c
}

pub(crate) fn status(mut c: Command) -> Result<(), String> {
    let what = format!("{c:?}");
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed with {s}")),
        Err(e) => Err(format!("could not start {what}: {e}")),
    }
}

/// Installs what is missing; the browser (Chromium, ChromeDriver) only for tests.
pub(crate) fn setup(browser: bool) -> Result<(), String> {
    let mut c = cmd("bash");
    c.arg("scripts/setup.sh");
    if browser {
        c.arg("--with-browser");
    }
    status(c)
}

pub(crate) fn build_ui() -> Result<(), String> {
    let mut c = cmd("trunk");
    c.args(["build", "--release"]);
    status(c)
}

/// Counts from cargo's and wasm-bindgen-test-runner's `test result:` lines.
#[derive(Default, Debug)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add_output(&mut self, text: &str) {
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("test result: ") else {
                continue;
            };
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match label {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
}

/// Runs a test command, streaming its output, and adds its counts to `totals`.
fn run_suite(name: &str, mut c: Command, totals: &mut Totals) -> bool {
    println!("\n==> {name}: {c:?}");
    c.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let child = match c.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("could not start {name}: {e}");
            return false;
        }
    };
    let out = match child.wait_with_output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{name} did not finish: {e}");
            return false;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    totals.add_output(&text);
    out.status.success()
}

/// Starts (installing it first when missing) the PostgreSQL the store tests
/// use, at `MAILROOM_TEST_DATABASE_URL` or its default.
fn postgres() -> Result<(), String> {
    let mut c = cmd("bash");
    c.arg("scripts/postgres.sh");
    status(c)
}

/// promtool and the Debian package tools, which the tests run for real.
fn debian_tools() -> Result<(), String> {
    let mut c = cmd("bash");
    c.arg("scripts/debian-tools.sh");
    status(c)
}

fn test() -> Result<(), String> {
    setup(true)?;
    postgres()?;
    debian_tools()?;
    build_ui()?;
    // The package the packaging tests inspect (and, as root, install), with
    // the dev binary the end-to-end tests use too.
    dist::dist(true)?;
    let mut totals = Totals::default();
    let mut failed_suites = Vec::new();

    // The UI is built first: the backend embeds it, and the end-to-end tests
    // drive that binary.
    let mut native = cmd("cargo");
    native.args(["test", "--workspace"]);
    if !run_suite(
        "native tests (shared, backend, front-end state, end-to-end)",
        native,
        &mut totals,
    ) {
        failed_suites.push("native");
    }

    for krate in ["mailroom-shared", "mailroom-frontend"] {
        let mut wasm = cmd("cargo");
        wasm.args(["test", "--target", "wasm32-unknown-unknown", "-p", krate])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
        if !run_suite(
            &format!("wasm tests of {krate} in headless Chromium"),
            wasm,
            &mut totals,
        ) {
            failed_suites.push(krate);
        }
    }

    println!();
    println!(
        "summary: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if failed_suites.is_empty() && totals.failed == 0 {
        Ok(())
    } else {
        Err(format!("failing suites: {}", failed_suites.join(", ")))
    }
}

/// The options `cargo xtask run` passes to `mailroom serve`: both
/// `cargo xtask run --listen …` and `cargo xtask run -- --listen …` work
/// (the README's form has the `--`, which must not reach `mailroom serve`).
fn serve_args(extra: &[String]) -> &[String] {
    match extra.first().map(String::as_str) {
        Some("--") => &extra[1..],
        _ => extra,
    }
}

fn run(extra: &[String]) -> Result<(), String> {
    let extra = serve_args(extra);
    setup(false)?;
    build_ui()?;
    let mut c = cmd("cargo");
    c.args([
        "run",
        "--release",
        "-p",
        "mailroom-backend",
        "--bin",
        "mailroom",
        "--",
        "serve",
    ])
    .args(extra);
    status(c)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("setup") => setup(true),
        Some("build-ui") => setup(false).and_then(|()| build_ui()),
        Some("dist") => debian_tools()
            .and_then(|()| dist::dist(args.get(1).map(String::as_str) == Some("--debug")))
            .map(|_| ()),
        Some("bench") => setup(true)
            .and_then(|()| postgres())
            .and_then(|()| bench::bench()),
        _ => {
            Err("usage: cargo xtask <run [serve options] | test | setup | build-ui | dist [--debug] | bench>".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{serve_args, Totals};

    #[test]
    fn run_passes_serve_options_with_or_without_a_leading_double_dash() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let with = args(&["--", "--listen", "0.0.0.0:8080"]);
        let without = args(&["--listen", "0.0.0.0:8080"]);
        assert_eq!(serve_args(&with), &without[..]);
        assert_eq!(serve_args(&without), &without[..]);
        assert!(serve_args(&[]).is_empty());
        // Only the first `--` is cargo's separator; a later one is the server's.
        let later = args(&["--listen", "x", "--"]);
        assert_eq!(serve_args(&later), &later[..]);
    }

    #[test]
    fn totals_add_up_cargo_summaries() {
        let mut t = Totals::default();
        t.add_output("test result: ok. 25 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s\n");
        t.add_output("noise\ntest result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n");
        assert_eq!((t.passed, t.failed, t.ignored), (28, 1, 2));
    }
}
