//! Secrets never leave in a result: every form of them (plain, base64, the
//! AUTH lines and challenge answers) becomes `*****`.

use base64::Engine;
use mailroom_shared::api::{Direction, TranscriptLine};

/// The forms in which a secret can show up: itself and its base64, padded or not.
fn needles(secrets: &[&str]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut needles: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        needles.push(s.to_string());
        needles.push(b64.encode(s));
        needles.push(b64.encode(s).trim_end_matches('=').to_string());
    }
    needles.retain(|n| !n.is_empty());
    needles
}

/// Replaces every form of every secret in `text` with `*****`.
pub fn mask_text(text: &mut String, secrets: &[&str]) {
    for n in needles(secrets) {
        if text.contains(n.as_str()) {
            *text = text.replace(n.as_str(), "*****");
        }
    }
}

/// Masks every secret in the transcript: structurally (AUTH lines and the
/// answers to 334 challenges) and by value (secrets and their base64 forms).
pub fn mask_transcript(lines: &mut [TranscriptLine], secrets: &[&str]) {
    let needles = needles(secrets);
    let mut in_auth = false;
    for line in lines.iter_mut() {
        match line.dir {
            Direction::Client => {
                let upper = line.line.to_ascii_uppercase();
                if upper.starts_with("AUTH ") {
                    let mut words = line.line.split_whitespace();
                    let (_, mech) = (words.next(), words.next().unwrap_or_default().to_string());
                    if words.next().is_some() {
                        line.line = format!("AUTH {mech} *****");
                    }
                    in_auth = true;
                } else if in_auth {
                    line.line = "*****".into();
                }
            }
            Direction::Server => {
                if !line.line.starts_with('3') {
                    in_auth = false;
                }
            }
        }
        for n in &needles {
            if line.line.contains(n.as_str()) {
                line.line = line.line.replace(n.as_str(), "*****");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(dir: Direction, l: &str) -> TranscriptLine {
        TranscriptLine {
            dir,
            line: l.into(),
        }
    }

    #[test]
    fn mask_text_covers_plain_and_base64_forms() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut t = format!("bad pw-secret and {}", b64.encode("pw-secret"));
        mask_text(&mut t, &["pw-secret"]);
        assert_eq!(t, "bad ***** and *****");
    }

    #[test]
    fn masking_covers_auth_lines_challenges_and_values() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut t = vec![
            line(
                Direction::Client,
                &format!("AUTH PLAIN {}", b64.encode("\0u\0pw-secret")),
            ),
            line(Direction::Server, "235 2.7.0 ok"),
            line(Direction::Client, "AUTH LOGIN"),
            line(Direction::Server, "334 VXNlcm5hbWU6"),
            line(Direction::Client, &b64.encode("user")),
            line(Direction::Server, "334 UGFzc3dvcmQ6"),
            line(Direction::Client, &b64.encode("pw-secret")),
            line(Direction::Server, "535 5.7.3 no"),
            line(Direction::Client, "MAIL FROM:<a@b.c> pw-secret"),
        ];
        mask_transcript(&mut t, &["pw-secret"]);
        assert_eq!(t[0].line, "AUTH PLAIN *****");
        assert_eq!(t[2].line, "AUTH LOGIN");
        assert_eq!(t[4].line, "*****");
        assert_eq!(t[6].line, "*****");
        assert_eq!(t[8].line, "MAIL FROM:<a@b.c> *****");
    }
}
