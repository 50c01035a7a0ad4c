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
    let unquoted = unquote_variables();
    let _ = UNQUOTED.set(unquoted);
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

/// The variables [`unquote_variables`] took out of their quotes, for the
/// warning once logging runs.
static UNQUOTED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Takes each `MAILROOM_` variable's value out of a pair of quotes around
/// it, as Docker's `--env-file` passes `MAILROOM_LISTEN="0.0.0.0:8080"` on
/// (systemd and shells remove them): with them, `MAILROOM_PUBLIC_URL` was
/// refused as not https and `MAILROOM_DATA_DIR` named a directory `"` under
/// the working directory. No option's value starts and ends with a quote.
/// The admin token is left as it is: sign-in takes it with and without
/// them ([`crate::auth::AdminAuth`]). Runs before anything else, with one
/// thread. Answers the names it changed.
fn unquote_variables() -> Vec<String> {
    let read = option_variables();
    let mut changed = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        let server_reads = name == "MAILROOM_LOG" || read.iter().any(|k| k == name);
        if !server_reads || name == "MAILROOM_ADMIN_TOKEN" {
            continue;
        }
        let inside = crate::auth::unquoted(value.trim());
        if inside.len() < value.trim().len() {
            std::env::set_var(name, inside);
            changed.push(name.to_string());
        }
    }
    changed.sort();
    changed
}

/// `MAILROOM_` variables that are no option of `mailroom serve` but are not
/// mistakes: the sendmail drop-in's, the log filter, and those of the
/// project's own scripts, tests and benchmarks.
const OTHER_VARIABLES: &[&str] = &["MAILROOM_LOG", "MAILROOM_URL", "MAILROOM_APP_KEY"];
const OTHER_PREFIXES: &[&str] = &[
    "MAILROOM_TEST_",
    "MAILROOM_BENCH_",
    "MAILROOM_TOOLS",
    "MAILROOM_PG_",
];

/// The variables the options of `mailroom serve` and `mailroom check` read.
fn option_variables() -> Vec<String> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let mut known: Vec<String> = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    known.sort();
    known.dedup();
    known
}

/// A warning for each `MAILROOM_` variable in `vars` that no option reads,
/// naming the option it most likely meant. Such a variable does nothing, and
/// the server starts without the setting the admin thought was made
/// (`MAILROOM_SMTP_TRUSTED_NETWORK` for `MAILROOM_SMTP_TRUSTED_NETWORKS`).
pub fn unknown_variables(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    let known = option_variables();
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|v| v.starts_with("MAILROOM_"))
        .filter(|v| !known.contains(v) && !OTHER_VARIABLES.contains(&v.as_str()))
        .filter(|v| !OTHER_PREFIXES.iter().any(|p| v.starts_with(p)))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|v| {
            // Alike after the prefix every name shares: a letter or two
            // wrong, missing or extra, or a plural.
            let nearest = known
                .iter()
                .map(|k| {
                    let score = strsim::normalized_damerau_levenshtein(
                        &v["MAILROOM_".len()..],
                        &k["MAILROOM_".len()..],
                    );
                    (score, k)
                })
                .filter(|(score, _)| *score >= 0.75)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = match nearest {
                Some((_, k)) => format!("did you mean {k}?"),
                None => "mailroom --help lists each option with its variable".into(),
            };
            format!(
                "{v} is set, but no option of mailroom serve reads it, so it does nothing: {hint}"
            )
        })
        .collect()
}

async fn serve(args: crate::config::ServeArgs) -> ExitCode {
    init_tracing();
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for w in unknown_variables(names) {
        tracing::warn!("{w}");
    }
    for name in UNQUOTED.get().into_iter().flatten() {
        tracing::warn!("{name} is in quotes, as Docker's --env-file passes them on; Mailroom takes what they hold. Write {name}=value without quotes in an --env-file");
    }
    let files = crate::server::files_needed(args.http_max_connections);
    if let Some(w) = crate::server::raise_open_files(files) {
        tracing::warn!("{w}");
    }
    // Held until the process ends: one server per SQLite database.
    let _lock = match crate::state::lock_sqlite(&args) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("mailroom: cannot start: {e}");
            return ExitCode::from(78);
        }
    };
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

#[cfg(test)]
mod tests {
    use super::unknown_variables;

    fn warned(vars: &[&str]) -> Vec<String> {
        unknown_variables(vars.iter().map(|v| v.to_string()))
    }

    #[test]
    fn a_misspelt_variable_is_named_with_the_option_it_meant() {
        let w = warned(&["MAILROOM_SMTP_TRUSTED_NETWORK", "PATH", "HOME"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("MAILROOM_SMTP_TRUSTED_NETWORK is set, but no option")
                && w[0].ends_with("did you mean MAILROOM_SMTP_TRUSTED_NETWORKS?"),
            "{}",
            w[0]
        );
        for (typo, meant) in [
            ("MAILROOM_TRUSTED_PROXY", "MAILROOM_TRUSTED_PROXIES"),
            ("MAILROOM_LISTN", "MAILROOM_LISTEN"),
            ("MAILROOM_PUBLICURL", "MAILROOM_PUBLIC_URL"),
            (
                "MAILROOM_DELIVERY_CONECTIONS",
                "MAILROOM_DELIVERY_CONNECTIONS",
            ),
        ] {
            let w = warned(&[typo]);
            assert!(w[0].ends_with(&format!("did you mean {meant}?")), "{w:?}");
        }
        let w = warned(&["MAILROOM_COLOUR"]);
        assert!(
            w[0].ends_with("mailroom --help lists each option with its variable"),
            "{w:?}"
        );
    }

    #[test]
    fn options_and_the_other_known_variables_are_not_warned_of() {
        let quiet = [
            "MAILROOM_LISTEN",
            "MAILROOM_SMTP_TRUSTED_NETWORKS",
            "MAILROOM_HTTP_HEADER_TIMEOUT",
            "MAILROOM_GRAPH_ENDPOINT",
            "MAILROOM_LOG",
            "MAILROOM_URL",
            "MAILROOM_APP_KEY",
            "MAILROOM_TEST_DATABASE_URL",
            "MAILROOM_BENCH_MESSAGES",
            "MAILROOM_TOOLS",
            "MAILROOM_PG_DIR",
            "RUST_LOG",
        ];
        assert_eq!(warned(&quiet), Vec::<String>::new());
    }
}
