//! The profile switcher on Settings (docs/API.md §15): which sending profile
//! the form edits, a new profile, rename and delete, and each profile's
//! recipients of the last 24 hours drawn against its daily limit.

use gloo_net::http::Method;
use mailroom_shared::profiles::{validate_name, ProfileState, DEFAULT_PROFILE};
use mailroom_shared::FieldMessages;
use yew::prelude::*;

use crate::api::{self, ApiError};
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
    /// A profile was renamed or deleted.
    #[prop_or_default]
    pub on_changed: Callback<()>,
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
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

/// The switcher.
#[function_component(ProfileBar)]
pub fn profile_bar(p: &ProfileBarProps) -> Html {
    let new_name = use_state(String::new);
    let rename = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
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
        let (changed, unauthorized, switch) = (
            p.on_changed.clone(),
            p.on_unauthorized.clone(),
            p.on_switch.clone(),
        );
        let id = p.current.to_string();
        Callback::from(move |delete: bool| {
            let (error, busy, rename) = (error.clone(), busy.clone(), rename.clone());
            let (changed, unauthorized, switch) =
                (changed.clone(), unauthorized.clone(), switch.clone());
            let path = ["/api/profiles/", &id].concat();
            let body = api::encode(&mailroom_shared::profiles::ProfileChange {
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
                            switch.emit(DEFAULT_PROFILE.into());
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
                    <button type="button" id="profile-rename-button"
                        disabled={*busy || rename.trim().is_empty() || rename_error.is_some()}
                        onclick={let c = change.clone(); Callback::from(move |_| c.emit(false))}>{ "Rename" }</button>
                    <button type="button" class="danger" id="profile-delete" disabled={*busy}
                        onclick={let c = change.clone(); Callback::from(move |_| c.emit(true))}>{ "Delete this profile" }</button>
                </div>
                <p class="error" id="profile-error" role="alert">{ rename_error.or_else(|| (*error).clone()).unwrap_or_default() }</p>
            }
        </section>
    }
}
