//! The profile switcher on Settings (docs/API.md §15): which sending profile
//! the form edits, a new profile, rename, delete and limits, and each
//! profile's recipients of the last 24 hours drawn against its daily limit.

use gloo_net::http::Method;
use mailroom_shared::profiles::{
    limit_warnings, parse_limits, validate_name, ProfileChange, ProfileLimits, ProfileState,
    DEFAULT_PROFILE, LIMIT_FIELDS,
};
use mailroom_shared::{FieldMessages, Provider, Transport};
use yew::prelude::*;

use crate::api::{self, ApiError};
use crate::components::confirm::{confirm, ConfirmProps};
use crate::components::field::{text_field, TextFieldProps};
use crate::markup::{count, Markup};

/// The `<select>` value for "a new profile".
pub const NEW: &str = "";

#[derive(Properties, PartialEq)]
pub struct ProfileBarProps {
    /// Every profile with its usage, from `GET /api/queue`.
    pub profiles: Vec<ProfileState>,
    /// The profile the form edits (`""` while a new one is made).
    pub current: AttrValue,
    /// Edit another profile (`""`: a new one).
    pub on_switch: Callback<String>,
    /// The profile was deleted: the form edits the default one.
    #[prop_or_default]
    pub on_deleted: Callback<()>,
    /// A profile was renamed or deleted.
    #[prop_or_default]
    pub on_changed: Callback<()>,
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
    /// The chosen profile's saved provider, for its limits' defaults and advice.
    #[prop_or_default]
    pub provider: Provider,
    /// The chosen profile's saved way out, for its limits' advice.
    #[prop_or_default]
    pub transport: Transport,
}

/// Each profile's usage bar: recipients today against its daily limit,
/// drawn with a `<meter>` (and written beside it), and its pause.
pub fn usage_list(profiles: &[ProfileState]) -> Html {
    let mut m = Markup::default();
    m.open("ul", &[("class", "usage"), ("id", "profile-usage")]);
    for p in profiles {
        let used = p.usage.recipients_today;
        let id = ["usage-", &p.id].concat();
        m.open("li", &[("id", &id)])
            .el("span", &[("class", "name")], &p.name);
        match p.limits.recipients_per_day {
            Some(limit) => {
                let (used_s, limit_s) = (used.to_string(), limit.to_string());
                let written = [
                    &count(used),
                    " of ",
                    &count(u64::from(limit)),
                    " recipients in 24 hours",
                ]
                .concat();
                // Full at 90 %: Exchange stops the mailbox at its limit.
                let high = (u64::from(limit) * 9 / 10).to_string();
                m.el(
                    "meter",
                    &[
                        ("min", "0"),
                        ("max", &limit_s),
                        ("high", &high),
                        ("value", &used_s),
                        ("aria-label", &["Recipients today for ", &p.name].concat()),
                    ],
                    "",
                )
                .el("span", &[("class", "count")], &written);
            }
            None => {
                m.el(
                    "span",
                    &[("class", "count")],
                    &[&count(used), " recipients in 24 hours (no daily limit)"].concat(),
                );
            }
        }
        if p.paused.is_some() {
            m.el("span", &[("class", "badge failed")], "paused");
        }
        m.close("li");
    }
    m.close("ul");
    m.html()
}

/// The limits as the form shows them: each set one, empty for the default.
fn typed_limits(l: &ProfileLimits) -> [String; 3] {
    [l.recipients_per_day, l.messages_per_minute, l.connections]
        .map(|v| v.map(|n| n.to_string()).unwrap_or_default())
}

