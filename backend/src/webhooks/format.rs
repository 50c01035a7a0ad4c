//! The chat formats (docs/REFERENCE.md, "Standard Webhooks, and chat
//! formats"): what happened, the fix and a link, for a Slack incoming
//! webhook (`{"text"}`) or a Teams workflow (one Adaptive Card 1.4).

use std::borrow::Cow;

use mailroom_shared::webhooks::Format;
use serde_json::{json, Value};

/// A person's words for an event: a title, what happened, the fix (if
/// any), and the page to open.
pub struct Said {
    /// One line.
    pub title: String,
    /// What happened.
    pub what: String,
    /// What to do.
    pub fix: Option<String>,
    /// The page's route (`#/settings`, `#/apps`): for a message, Activity
    /// with that message open (`#/activity?message=msg_…`).
    pub route: String,
}

/// `#/activity` with these of its filters (`status`, `app`, `profile`,
/// `message`): the page reads the same names from its address (docs/API.md
/// §14).
pub fn activity_route(pairs: &[(&str, &str)]) -> String {
    page_route("#/activity", pairs)
}

/// A profile's settings (`#/settings?profile=…`; the page edits that
/// profile), or the settings when the event names none.
pub fn settings_route(profile: &str) -> String {
    page_route("#/settings", &[("profile", profile)])
}

/// A view's route with these pairs, each value percent-encoded, empty ones
/// left out.
fn page_route(view: &str, pairs: &[(&str, &str)]) -> String {
    let mut route = String::from(view);
    for (i, (name, value)) in pairs.iter().filter(|(_, v)| !v.is_empty()).enumerate() {
        route.push(if i == 0 { '?' } else { '&' });
        route.push_str(name);
        route.push('=');
        // form_urlencoded writes a space as `+`, which the page's
        // decodeURIComponent keeps; a `+` itself is written `%2B`.
        for part in form_urlencoded::byte_serialize(value.as_bytes()) {
            route.push_str(&part.replace('+', "%20"));
        }
    }
    route
}

/// The words of a post's link: what it opens.
fn link_text(route: &str) -> &'static str {
    let (view, query) = route.split_once('?').unwrap_or((route, ""));
    match view {
        "#/activity" if query.starts_with("message=") => "Open the message in Mailroom",
        "#/activity" if !query.is_empty() => "Open these messages in Mailroom",
        "#/settings" => "Open the settings in Mailroom",
        "#/apps" if !query.is_empty() => "Open the app's limits in Mailroom",
        _ => "Open Mailroom",
    }
}

