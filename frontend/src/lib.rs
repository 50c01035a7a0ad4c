//! Mailroom's page: a Yew app with three views. Settings runs the shared
//! validation on every keystroke, tests the settings with a real email and
//! saves them; Apps makes and revokes the keys programs send with; Activity
//! shows the queue. A banner on every view says when delivery is paused.

pub mod api;
pub mod components;
pub mod hooks;
pub mod markup;
pub mod read;
pub mod route;
pub mod state;

use mailroom_shared::api::SettingsResponse;
use mailroom_shared::sending::{QueueState, Status};
use yew::prelude::*;

use api::{json, ApiError};
use components::activity::Activity;
use components::apps::Apps;
use components::common::pause_banner;
use components::settings_form::SettingsForm;
use components::sign_in::{session_dialog, sign_in, use_sign_in};
use hooks::use_interval;
use route::{use_view, View};

/// The page's allocator: TLSF (constant-time allocation and free, splitting
/// and merging free blocks) in about 1.5 KB of wasm, where the standard
/// dlmalloc takes 7 KB. The page is single-threaded, so its lock is free.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf<Pools> = rlsf::GlobalTlsf::new();

/// The allocator's options: consecutive pages from `memory.grow` merge into one
/// pool, so the large strings and bodies of the Activity view (often more than
/// a 64 KB page) reuse freed memory instead of growing it; `realloc` is
/// allocate, copy and free (its in-place routine would cost more code).
#[cfg(target_arch = "wasm32")]
pub struct Pools;

#[cfg(target_arch = "wasm32")]
impl rlsf::GlobalTlsfOptions for Pools {
    const ENABLE_REALLOCATION: bool = false;
    const COALESCE_POOLS: bool = true;
}

/// Runs a future on the page's event loop. Boxed, so the executor's code is
/// compiled once rather than once per call site (a smaller bundle).
pub fn spawn(future: impl std::future::Future<Output = ()> + 'static) {
    let boxed: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(future);
    wasm_bindgen_futures::spawn_local(boxed);
}

/// How often the queue's state is asked for while the page is open.
pub const POLL_MS: i32 = 3000;

#[derive(Clone, PartialEq)]
enum Screen {
    Loading,
    SignIn(Option<AttrValue>),
    Ready(Box<SettingsResponse>),
    Failed(String),
}

/// The whole page: the sign-in gate, then the signed-in page. When the
/// session ends with the page open, it stays, under a dialog that signs in
/// again (signing out ends the page).
#[function_component(App)]
pub fn app() -> Html {
    let screen = use_state(|| Screen::Loading);
    let signing_in = use_sign_in();
    let expired = use_state(|| false);
    let dialog = use_node_ref();
    hooks::use_modal(*expired, dialog.clone(), AttrValue::Static("admin-token"));
    let load = {
        let screen = screen.clone();
        Callback::from(move |()| {
            let screen = screen.clone();
            crate::spawn(async move {
                match api::settings().await {
                    Ok(r) => screen.set(Screen::Ready(Box::new(r))),
                    Err(ApiError::Unauthorized(_)) => screen.set(Screen::SignIn(None)),
                    Err(e) => screen.set(Screen::Failed(e.message().to_string())),
                }
            });
        })
    };
    {
        let load = load.clone();
        use_effect_with((), move |()| load.emit(()));
    }
    let notice = |text: &'static str| {
        let screen = screen.clone();
        Callback::from(move |()| screen.set(Screen::SignIn(Some(AttrValue::Static(text)))))
    };
    match &*screen {
        Screen::Loading => {
            html! { <main class="page"><p class="progress" role="status">{ "Loading…" }</p></main> }
        }
        Screen::SignIn(notice) => sign_in(&signing_in, notice.as_ref(), load),
        Screen::Ready(r) => {
            let (expire, renewed) = (expired.clone(), expired.clone());
            html! {
                <>
                <Signed initial={(**r).clone()}
                    on_unauthorized={Callback::from(move |()| expire.set(true))}
                    on_signed_out={notice("You are signed out.")} />
                if *expired {
                    { session_dialog(&signing_in, dialog, Callback::from(move |()| renewed.set(false))) }
                }
                </>
            }
        }
        Screen::Failed(m) => html! {
            <main class="page"><div class="banner error" role="alert">{ m.clone() }</div></main>
        },
    }
}

