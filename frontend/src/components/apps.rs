//! The Apps view: the programs, devices and scripts that may send, a form to
//! add one (its key shown once, with the connection details filled in), and
//! revoking with a confirmation that names the app.

use gloo_net::http::Method;
use mailroom_shared::sending::{
    validate_limits, validate_new_app, AppChange, AppLimits, AppUsage, NewApp, OldKeyUse, MAX_LIMIT,
};
use wasm_bindgen::JsValue;
use yew::prelude::*;

use super::confirm::{confirm, ConfirmProps};
use super::field::{text_field, TextFieldProps};
use crate::api::{encode, fetch, json, json_body, ApiError};
use crate::hooks::focus::focus;
use crate::markup::{command, copy_click, count, get, items, number, text, Markup};

/// An app as the page shows it, read from the API's JSON (docs/API.md §6)
/// without a typed decoder.
#[derive(Clone, PartialEq, Default)]
pub struct App {
    /// `app_…`, the SMTP username.
    pub id: String,
    /// Its name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or empty when never used.
    pub last_used_at: String,
    /// Messages sent, as text.
    pub messages: String,
    /// Extra addresses it may send as.
    pub allowed_from: Vec<String>,
    /// Whether the header From is rewritten.
    pub rewrite_from: bool,
    /// Its limits.
    pub limits: AppLimits,
    /// What it has used of them.
    pub usage: AppUsage,
    /// The profile that sends its mail.
    pub profile: String,
    /// Until when (RFC 3339) the key before its last *New key* still
    /// works; empty when it does not.
    pub old_key_until: String,
    /// That key's uses since, each client's last (newest first), shown
    /// while it works or refused lately.
    pub old_key_clients: Vec<OldKeyUse>,
}

/// How many devices an app's old-key line names before "and N more".
const DEVICES_SHOWN: usize = 5;

