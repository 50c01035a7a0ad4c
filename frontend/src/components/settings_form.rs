//! The Settings view: the banner, the form built from its sections, the
//! setup checklist, the test dialog, the prompt before saving untested
//! values, and the history of saves.

use mailroom_shared::api::SettingsResponse;
use mailroom_shared::{AuthMethod, Provider, Settings};
use yew::prelude::*;

use super::certificate::CertificatePanel;
use super::checklist::{checklist, ChecklistProps};
use super::confirm::{confirm, default_id, ConfirmProps};
use super::history::{settings_history, use_history};
use super::sections::{
    actions, advanced_section, credentials_section, oauth_section, provider_section,
    sender_section, Section,
};
use super::test_dialog::{test_dialog, use_test_dialog, TestDialogProps};
use crate::hooks::{use_before_unload, use_focus_request, use_save, Banner};
use crate::state::{Action, FormState};

#[derive(Properties, PartialEq)]
pub struct SettingsFormProps {
    /// What the server holds.
    pub initial: SettingsResponse,
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
    /// The settings were saved.
    #[prop_or_default]
    pub on_saved: Callback<()>,
    /// Whether the form holds unsaved changes, each time that changes.
    #[prop_or_default]
    pub on_dirty: Callback<bool>,
}

/// Whether Save must first ask: the values about to be saved are not the
/// ones that last passed a test.
pub fn needs_test_prompt(tested: Option<&Settings>, current: &Settings) -> bool {
    tested != Some(current)
}