/// Where a post about several events links: their common page, else
/// Activity filtered to what they share (all failed: the failed ones, with
/// *Retry all*; all one app's: that app's), else Activity.
fn digest_route(events: &[Value], said: &[Said]) -> String {
    if let Some(first) = said
        .first()
        .filter(|f| said.iter().all(|s| s.route == f.route))
    {
        return first.route.clone();
    }
    let kinds: Vec<&str> = events.iter().map(|e| s(e, "type")).collect();
    if !kinds.iter().all(|k| k.starts_with("message.")) {
        return "#/activity".into();
    }
    let status = if kinds.iter().all(|k| *k == "message.failed") {
        "failed"
    } else {
        ""
    };
    let app = s(&events[0]["data"], "app");
    let app = if events.iter().all(|e| s(&e["data"], "app") == app) {
        app
    } else {
        ""
    };
    activity_route(&[("status", status), ("app", app)])
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// How many of a message's recipients a chat post names.
const RECIPIENTS_SHOWN: usize = 5;

/// The first [`RECIPIENTS_SHOWN`] recipients, then how many more. A message
/// may have 500, and their addresses made a post of 17 KB and more: Microsoft
/// documents 28 KB for a Teams post, and posts of 14 to 20 KB have been
/// refused with `413` in practice. A refused post was retried until it
/// failed, and the channel never heard of the message at all.
fn recipients(to: &[&str]) -> String {
    match to.len().checked_sub(RECIPIENTS_SHOWN) {
        Some(more) if more > 0 => format!("{} and {more} more", to[..RECIPIENTS_SHOWN].join(", ")),
        _ => to.join(", "),
    }
}

/// Describes a Standard Webhooks body `{"type", "timestamp", "data"}`.
pub fn describe(event: &Value) -> Said {
    let data = &event["data"];
    let kind = s(event, "type");
    let message_route = || activity_route(&[("message", s(data, "id"))]);

    let message_line = || {
        let to: Vec<&str> = data["to"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // The id message trace, quarantine and the recipient's headers know
        // the message by (left out for one stored before it was kept).
        let message_id = match data["message_id"].as_str() {
            Some(id) => format!(", Message-ID {}", crate::intake::one_line(id)),
            None => String::new(),
        };
        format!(
            "“{}” from {} to {} ({}{message_id})",
            // One line, as the intake stores it now: one stored before
            // could add a line of its own to the post.
            crate::intake::one_line(s(data, "subject")),
            s(data, "from"),
            recipients(&to),
            s(data, "id")
        )
    };
    match kind {
        "delivery.paused" => Said {
            title: "Mailroom: delivery is paused".into(),
            what: format!(
                "{} (stage {}, code {}). Messages wait; none is lost or bounced.",
                s(data, "message"),
                s(data, "stage"),
                data["code"].as_str().unwrap_or("none")
            ),
            fix: data["hint"].as_str().map(str::to_string),
            route: settings_route(s(data, "profile")),
        },
        "delivery.resumed" => Said {
            title: "Mailroom: delivery resumed".into(),
            what: format!(
                // A pause the sign-in check found may have had no message.
                "Delivery was paused from {} to {}; it works again, and any waiting messages are going out.",
                s(data, "since"),
                s(data, "until")
            ),
            fix: None,
            route: activity_route(&[("profile", s(data, "profile"))]),
        },
        "message.failed" => Said {
            title: "Mailroom: a message failed".into(),
            what: format!(
                "{}: {}",
                message_line(),
                data["last_error"]["message"].as_str().unwrap_or("failed")
            ),
            fix: Some("Open the message in Activity for the upstream's reply and the fix; retry it once fixed.".into()),
            route: message_route(),
        },
        "message.deferred" => Said {
            title: "Mailroom: a message was deferred".into(),
            what: format!(
                "{}: {}. Mailroom retries it.",
                message_line(),
                data["last_error"]["message"].as_str().unwrap_or("a temporary answer")
            ),
            fix: None,
            route: message_route(),
        },
        // Sent, and a recipient failed: a permanent refusal, or
        // --max-queue-time ending the ones still waiting.
        "message.sent" if data["last_error"]["message"].is_string() => Said {
            title: "Mailroom: a message was sent, but not to every recipient".into(),
            what: format!("{}: {}", message_line(), s(&data["last_error"], "message")),
            fix: Some("Open the message in Activity for each recipient's reply and the fix; send it again to the ones it did not reach.".into()),
            route: message_route(),
        },
        "message.sent" => Said {
            title: "Mailroom: a message was sent".into(),
            what: message_line(),
            fix: None,
            route: message_route(),
        },
        "credential.expiring" => Said {
            // A password for Exchange Online is retired rather than expiring.
            title: if data["code"] == mailroom_shared::sending::BASIC_AUTH_RETIRING {
                "Mailroom: Microsoft turns off the sign-in password soon"
            } else {
                "Mailroom: the sign-in credential expires soon"
            }
            .into(),
            what: s(data, "message").to_string(),
            fix: data["hint"].as_str().map(str::to_string),
            route: settings_route(s(data, "profile")),
        },
        "quota.reached" => {
            // An app's limits are under Apps; a profile's beside its
            // settings, and they follow its mailbox's own: raising them past
            // Exchange's gains nothing.
            let (fix, route) = match data.get("app") {
                // Apps with that app's limits open.
                Some(app) => (
                    "Raise the limit under Apps if the volume is expected, or find what sends so much.",
                    page_route("#/apps", &[("limits", app.as_str().unwrap_or_default())]),
                ),
                None => (
                    "The profile's limits are under Settings, with that profile chosen (Change limits); raise them only as far as its mailbox's own limits allow (Exchange Online: 10,000 recipients a day), else send part of the mail through another profile, or find what sends so much.",
                    settings_route(s(data, "profile")),
                ),
            };
            Said {
                title: "Mailroom: a sending limit was reached".into(),
                what: format!(
                    "{} {} reached its limit {} ({}); messages wait until {}.",
                    if data.get("app").is_some() { "App" } else { "Profile" },
                    data.get("app").or(data.get("profile")).and_then(Value::as_str).unwrap_or_default(),
                    s(data, "limit"),
                    data["value"],
                    data["until"].as_str().unwrap_or("the window frees")
                ),
                fix: Some(fix.into()),
                route,
            }
        }
        "app.old_key_refused" => Said {
            title: "Mailroom: a device still uses an app's replaced key".into(),
            what: s(data, "message").to_string(),
            fix: data["hint"].as_str().map(str::to_string),
            route: page_route("#/apps", &[]),
        },
        _ => Said {
            title: "Mailroom: test event".into(),
            what: "This webhook works: Mailroom can reach it.".into(),
            fix: None,
            route: "#/settings".into(),
        },
    }
}

/// Text for Slack's `text`, shown as written: `&`, `<` and `>` are
/// Slack's control characters, so a subject (any app's sender writes it)
/// holding `<!channel>` notified the whole channel, and one holding
/// `<https://…|Open Mailroom>` put a link of its choosing beside ours.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text for a Teams card's TextBlock, whose markdown makes `[words](url)`
/// a link showing only the words: a space after the `]` leaves both as
/// text, so no subject or upstream reply can dress a link of its choosing
/// as one of ours.
fn teams_text(text: &str) -> String {
    text.replace("](", "] (")
}

/// An event's kind in a digest: its title without the product's name.
fn kind_of(s: &Said) -> &str {
    s.title.trim_start_matches("Mailroom: ")
}

/// The most of an event's text a digest shows, in characters: ten events
/// with a 998-character subject and a 1,000-character reply each made a
/// post of over 20 KB, which a Teams workflow may refuse.
const DIGEST_TEXT: usize = 300;

/// `text` cut at [`DIGEST_TEXT`] characters, ending with "…" when cut.
fn shortened(text: &str) -> Cow<'_, str> {
    crate::upstream::cut_at(text, DIGEST_TEXT)
}

/// Events one post shows one by one; the rest are counted.
pub const DIGEST_SHOWN: usize = 10;

/// One part of a post: an optional heading (a digest's kind of event), what
/// happened, and the fix.
struct Part<'a> {
    head: Option<&'a str>,
    what: Cow<'a, str>,
    fix: Option<&'a str>,
}