#[derive(Properties, PartialEq)]
pub struct SignedProps {
    /// The settings as loaded.
    pub initial: SettingsResponse,
    /// A call answered 401.
    pub on_unauthorized: Callback<()>,
    /// The user signed out.
    pub on_signed_out: Callback<()>,
}

/// Messages that wait for delivery: queued or deferred, from `GET /api/queue`.
pub fn waiting(queue: &QueueState) -> u64 {
    [Status::Queued, Status::Deferred]
        .iter()
        .filter_map(|s| queue.counts.get(s))
        .sum()
}

/// A profile's name in quotes, for a question ("a new profile" while one
/// is made).
fn profile_name(profiles: &[mailroom_shared::profiles::ProfileState], id: &str) -> String {
    if id == components::profiles::NEW {
        return "a new profile".into();
    }
    let name = profiles
        .iter()
        .find(|x| x.id == id)
        .map_or(id, |x| x.name.as_str());
    ["“", name, "”"].concat()
}

/// A question before unsaved changes in the settings form go: *Keep
/// editing* (the default, also Escape) closes it and runs `keep`; the other
/// answer closes it and runs `discard`.
fn unsaved_prompt<T: 'static>(
    q: &hooks::Question<T>,
    id: &'static str,
    (title, text, discard_label): (&'static str, String, &'static str),
    keep: impl Fn() + 'static,
    discard: impl Fn() + 'static,
) -> Html {
    let then = |close: Callback<()>, after: Box<dyn Fn()>| {
        Callback::from(move |()| {
            close.emit(());
            after();
        })
    };
    let keep = then(q.close.clone(), Box::new(keep));
    components::confirm::confirm(components::confirm::ConfirmProps {
        id,
        dialog: q.dialog.clone(),
        title: title.into(),
        children: html! { <p>{ text }</p> },
        default_label: "Keep editing".into(),
        on_default: keep.clone(),
        other_label: discard_label.into(),
        on_other: then(q.close.clone(), Box::new(discard)),
        danger: true,
        on_close: keep,
    })
}

