//! The command line: `mailroom [serve]`, `mailroom check`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command};
use crate::server::Server;

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // Unset or empty means info; one that cannot be read also means info,
    // and says so (before, a typo there silently logged at info).
    let wanted = std::env::var("MAILROOM_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (filter, refused) = match wanted.as_deref().map(EnvFilter::try_new) {
        None => (EnvFilter::new("info"), None),
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (EnvFilter::new("info"), Some(e)),
    };
    // Colours only on a terminal, and not with NO_COLOR (no-color.org): in
    // systemd's journal a line holding an escape code shows as "[blob data]",
    // and files and `docker logs` would keep the codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
    if let (Some(e), Some(text)) = (refused, wanted) {
        tracing::warn!(
            "MAILROOM_LOG “{}” is not a log filter ({e}): logging at info. Write a level like warn or debug, or mailroom_backend=debug,info",
            text.escape_debug()
        );
    }
}

/// Parses the command line and runs it. Called as `sendmail` (a symlink),
/// or as `mailroom sendmail`, it takes sendmail's own options instead.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let called = args
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if called == "sendmail" {
        return crate::sendmail::run(&args[1..]);
    }
    if args.get(1).map(String::as_str) == Some("sendmail") {
        return crate::sendmail::run(&args[2..]);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailroom: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Check(args)) => runtime.block_on(crate::test_email::check::run(args)),
        Some(Command::Sendmail { .. }) => crate::sendmail::run(&args[2..]),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: crate::config::ServeArgs) -> ExitCode {
    init_tracing();
    let files = crate::server::files_needed(args.http_max_connections);
    if let Some(w) = crate::server::raise_open_files(files) {
        tracing::warn!("{w}");
    }
    let server = match Server::bind(&args).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailroom: cannot start: {e}");
            return ExitCode::from(78);
        }
    };
    // Printed this once (contract section 1); later starts read the file.
    if let Some((path, token)) = &server.generated_token {
        println!(
            "admin token (generated into {}, mode 0600; printed only this once): {}",
            path.display(),
            token.expose()
        );
    }
    if let Some(addr) = server.smtp_addr {
        println!("smtp listening on {addr}");
    }
    if let Some(addr) = server.smtps_addr {
        println!("smtps listening on {addr}");
    }
    if let Some(w) = crate::server::plain_http_warning(server.addr, args.public_url.as_deref()) {
        tracing::warn!("{w}");
    }
    println!("listening on http://{}", server.addr);
    let _ = std::io::stdout().flush();
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom: server error: {e}");
            ExitCode::from(1)
        }
    }
}