/// The first [`DEVICES_SHOWN`] uses, each its client and time, joined;
/// the rest are returned for [`more_devices`].
fn devices<'a>(m: &mut Markup, uses: &'a [&'a OldKeyUse]) -> &'a [&'a OldKeyUse] {
    let (shown, rest) = uses.split_at(uses.len().min(DEVICES_SHOWN));
    for (i, u) in shown.iter().enumerate() {
        if i > 0 {
            m.text(", ");
        }
        m.text(&[&u.from, " at "].concat()).time(&u.at);
    }
    rest
}

/// The devices past the first few, behind "and N more" (opened in place).
fn more_devices(m: &mut Markup, rest: &[&OldKeyUse]) {
    if rest.is_empty() {
        return;
    }
    m.open("details", &[("class", "old-key-more")])
        .el(
            "summary",
            &[],
            &["and ", &rest.len().to_string(), " more"].concat(),
        )
        .open("ul", &[]);
    for u in rest {
        m.open("li", &[])
            .text(&[&u.from, " at "].concat())
            .time(&u.at)
            .close("li");
    }
    m.close("ul").close("details");
}

impl App {
    /// Reads an `APP` object with the typed reader ([`crate::read::app`]).
    pub fn from_json(v: &JsValue) -> App {
        let a = crate::read::app(v).unwrap_or_else(|| mailroom_shared::sending::App {
            id: text(v, "id"),
            name: text(v, "name"),
            created_at: String::new(),
            last_used_at: None,
            messages: 0,
            allowed_from: Vec::new(),
            rewrite_from: false,
            limits: AppLimits::default(),
            usage: AppUsage::default(),
            profile: mailroom_shared::profiles::DEFAULT_PROFILE.into(),
            old_key_until: None,
            old_key_used: None,
            old_key_clients: Vec::new(),
        });
        App {
            id: a.id,
            name: a.name,
            created_at: a.created_at,
            last_used_at: a.last_used_at.unwrap_or_default(),
            messages: a.messages.to_string(),
            allowed_from: a.allowed_from,
            rewrite_from: a.rewrite_from,
            limits: a.limits,
            usage: a.usage,
            profile: a.profile,
            old_key_until: a.old_key_until.unwrap_or_default(),
            // A use kept before each client's was: the last one alone.
            old_key_clients: if a.old_key_clients.is_empty() {
                a.old_key_used.into_iter().collect()
            } else {
                a.old_key_clients
            },
        }
    }

    /// Each limit with its label and what is used of it now.
    fn uses(&self) -> [(&'static str, u64, Option<u32>); 4] {
        let (l, u) = (&self.limits, &self.usage);
        [
            (
                "Messages, last hour",
                u.messages_last_hour,
                l.messages_per_hour,
            ),
            ("Messages, last 24 h", u.messages_today, l.messages_per_day),
            (
                "Recipients, last 24 h",
                u.recipients_today,
                l.recipients_per_day,
            ),
            ("Waiting", u.queued, l.queued_max),
        ]
    }
}

/// The limits form: each limit as typed (empty: no limit).
#[derive(Clone, Default, PartialEq)]
struct LimitsDraft {
    app: App,
    values: [String; 4],
}

/// The limit names in form order, with their labels.
const LIMITS: [(&str, &str); 4] = [
    ("messages_per_hour", "Messages per hour"),
    ("messages_per_day", "Messages per 24 hours"),
    ("recipients_per_day", "Recipients per 24 hours"),
    ("queued_max", "Messages waiting at once"),
];

impl LimitsDraft {
    fn of(app: &App) -> LimitsDraft {
        let show = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
        let l = &app.limits;
        LimitsDraft {
            app: app.clone(),
            values: [
                show(l.messages_per_hour),
                show(l.messages_per_day),
                show(l.recipients_per_day),
                show(l.queued_max),
            ],
        }
    }

    /// The limits typed, and the messages for what is not a limit.
    fn parse(&self) -> (AppLimits, mailroom_shared::FieldMessages) {
        let mut errors = mailroom_shared::FieldMessages::new();
        let mut parsed = [None; 4];
        for (i, v) in self.values.iter().enumerate() {
            let v = v.trim().replace([',', '_', ' '], "");
            if v.is_empty() {
                continue;
            }
            match v.parse::<u64>() {
                Ok(n) => parsed[i] = Some(n.min(u32::MAX as u64) as u32),
                Err(_) => errors.push(
                    LIMITS[i].0,
                    format!("Enter a whole number from 1 to {MAX_LIMIT}, or leave it empty for no limit."),
                ),
            }
        }
        let limits = AppLimits {
            messages_per_hour: parsed[0],
            messages_per_day: parsed[1],
            recipients_per_day: parsed[2],
            queued_max: parsed[3],
        };
        let mut range = mailroom_shared::FieldMessages::new();
        validate_limits(&limits, &mut range);
        for m in range.get("limits").into_iter().flatten() {
            if let Some((name, _)) = LIMITS.iter().find(|(n, _)| m.starts_with(n)) {
                if !errors.contains_key(name) {
                    errors.push(name, m.clone());
                }
            }
        }
        (limits, errors)
    }
}

/// Where the relay listens (`GET /api/connection`'s `smtp` and `smtps`).
#[derive(Clone, PartialEq)]
pub struct Relay {
    /// `--smtp-hostname`, or empty.
    pub hostname: String,
    /// The address it listens on.
    pub ip: String,
    /// The STARTTLS port, as text; empty with `--smtp-listen off`.
    pub port: String,
    /// The implicit TLS port, as text; empty with `--smtps-listen off`.
    pub smtps_port: String,
    /// Only this machine can reach it.
    pub loopback_only: bool,
}

/// The relay from `GET /api/connection`, or `None` when both its ports are off.
pub fn relay_of(connection: &JsValue) -> Option<Relay> {
    let (smtp, smtps) = (get(connection, "smtp"), get(connection, "smtps"));
    let main = [&smtp, &smtps].into_iter().find(|l| l.is_object())?;
    Some(Relay {
        hostname: text(main, "hostname"),
        ip: text(main, "ip"),
        port: number(&smtp, "port"),
        smtps_port: number(&smtps, "port"),
        loopback_only: get(main, "loopback_only").as_bool().unwrap_or(false),
    })
}

/// The allowed From addresses as typed: separated by commas, spaces or lines.
pub fn split_addresses(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// An example recipient for the instructions.
fn example_recipient() -> String {
    ["you", "@", "example.org"].concat()
}

/// `text` as one argument of a POSIX shell: in single quotes, each `'`
/// closing them, escaped, and opening them again.
fn shell_quoted(text: &str) -> String {
    ["'", &text.replace('\'', "'\\''"), "'"].concat()
}

/// The host programs should connect to: `--smtp-hostname`, else the host of
/// this page when the relay listens on every address, else its address.
pub fn relay_host(relay: &Relay) -> String {
    if !relay.hostname.is_empty() {
        return relay.hostname.clone();
    }
    if relay.ip == "0.0.0.0" || relay.ip == "::" {
        return web_sys::window()
            .and_then(|w| w.location().hostname().ok())
            .unwrap_or_default();
    }
    relay.ip.clone()
}

/// The key once, and how to send with this app: SMTP, HTTP and sendmail, filled in.
pub fn key_panel(app: &App, key: &str, relay: Option<&Relay>) -> Html {
    // The page's address, with the path a reverse proxy serves it under.
    let origin = crate::api::page_url();
    let to = example_recipient();
    let mut m = Markup::default();
    m.open("h3", &[("id", "key-title"), ("tabindex", "-1")])
        .text("The key for “")
        .text(&app.name)
        .text("”")
        .close("h3");
    m.open("p", &[("class", "warning")])
        .el(
            "strong",
            &[],
            "Copy it now: you will not see this key again.",
        )
        .text(
            " Mailroom keeps only a hash of it. If it is lost, give the app a new key (New key in its row): the old one then stops working.",
        )
        .close("p");
    m.open("div", &[("id", "new-key")]);
    command(&mut m, key, "key");
    m.close("div").open("div", &[("class", "instructions")]).el(
        "h4",
        &[],
        "SMTP (printers, scanners, most programs)",
    );
    match relay {
        Some(relay) => {
            let host = relay_host(relay);
            let (port, smtps) = (relay.port.as_str(), relay.smtps_port.as_str());
            m.open("dl", &[("class", "pairs")]);
            let mut rows = vec![("Server", "smtp-host", host.as_str())];
            if !port.is_empty() {
                rows.extend([("Port", "smtp-port", port), ("Security", "", "STARTTLS")]);
            }
            if !smtps.is_empty() {
                rows.push(("Port with SSL/TLS", "smtps-port", smtps));
            }
            rows.extend([
                ("Username", "smtp-username", app.id.as_str()),
                ("Password", "", "the key above"),
            ]);
            for (label, id, value) in rows {
                m.el("dt", &[], label).open("dd", &[]);
                if id.is_empty() {
                    m.text(value);
                } else {
                    m.el("code", &[("id", id)], value);
                }
                m.close("dd");
            }
            m.close("dl").el(
                "p",
                &[("class", "help"), ("id", "smtp-username-address")],
                "A device moved from Office 365 may keep its mailbox's address as the username, if this app may send as it.",
            );
            m.open("p", &[])
                .text("A device that checks the server's certificate needs it: ")
                .el(
                    "a",
                    &[
                        ("id", "relay-certificate"),
                        ("href", crate::api::relative("/api/connection/certificate")),
                        ("download", "mailroom-relay.pem"),
                    ],
                    "download the relay's certificate",
                )
                .text(".")
                .close("p");
            if relay.loopback_only {
                m.open("p", &[("class", "warning")])
                    .text("The relay listens on ")
                    .el("code", &[], &relay.ip)
                    .text(" only, so only programs on this machine can reach it. For devices on the network, start Mailroom with ")
                    .el(
                        "code",
                        &[],
                        &if port.is_empty() {
                            ["--smtps-listen 0.0.0.0:", smtps].concat()
                        } else {
                            ["--smtp-listen 0.0.0.0:", port].concat()
                        },
                    )
                    .text(".")
                    .close("p");
            }
        }
        None => {
            m.el(
                "p",
                &[("class", "warning")],
                "The SMTP relay is off (--smtp-listen off, and no --smtps-listen): this app can send over HTTP or sendmail.",
            );
        }
    }
    m.el("h4", &[], "HTTP");
    // Each value a JSON string as serde_json writes it, and the whole in
    // shell quotes: an app named with a `"` or `\` broke the JSON of the
    // command, and a `'` was dropped. (A struct with a Serialize derive
    // costs the bundle 144 bytes more, gzipped.)
    let quoted = |text: &str| crate::api::encode(&text).unwrap_or_default();
    let example = [
        "{\"to\":[",
        &quoted(&to),
        "],\"subject\":",
        &quoted(&["Hello from ", &app.name].concat()),
        ",\"text\":\"It works.\"}",
    ]
    .concat();
    command(
        &mut m,
        &[
            "curl -sS --fail-with-body ",
            &origin,
            "/api/messages -H 'Authorization: Bearer ",
            key,
            "' -H 'Content-Type: application/json' -d ",
            &shell_quoted(&example),
        ]
        .concat(),
        "curl command",
    );
    m.el("h4", &[], "sendmail (cron, PHP mail(), scripts)");
    command(
        &mut m,
        &[
            "printf 'Subject: Hello\\n\\nIt works.\\n' | MAILROOM_URL=",
            &origin,
            " MAILROOM_APP_KEY=",
            key,
            " mailroom sendmail ",
            &to,
        ]
        .concat(),
        "sendmail command",
    );
    m.close("div");
    m.html()
}

/// The apps as a table, each with a Revoke button naming it.
fn apps_table(apps: &[App], profiles: &[mailroom_shared::profiles::ProfileState]) -> Html {
    let mut m = Markup::default();
    m.open("table", &[("id", "apps-table")]).head(&[
        "Name",
        "Created",
        "Last used",
        "Messages",
        "Allowed From",
        "Limits and use",
        "Actions",
    ]);
    m.open("tbody", &[]);
    for a in apps {
        m.open("tr", &[])
            .open("th", &[("scope", "row")])
            .text(&a.name)
            .open("br", &[])
            .el("code", &[("class", "muted")], &a.id);
        // Which profile sends its mail, when there are several.
        if profiles.len() > 1 {
            let name = profiles
                .iter()
                .find(|x| x.id == a.profile)
                .map_or(a.profile.as_str(), |x| x.name.as_str());
            m.open("br", &[])
                .el("span", &[("class", "profile")], &["via ", name].concat());
        }
        // A *New key* left the old one working: until when, and each
        // client's last use since (or that it was not used), so the devices
        // still to move are not forgotten; once it stops, each device
        // still refused with it.
        if !a.old_key_until.is_empty() {
            m.open("br", &[])
                .open("span", &[("class", "old-key")])
                .text("Old key also works until ")
                .time(&a.old_key_until);
            let using: Vec<_> = a.old_key_clients.iter().filter(|u| !u.refused).collect();
            let mut rest: &[&OldKeyUse] = &[];
            if using.is_empty() {
                m.text("; not used since the new key");
            } else {
                m.text("; since the new key used by ");
                rest = devices(&mut m, &using);
            }
            m.close("span");
            more_devices(&mut m, rest);
        } else {
            let refused: Vec<_> = a.old_key_clients.iter().filter(|u| u.refused).collect();
            if !refused.is_empty() {
                m.open("br", &[])
                    .open("span", &[("class", "old-key")])
                    .text("Old key refused from ");
                let rest = devices(&mut m, &refused);
                m.text(if refused.len() == 1 {
                    ": give that device the new key"
                } else {
                    ": give those devices the new key"
                })
                .close("span");
                more_devices(&mut m, rest);
            }
        }
        m.close("th")
            .open("td", &[])
            .time(&a.created_at)
            .close("td")
            .open("td", &[]);
        if a.last_used_at.is_empty() {
            m.text("never");
        } else {
            m.time(&a.last_used_at);
        }
        m.close("td")
            .open("td", &[])
            // Its messages: Activity filtered to this app.
            .el(
                "a",
                &[
                    (
                        "href",
                        &crate::hooks::activity::Filter {
                            app: a.id.clone(),
                            ..Default::default()
                        }
                        .hash(None),
                    ),
                    (
                        "aria-label",
                        &["Messages of ", &a.name, ": ", &a.messages].concat(),
                    ),
                ],
                &a.messages,
            )
            .close("td")
            .open("td", &[])
            .text(&if a.allowed_from.is_empty() {
                "the settings' username and sender".to_string()
            } else {
                a.allowed_from.join(", ")
            });
        if a.rewrite_from {
            m.open("br", &[]).el(
                "span",
                &[("class", "muted")],
                "From rewritten to the sender",
            );
        }
        m.close("td").open("td", &[("class", "usage")]);
        for (label, used, limit) in a.uses() {
            let max = limit.map(u64::from);
            let over = max.is_some_and(|m| used >= m);
            m.open("div", &[("class", if over { "use full" } else { "use" })])
                .el("span", &[("class", "use-label")], label)
                .text(" ")
                .el(
                    "span",
                    &[],
                    &match max {
                        Some(limit) => [count(used), " of ".into(), count(limit)].concat(),
                        None => [count(used), " (no limit)".into()].concat(),
                    },
                );
            if let Some(limit) = max {
                // Drawn, not only written: the share used.
                m.open(
                    "meter",
                    &[
                        ("min", "0"),
                        ("max", &limit.to_string()),
                        ("value", &used.min(limit).to_string()),
                        ("aria-hidden", "true"),
                    ],
                )
                .close("meter");
            }
            m.close("div");
        }
        m.close("td").open("td", &[]);
        let old_key = !a.old_key_until.is_empty();
        for (act, label, aria, class) in [
            ("edit", "Edit", "Edit ", ""),
            ("limits", "Limits", "Edit the limits of ", ""),
            ("rekey", "New key", "Give a new key to ", ""),
            ("end-old-key", "End old key", "End old key of ", ""),
            ("revoke", "Revoke", "Revoke ", "danger"),
        ] {
            if act == "end-old-key" && !old_key {
                continue;
            }
            let aria = [aria, &a.name].concat();
            let attrs = [
                ("type", "button"),
                ("class", class),
                ("data-act", act),
                ("data-id", &a.id),
                ("aria-label", &aria),
            ];
            m.el("button", &attrs, label).text(" ");
        }
        m.close("td").close("tr");
    }
    m.close("tbody").close("table");
    m.html()
}

#[derive(Properties, PartialEq)]
pub struct AppsProps {
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
    /// The sending profiles an app may choose (docs/API.md §15).
    #[prop_or_default]
    pub profiles: Vec<mailroom_shared::profiles::ProfileState>,
    /// Whether the view shows. Once opened it stays mounted, hidden on the
    /// other views, so a key not yet copied and a form's typing are there
    /// on coming back; each return reads the apps again.
    #[prop_or(true)]
    pub shown: bool,
    /// How often the list is read again while the view shows, in ms.
    #[prop_or(APPS_POLL_MS)]
    pub poll_ms: i32,
}

/// How often the Apps list is read again while it shows: its use and an
/// old key's last use stay current without a reload.
pub const APPS_POLL_MS: i32 = 30_000;

/// What the app form holds: a new app, or an app being edited.
#[derive(Clone, Default, PartialEq)]
struct Draft {
    /// The app being edited (its key stays); empty for a new app.
    id: String,
    /// Its name when the edit began, for the form's title.
    was: String,
    name: String,
    allowed: String,
    rewrite_from: bool,
    profile: String,
    name_touched: bool,
    allowed_touched: bool,
    submitted: bool,
}

impl Draft {
    /// Whether it holds typing not saved: a new app's form anything at
    /// all, an edit anything other than the app as it is in `apps`.
    fn typed(&self, apps: &[App]) -> bool {
        let fields = |d: &Draft| {
            (
                d.name.trim().to_string(),
                d.allowed.trim().to_string(),
                d.rewrite_from,
                d.profile.clone(),
            )
        };
        let start = if self.id.is_empty() {
            Draft::default()
        } else {
            match apps.iter().find(|a| a.id == self.id) {
                Some(app) => Draft::of(app),
                None => return false,
            }
        };
        fields(self) != fields(&start)
    }

    /// An app's name, From addresses, rewrite and profile, to edit.
    fn of(app: &App) -> Draft {
        Draft {
            id: app.id.clone(),
            was: app.name.clone(),
            name: app.name.clone(),
            allowed: app.allowed_from.join(", "),
            rewrite_from: app.rewrite_from,
            profile: app.profile.clone(),
            ..Draft::default()
        }
    }

    /// The edit as `PATCH /api/apps/{id}` takes it: all but the limits,
    /// which have their own form.
    fn to_change(&self) -> AppChange {
        let new = self.to_new_app();
        AppChange {
            name: Some(new.name),
            allowed_from: Some(new.allowed_from),
            rewrite_from: Some(new.rewrite_from),
            limits: None,
            profile: (!new.profile.is_empty()).then_some(new.profile),
        }
    }

    fn to_new_app(&self) -> NewApp {
        NewApp {
            name: self.name.trim().to_string(),
            allowed_from: split_addresses(&self.allowed),
            rewrite_from: self.rewrite_from,
            limits: AppLimits::default(),
            profile: self.profile.clone(),
        }
    }
}

/// A profile's Office 365 mailbox and sender, from `GET /api/profiles`: the
/// app form names the Send-As right each other From address needs.
#[derive(Clone, PartialEq)]
struct Mailbox {
    profile: String,
    username: String,
    sender: String,
}

/// The Office 365 profiles' mailboxes (other providers have no Send-As).
fn mailboxes_of(v: &JsValue) -> Vec<Mailbox> {
    items(v, "profiles")
        .iter()
        .filter_map(|p| {
            let s = get(p, "settings");
            (text(&s, "provider") == "office365").then(|| Mailbox {
                profile: text(p, "id"),
                username: text(&s, "username"),
                sender: text(&s, "sender_email"),
            })
        })
        .collect()
}

/// Under the From addresses: the line that gives the profile's mailbox
/// Send-As rights on each address it is not already, which Exchange
/// refuses (5.7.60) until it has them. The view keeps the element around
/// it whether or not there are lines: one appearing beside the field as an
/// address became valid took the field's focus away in the middle of typing.
fn send_as_lines(mailbox: &Mailbox, allowed: &[String]) -> Option<Html> {
    let own = |a: &str| {
        a.eq_ignore_ascii_case(&mailbox.username) || a.eq_ignore_ascii_case(&mailbox.sender)
    };
    let mut lines = allowed.iter().filter(|a| !own(a)).peekable();
    lines.peek()?;
    let mut m = Markup::default();
    m.open("div", &[("class", "help"), ("id", "app-send-as")])
        .el(
            "p",
            &[],
            &[
                "Exchange refuses mail from these until ",
                &mailbox.username,
                " has Send-As rights on them. In Exchange Online PowerShell:",
            ]
            .concat(),
        );
    for a in lines {
        command(
            &mut m,
            &mailroom_shared::powershell::add_recipient_permission(a, &mailbox.username),
            "",
        );
    }
    m.close("div");
    Some(m.html())
}

/// Why another key cannot be shown yet: the one shown (once) is not marked
/// as copied, and a second panel would replace it.
fn key_first(created: &Option<(App, String)>) -> Option<String> {
    created.as_ref().map(|(app, _)| {
        [
            "The key of “",
            &app.name,
            "” above is shown only once: copy it and choose “I have copied the key” first.",
        ]
        .concat()
    })
}

/// *Yes* to a question about an app (revoke it, give it a new key): the
/// question closes and `request` runs for its app; a refused session signs
/// in again, another failure shows as the notice, and the list is read
/// again either way.
fn answered<F>(
    about: UseStateHandle<Option<App>>,
    (notice, load, unauthorized): (UseStateHandle<Option<String>>, Callback<()>, Callback<()>),
    request: impl Fn(App) -> F + 'static,
) -> Callback<()>
where
    F: std::future::Future<Output = Result<(), ApiError>> + 'static,
{
    Callback::from(move |()| {
        let Some(app) = (*about).clone() else {
            return;
        };
        about.set(None);
        let (done, notice, load, unauthorized) = (
            request(app),
            notice.clone(),
            load.clone(),
            unauthorized.clone(),
        );
        crate::spawn(async move {
            match done.await {
                Ok(()) => {}
                Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                Err(e) => notice.set(Some(e.message().to_string())),
            }
            load.emit(());
        });
    })
}

/// `GET /api/apps`, each APP as the page shows it.
async fn read_apps() -> Result<Vec<App>, ApiError> {
    let l = json(Method::GET, "/api/apps").await?;
    Ok(items(&l, "apps").iter().map(App::from_json).collect())
}

/// How long the old key works when the *New key* question's box is ticked.
const KEEP_OLD_KEY_HOURS: u32 = 24;

/// The view.
#[function_component(Apps)]
pub fn apps(p: &AppsProps) -> Html {
    let list = use_state(|| None::<Result<Vec<App>, String>>);
    let relay = use_state(|| None::<Relay>);
    let draft = use_state(Draft::default);
    let server_errors = use_state(mailroom_shared::FieldMessages::new);
    let busy = use_state(|| false);
    let created = use_state(|| None::<(App, String)>);
    let question = crate::hooks::use_question::<App>("revoke-prompt");
    let revoking = question.about.clone();
    let rekey_question = crate::hooks::use_question::<App>("rekey-prompt");
    // The question's choice: the old key goes on working for a day.
    let keep_old = use_state(|| false);
    let end_question = crate::hooks::use_question::<App>("end-old-key-prompt");
    let notice = use_state(|| None::<String>);
    let editing = use_state(|| None::<LimitsDraft>);
    let limit_errors = use_state(mailroom_shared::FieldMessages::new);
    let mailboxes = use_state(Vec::<Mailbox>::new);

    let load = {
        let (list, unauthorized) = (list.clone(), p.on_unauthorized.clone());
        Callback::from(move |()| {
            let (list, unauthorized) = (list.clone(), unauthorized.clone());
            crate::spawn(async move {
                match read_apps().await {
                    Ok(apps) => list.set(Some(Ok(apps))),
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => list.set(Some(Err(e.message().to_string()))),
                }
            });
        })
    };
    // Each time the view shows (it opens shown): the apps, the relay's
    // address and the profiles' mailboxes, read again. Hidden, its passing
    // notice and an open question go; the key and the forms stay.
    {
        let (load, relay, mailboxes) = (load.clone(), relay.clone(), mailboxes.clone());
        let (notice, close, close_rekey, close_end) = (
            notice.clone(),
            question.close.clone(),
            rekey_question.close.clone(),
            end_question.close.clone(),
        );
        use_effect_with(p.shown, move |shown| {
            if !*shown {
                notice.set(None);
                close.emit(());
                close_rekey.emit(());
                close_end.emit(());
                return;
            }
            load.emit(());
            crate::spawn(async move {
                if let Ok(c) = json(Method::GET, "/api/connection").await {
                    relay.set(relay_of(&c));
                }
                if let Ok(p) = json(Method::GET, "/api/profiles").await {
                    mailboxes.set(mailboxes_of(&p));
                }
            });
        });
    }
    // While shown, the list is read again now and then, so its use and an
    // old key's last use (a device still to move) stay current. A failed
    // read keeps the list shown; a refused session signs in again.
    {
        let (list, shown, unauthorized) = (list.clone(), p.shown, p.on_unauthorized.clone());
        crate::hooks::use_interval(
            p.poll_ms,
            Callback::from(move |()| {
                if !shown {
                    return;
                }
                let (list, unauthorized) = (list.clone(), unauthorized.clone());
                crate::spawn(async move {
                    match read_apps().await {
                        Ok(apps) => list.set(Some(Ok(apps))),
                        Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                        Err(_) => {}
                    }
                });
            }),
        );
    }
    // A link names an app whose limits to open (`#/apps?limits=app_…`, a
    // webhook post about one of its limits), at load or followed later:
    // opened once the list holds it.
    let wanted = use_state(|| crate::route::hash_value(&crate::route::current_hash(), "limits"));
    {
        let wanted = wanted.clone();
        crate::route::use_hashchange(Callback::from(move |hash: String| {
            let id = crate::route::hash_value(&hash, "limits");
            if crate::route::View::from_hash(&hash) == crate::route::View::Apps && !id.is_empty() {
                wanted.set(id);
            }
        }));
    }
    let focus_later = crate::hooks::focus::use_focus_request();
    {
        let (editing, limit_errors, wanted_now) =
            (editing.clone(), limit_errors.clone(), wanted.clone());
        use_effect_with(((*list).clone(), (*wanted).clone()), move |(list, id)| {
            if let Some(Ok(apps)) = list {
                if let Some(app) = apps.iter().find(|a| !id.is_empty() && a.id == *id) {
                    editing.set(Some(LimitsDraft::of(app)));
                    limit_errors.set(Default::default());
                    focus_later.emit("limit-messages_per_hour");
                    wanted_now.set(String::new());
                }
            }
        });
    }
    // What leaving would lose: the page asks before it goes, and the
    // signed-in page before signing out.
    let unsaved = {
        let apps = match &*list {
            Some(Ok(apps)) => apps.as_slice(),
            _ => &[],
        };
        let mut lost = Vec::new();
        if let Some((app, _)) = &*created {
            lost.push(
                [
                    "The key of “",
                    &app.name,
                    "” is shown only once, and it is not marked as copied.",
                ]
                .concat(),
            );
        }
        if draft.typed(apps) {
            lost.push(if draft.id.is_empty() {
                "The new app's form holds typing that is not saved.".to_string()
            } else {
                ["The changes to “", &draft.was, "” are not saved."].concat()
            });
        }
        if let Some(d) = &*editing {
            if d.values != LimitsDraft::of(&d.app).values {
                lost.push(["The limits typed for “", &d.app.name, "” are not saved."].concat());
            }
        }
        (!lost.is_empty()).then(|| lost.join(" "))
    };
    crate::hooks::use_unsaved(crate::route::View::Apps.hash(), unsaved);
    // Focus the key once it shows, so a screen reader reads the warning.
    use_effect_with(created.is_some(), |shown| {
        if *shown {
            focus("key-title");
        }
    });

    let errors = validate_new_app(&draft.to_new_app());
    let shown = |field: &str, touched: bool| -> Vec<String> {
        let mut out = if touched || draft.submitted {
            errors.get(field).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        if let Some(server) = server_errors.get(field) {
            out.extend(
                server
                    .iter()
                    .filter(|m| !out.contains(m))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        out
    };
    let name_errors = shown("name", draft.name_touched);
    let allowed_errors = shown("allowed_from", draft.allowed_touched);
    // Once the addresses are valid, the Send-As right each needs.
    let send_as = if errors.contains_key("allowed_from") {
        None
    } else {
        let profile = if draft.profile.is_empty() {
            mailroom_shared::profiles::DEFAULT_PROFILE
        } else {
            draft.profile.as_str()
        };
        mailboxes
            .iter()
            .find(|m| m.profile == profile)
            .and_then(|m| send_as_lines(m, &split_addresses(&draft.allowed)))
    };

    let set = |f: fn(&mut Draft, String)| {
        let (draft, server_errors) = (draft.clone(), server_errors.clone());
        Callback::from(move |v: String| {
            let mut d = (*draft).clone();
            f(&mut d, v);
            draft.set(d);
            server_errors.set(Default::default());
        })
    };
    let on_name = set(|d, v| {
        d.name = v;
        d.name_touched = true;
    });
    let on_allowed = set(|d, v| {
        d.allowed = v;
        d.allowed_touched = true;
    });
    let on_rewrite = {
        let draft = draft.clone();
        Callback::from(move |e: Event| {
            let mut d = (*draft).clone();
            d.rewrite_from = e
                .target_unchecked_into::<web_sys::HtmlInputElement>()
                .checked();
            draft.set(d);
        })
    };
    let on_profile = {
        let draft = draft.clone();
        Callback::from(move |e: Event| {
            let mut d = (*draft).clone();
            d.profile = e
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            draft.set(d);
        })
    };
    let onsubmit = {
        let (draft, server_errors, busy, created, load, unauthorized, notice) = (
            draft.clone(),
            server_errors.clone(),
            busy.clone(),
            created.clone(),
            load.clone(),
            p.on_unauthorized.clone(),
            notice.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let mut d = (*draft).clone();
            d.submitted = true;
            draft.set(d.clone());
            let body = d.to_new_app();
            let errors = validate_new_app(&body);
            if let Some(field) = errors.keys().next() {
                focus(if field == "name" {
                    "app-name"
                } else {
                    "app-allowed"
                });
                return;
            }
            // A new app's key would replace the one shown, not yet copied.
            if let Some(why) = key_first(&created).filter(|_| d.id.is_empty()) {
                let mut errors = mailroom_shared::FieldMessages::new();
                errors.push("name", why);
                server_errors.set(errors);
                focus("key-title");
                return;
            }
            if *busy {
                return;
            }
            busy.set(true);
            let (draft, server_errors, busy, created, load, unauthorized, notice) = (
                draft.clone(),
                server_errors.clone(),
                busy.clone(),
                created.clone(),
                load.clone(),
                unauthorized.clone(),
                notice.clone(),
            );
            crate::spawn(async move {
                let r = if d.id.is_empty() {
                    json_body(Method::POST, "/api/apps", encode(&body)).await
                } else {
                    let path = ["/api/apps/", &d.id].concat();
                    json_body(Method::PATCH, &path, encode(&d.to_change())).await
                };
                busy.set(false);
                match r {
                    Ok(c) if !d.id.is_empty() => {
                        notice.set(Some(
                            [
                                "“",
                                &text(&c, "name"),
                                "” is saved; its key stays the same.",
                            ]
                            .concat(),
                        ));
                        draft.set(Draft::default());
                        load.emit(());
                    }
                    Ok(c) => {
                        created.set(Some((App::from_json(&get(&c, "app")), text(&c, "key"))));
                        draft.set(Draft::default());
                        load.emit(());
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Invalid(_, errors)) => server_errors.set(errors),
                    Err(e) => {
                        let mut errors = mailroom_shared::FieldMessages::new();
                        errors.insert("name".to_string(), vec![e.message().to_string()]);
                        server_errors.set(errors);
                    }
                }
            });
        })
    };
    let cancel_edit = {
        let (draft, server_errors) = (draft.clone(), server_errors.clone());
        Callback::from(move |_: MouseEvent| {
            draft.set(Draft::default());
            server_errors.set(Default::default());
        })
    };
    let done = {
        let created = created.clone();
        Callback::from(move |_: MouseEvent| {
            created.set(None);
            focus("app-name");
        })
    };
    let on_table_click = {
        let (rekeying, ending, created, notice) = (
            rekey_question.about.clone(),
            end_question.about.clone(),
            created.clone(),
            notice.clone(),
        );
        let (revoking, list, editing, limit_errors, draft, server_errors) = (
            revoking.clone(),
            list.clone(),
            editing.clone(),
            limit_errors.clone(),
            draft.clone(),
            server_errors.clone(),
        );
        Callback::from(move |e: MouseEvent| {
            if let Some((act, id)) = copy_click(&e) {
                let Some(Ok(apps)) = &*list else { return };
                let app = apps.iter().find(|a| a.id == id);
                match act.as_str() {
                    "revoke" => revoking.set(app.cloned()),
                    "end-old-key" => ending.set(app.cloned()),
                    "rekey" => match key_first(&created) {
                        Some(why) => {
                            notice.set(Some(why));
                            focus("key-title");
                        }
                        None => rekeying.set(app.cloned()),
                    },
                    "edit" => {
                        if let Some(a) = app {
                            draft.set(Draft::of(a));
                            server_errors.set(Default::default());
                            focus("app-name");
                        }
                    }
                    "limits" => {
                        editing.set(app.map(LimitsDraft::of));
                        limit_errors.set(Default::default());
                        focus("limit-messages_per_hour");
                    }
                    _ => {}
                }
            }
        })
    };
    let on_limit = |i: usize| {
        let (editing, limit_errors) = (editing.clone(), limit_errors.clone());
        Callback::from(move |v: String| {
            if let Some(mut d) = (*editing).clone() {
                d.values[i] = v;
                limit_errors.set(d.parse().1);
                editing.set(Some(d));
            }
        })
    };
    let cancel_limits = {
        let editing = editing.clone();
        Callback::from(move |_: MouseEvent| editing.set(None))
    };
    let save_limits = {
        let (editing, limit_errors, notice, load, unauthorized) = (
            editing.clone(),
            limit_errors.clone(),
            notice.clone(),
            load.clone(),
            p.on_unauthorized.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(d) = (*editing).clone() else { return };
            let (limits, errors) = d.parse();
            let first = errors.keys().next().cloned();
            if let Some(field) = first {
                focus(&["limit-", &field].concat());
                limit_errors.set(errors);
                return;
            }
            let change = AppChange {
                limits: Some(limits),
                ..AppChange::default()
            };
            let (editing, limit_errors, notice, load, unauthorized) = (
                editing.clone(),
                limit_errors.clone(),
                notice.clone(),
                load.clone(),
                unauthorized.clone(),
            );
            crate::spawn(async move {
                let path = ["/api/apps/", &d.app.id].concat();
                match json_body(Method::PATCH, &path, encode(&change)).await {
                    Ok(_) => {
                        editing.set(None);
                        notice.set(Some(
                            ["The limits of “", &d.app.name, "” are saved."].concat(),
                        ));
                        load.emit(());
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Invalid(_, errors)) => {
                        let mut shown = mailroom_shared::FieldMessages::new();
                        for m in errors.values().flatten() {
                            let name = LIMITS
                                .iter()
                                .find(|(n, _)| m.starts_with(n))
                                .map_or("queued_max", |(n, _)| n);
                            shown.push(name, m.clone());
                        }
                        limit_errors.set(shown);
                    }
                    Err(e) => notice.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let answer_to = (notice.clone(), load.clone(), p.on_unauthorized.clone());
    let revoke = {
        let (notice, draft) = (notice.clone(), draft.clone());
        answered(revoking.clone(), answer_to.clone(), move |app: App| {
            let (notice, draft) = (notice.clone(), draft.clone());
            async move {
                fetch(Method::DELETE, &["/api/apps/", &app.id].concat(), None).await?;
                // The form no longer edits an app that is gone.
                if draft.id == app.id {
                    draft.set(Draft::default());
                }
                notice.set(Some(
                    ["“", &app.name, "” is revoked: its key no longer works."].concat(),
                ));
                Ok(())
            }
        })
    };
    // The old key of an app, left working by its last *New key*, ends now
    // (every device moved, or it leaked after all).
    let end_old_key = {
        let notice = notice.clone();
        answered(
            end_question.about.clone(),
            answer_to.clone(),
            move |app: App| {
                let notice = notice.clone();
                async move {
                    let path = ["/api/apps/", &app.id, "/old-key"].concat();
                    fetch(Method::DELETE, &path, None).await?;
                    notice.set(Some(
                        [
                            "The old key of “",
                            &app.name,
                            "” no longer works: only its new key does.",
                        ]
                        .concat(),
                    ));
                    Ok(())
                }
            },
        )
    };
    // A new key for an app: shown once, like a new app's; the old key stops
    // working at once (a leaked key), or after a day when the question's
    // box is ticked (devices moved one by one), which the notice says.
    let rekey = {
        let (created, keep_old, notice) = (created.clone(), keep_old.clone(), notice.clone());
        answered(rekey_question.about.clone(), answer_to, move |app: App| {
            let (created, notice) = (created.clone(), notice.clone());
            let body = (*keep_old)
                .then(|| {
                    encode(&mailroom_shared::sending::NewKeyRequest {
                        keep_old_key_hours: KEEP_OLD_KEY_HOURS,
                    })
                })
                .flatten();
            keep_old.set(false);
            async move {
                let path = ["/api/apps/", &app.id, "/key"].concat();
                let c = json_body(Method::POST, &path, body).await?;
                created.set(Some((App::from_json(&get(&c, "app")), text(&c, "key"))));
                let until = text(&c, "old_key_until");
                if !until.is_empty() {
                    notice.set(Some(
                        [
                            "The old key of “",
                            &app.name,
                            "” goes on working until ",
                            &crate::markup::local_time(&until),
                            ": give each device the new key below before then. After that only the new key works.",
                        ]
                        .concat(),
                    ));
                }
                Ok(())
            }
        })
    };
    let on_keep_old = {
        let keep_old = keep_old.clone();
        Callback::from(move |e: Event| {
            let checked = e
                .target_dyn_into::<web_sys::HtmlInputElement>()
                .is_some_and(|i| i.checked());
            keep_old.set(checked);
        })
    };
    let close_rekey = {
        let (close, keep_old) = (rekey_question.close.clone(), keep_old.clone());
        Callback::from(move |()| {
            keep_old.set(false);
            close.emit(());
        })
    };

    html! {
        <section class="view" aria-labelledby="apps-title">
            <h2 id="apps-title" class="view-title" tabindex="-1">{ "Apps" }</h2>
            <p class="help" id="apps-intro">{ "Each program, device or script that sends through Mailroom gets its own key, so one can be revoked without touching the others." }</p>
            if let Some(n) = &*notice {
                <div class="banner success" role="status">{ n.clone() }</div>
            }
            if let Some(c) = &*created {
                <section class="card key-once" aria-labelledby="key-title" id="key-panel" onclick={on_table_click.clone()}>
                    { key_panel(&c.0, &c.1, relay.as_ref()) }
                    <div class="actions">
                        <button type="button" class="primary" id="key-done" onclick={done}>{ "I have copied the key" }</button>
                    </div>
                </section>
            }
            <section class="card" aria-labelledby="apps-list-title">
                <h3 id="apps-list-title">{ "Apps that may send" }</h3>
                { match &*list {
                    None => html! { <p class="progress" role="status">{ "Loading…" }</p> },
                    Some(Err(m)) => html! { <p class="error" role="alert">{ m.clone() }</p> },
                    Some(Ok(apps)) if apps.is_empty() => html! { <p class="help" id="no-apps">{ "No apps yet. Add the first one below." }</p> },
                    Some(Ok(apps)) => html! {
                        <div class="table-wrap" onclick={on_table_click}>{ apps_table(apps, &p.profiles) }</div>
                    },
                } }
            </section>
            if let Some(d) = &*editing {
                <form class="card" id="limits-form" onsubmit={save_limits} novalidate=true aria-labelledby="limits-title">
                    <h3 id="limits-title">{ ["Limits of “", &d.app.name, "”"].concat() }</h3>
                    <p class="help">{ "Windows are rolling. A message past a limit is refused before it is stored (HTTP 429 with Retry-After, SMTP 451 4.7.1), so one app cannot use up the mailbox's 10,000 recipients a day for everyone. Leave a field empty for no limit." }</p>
                    { for LIMITS.iter().enumerate().map(|(i, (name, label))| text_field(TextFieldProps {
                        id: AttrValue::from(["limit-", name].concat()),
                        label: AttrValue::Static(label),
                        value: d.values[i].clone().into(),
                        errors: limit_errors.get(name).cloned().unwrap_or_default(),
                        inputmode: Some(AttrValue::Static("numeric")),
                        on_input: on_limit(i),
                        ..TextFieldProps::default()
                    })) }
                    <div class="actions">
                        <button type="submit" class="primary" id="save-limits">{ "Save limits" }</button>
                        <button type="button" id="cancel-limits" onclick={cancel_limits}>{ "Cancel" }</button>
                    </div>
                </form>
            }
            <form class="card" id="new-app" onsubmit={onsubmit} novalidate=true aria-labelledby="new-app-title">
                if draft.id.is_empty() {
                    <h3 id="new-app-title">{ "New app" }</h3>
                } else {
                    <h3 id="new-app-title">{ ["Edit “", &draft.was, "”"].concat() }</h3>
                    <p class="help" id="edit-app-help">{ "Its key stays the same, so whatever uses it goes on sending. Messages already waiting keep the profile and From they were sent with." }</p>
                }
                { text_field(TextFieldProps {
                    id: AttrValue::Static("app-name"),
                    label: AttrValue::Static("Name"),
                    value: draft.name.clone().into(),
                    errors: name_errors,
                    placeholder: Some(AttrValue::Static("Scanner, 3rd floor")),
                    on_input: on_name,
                    ..TextFieldProps::default()
                }) }
                { text_field(TextFieldProps {
                    id: AttrValue::Static("app-allowed"),
                    label: AttrValue::Static("Allowed From addresses (optional)"),
                    value: draft.allowed.clone().into(),
                    errors: allowed_errors,
                    on_input: on_allowed,
                    help: Some(AttrValue::Static("Besides the settings' username and sender, the addresses this app may send as. The mailbox must have Send-As rights on them. Separate several with commas.")),
                    ..TextFieldProps::default()
                }) }
                <div onclick={Callback::from(|e: MouseEvent| { copy_click(&e); })}>{ send_as.unwrap_or_default() }</div>
                if p.profiles.len() > 1 {
                    <label for="app-profile">{ "Sending profile" }</label>
                    <select id="app-profile" onchange={on_profile}>
                        { for p.profiles.iter().map(|x| html! {
                            <option value={x.id.clone()} selected={x.id == draft.profile || (draft.profile.is_empty() && x.id == mailroom_shared::profiles::DEFAULT_PROFILE)}>{ x.name.clone() }</option>
                        }) }
                    </select>
                    <p class="help">{ "The profile's mailbox sends this app's mail; its From addresses are checked against that profile's username and sender." }</p>
                }
                <label class="checkbox"><input type="checkbox" id="app-rewrite" checked={draft.rewrite_from} onchange={on_rewrite} />
                    <span>{ "Rewrite From to the settings' sender (for devices that cannot choose their From; the original goes to Reply-To)" }</span></label>
                <div class="actions">
                    if draft.id.is_empty() {
                        <button type="submit" class="primary" id="create-app" disabled={*busy}>{ if *busy { "Creating…" } else { "Create app and show its key" } }</button>
                    } else {
                        <button type="submit" class="primary" id="save-app" disabled={*busy}>{ if *busy { "Saving…" } else { "Save changes" } }</button>
                        <button type="button" id="cancel-edit" onclick={cancel_edit}>{ "Cancel" }</button>
                    }
                </div>
            </form>
            if let Some(app) = &*rekey_question.about {
                { confirm(ConfirmProps {
                    id: "rekey-prompt",
                    dialog: rekey_question.dialog.clone(),
                    title: ["Give “", &app.name, "” a new key?"].concat().into(),
                    children: html! { <>
                        <p>{ "Unless the box below is ticked, its current key stops working at once, in open SMTP sessions too: whatever uses it sends again once given the new key, which is shown once. Its id (the SMTP username), name, From addresses, limits, profile and history stay." }</p>
                        if !app.old_key_until.is_empty() {
                            <p class="old-key-ends" id="rekey-old-key-ends">{ [
                                "Its old key, which still works until ",
                                &crate::markup::local_time(&app.old_key_until),
                                ", stops at once either way: only the key before the newest is kept. Devices not yet moved to the current key are refused until given the new one.",
                            ].concat() }</p>
                        }
                        <label class="check">
                            <input type="checkbox" id="rekey-keep-old" checked={*keep_old} onchange={on_keep_old} />
                            { " Keep the old key working for 24 hours, so devices can be moved to the new one one by one. Leave this off for a key that leaked." }
                        </label>
                    </> },
                    default_label: "Keep the current key".into(),
                    on_default: close_rekey.clone(),
                    other_label: "Give it a new key".into(),
                    on_other: rekey,
                    danger: true,
                    on_close: close_rekey,
                }) }
            }
            if let Some(app) = &*end_question.about {
                { confirm(ConfirmProps {
                    id: "end-old-key-prompt",
                    dialog: end_question.dialog.clone(),
                    title: ["End the old key of “", &app.name, "” now?"].concat().into(),
                    children: html! { <p>{ [
                        "Otherwise it works until ",
                        &crate::markup::local_time(&app.old_key_until),
                        ". Whatever still sends with it is refused from now on, in open SMTP sessions too, until it is given the new key. The new key goes on working.",
                    ].concat() }</p> },
                    default_label: "Keep it until then".into(),
                    on_default: end_question.close.clone(),
                    other_label: "End the old key".into(),
                    on_other: end_old_key,
                    danger: true,
                    on_close: end_question.close.clone(),
                }) }
            }
            if let Some(app) = &*revoking {
                { confirm(ConfirmProps {
                    id: "revoke-prompt",
                    dialog: question.dialog.clone(),
                    title: ["Revoke “", &app.name, "”?"].concat().into(),
                    children: html! { <p>{ "Its key stops working at once, in open SMTP sessions too. Whatever uses it can no longer send until it gets a new app's key. This cannot be undone." }</p> },
                    default_label: "Keep it".into(),
                    on_default: question.close.clone(),
                    other_label: ["Revoke “", &app.name, "”"].concat().into(),
                    on_other: revoke,
                    danger: true,
                    on_close: question.close.clone(),
                }) }
            }
        </section>
    }
}