/// "Sign out and discard your unsaved changes?": keeping them shows the
/// view that holds them (the settings form's first, then the first of the
/// others: a key or a secret shown once, typing in Apps).
fn sign_out_prompt(
    q: &hooks::Question<()>,
    (profiles, current, settings): (&[mailroom_shared::profiles::ProfileState], &str, bool),
    others: &[(&'static str, String)],
    sign_out: Callback<()>,
) -> Html {
    let text = [
        &what_goes(profiles, current, settings, others),
        "Signing out discards them.",
    ]
    .concat();
    let hash = match others.first() {
        Some((view, _)) if !settings && *view != View::Settings.hash() => view.to_string(),
        _ => route::settings_hash(current),
    };
    unsaved_prompt(
        q,
        "sign-out-prompt",
        (
            "Sign out and discard your unsaved changes?",
            text,
            "Sign out",
        ),
        move || {
            if let Some(w) = web_sys::window() {
                let _ = w.location().set_hash(&hash);
            }
        },
        move || sign_out.emit(()),
    )
}

/// What would go, a sentence each: the settings form's unsaved changes
/// (when `dirty`), then each of `others` (from [`hooks::before_unload::unsaved`]).
fn what_goes(
    profiles: &[mailroom_shared::profiles::ProfileState],
    current: &str,
    dirty: bool,
    others: &[(&'static str, String)],
) -> String {
    let mut text = String::new();
    if dirty {
        text = [
            "The settings of ",
            &profile_name(profiles, current),
            " have changes that are not saved. ",
        ]
        .concat();
    }
    for (_, what) in others {
        text.push_str(what);
        text.push(' ');
    }
    text
}

/// "Discard your unsaved changes?" before the form edits another profile:
/// keeping them leaves the form (and the switcher, and the address) on the
/// profile edited; discarding switches.
fn switch_prompt(
    q: &hooks::Question<String>,
    (profiles, current, dirty): (&[mailroom_shared::profiles::ProfileState], &str, bool),
    target: &str,
    switch: Callback<String>,
    bar: UseStateHandle<u32>,
) -> Html {
    let text = [
        &what_goes(profiles, current, dirty, &[]),
        "Editing ",
        &profile_name(profiles, target),
        " instead discards them.",
    ]
    .concat();
    let (hash, target) = (route::settings_hash(current), target.to_string());
    unsaved_prompt(
        q,
        "profile-switch-prompt",
        ("Discard your unsaved changes?", text, "Discard them"),
        move || {
            bar.set(*bar + 1);
            route::replace_hash(&hash);
        },
        move || switch.emit(target.clone()),
    )
}

/// The signed-in page: navigation, the pause banner, and the current view.
/// The settings form stays mounted (hidden) on the other views, and so does
/// Apps once opened, so switching views never loses an edit or a new key.
#[function_component(Signed)]
pub fn signed(p: &SignedProps) -> Html {
    let view = use_view();
    let queue = use_state(|| None::<QueueState>);
    let refresh = {
        let (queue, unauthorized) = (queue.clone(), p.on_unauthorized.clone());
        Callback::from(move |()| {
            let (queue, unauthorized) = (queue.clone(), unauthorized.clone());
            crate::spawn(async move {
                match json(gloo_net::http::Method::GET, "/api/queue").await {
                    // An answer of another shape keeps the last state.
                    Ok(q) => {
                        if let Some(q) = read::queue_state(&q) {
                            queue.set(Some(q));
                        }
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    // A missed poll keeps the last state; the next one tries again.
                    Err(_) => {}
                }
            });
        })
    };
    use_interval(POLL_MS, refresh.clone());
    {
        let refresh = refresh.clone();
        use_effect_with((), move |()| refresh.emit(()));
    }
    // A new view: its title, and the focus on its heading so a screen reader
    // announces it (not on the first render, which keeps the page's focus).
    {
        let first = use_mut_ref(|| true);
        use_effect_with(view, move |view| {
            if let Some(d) = web_sys::window().and_then(|w| w.document()) {
                d.set_title(view.title());
            }
            if !std::mem::replace(&mut *first.borrow_mut(), false) {
                hooks::focus::focus(view.heading_id());
            }
        });
    }
    let sign_out_now = {
        let cb = p.on_signed_out.clone();
        Callback::from(move |()| {
            let cb = cb.clone();
            crate::spawn(async move {
                let _ = api::fetch(gloo_net::http::Method::POST, "/api/logout", None).await;
                cb.emit(());
            });
        })
    };
    // Which profile the Settings view edits, what it loaded, and a counter
    // that remounts the form on each switch (docs/API.md §15).
    let editing = use_state(|| {
        (
            mailroom_shared::profiles::DEFAULT_PROFILE.to_string(),
            p.initial.clone(),
            0u32,
        )
    });
    let switch = {
        let (editing, unauthorized) = (editing.clone(), p.on_unauthorized.clone());
        Callback::from(move |id: String| {
            let (editing, unauthorized) = (editing.clone(), unauthorized.clone());
            let generation = editing.2 + 1;
            if id == components::profiles::NEW {
                api::set_new_profile(Some(String::new()));
                editing.set((id, SettingsResponse::default(), generation));
                return;
            }
            api::set_new_profile(None);
            // The requests go to the profile chosen; if its settings cannot
            // be read (a link to a deleted profile), the form keeps editing
            // the one it shows, and its calls go there again.
            let shown = api::profile();
            api::set_profile(&id);
            crate::spawn(async move {
                match api::settings().await {
                    Ok(r) => editing.set((id, r, generation)),
                    Err(e) => {
                        api::set_profile(&shown);
                        if let ApiError::Unauthorized(_) = e {
                            unauthorized.emit(());
                        }
                    }
                }
            });
        })
    };
    // Whether the form holds unsaved changes: switching to another profile
    // asks first (it remounts the form, and the edits would go unseen), as
    // it does while a new webhook's secret shows (the panel is remade too).
    let dirty = use_mut_ref(|| false);
    let on_dirty = {
        let dirty = dirty.clone();
        Callback::from(move |d: bool| *dirty.borrow_mut() = d)
    };
    let leaving = hooks::use_question::<String>("profile-switch-prompt");
    // Apps mounts when first opened, then stays.
    let apps_opened = use_mut_ref(|| false);
    if view == View::Apps {
        *apps_opened.borrow_mut() = true;
    }
    // Signing out with unsaved changes asks first too: the form goes with
    // the page, and so does a key or a secret not yet copied.
    let signing_out = hooks::use_question::<()>("sign-out-prompt");
    let sign_out = {
        let (dirty, ask, now) = (
            dirty.clone(),
            signing_out.about.clone(),
            sign_out_now.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            if *dirty.borrow() || !hooks::before_unload::unsaved().is_empty() {
                ask.set(Some(()));
            } else {
                now.emit(());
            }
        })
    };
    // Remounts the switcher when a switch is not made, so it shows the
    // profile still edited rather than the one chosen.
    let bar = use_state(|| 0u32);
    let request_switch = {
        let (dirty, leaving, switch, current) = (
            dirty.clone(),
            leaving.about.clone(),
            switch.clone(),
            editing.0.clone(),
        );
        Callback::from(move |id: String| {
            if id == current {
                return;
            }
            if *dirty.borrow() {
                leaving.set(Some(id));
            } else {
                switch.emit(id);
            }
        })
    };
    // The address names the profile to edit (`#/settings?profile=…`: a
    // pause banner's link, a webhook post's, a reload): the hash at load,
    // then at each `hashchange`, acted on with this render's callbacks.
    // Each arrival is counted, so the same link followed again after "Keep
    // editing" asks again.
    let arrived = use_state(|| (route::current_hash(), 0u32));
    {
        let (arrived, count) = (arrived.clone(), use_mut_ref(|| 0u32));
        route::use_hashchange(Callback::from(move |hash: String| {
            *count.borrow_mut() += 1;
            arrived.set((hash, *count.borrow()));
        }));
    }
    {
        let request = request_switch.clone();
        use_effect_with((*arrived).clone(), move |(hash, _)| {
            // Only an id's shape: it goes into the requests' paths.
            let id = route::hash_value(hash, "profile");
            if View::from_hash(hash) == View::Settings && route::id_like(&id) {
                request.emit(id);
            }
        });
    }
    // The address follows the profile edited while Settings shows.
    use_effect_with((view, editing.0.clone()), |(view, id)| {
        if *view == View::Settings {
            route::replace_hash(&route::settings_hash(id));
        }
    });
    let on_saved = {
        let (refresh, editing, switch) = (refresh.clone(), editing.clone(), switch.clone());
        Callback::from(move |()| {
            refresh.emit(());
            // Saving a new profile made it: edit it from now on.
            if api::profile() != editing.0 && api::new_profile().is_none() {
                switch.emit(api::profile());
            }
        })
    };
    let on_deleted = {
        let switch = switch.clone();
        Callback::from(move |()| switch.emit(mailroom_shared::profiles::DEFAULT_PROFILE.into()))
    };
    let profiles = queue
        .as_ref()
        .map(|q| q.profiles.clone())
        .unwrap_or_default();
    let paused = queue
        .as_ref()
        .and_then(|q| q.paused.as_ref().map(|p| (p, waiting(q))));
    // The other profiles' pauses, each named (the default one is `paused`).
    let other_pauses: Vec<Html> = profiles
        .iter()
        .filter(|x| x.id != mailroom_shared::profiles::DEFAULT_PROFILE)
        .filter_map(|x| x.paused.as_ref().map(|pz| (x, pz)))
        .map(|(x, pz)| {
            components::common::profile_pause_banner(
                &x.id,
                &x.name,
                pz,
                view == View::Settings && editing.0 == x.id,
            )
        })
        .collect();
    let copy = Callback::from(|e: MouseEvent| {
        markup::copy_click(&e);
    });
    html! {
        <>
        <header class="top">
            <h1>{ "Mailroom" }</h1>
            <nav aria-label="Views">
                { for View::ALL.iter().map(|&v| html! {
                    <a href={v.hash()} id={["nav-", v.hash().trim_start_matches("#/")].concat()}
                        aria-current={(v == view).then_some("page")}>{ v.label() }</a>
                }) }
            </nav>
            <button type="button" class="link" onclick={sign_out}>{ "Sign out" }</button>
        </header>
        <main class={classes!("page", (view != View::Settings).then_some("wide"))}>
            if let Some((paused, waiting)) = paused {
                <div onclick={copy.clone()}>{ pause_banner(paused, waiting, view == View::Settings && editing.0 == mailroom_shared::profiles::DEFAULT_PROFILE) }</div>
            }
            { for other_pauses.into_iter().map(|b| html! { <div onclick={copy.clone()}>{ b }</div> }) }
            { for queue.iter().flat_map(|q| q.warnings.iter()).map(|w| html! {
                <div onclick={copy.clone()}>{ components::common::warning_banner(w, view == View::Settings && w.profile.as_ref().is_none_or(|p| *p == editing.0)) }</div>
            }) }
            <div hidden={view != View::Settings}>
                <components::profiles::ProfileBar key={[editing.0.as_str(), "-", &bar.to_string()].concat()} profiles={profiles.clone()}
                    current={AttrValue::from(editing.0.clone())} on_switch={request_switch} {on_deleted}
                    on_changed={refresh.clone()} on_unauthorized={p.on_unauthorized.clone()}
                    provider={editing.1.settings.as_ref().map(|s| s.provider).unwrap_or_default()}
                    transport={editing.1.settings.as_ref().map(|s| s.transport).unwrap_or_default()} />
                <SettingsForm key={[editing.0.as_str(), "-", &editing.2.to_string()].concat()}
                    initial={editing.1.clone()} on_unauthorized={p.on_unauthorized.clone()}
                    on_saved={on_saved} {on_dirty} />
                // Webhooks hear from every profile: outside the form, which is
                // remade for each, so a secret shown once stays on a switch.
                <components::webhooks::Webhooks on_unauthorized={p.on_unauthorized.clone()} />
                if let Some(target) = (*leaving.about).clone() {
                    { switch_prompt(&leaving, (&profiles, &editing.0, *dirty.borrow()), &target, switch.clone(), bar.clone()) }
                }
            </div>
            if signing_out.about.is_some() {
                { sign_out_prompt(&signing_out, (&profiles, &editing.0, *dirty.borrow()), &hooks::before_unload::unsaved(), sign_out_now) }
            }
            if *apps_opened.borrow() {
                <div hidden={view != View::Apps}>
                    <Apps on_unauthorized={p.on_unauthorized.clone()} profiles={profiles.clone()}
                        shown={view == View::Apps} />
                </div>
            }
            if view == View::Activity {
                <Activity queue={(*queue).clone()} on_unauthorized={p.on_unauthorized.clone()}
                    on_changed={refresh} />
            }
        </main>
        </>
    }
}