/// A profile's limits form, checked and explained while typing: `values`
/// as typed, `errors` from [`parse_limits`].
fn limits_form(
    name: &str,
    values: &[String; 3],
    errors: &FieldMessages,
    warnings: &[(&'static str, String)],
    provider: Provider,
    handlers: (
        Callback<(usize, String)>,
        Callback<SubmitEvent>,
        Callback<MouseEvent>,
    ),
    busy: bool,
) -> Html {
    let (on_input, onsubmit, cancel) = handlers;
    let defaults = ProfileLimits::default().effective(provider, None, None);
    let default_text = [
        defaults
            .recipients_per_day
            .map_or("none".to_string(), |n| count(u64::from(n))),
        match defaults.messages_per_minute {
            0 => "none".to_string(),
            n => count(u64::from(n)),
        },
        defaults.connections.to_string(),
    ];
    html! {
        <form id="profile-limits-form" onsubmit={onsubmit} novalidate=true aria-labelledby="profile-limits-title">
            <h3 id="profile-limits-title">{ ["Limits of “", name, "”"].concat() }</h3>
            <p class="help">{ "For all servers together. An empty field takes the default: the provider's, or the server's " }<code>{ "--delivery-rate" }</code>{ " and " }<code>{ "--delivery-connections" }</code>{ " when set. Past the daily limit, messages wait; they never fail for it." }</p>
            { for LIMIT_FIELDS.iter().enumerate().map(|(i, (field, label))| text_field(TextFieldProps {
                id: AttrValue::from(["profile-limit-", field].concat()),
                label: AttrValue::Static(label),
                value: values[i].clone().into(),
                placeholder: Some(["Default: ", &default_text[i]].concat().into()),
                errors: errors.get(field).cloned().unwrap_or_default(),
                warnings: warnings.iter().filter(|(n, _)| n == field).map(|(_, w)| w.clone()).collect(),
                inputmode: Some(AttrValue::Static("numeric")),
                on_input: on_input.reform(move |v| (i, v)),
                ..TextFieldProps::default()
            })) }
            <div class="actions">
                <button type="submit" class="primary" id="profile-limits-save"
                    disabled={busy || !errors.is_empty()}>{ "Save limits" }</button>
                <button type="button" id="profile-limits-cancel" onclick={cancel}>{ "Cancel" }</button>
            </div>
        </form>
    }
}

/// The switcher.
#[function_component(ProfileBar)]
pub fn profile_bar(p: &ProfileBarProps) -> Html {
    let new_name = use_state(String::new);
    let rename = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    // The limits form (as typed) while open, and what its last save said;
    // the bar is made afresh for each profile chosen (keyed by it).
    let limits = use_state(|| None::<[String; 3]>);
    let notice = use_state(String::new);
    // Delete asks first: the profile's settings, secret and history go.
    let deleting = crate::hooks::use_question::<()>("profile-delete-prompt");
    let is_new = p.current.as_str() == NEW;
    let current = p.profiles.iter().find(|x| x.id == p.current.as_str());
    let name_errors = |name: &str| {
        let mut e = FieldMessages::new();
        validate_name(name, &mut e);
        e.get("name").and_then(|m| m.first().cloned())
    };
    let on_select = {
        let switch = p.on_switch.clone();
        Callback::from(move |e: Event| {
            let value = e
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            switch.emit(value);
        })
    };
    let on_new_name = {
        let new_name = new_name.clone();
        Callback::from(move |e: InputEvent| {
            let v = e
                .target_unchecked_into::<web_sys::HtmlInputElement>()
                .value();
            // The next save adds the profile under this name.
            api::set_new_profile(Some(v.trim().to_string()));
            new_name.set(v);
        })
    };
    let on_rename_input = {
        let rename = rename.clone();
        Callback::from(move |e: InputEvent| {
            rename.set(
                e.target_unchecked_into::<web_sys::HtmlInputElement>()
                    .value(),
            )
        })
    };
    // PATCH the name, or DELETE the profile.
    let change = {
        let (error, busy, rename) = (error.clone(), busy.clone(), rename.clone());
        let (changed, unauthorized, deleted) = (
            p.on_changed.clone(),
            p.on_unauthorized.clone(),
            p.on_deleted.clone(),
        );
        let id = p.current.to_string();
        Callback::from(move |delete: bool| {
            let (error, busy, rename) = (error.clone(), busy.clone(), rename.clone());
            let (changed, unauthorized, deleted) =
                (changed.clone(), unauthorized.clone(), deleted.clone());
            let path = ["/api/profiles/", &id].concat();
            let body = api::encode(&ProfileChange {
                name: Some(rename.trim().to_string()),
                limits: None,
            });
            busy.set(true);
            crate::spawn(async move {
                let r = if delete {
                    api::fetch(Method::DELETE, &path, None).await
                } else {
                    api::fetch(Method::PATCH, &path, body).await
                };
                busy.set(false);
                match r {
                    Ok(_) => {
                        error.set(None);
                        rename.set(String::new());
                        if delete {
                            deleted.emit(());
                        }
                        changed.emit(());
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Invalid(m, errors)) => error.set(Some(
                        errors
                            .get("name")
                            .and_then(|e| e.first().cloned())
                            .unwrap_or(m),
                    )),
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    // Opens the limits form with the limits as set (the queue's show the
    // daily limit in force, not whether it is the default).
    let open_limits = {
        let (limits, notice, error, busy) =
            (limits.clone(), notice.clone(), error.clone(), busy.clone());
        let unauthorized = p.on_unauthorized.clone();
        let path = ["/api/profiles/", &p.current].concat();
        Callback::from(move |_: MouseEvent| {
            let (limits, notice, error, busy) =
                (limits.clone(), notice.clone(), error.clone(), busy.clone());
            let (unauthorized, path) = (unauthorized.clone(), path.clone());
            busy.set(true);
            crate::spawn(async move {
                let r = api::typed(Method::GET, &path, crate::read::limits_of_profile).await;
                busy.set(false);
                match r {
                    Ok(l) => {
                        notice.set(String::new());
                        error.set(None);
                        limits.set(Some(typed_limits(&l)));
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let on_limit_input = {
        let limits = limits.clone();
        Callback::from(move |(i, v): (usize, String)| {
            if let Some(mut values) = (*limits).clone() {
                values[i] = v;
                limits.set(Some(values));
            }
        })
    };
    // PATCH the limits typed; saved, the form closes and the bars are read again.
    let save_limits = {
        let (limits, notice, error, busy) =
            (limits.clone(), notice.clone(), error.clone(), busy.clone());
        let (changed, unauthorized) = (p.on_changed.clone(), p.on_unauthorized.clone());
        let path = ["/api/profiles/", &p.current].concat();
        let name = current.map(|c| c.name.clone()).unwrap_or_default();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(values) = &*limits else { return };
            let (typed, errors) = parse_limits(values);
            if !errors.is_empty() {
                return;
            }
            let (limits, notice, error, busy) =
                (limits.clone(), notice.clone(), error.clone(), busy.clone());
            let (changed, unauthorized) = (changed.clone(), unauthorized.clone());
            let (path, name) = (path.clone(), name.clone());
            let body = api::encode(&ProfileChange {
                name: None,
                limits: Some(typed),
            });
            busy.set(true);
            crate::spawn(async move {
                let r = api::fetch(Method::PATCH, &path, body).await;
                busy.set(false);
                match r {
                    Ok(_) => {
                        limits.set(None);
                        error.set(None);
                        notice.set(["The limits of “", &name, "” are saved."].concat());
                        changed.emit(());
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Invalid(m, errors)) => {
                        error.set(Some(errors.values().flatten().next().cloned().unwrap_or(m)))
                    }
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let close_limits = {
        let (limits, error) = (limits.clone(), error.clone());
        Callback::from(move |_: MouseEvent| {
            limits.set(None);
            error.set(None);
        })
    };
    let (limit_errors, limit_advice) = match &*limits {
        Some(values) => {
            let (typed, errors) = parse_limits(values);
            (errors, limit_warnings(&typed, p.provider, p.transport))
        }
        None => Default::default(),
    };
    // Hidden while the form is open.
    let limits_button = if limits.is_some() {
        Html::default()
    } else {
        html! {
            <button type="button" id="profile-limits-button" disabled={*busy}
                onclick={open_limits}>{ "Change limits" }</button>
        }
    };
    let new_error = (is_new && !new_name.is_empty())
        .then(|| name_errors(&new_name))
        .flatten();
    let rename_error = (!rename.is_empty()).then(|| name_errors(&rename)).flatten();
    html! {
        <section class="card profiles" aria-labelledby="profiles-title">
            <h2 id="profiles-title">{ "Sending profile" }</h2>
            <p class="help">{ "Each profile is one way out: a mailbox or tenant with its own settings, pause and daily limit. Apps choose the profile that sends their mail." }</p>
            <label for="profile-select">{ "Profile these settings belong to" }</label>
            <select id="profile-select" onchange={on_select}>
                { for p.profiles.iter().map(|x| html! {
                    <option value={x.id.clone()} selected={x.id == p.current.as_str()}>{ x.name.clone() }</option>
                }) }
                <option value={NEW} selected={is_new}>{ "New profile…" }</option>
            </select>
            { usage_list(&p.profiles) }
            if is_new {
                <label for="profile-name">{ "Name of the new profile" }</label>
                <input id="profile-name" type="text" value={(*new_name).clone()} oninput={on_new_name}
                    aria-invalid={new_error.is_some().then_some("true")}
                    aria-describedby="profile-name-error" />
                <p class="error" id="profile-name-error" role="alert">{ new_error.unwrap_or_default() }</p>
                <p class="help">{ "Fill in its settings below, test them, and save: saving adds the profile." }</p>
            } else if let Some(c) = current.filter(|c| c.id != DEFAULT_PROFILE) {
                <label for="profile-rename">{ "Rename “" }{ c.name.clone() }{ "”" }</label>
                <input id="profile-rename" type="text" value={(*rename).clone()} oninput={on_rename_input}
                    aria-invalid={rename_error.is_some().then_some("true")} />
                <div class="actions">
                    { limits_button.clone() }
                    <button type="button" id="profile-rename-button"
                        disabled={*busy || rename.trim().is_empty() || rename_error.is_some()}
                        onclick={let c = change.clone(); Callback::from(move |_| c.emit(false))}>{ "Rename" }</button>
                    <button type="button" class="danger" id="profile-delete" disabled={*busy}
                        onclick={let d = deleting.about.clone(); Callback::from(move |_| d.set(Some(())))}>{ "Delete this profile" }</button>
                </div>
                <p class="error" id="profile-error" role="alert">{ rename_error.or_else(|| (*error).clone().filter(|_| limits.is_none())).unwrap_or_default() }</p>
            }
            if let Some(c) = current.filter(|_| !is_new) {
                if let Some(values) = &*limits {
                    { limits_form(&c.name, values, &limit_errors, &limit_advice, p.provider,
                        (on_limit_input, save_limits, close_limits), *busy) }
                } else if c.id == DEFAULT_PROFILE {
                    // The other profiles have it beside Rename and Delete.
                    <div class="actions">{ limits_button }</div>
                }
                if c.id == DEFAULT_PROFILE || limits.is_some() {
                    <p class="error" id="profile-limits-error" role="alert">{ (*error).clone().unwrap_or_default() }</p>
                }
                if !notice.is_empty() {
                    <div class="banner success" id="profile-limits-notice" role="status">{ (*notice).clone() }</div>
                }
            }
            if let Some(c) = current.filter(|_| deleting.about.is_some()) {
                { confirm(ConfirmProps {
                    id: "profile-delete-prompt",
                    dialog: deleting.dialog.clone(),
                    title: ["Delete the profile “", &c.name, "”?"].concat().into(),
                    children: html! { <p>{ "Its settings, its secret or certificate and its history go with it, and this cannot be undone. Mailroom refuses while an app sends through it or one of its messages waits." }</p> },
                    default_label: "Keep it".into(),
                    on_default: deleting.close.clone(),
                    other_label: ["Delete “", &c.name, "”"].concat().into(),
                    on_other: { let (close, c) = (deleting.close.clone(), change.clone()); Callback::from(move |()| { close.emit(()); c.emit(true); }) },
                    danger: true,
                    on_close: deleting.close.clone(),
                }) }
            }
        </section>
    }
}
