//! The sign-in check while idle (beyond the contract).
//!
//! Attempts find a credential that stopped working, but a profile with no
//! message waiting makes none: a client secret deleted in Entra, admin
//! consent revoked, SMTP AUTH or password sign-in switched off for the
//! mailbox (as Microsoft does for passwords at the end of December 2026),
//! a firewall that now blocks the way out, was found by the next message,
//! perhaps the nightly report hours later. A minute after the start, then
//! every `--sign-in-check` (6 h by default) while nothing waits, each
//! profile signs in as delivery does, with a fresh token (SMTP: also TLS
//! and AUTH), sends nothing and quits.
//!
//! Trouble that would pause delivery for a message pauses it here too,
//! with its fix (the banner, `delivery.paused`, `mailroom_delivery_paused`),
//! but only once it lasts: a refused credential when a second check a
//! minute later is refused too (Entra answers a passing hiccup with an
//! `AADSTS` code as well, such as `AADSTS50196` or `AADSTS90033`), trouble
//! on the way (the upstream or Entra out of reach, Entra's own 5xx, a
//! timeout) after five checks a minute apart. An admin paged at night for
//! every short outage would learn to ignore the page. While such a pause
//! lasts with nothing waiting, the check runs each minute (the pause's own
//! retry) and ends the pause once it passes.

use super::*;

/// Added to the message of a pause the check found, so that a pause with
/// no message waiting is not a puzzle.
pub const FOUND_WHILE_IDLE: &str =
    " Found by Mailroom's sign-in check while no message was waiting; new messages wait until it is fixed.";

/// Whether a failed sign-in is the credential or the mailbox refused, not
/// trouble on the way: Entra's refusal (an `AADSTS` code) or a permanent
/// answer to SMTP AUTH (`535 5.7.139`, `535 5.7.3`). Such a refusal pauses
/// after [`REFUSALS_TO_PAUSE`] checks, other trouble after
/// [`FAILURES_TO_PAUSE`].
pub fn refused(d: &Diagnosis) -> bool {
    let code = d.code.as_deref().unwrap_or_default();
    match d.stage {
        Stage::Token => code.starts_with("AADSTS"),
        Stage::Auth => code.starts_with('5'),
        _ => false,
    }
}

/// Checks in a row, a minute apart, that must be refused before a pause.
pub const REFUSALS_TO_PAUSE: u32 = 2;

/// Checks in a row, a minute apart, that must meet trouble on the way
/// before a pause: five minutes of it.
pub const FAILURES_TO_PAUSE: u32 = 5;

/// What one check found.
enum Checked {
    Passed,
    /// What would pause delivery for a message.
    Failed(Diagnosis),
    /// An answer that pauses nothing (a `4xx`), or a stored certificate
    /// that cannot be read (the next attempt says so).
    Unknown,
    /// No settings saved yet: checked again at the next turn.
    Unsaved,
}

