//! `mailroom check --settings FILE --to ADDRESS`: the web form's test from a
//! terminal. Exit 0 when delivered, 1 when the test failed, 2 for invalid
//! settings or usage.

use std::process::ExitCode;

use mailroom_shared::Settings;

use super::Upstream;
use crate::config::CheckArgs;

/// The largest settings file read: one is a few hundred bytes.
const MAX_SETTINGS_FILE: u64 = 1024 * 1024;

/// Reads at most [`MAX_SETTINGS_FILE`] bytes of `path`: `--settings
/// /dev/zero` (or a log named by mistake) read until memory ran out.
/// Bytes, not a string: a file in another encoding than UTF-8 is explained
/// by the JSON reader, with the fix.
fn read_settings(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SETTINGS_FILE + 1).read_to_end(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_SETTINGS_FILE {
        return Err(format!(
            "{} is larger than 1 MiB, so it is not a SETTINGS file (one is a few hundred bytes): name the JSON file the page's settings were saved to",
            path.display()
        ));
    }
    Ok(text)
}

/// The object under `"settings"` of a file that holds SETTINGS that way: a
/// `PUT /api/settings` body, the answer of `GET /api/settings` or of a
/// profile saved to a file. `None` for a file of SETTINGS itself.
fn under_settings(text: &[u8]) -> Option<Vec<u8>> {
    let tree = crate::error::json_tree(text)?;
    let outer = tree.as_object()?;
    if outer.contains_key("provider") {
        return None;
    }
    let inner = outer.get("settings")?.as_object()?;
    serde_json::to_vec(inner).ok()
}

/// Runs the check and prints each stage and the outcome.
pub async fn run(args: CheckArgs) -> ExitCode {
    let text = match read_settings(&args.settings) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mailroom check: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match under_settings(&text) {
        Some(inner) => {
            eprintln!(
                "mailroom check: {} holds more than SETTINGS; reading the object under \"settings\"",
                args.settings.display()
            );
            inner
        }
        None => text,
    };
    let parsed = crate::error::parse_json(&text).and_then(|s: Settings| {
        match crate::error::json_tree(&text) {
            Some(tree) => crate::error::unknown_settings_field(&tree, None).map(|()| s),
            None => Ok(s),
        }
    });
    let settings = match parsed {
        Ok(s) => s,
        Err(e) => {
            // Said of the file, not of a request body.
            let why = match e {
                crate::error::BodyError::Syntax(detail) => {
                    format!("it is not valid JSON: {detail}.")
                }
                crate::error::BodyError::Shape(detail) => {
                    format!("it does not hold SETTINGS: {detail}.")
                }
                crate::error::BodyError::Encoding(detail) => {
                    format!("it is not UTF-8: {detail}.")
                }
                crate::error::BodyError::Unknown { field, expected } => {
                    format!("it has no field {field}: {expected}.")
                }
                other => other.to_string(),
            };
            eprintln!(
                "mailroom check: {} is not a valid SETTINGS file: {why}",
                args.settings.display()
            );
            return ExitCode::from(2);
        }
    };
    if settings.uses_certificate() {
        eprintln!("mailroom check: a certificate credential lives in the server's store, encrypted; test it from the page (Send test email) or with POST /api/settings/test");
        return ExitCode::from(2);
    }
    let mut report = settings.validate();
    // The secret's Expires date against today, as the page tells it.
    let now = time::OffsetDateTime::now_utc();
    let today = (now.year(), now.month() as u8, now.day());
    if let Some(note) = mailroom_shared::validate::secret_expiry_note(&settings, today) {
        report.warn(mailroom_shared::Field::ClientSecretExpires, note);
    }
    if let Some(msg) = mailroom_shared::validate::check_recipient(&args.to) {
        report.error(mailroom_shared::Field::Recipient, msg);
    }
    for (field, msgs) in &report.warnings {
        for m in msgs {
            println!("warning  {field}: {m}");
        }
    }
    if !report.is_valid() {
        for (field, msgs) in &report.errors {
            for m in msgs {
                eprintln!("invalid  {field}: {m}");
            }
        }
        return ExitCode::from(2);
    }
    let tester = match Upstream::new(&args.test) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mailroom check: {e}");
            return ExitCode::from(2);
        }
    };
    let result = tester.run(&settings, None, &args.to).await;
    for stage in &result.stages {
        println!(
            "{:<8} {:<4} {} ms",
            stage.name.as_str(),
            if stage.ok { "ok" } else { "FAIL" },
            stage.ms
        );
    }
    for line in &result.transcript {
        let arrow = match line.dir {
            mailroom_shared::api::Direction::Client => "C:",
            mailroom_shared::api::Direction::Server => "S:",
        };
        println!("  {arrow} {}", line.line);
    }
    if let Some(c) = &result.token_claims {
        println!(
            "token    aud={} tid={} appid={} roles={}",
            c.aud.as_deref().unwrap_or("-"),
            c.tid.as_deref().unwrap_or("-"),
            c.appid.as_deref().unwrap_or("-"),
            c.roles.join(",")
        );
    }
    if result.ok {
        println!("ok: {}", result.message);
        ExitCode::SUCCESS
    } else {
        println!(
            "failed at {}{}: {}",
            result.stage.map(|s| s.as_str()).unwrap_or("?"),
            result
                .code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            result.message
        );
        if let Some(h) = &result.hint {
            println!("fix: {h}");
        }
        ExitCode::from(1)
    }
}