/// The body for a chat format.
pub fn chat(format: Format, event: &Value, public_url: Option<&str>) -> Value {
    chat_digest(format, std::slice::from_ref(event), public_url)
}

/// One post for `events` (at least one; one gives [`chat`]'s post), all due
/// at once for one chat webhook. A burst (a long pause ended by
/// `--max-queue-time`, a recipient domain refusing every message) made one
/// post per message, and Slack and Teams take about one a second: the
/// channel was flooded, and the rest retried and could fail unheard. The
/// title counts the events, a line counts each kind, the first
/// [`DIGEST_SHOWN`] follow with their fix (once while it repeats), and the
/// rest are counted.
pub fn chat_digest(format: Format, events: &[Value], public_url: Option<&str>) -> Value {
    let said: Vec<Said> = events.iter().map(describe).collect();
    // Each kind with its count, in the order first seen.
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for s in &said {
        match kinds.iter_mut().find(|(k, _)| *k == kind_of(s)) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind_of(s), 1)),
        }
    }
    let counts = kinds
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join("; ");
    let (title, route, parts, more) = match said.as_slice() {
        [one] => {
            let part = Part {
                head: None,
                what: one.what.as_str().into(),
                fix: one.fix.as_deref(),
            };
            (one.title.clone(), one.route.clone(), vec![part], 0)
        }
        _ => {
            let route = digest_route(events, &said);
            let mut parts = vec![Part {
                head: None,
                what: counts.as_str().into(),
                fix: None,
            }];
            let shown = &said[..said.len().min(DIGEST_SHOWN)];
            let mut last_fix = None;
            for s in shown {
                let fix = s.fix.as_deref();
                parts.push(Part {
                    head: Some(kind_of(s)),
                    what: shortened(&s.what),
                    fix: fix.filter(|f| last_fix != Some(*f)),
                });
                last_fix = fix;
            }
            let title = format!("Mailroom: {} events", said.len());
            (title, route, parts, said.len() - shown.len())
        }
    };
    let tail = (more > 0).then(|| format!("… and {more} more, each in Activity."));
    let link = public_url.map(|u| format!("{}/{}", u.trim_end_matches('/'), route));
    match format {
        Format::Slack => {
            let mut text = format!("*{}*", slack_text(&title));
            for p in &parts {
                match p.head {
                    Some(head) => text.push_str(&format!(
                        "\n• *{}*: {}",
                        slack_text(head),
                        slack_text(&p.what)
                    )),
                    None => text.push_str(&format!("\n{}", slack_text(&p.what))),
                }
                if let Some(fix) = p.fix {
                    text.push_str(&format!("\n*Fix:* {}", slack_text(fix)));
                }
            }
            if let Some(tail) = &tail {
                text.push_str(&format!("\n{tail}"));
            }
            if let Some(link) = &link {
                // `&` is Slack's control character in a link too.
                text.push_str(&format!(
                    "\n<{}|{}>",
                    link.replace('&', "&amp;"),
                    link_text(&route)
                ));
            }
            json!({ "text": text })
        }
        _ => {
            let block = |text: String| json!({"type": "TextBlock", "text": text, "wrap": true});
            let mut body = vec![
                json!({"type": "TextBlock", "text": teams_text(&title), "weight": "Bolder", "size": "Medium", "wrap": true}),
            ];
            for p in &parts {
                body.push(match p.head {
                    Some(head) => {
                        let mut b = block(format!("{}: {}", teams_text(head), teams_text(&p.what)));
                        b["separator"] = json!(true);
                        b
                    }
                    None => block(teams_text(&p.what)),
                });
                if let Some(fix) = p.fix {
                    body.push(block(format!("Fix: {}", teams_text(fix))));
                }
            }
            if let Some(tail) = tail {
                body.push(block(tail));
            }
            let mut card = json!({
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": body,
            });
            if let Some(link) = link {
                card["actions"] =
                    json!([{"type": "Action.OpenUrl", "title": link_text(&route), "url": link}]);
            }
            json!({
                "type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_post_does_not_promise_messages_that_may_not_be_there() {
        let event = json!({"type": "delivery.resumed", "data": {
            "profile": "default", "since": "2026-12-07T02:00:00Z", "until": "2026-12-07T02:07:00Z"}});
        assert_eq!(
            describe(&event).what,
            "Delivery was paused from 2026-12-07T02:00:00Z to 2026-12-07T02:07:00Z; it works again, and any waiting messages are going out."
        );
    }

    fn paused() -> Value {
        json!({"type": "delivery.paused", "timestamp": "2026-12-01T10:00:00Z", "data": {
            "profile": "default", "since": "2026-12-01T10:00:00Z", "stage": "token",
            "code": "AADSTS7000222", "message": "The client secret has expired.",
            "hint": "Create a new client secret."}})
    }

    #[test]
    fn slack_says_what_the_fix_and_links_to_the_page() {
        let v = chat(Format::Slack, &paused(), Some("https://mail.contoso.com/"));
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("*Mailroom: delivery is paused*"), "{text}");
        assert!(
            text.contains("AADSTS7000222") && text.contains("*Fix:* Create a new client secret.")
        );
        assert!(
            text.contains(
                "<https://mail.contoso.com/#/settings?profile=default|Open the settings in Mailroom>"
            ),
            "{text}"
        );
        assert!(!chat(Format::Slack, &paused(), None)["text"]
            .as_str()
            .unwrap()
            .contains("Mailroom>"));
    }

    /// A failed message whose subject and upstream reply were written by
    /// whoever sent it.
    fn hostile() -> Value {
        json!({"type": "message.failed", "timestamp": "2026-12-01T10:00:00Z", "data": {
            "id": "msg_1", "subject": "<!channel> R&D [Open Mailroom](https://evil.example) <https://evil.example|Open Mailroom>",
            "from": "a@contoso.com", "to": ["b@example.org"],
            "last_error": {"message": "550 5.1.1 <b@example.org> unknown"}}})
    }

    /// A subject that holds line breaks (stored before the intake made it
    /// one line) adds no line of its own, such as a false "Fix:".
    #[test]
    fn a_password_being_retired_is_not_called_an_expiring_credential() {
        let event = |code: &str| {
            json!({"type": "credential.expiring", "data": {
                "code": code, "message": "m", "hint": "Switch to OAuth 2.0.", "profile": "prf_b",
                "at": "2026-12-31T00:00:00Z"}})
        };
        let retiring = describe(&event("basic_auth_retiring"));
        assert_eq!(
            retiring.title,
            "Mailroom: Microsoft turns off the sign-in password soon"
        );
        assert_eq!(retiring.fix.as_deref(), Some("Switch to OAuth 2.0."));
        assert_eq!(retiring.route, "#/settings?profile=prf_b");
        let expiring = describe(&event("credential_expiring"));
        assert_eq!(
            expiring.title,
            "Mailroom: the sign-in credential expires soon"
        );
    }

    #[test]
    fn a_subject_with_line_breaks_adds_no_line_to_the_post() {
        let mut event = hostile();
        event["data"]["subject"] = json!("Invoice\r\n\r\n*Fix:* run this\u{2028}now");
        for format in [Format::Slack, Format::Teams] {
            let post = chat(format, &event, None).to_string();
            assert!(
                post.contains("Invoice *Fix:* run this now"),
                "{format:?}: {post}"
            );
        }
    }

    #[test]
    fn what_senders_write_stays_text_in_slack_and_teams() {
        let slack = chat(Format::Slack, &hostile(), Some("https://mail.contoso.com"));
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; R&amp;D [Open Mailroom](https://evil.example) &lt;https://evil.example|Open Mailroom&gt;"),
            "{text}"
        );
        assert!(
            text.contains("550 5.1.1 &lt;b@example.org&gt; unknown"),
            "{text}"
        );
        // Ours is the one link Slack reads, and the only < and > are its.
        assert!(
            text.ends_with(
                "\n<https://mail.contoso.com/#/activity?message=msg_1|Open the message in Mailroom>"
            ),
            "{text}"
        );
        assert_eq!(text.matches('<').count(), 1, "{text}");
        assert_eq!(text.matches('>').count(), 1, "{text}");
        let teams = chat(Format::Teams, &hostile(), Some("https://mail.contoso.com"));
        let body = teams["attachments"][0]["content"]["body"].to_string();
        assert!(
            body.contains("[Open Mailroom] (https://evil.example)"),
            "{body}"
        );
        assert!(!body.contains("]("), "{body}");
    }

    #[test]
    fn a_message_sent_to_some_recipients_says_so_with_the_fix() {
        let mut event = hostile();
        event["type"] = json!("message.sent");
        event["data"]["subject"] = json!("Invoice");
        let text = chat(Format::Slack, &event, None)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.starts_with("*Mailroom: a message was sent, but not to every recipient*"),
            "{text}"
        );
        assert!(text.contains("(msg_1): 550 5.1.1"), "{text}");
        assert!(
            text.contains("*Fix:* Open the message in Activity"),
            "{text}"
        );
        // With the Message-ID it was sent with, for message trace; Slack's
        // angle brackets escaped, so it is not read as a link.
        event["data"]["message_id"] = json!("<msg_1@contoso.com>");
        for format in [Format::Slack, Format::Teams] {
            let post = chat(format, &event, None).to_string();
            assert!(
                post.contains("(msg_1, Message-ID &lt;msg_1@contoso.com&gt;): 550 5.1.1")
                    || post.contains("(msg_1, Message-ID <msg_1@contoso.com>): 550 5.1.1"),
                "{post}"
            );
        }
        let slack = chat(Format::Slack, &event, None).to_string();
        assert!(
            slack.contains("Message-ID &lt;msg_1@contoso.com&gt;"),
            "{slack}"
        );
        event["data"]["last_error"] = Value::Null;
        let text = chat(Format::Slack, &event, None)["text"].to_string();
        assert!(
            text.contains("*Mailroom: a message was sent*") && !text.contains("Fix"),
            "{text}"
        );
    }

    #[test]
    fn a_message_to_many_names_its_first_recipients_and_counts_the_rest() {
        let mut event = hostile();
        let to: Vec<String> = (0..500)
            .map(|i| {
                format!(
                    "{}@{}",
                    format_args!("person.{i:03}.long-name"),
                    "example.org"
                )
            })
            .collect();
        event["data"]["to"] = json!(to);
        event["data"]["subject"] = json!("x".repeat(998));
        for format in [Format::Slack, Format::Teams] {
            let post = chat(format, &event, Some("https://mail.contoso.com")).to_string();
            assert!(post.len() < 4_000, "{} bytes", post.len());
            assert!(post.contains(&to[4]) && !post.contains(&to[5]), "{post}");
            assert!(post.contains("and 495 more"), "{post}");
        }
        event["data"]["to"] = json!(to[..5]);
        let text = chat(Format::Slack, &event, None).to_string();
        assert!(text.contains(&to[4]) && !text.contains("more"), "{text}");
    }

    #[test]
    fn a_burst_is_one_post_counting_each_kind_and_showing_the_first_ten() {
        let mut events: Vec<Value> = (0..30)
            .map(|i| {
                let mut e = hostile();
                e["data"]["id"] = json!(format!("msg_{i}"));
                e
            })
            .collect();
        events.insert(3, paused());
        events.extend((0..6).map(|i| {
            json!({"type": "message.deferred", "data": {"id": format!("msg_d{i}"), "subject": "later",
                "last_error": {"message": "451 4.4.0 try later"}}})
        }));
        let text = chat_digest(Format::Slack, &events, Some("https://mail.contoso.com"))["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.starts_with("*Mailroom: 37 events*\na message failed: 30; delivery is paused: 1; a message was deferred: 6\n"), "{text}");
        assert_eq!(text.matches("\n• *").count(), DIGEST_SHOWN, "{text}");
        assert!(
            text.contains("(msg_8)") && !text.contains("(msg_9)"),
            "{text}"
        );
        assert!(
            text.contains("\n… and 27 more, each in Activity."),
            "{text}"
        );
        // A fix once while it repeats: the failures', the pause's, the failures' again.
        assert_eq!(text.matches("*Fix:* Open the message").count(), 2, "{text}");
        assert_eq!(
            text.matches("*Fix:* Create a new client secret.").count(),
            1
        );
        // Mixed pages: the link goes to Activity; what senders wrote stays text.
        assert!(
            text.ends_with("\n<https://mail.contoso.com/#/activity|Open Mailroom>"),
            "{text}"
        );
        assert_eq!(text.matches('<').count(), 1, "{text}");
        let teams = chat_digest(Format::Teams, &events, None);
        let body = &teams["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["text"], "Mailroom: 37 events");
        let blocks = body.to_string();
        assert!(
            blocks.contains("a message failed: 30; delivery is paused: 1"),
            "{blocks}"
        );
        assert!(
            blocks.contains("… and 27 more") && !blocks.contains("]("),
            "{blocks}"
        );
        assert!(blocks.len() < 12_000, "{} bytes", blocks.len());
        // Ten of the longest subjects and replies stay a post Teams takes.
        let long: Vec<Value> = (0..12)
            .map(|i| {
                let mut e = hostile();
                e["data"]["id"] = json!(format!("msg_{i}"));
                e["data"]["subject"] = json!("s".repeat(998));
                e["data"]["last_error"]["message"] = json!("r".repeat(1000));
                e
            })
            .collect();
        for format in [Format::Slack, Format::Teams] {
            let post = chat_digest(format, &long, Some("https://mail.contoso.com")).to_string();
            assert!(post.len() < 8_000, "{format:?}: {} bytes", post.len());
            assert_eq!(post.matches("s…").count(), DIGEST_SHOWN, "{post}");
        }
        // A single event keeps its whole text.
        let one = chat(Format::Slack, &long[0], None).to_string();
        assert!(one.contains(&"r".repeat(1000)), "{one}");
    }

    /// The link opens what the post is about: a message's own details in
    /// Activity; for a burst, the page all its events share, else Activity
    /// filtered to what they share (all failed, one app), so *Retry all*
    /// retries exactly them.
    #[test]
    fn links_open_the_message_or_what_a_burst_shares() {
        let url = Some("https://mail.contoso.com/");
        let failed = |id: &str, app: &str| {
            let mut e = hostile();
            e["data"]["id"] = json!(id);
            e["data"]["app"] = json!(app);
            e
        };
        let slack_link = |events: &[Value]| {
            let text = chat_digest(Format::Slack, events, url)["text"]
                .as_str()
                .unwrap()
                .to_string();
            let start = text.rfind("\n<").expect("a link") + 1;
            text[start..].to_string()
        };
        // The Teams card's action: its `url` or its `title`.
        let teams_action = |events: &[Value], part: &str| {
            chat_digest(Format::Teams, events, url)["attachments"][0]["content"]["actions"][0][part]
                .as_str()
                .unwrap()
                .to_string()
        };
        let teams_link = |events: &[Value]| teams_action(events, "url");
        let one = [failed("msg_7", "app_1")];
        assert_eq!(
            slack_link(&one),
            "<https://mail.contoso.com/#/activity?message=msg_7|Open the message in Mailroom>"
        );
        assert_eq!(
            teams_link(&one),
            "https://mail.contoso.com/#/activity?message=msg_7"
        );
        for kind in ["message.deferred", "message.sent"] {
            let mut e = failed("msg_8", "app_1");
            e["type"] = json!(kind);
            assert_eq!(
                teams_link(&[e]),
                "https://mail.contoso.com/#/activity?message=msg_8",
                "{kind}"
            );
        }
        // An id is one value, whatever it holds: it cannot add a filter,
        // end Slack's link or hide it behind words of its choosing.
        let odd = [failed("msg_1&status=sent|x> y+", "app_1")];
        assert_eq!(
            teams_link(&odd),
            "https://mail.contoso.com/#/activity?message=msg_1%26status%3Dsent%7Cx%3E%20y%2B"
        );
        assert_eq!(slack_link(&odd).matches('|').count(), 1);

        // A burst of one app's failures: exactly those, with Retry all.
        let burst = [failed("msg_1", "app_1"), failed("msg_2", "app_1")];
        assert_eq!(
            teams_link(&burst),
            "https://mail.contoso.com/#/activity?status=failed&app=app_1"
        );
        assert_eq!(
            slack_link(&burst),
            "<https://mail.contoso.com/#/activity?status=failed&amp;app=app_1|Open these messages in Mailroom>",
            "& is written as Slack's entity"
        );
        // Several apps' failures: every failed message.
        let apps = [
            failed("msg_1", "app_1"),
            failed("msg_2", "trusted network 10.0.0.5"),
        ];
        assert_eq!(
            teams_link(&apps),
            "https://mail.contoso.com/#/activity?status=failed"
        );
        // One (trusted network's) app's failures and deferrals: that app's.
        let mut deferred = failed("msg_3", "trusted network 10.0.0.5");
        deferred["type"] = json!("message.deferred");
        assert_eq!(
            teams_link(&[failed("msg_2", "trusted network 10.0.0.5"), deferred]),
            "https://mail.contoso.com/#/activity?app=trusted%20network%2010.0.0.5"
        );
        // A pause among them: Activity, unfiltered.
        assert_eq!(
            teams_link(&[failed("msg_1", "app_1"), paused()]),
            "https://mail.contoso.com/#/activity"
        );
        // Two pauses of one profile: the page they share, that profile's
        // settings.
        assert_eq!(
            teams_link(&[paused(), paused()]),
            "https://mail.contoso.com/#/settings?profile=default"
        );
        // Each profile's event: its settings, or its messages once resumed.
        let of = |kind: &str, data: Value| json!({"type": kind, "data": data});
        for (event, link) in [
            (
                of(
                    "delivery.paused",
                    json!({"profile": "prf_b", "message": "m"}),
                ),
                "#/settings?profile=prf_b",
            ),
            (
                of(
                    "credential.expiring",
                    json!({"profile": "prf_b", "message": "m"}),
                ),
                "#/settings?profile=prf_b",
            ),
            (
                of("delivery.resumed", json!({"profile": "prf_b"})),
                "#/activity?profile=prf_b",
            ),
            (
                of(
                    "quota.reached",
                    json!({"profile": "prf_b", "limit": "recipients_per_day"}),
                ),
                "#/settings?profile=prf_b",
            ),
            (
                of(
                    "quota.reached",
                    json!({"app": "app_1", "limit": "messages_per_hour"}),
                ),
                "#/apps?limits=app_1",
            ),
            (of("delivery.paused", json!({"message": "m"})), "#/settings"),
        ] {
            assert_eq!(
                teams_link(std::slice::from_ref(&event)),
                ["https://mail.contoso.com/", link].concat(),
                "{event}"
            );
        }
        // The link's words say what it opens.
        let title = |events: &[Value]| teams_action(events, "title");
        assert_eq!(title(&one), "Open the message in Mailroom");
        assert_eq!(title(&burst), "Open these messages in Mailroom");
        assert_eq!(title(&[paused()]), "Open the settings in Mailroom");
        let app_quota = of(
            "quota.reached",
            json!({"app": "app_1", "limit": "messages_per_hour"}),
        );
        assert_eq!(title(&[app_quota]), "Open the app's limits in Mailroom");
        assert_eq!(
            title(&[failed("msg_1", "app_1"), paused()]),
            "Open Mailroom"
        );
        // A profile's quota says where its limits are, not Apps.
        let quota = of(
            "quota.reached",
            json!({"profile": "prf_b", "limit": "recipients_per_day"}),
        );
        let text = chat(Format::Slack, &quota, None)["text"].to_string();
        assert!(
            text.contains("Change limits") && !text.contains("under Apps"),
            "{text}"
        );
    }

    #[test]
    fn teams_gets_one_adaptive_card() {
        let v = chat(Format::Teams, &paused(), Some("https://mail.contoso.com"));
        assert_eq!(v["type"], "message");
        let a = &v["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["version"], "1.4");
        assert_eq!(
            a["content"]["actions"][0]["url"],
            "https://mail.contoso.com/#/settings?profile=default"
        );
        let text = a["content"]["body"].to_string();
        assert!(text.contains("The client secret has expired.") && text.contains("Fix: Create"));
    }
}