impl Engine {
    /// Runs the check for this profile until `stop` (`every`: the option).
    pub(super) async fn check_while_idle(self, every: Duration, mut stop: watch::Receiver<bool>) {
        // The first check comes at the first turn: a start often follows
        // a change (a new machine, proxy or firewall), best found before
        // the first message.
        let mut due = tokio::time::Instant::now();
        // Failed checks in a row while not paused, of one kind (refused or
        // not: a refusal after four outages is a first refusal); while
        // there are any, the next check comes a minute later.
        let mut strikes = (false, 0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.options.pause_retry.min(every)) => {}
                _ = stop.changed() => {}
            }
            if stopping(&stop) {
                return;
            }
            // Waiting messages try the way out themselves.
            if !matches!(
                self.queue.oldest_waiting_unix(&self.profile).await,
                Ok(None)
            ) {
                due = tokio::time::Instant::now() + every;
                strikes = (false, 0);
                continue;
            }
            let paused = self.queue.pause_state(&self.profile).await.ok().flatten();
            match &paused {
                // A pause the check cannot see past (Graph's mailbox refused
                // at send) is left to the next message: ending it would only
                // start it again with that message.
                Some(p) if p.stage == Stage::Send => continue,
                // Each turn (the pause's retry). Not through the workers'
                // probe: with nothing to claim they take its turn each time
                // it comes, and a check waiting for it never ran, so a
                // pause it found never ended by itself.
                Some(_) => {}
                None if strikes.1 == 0 && tokio::time::Instant::now() < due => continue,
                None => {}
            }
            let checked = self.check_sign_in().await;
            if matches!(checked, Checked::Unsaved) {
                continue;
            }
            due = tokio::time::Instant::now() + every;
            self.metrics
                .sign_in_checks
                .get_or_create(&crate::metrics::SignInCheckLabels {
                    profile: self.profile.to_string(),
                    outcome: match &checked {
                        Checked::Passed => "passed",
                        Checked::Failed(d) if refused(d) => "refused",
                        Checked::Failed(_) => "failed",
                        Checked::Unknown | Checked::Unsaved => "other",
                    }
                    .to_string(),
                })
                .inc();
            match checked {
                Checked::Passed => {
                    strikes = (false, 0);
                    if paused.is_some() {
                        self.resume().await;
                    }
                }
                Checked::Failed(mut d) => {
                    let kind = refused(&d);
                    strikes = match strikes {
                        (was, n) if was == kind => (kind, n + 1),
                        _ => (kind, 1),
                    };
                    let needed = if kind {
                        REFUSALS_TO_PAUSE
                    } else {
                        FAILURES_TO_PAUSE
                    };
                    if paused.is_none() && strikes.1 < needed {
                        tracing::warn!(profile = %self.profile, stage = d.stage.as_str(), code = ?d.code, strikes = strikes.1, needed, "the sign-in check failed; checking again before pausing: {}", d.message);
                        continue;
                    }
                    strikes = (false, 0);
                    d.message.push_str(FOUND_WHILE_IDLE);
                    self.pause(&d).await;
                }
                Checked::Unknown | Checked::Unsaved => strikes = (false, 0),
            }
        }
    }

    /// Signs in once with the saved settings.
    async fn check_sign_in(&self) -> Checked {
        let current = match self.settings.load_current().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(profile = %self.profile, error = %e, "cannot load the settings for the sign-in check");
                return Checked::Unknown;
            }
        };
        // Nothing saved: a pause says so when a message comes.
        let Some(settings) = current.secret_complete() else {
            return Checked::Unsaved;
        };
        let Ok(cert) = self.certificate(&current, &settings) else {
            return Checked::Unknown;
        };
        match self.tester.check_sign_in(&settings, cert.as_ref()).await {
            Ok(()) => {
                tracing::info!(profile = %self.profile, "the sign-in check passed");
                Checked::Passed
            }
            Err(f) if f.diagnosis.kind == Kind::Pause => Checked::Failed(f.diagnosis),
            Err(f) => {
                tracing::warn!(profile = %self.profile, stage = f.diagnosis.stage.as_str(), "the sign-in check got a temporary answer; the next message tries again: {}", f.diagnosis.message);
                Checked::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnosis(stage: Stage, code: Option<&str>) -> Diagnosis {
        Diagnosis {
            kind: Kind::Pause,
            stage,
            code: code.map(str::to_string),
            message: String::new(),
            hint: String::new(),
        }
    }

    #[test]
    fn only_a_refused_credential_or_mailbox_counts_as_refused() {
        for (stage, code) in [
            (Stage::Token, Some("AADSTS7000215")),
            (Stage::Token, Some("AADSTS700016")),
            (Stage::Auth, Some("5.7.139")),
            (Stage::Auth, Some("535")),
        ] {
            assert!(refused(&diagnosis(stage, code)), "{stage:?} {code:?}");
        }
        for (stage, code) in [
            // Entra's own trouble, and a token endpoint out of reach.
            (Stage::Token, Some("503")),
            (Stage::Token, None),
            // A temporary AUTH answer, and the ways there.
            (Stage::Auth, Some("4.7.0")),
            (Stage::Auth, None),
            (Stage::Connect, None),
            (Stage::Tls, None),
            (Stage::Send, Some("5.7.60")),
        ] {
            assert!(!refused(&diagnosis(stage, code)), "{stage:?} {code:?}");
        }
    }
}
