//! Small pieces the views share: times, and the pause banner.

use mailroom_shared::sending::{Paused, Warning};
use yew::prelude::*;

use crate::markup::{hint, stage_line, Markup};

pub use crate::markup::local_time;

/// A pause's stage and code, what failed, and the fix.
fn what_failed(m: &mut Markup, paused: &Paused) {
    stage_line(
        m,
        paused.stage.as_str(),
        paused.code.as_deref().unwrap_or_default(),
    );
    m.el("p", &[("class", "message")], &paused.message);
    if let Some(h) = &paused.hint {
        hint(m, h);
    }
}

/// The banner on every view while delivery is paused: what failed, the fix,
/// how many messages wait, and the way to the settings. Its copy buttons
/// need [`crate::markup::copy_click`] on a parent.
pub fn pause_banner(paused: &Paused, waiting: u64, on_settings: bool) -> Html {
    let mut m = Markup::default();
    m.open(
        "section",
        &[
            ("class", "banner paused"),
            ("role", "alert"),
            ("aria-labelledby", "paused-title"),
            ("id", "paused"),
        ],
    )
    .el("h2", &[("id", "paused-title")], "Delivery is paused");
    // Mailroom's sign-in check pauses before any message comes.
    if waiting == 0 {
        m.el(
            "p",
            &[("class", "waiting")],
            "No message is waiting. New ones are kept, not bounced, and go out once the problem is fixed.",
        );
    } else {
        m.open("p", &[("class", "waiting")])
            .el("strong", &[], &waiting.to_string())
            .text(if waiting == 1 {
                " message is waiting. "
            } else {
                " messages are waiting. "
            })
            .text("Nothing is lost or bounced: they go out once the problem is fixed.")
            .close("p");
    }
    what_failed(&mut m, paused);
    m.open("p", &[("class", "since")])
        .text("Since ")
        .time(&paused.since)
        .text(". Mailroom tries again every minute and at once when the settings are saved.")
        .close("p");
    // The default profile's settings, whichever profile the form edits.
    settings_link_and_end(
        m,
        on_settings,
        &crate::route::settings_link(mailroom_shared::profiles::DEFAULT_PROFILE),
    )
}

/// The banner while another profile than the default one is paused: which
/// profile, what failed and the fix (docs/API.md §15).
pub fn profile_pause_banner(id: &str, name: &str, paused: &Paused, on_settings: bool) -> Html {
    let mut m = Markup::default();
    m.open(
        "section",
        &[("class", "banner paused"), ("role", "alert")],
    )
    .el(
        "h2",
        &[],
        &["Delivery is paused for the profile “", name, "”"].concat(),
    )
    .el(
        "p",
        &[("class", "waiting")],
        "Only this profile's messages wait; the other profiles go on. Nothing is lost or bounced.",
    );
    what_failed(&mut m, paused);
    settings_link_and_end(m, on_settings, &crate::route::settings_link(id))
}

/// The banner on every view while a credential expires within 30 days (or
/// has expired), while profiles share one mailbox, or while a profile signs
/// in to Exchange Online with a password: what, and the fix (docs/API.md
/// §13, §15). The last is left out on the Settings view of that profile,
/// whose form says it already.
pub fn warning_banner(w: &Warning, on_settings: bool) -> Html {
    // On the form of the profile it is about, the form's own notice says
    // it, with Microsoft's dates: the same words twice on one screen.
    if on_settings && w.code == mailroom_shared::sending::BASIC_AUTH_RETIRING {
        return Html::default();
    }
    let (id, title) = match w.code.as_str() {
        mailroom_shared::sending::CREDENTIAL_EXPIRING => {
            ("credential-warning", "Sign-in credential expiring")
        }
        mailroom_shared::sending::MAILBOX_SHARED => {
            ("mailbox-warning", "Profiles share one mailbox")
        }
        mailroom_shared::sending::BASIC_AUTH_RETIRING => {
            ("basic-auth-warning", "Password sign-in is being retired")
        }
        mailroom_shared::sending::OLD_KEY_REFUSED => (
            "old-key-warning",
            "A device still uses an app's replaced key",
        ),
        _ => ("warning", "Warning"),
    };
    let mut m = Markup::default();
    m.open(
        "section",
        &[("class", "banner warning"), ("role", "status"), ("id", id)],
    )
    .el("h2", &[], title)
    .el("p", &[("class", "message")], &w.message);
    hint(&mut m, &w.hint);
    // An app's key is under Apps, where the list names the device.
    if w.code == mailroom_shared::sending::OLD_KEY_REFUSED {
        m.el("a", &[("class", "button"), ("href", "#/apps")], "Open Apps")
            .close("section");
        return m.html();
    }
    // A credential's warning opens its own profile's settings.
    let link = w
        .profile
        .as_deref()
        .map_or_else(|| "#/settings".to_string(), crate::route::settings_link);
    settings_link_and_end(m, on_settings, &link)
}

/// A banner's last line, the way to the fix (not where the form already
/// shows the settings it is about, where it would lead nowhere), and its end.
fn settings_link_and_end(mut m: Markup, on_settings: bool, href: &str) -> Html {
    if !on_settings {
        m.el(
            "a",
            &[("class", "button"), ("href", href)],
            "Open the settings",
        );
    }
    m.close("section");
    m.html()
}