/// The whole settings page below the header.
#[function_component(SettingsForm)]
pub fn settings_form(p: &SettingsFormProps) -> Html {
    let form = use_reducer(|| FormState {
        new_profile: crate::api::new_profile().is_some(),
        ..FormState::from_response(&p.initial)
    });
    let test = use_test_dialog();
    let advanced_open = use_state(|| form.settings.provider == Provider::Other);
    let show_secret = use_state(|| false);
    let focus = use_focus_request();
    // The settings of the last successful test, and the prompt before saving others.
    let tested = use_state(|| None::<Settings>);
    let asking = use_state(|| false);
    let prompt = use_node_ref();
    crate::hooks::use_modal(*asking, prompt.clone(), default_id("save-prompt"));
    let saves = use_state(|| 0u32);
    let on_saved = {
        let (saves, cb) = (saves.clone(), p.on_saved.clone());
        Callback::from(move |()| {
            saves.set(*saves + 1);
            cb.emit(());
        })
    };
    let save = use_save(form.clone(), p.on_unauthorized.clone(), on_saved);
    // A new profile has no history or certificates yet: the routes in use
    // are still the previous profile's, so nothing is read from them.
    let new_profile = form.new_profile;
    let history = use_history(*saves, new_profile, p.on_unauthorized.clone());
    // The certificates, read at first and after each save (a save may make
    // the pending one active).
    {
        let (form, unauthorized) = (form.clone(), p.on_unauthorized.clone());
        use_effect_with(*saves, move |_| {
            if new_profile {
                return;
            }
            crate::spawn(async move {
                if let Err(crate::api::ApiError::Unauthorized(_)) =
                    super::certificate::reload(&form).await
                {
                    unauthorized.emit(());
                }
            });
        });
    }
    use_before_unload(form.dirty);
    {
        let on_dirty = p.on_dirty.clone();
        use_effect_with(form.dirty, move |dirty| on_dirty.emit(*dirty));
    }

    // Validates everything; on errors, shows them and focuses the first
    // (opening the advanced section when it is there).
    let check_all = {
        let (form, advanced_open, focus) = (form.clone(), advanced_open.clone(), focus.clone());
        move || -> bool {
            form.dispatch(Action::Submit);
            let report = form.report();
            match form.first_invalid(&report) {
                Some(field) => {
                    if field.is_advanced() {
                        advanced_open.set(true);
                    }
                    focus.emit(field.as_str());
                    false
                }
                None => report.is_valid(),
            }
        }
    };
    let on_save = {
        let (check_all, save, form, tested, asking) = (
            check_all.clone(),
            save.save.clone(),
            form.clone(),
            tested.clone(),
            asking.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if check_all() {
                if needs_test_prompt(tested.as_ref(), &form.to_settings()) {
                    asking.set(true);
                } else {
                    save.emit(());
                }
            }
        })
    };
    let on_passed = {
        let tested = tested.clone();
        Callback::from(move |s: Settings| tested.set(Some(s)))
    };
    let open_test = {
        let (test, asking, form) = (test.clone(), asking.clone(), form.clone());
        Callback::from(move |()| {
            asking.set(false);
            if check_all() {
                test.show(form.settings.username.clone().unwrap_or_default());
            }
        })
    };
    let close_prompt = {
        let asking = asking.clone();
        Callback::from(move |()| asking.set(false))
    };
    let save_untested = {
        let (asking, save) = (asking.clone(), save.save.clone());
        Callback::from(move |()| {
            asking.set(false);
            save.emit(());
        })
    };
    let on_provider = {
        let advanced_open = advanced_open.clone();
        Callback::from(move |p: Provider| advanced_open.set(p == Provider::Other))
    };
    let on_advanced_toggle = {
        let advanced_open = advanced_open.clone();
        Callback::from(move |open: bool| advanced_open.set(open))
    };
    let reload = |keep: bool| {
        let reload = save.reload.clone();
        Callback::from(move |_: MouseEvent| reload.emit(keep))
    };
    let on_sp_input = {
        let form = form.clone();
        Callback::from(move |v: String| form.dispatch(Action::SpObjectId(v)))
    };

    let report = form.report();
    let sec = Section {
        form: &form,
        report: &report,
    };
    let s = &form.settings;
    let oauth = s.auth_method == AuthMethod::OAuth2ClientCredentials;
    let username = s.username.clone().unwrap_or_default();
    html! {
        <>
        <section class="view" aria-labelledby="settings-title">
            <h2 id="settings-title" class="view-title" tabindex="-1">{ "Email server" }</h2>
            if let Some(b) = &save.banner {
                { match b {
                    Banner::Success(m) => html! { <div class="banner success" role="status">{ m.clone() }</div> },
                    Banner::Error(m) => html! { <div class="banner error" role="alert">{ m.clone() }</div> },
                    Banner::Conflict(m) => html! {
                        <div class="banner conflict" role="alert">
                            <p>{ m.clone() }</p>
                            <button type="button" onclick={reload(true)}>{ "Keep my edits and use the latest version" }</button>
                            <button type="button" onclick={reload(false)}>{ "Discard my edits and load theirs" }</button>
                        </div>
                    },
                } }
            }
            <form id="settings" onsubmit={on_save} novalidate=true>
                { provider_section(&sec, on_provider) }
                if oauth {
                    { oauth_section(&sec, &show_secret, html! {
                        <CertificatePanel form={form.clone()} on_unauthorized={p.on_unauthorized.clone()} />
                    }) }
                } else if matches!(s.auth_method, AuthMethod::Username | AuthMethod::Password) {
                    { credentials_section(&sec) }
                }
                { sender_section(&sec) }
                { advanced_section(&sec, *advanced_open, on_advanced_toggle) }
                { actions(save.saving, open_test.clone()) }
            </form>

            if s.provider == Provider::Office365 && oauth {
                { checklist(&ChecklistProps {
                    client_id: s.client_id.clone().unwrap_or_default().into(),
                    username: username.clone().into(),
                    sender: s.sender_email.clone().into(),
                    needs_send_as: s.needs_send_as(),
                    sp_object_id: form.sp_object_id.clone().into(),
                    on_sp_input,
                    graph: s.transport == mailroom_shared::Transport::Graph,
                    certificate: s.uses_certificate(),
                }) }
            }
            { settings_history(&history) }
        </section>
        if *test.open {
            { test_dialog(&test, TestDialogProps {
                settings: form.to_settings(),
                on_unauthorized: p.on_unauthorized.clone(),
                on_passed,
                on_save: save.save.clone(),
            }) }
        }
        if *asking {
            { confirm(ConfirmProps {
                id: "save-prompt",
                dialog: prompt,
                title: "Save without a successful test?".into(),
                children: html! { <p>{ "These values have not passed a test yet. The setup guide says to send a test email before saving: a mistake found now cannot pause the delivery of real mail later." }</p> },
                default_label: "Send a test email first".into(),
                on_default: open_test.clone(),
                other_label: "Save without testing".into(),
                on_other: save_untested,
                danger: false,
                on_close: close_prompt,
            }) }
        }
        </>
    }
}
