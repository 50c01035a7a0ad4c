//! `use_save`: saving the form (`PUT /api/settings`), the banner that reports
//! it, and reloading after a conflict, keeping or dropping the user's edits.

use gloo_net::http::Method;
use mailroom_shared::api::{PutSettings, SAVED_MESSAGE};
use yew::prelude::*;

use crate::api::{encode, json_body, settings, ApiError};
use crate::markup::{get, text};
use crate::state::{Action, FormState};

/// What the banner above the form says.
#[derive(Clone, PartialEq)]
pub enum Banner {
    /// Saved, or rebased.
    Success(String),
    /// The save failed.
    Error(String),
    /// Someone else saved in between.
    Conflict(String),
}

/// The save state and its actions.
pub struct UseSave {
    /// A save is in flight.
    pub saving: bool,
    /// What to show above the form.
    pub banner: Option<Banner>,
    /// Saves the form's current values.
    pub save: Callback<()>,
    /// Loads the latest saved version: `true` keeps the edits on top of it.
    pub reload: Callback<bool>,
}

/// Saving for `form`; a 401 goes to `on_unauthorized`, a save to `on_saved`.
#[hook]
pub fn use_save(
    form: UseReducerHandle<FormState>,
    on_unauthorized: Callback<()>,
    on_saved: Callback<()>,
) -> UseSave {
    let banner = use_state(|| None::<Banner>);
    let saving = use_state(|| false);
    let save = {
        let (form, banner, saving, unauthorized) = (
            form.clone(),
            banner.clone(),
            saving.clone(),
            on_unauthorized.clone(),
        );
        Callback::from(move |()| {
            let on_saved = on_saved.clone();
            if *saving {
                return;
            }
            let body = PutSettings {
                settings: form.to_settings(),
                version: form.version,
            };
            let (form, banner, saving, unauthorized) = (
                form.clone(),
                banner.clone(),
                saving.clone(),
                unauthorized.clone(),
            );
            saving.set(true);
            banner.set(None);
            crate::spawn(async move {
                // A new profile is added with its first settings (docs/API.md §15).
                let r = match crate::api::new_profile() {
                    Some(name) => {
                        let new = mailroom_shared::profiles::NewProfile {
                            name,
                            settings: body.settings,
                            limits: Default::default(),
                        };
                        let r = json_body(Method::POST, "/api/profiles", encode(&new)).await;
                        if let Ok(made) = &r {
                            crate::api::set_new_profile(None);
                            crate::api::set_profile(&text(made, "id"));
                        }
                        r
                    }
                    None => {
                        json_body(Method::PUT, &crate::api::profile_path(""), encode(&body)).await
                    }
                };
                saving.set(false);
                match r {
                    Ok(saved) => {
                        let version = get(&saved, "version").as_f64().unwrap_or(0.0) as u64;
                        form.dispatch(Action::Saved(version));
                        let message = text(&saved, "message");
                        let message = if message.is_empty() {
                            SAVED_MESSAGE
                        } else {
                            &message
                        };
                        banner.set(Some(Banner::Success(["Success: ", message].concat())));
                        on_saved.emit(());
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Conflict(m)) => banner.set(Some(Banner::Conflict(m))),
                    Err(ApiError::Invalid(m, errors)) => {
                        // The new profile's name is above the form: say so.
                        let m = match errors.get("name").and_then(|e| e.first()) {
                            Some(name) => ["The new profile's name: ", name].concat(),
                            None => m,
                        };
                        form.dispatch(Action::ServerErrors(errors));
                        banner.set(Some(Banner::Error(m)));
                    }
                    Err(e) => banner.set(Some(Banner::Error(e.message().to_string()))),
                }
            });
        })
    };
    let reload = {
        let (form, banner) = (form.clone(), banner.clone());
        Callback::from(move |keep_edits: bool| {
            let (form, banner, unauthorized) =
                (form.clone(), banner.clone(), on_unauthorized.clone());
            crate::spawn(async move {
                match settings().await {
                    Ok(r) if keep_edits => {
                        form.dispatch(Action::Rebase(r));
                        banner.set(Some(Banner::Success("Your edits are kept and now based on the latest saved version. Review them and save again.".into())));
                    }
                    Ok(r) => {
                        form.dispatch(Action::Load(r));
                        banner.set(None);
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => banner.set(Some(Banner::Error(e.message().to_string()))),
                }
            });
        })
    };
    UseSave {
        saving: *saving,
        banner: (*banner).clone(),
        save,
        reload,
    }
}
