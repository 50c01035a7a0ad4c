//! What a receiver said when it refused a request, for the delivery's error
//! (Activity, the log) and the test's answer: `HTTP 404: no_service`, and
//! for Slack's words the fix. "HTTP 404" alone left the admin to guess that
//! Slack had removed the webhook.

use mailroom_shared::webhooks::Format;
use serde_json::Value;

/// The most of a refusal's body read: receivers' error words are a few
/// dozen bytes (Slack) to a few hundred (Power Automate's JSON).
pub const READ_BYTES: usize = 4 * 1024;

/// The most of the receiver's words kept, in characters.
const WORDS_KEPT: usize = 300;

/// `HTTP {status}`, the receiver's words when it gave some, and the fix for
/// Slack's. The words are its JSON `error.code` and `error.message` (Power
/// Automate, Azure), a JSON `error` or `message`, or its first line of text
/// (Slack answers `no_service`); a web page (a proxy's) gives none. Control
/// characters are dropped, the webhook's URL is masked (a receiver may echo
/// it, and this text is logged; for Slack and Teams the URL is the
/// credential), and the words are cut at 300 characters.
pub fn refusal(status: u16, format: Format, body: &[u8], url: &str) -> String {
    let Some(words) = words(body)
        .map(|w| clean(&w, url))
        .filter(|w| !w.is_empty())
    else {
        return format!("HTTP {status}");
    };
    let fix = match format {
        Format::Slack => slack_fix(&words),
        Format::Standard => standard_fix(&words),
        Format::Teams => None,
    };
    match fix {
        Some(fix) => format!("HTTP {status}: {words}; {fix}"),
        None => format!("HTTP {status}: {words}"),
    }
}

/// The fix for what the Standard Webhooks libraries answer when they refuse
/// a request (their `WebhookVerificationError` texts): a timestamp more than
/// 5 minutes from the receiver's clock, or a signature under another secret.
fn standard_fix(words: &str) -> Option<&'static str> {
    let lower = words.to_ascii_lowercase();
    if lower.contains("timestamp too old") || lower.contains("timestamp too new") {
        Some("the receiver takes a webhook-timestamp within 5 minutes of its own clock: check this server's clock and the receiver's (timedatectl; both synchronised with NTP)")
    } else if lower.contains("no matching signature") || lower.contains("signature mismatch") {
        Some("the receiver checks the signature with another secret: give it the whsec_… secret Mailroom showed when this webhook was added or last given a new secret (if it is lost, New secret in the webhooks panel makes another, and the old one still signs beside it for 24 hours)")
    } else {
        None
    }
}

fn words(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let said = |v: &Value| v.as_str().map(str::to_string);
        let error = &v["error"];
        let code = said(&error["code"]).or_else(|| said(&v["code"]));
        let message = said(&error["message"])
            .or_else(|| said(error))
            .or_else(|| said(&v["message"]));
        return match (code, message) {
            (Some(code), Some(message)) => Some(format!("{code}: {message}")),
            (code, message) => code.or(message),
        };
    }
    text.lines().next().map(str::to_string)
}

/// Control characters out, whitespace runs as one space, the URL (and its
/// path, which holds a chat webhook's key) masked, cut at [`WORDS_KEPT`].
fn clean(words: &str, url: &str) -> String {
    let mut text = crate::intake::one_line(words);
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .filter(|p| p.len() > 1);
    for secret in [Some(url), path].into_iter().flatten() {
        text = text.replace(secret, "(the webhook's URL)");
    }
    crate::upstream::cut_at(&text, WORDS_KEPT).into_owned()
}

/// The fix for the errors Slack's incoming webhooks answer ("Handling
/// errors" in Slack's documentation).
fn slack_fix(words: &str) -> Option<&'static str> {
    Some(match words {
        "no_service" | "no_service_id" => "Slack no longer has this incoming webhook (it was removed or disabled, or its app was uninstalled): add a new incoming webhook in Slack and paste its URL here",
        "invalid_token" => "Slack does not know this URL's token (cut short when pasted, or regenerated): copy the whole webhook URL again from Slack",
        "channel_not_found" => "the webhook's channel was deleted: add a new incoming webhook for an existing channel and paste its URL here",
        "channel_is_archived" => "the webhook's channel is archived: unarchive it in Slack, or add a webhook for another channel",
        "action_prohibited" | "posting_to_general_channel_denied" => "a Slack admin restricts posting to this channel: ask them to allow the app, or add a webhook for another channel",
        "no_text" | "invalid_payload" => "Slack could not read the post: set this webhook's format to slack",
        "team_disabled" | "no_team" => "the Slack workspace is disabled or gone: add a webhook in an active workspace",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T0/B0/s3cr3t";

    #[test]
    fn a_receiver_that_echoes_the_url_never_has_it_repeated() {
        for body in [
            format!("unknown webhook {URL}"),
            "unknown webhook /services/T0/B0/s3cr3t".to_string(),
            format!(r#"{{"message": "no hook at {URL}"}}"#),
        ] {
            let said = refusal(404, Format::Standard, body.as_bytes(), URL);
            assert!(!said.contains("s3cr3t"), "{said}");
            assert!(said.contains("(the webhook's URL)"), "{said}");
        }
    }

    #[test]
    fn words_are_read_from_json_or_text_and_a_page_gives_none() {
        for (body, want) in [
            (
                r#"{"error": {"code": "C", "message": "M"}}"#,
                "HTTP 400: C: M",
            ),
            (r#"{"error": "E"}"#, "HTTP 400: E"),
            (r#"{"message": "M"}"#, "HTTP 400: M"),
            (r#"{"ok": false}"#, "HTTP 400"),
            ("first line\nsecond", "HTTP 400: first line"),
            ("<!DOCTYPE html><p>x</p>", "HTTP 400"),
            ("  \r\n ", "HTTP 400"),
            ("a\u{1b}[31m\tb", "HTTP 400: a [31m b"),
        ] {
            assert_eq!(refusal(400, Format::Teams, body.as_bytes(), URL), want);
        }
        let long = "é".repeat(5_000);
        let said = refusal(400, Format::Standard, long.as_bytes(), URL);
        assert_eq!(said.chars().count(), "HTTP 400: ".len() + WORDS_KEPT + 1);
    }

    #[test]
    fn slacks_words_get_their_fix_only_for_a_slack_webhook() {
        let said = refusal(404, Format::Slack, b"no_service", URL);
        assert!(
            said.starts_with("HTTP 404: no_service; Slack no longer"),
            "{said}"
        );
        assert_eq!(
            refusal(404, Format::Standard, b"no_service", URL),
            "HTTP 404: no_service"
        );
    }
}
