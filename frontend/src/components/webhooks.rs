//! The Webhooks panel (docs/API.md §14), under Settings: add a receiver
//! (URL, events, format) with its secret shown once, send a test, see the
//! recent deliveries and their answers, edit one in the same form (its
//! secret stays), give one a new secret (the old one signs beside it for a
//! day, or until *End old secret*), delete one. The list is written as
//! markup and its buttons share one click handler (a smaller bundle).

use gloo_net::http::Method;
use mailroom_shared::webhooks::{
    check_events, check_format, check_url, format_advice, Delivery, Format, NewWebhook, Webhook,
    WebhookChange, EVENTS,
};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::confirm::{confirm, ConfirmProps};
use super::field::field_messages;
use crate::api::{self, ApiError};
use crate::markup::{clicked, Markup};

#[derive(Properties, PartialEq)]
pub struct WebhooksProps {
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
}

/// What the panel shows under one webhook: the last test, its deliveries.
#[derive(Clone, PartialEq, Default)]
struct Extra {
    test: Option<(bool, String)>,
    deliveries: Option<Vec<Delivery>>,
}

fn list_markup(hooks: &[Webhook], extra: &std::collections::BTreeMap<String, Extra>) -> Html {
    let mut m = Markup::default();
    m.open("ul", &[("class", "webhook-list")]);
    for w in hooks {
        m.open("li", &[("class", "webhook"), ("data-id", &w.id)])
            .open("p", &[])
            .el("strong", &[], &w.url)
            .text(" · ")
            .text(w.format.id())
            .close("p")
            .open("p", &[("class", "help")])
            .text(&w.events.join(", "));
        match (&w.last_success_at, &w.last_failure_at) {
            (Some(ok), _) => {
                m.text(" · last answered ").time(ok);
            }
            (None, Some(bad)) => {
                m.text(" · failing since ").time(bad);
            }
            _ => {}
        }
        m.close("p");
        if let Some(until) = &w.old_secret_until {
            m.open("p", &[("class", "help old-secret")])
                .text("The old secret also signs each request until ")
                .time(until)
                .text(": once the receiver has the new one, end it and send a test.")
                .close("p");
        }
        for (act, label, class) in [
            ("test", "Send a test", "secondary webhook-test"),
            ("edit", "Edit", "secondary webhook-edit"),
            (
                "deliveries",
                "Recent deliveries",
                "secondary webhook-deliveries",
            ),
            ("secret", "New secret", "secondary webhook-new-secret"),
            (
                "end-old-secret",
                "End old secret",
                "secondary webhook-end-old-secret",
            ),
            ("delete", "Delete", "link webhook-delete"),
        ] {
            // A chat webhook is not signed: its URL is its credential.
            if act == "secret" && w.format != Format::Standard {
                continue;
            }
            if act == "end-old-secret" && w.old_secret_until.is_none() {
                continue;
            }
            m.el(
                "button",
                &[
                    ("type", "button"),
                    ("class", class),
                    ("data-act", act),
                    ("data-id", &w.id),
                ],
                label,
            );
        }
        let x = extra.get(&w.id).cloned().unwrap_or_default();
        if let Some((ok, message)) = &x.test {
            let class = if *ok {
                "webhook-result ok"
            } else {
                "webhook-result error"
            };
            m.el("p", &[("class", class), ("role", "status")], message);
        }
        match &x.deliveries {
            Some(list) if list.is_empty() => {
                m.el("p", &[("class", "help")], "No deliveries yet.");
            }
            Some(list) => {
                m.open("table", &[("class", "deliveries")])
                    .head(&["Event", "At", "Status", "Tries", "Last answer"])
                    .open("tbody", &[]);
                for d in list {
                    let answer = match (d.last_status, &d.last_error) {
                        (_, Some(e)) => e.clone(),
                        (Some(s), None) => ["HTTP ", &s.to_string()].concat(),
                        (None, None) => String::new(),
                    };
                    m.open("tr", &[])
                        .el("td", &[], &d.event)
                        .open("td", &[])
                        .time(&d.at)
                        .close("td")
                        .open("td", &[])
                        .badge(&d.status)
                        .close("td")
                        .el("td", &[], &d.attempts.to_string())
                        .el("td", &[], &answer)
                        .close("tr");
                }
                m.close("tbody").close("table");
            }
            None => {}
        }
        m.close("li");
    }
    m.close("ul");
    m.html()
}

/// The checked event boxes, read from the page at submit.
fn checked_events() -> Vec<String> {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return Vec::new();
    };
    EVENTS
        .iter()
        .filter(|(id, _)| {
            doc.get_element_by_id(&["webhook-event-", &id.replace('.', "-")].concat())
                .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
                .is_some_and(|i| i.checked())
        })
        .map(|(id, _)| id.to_string())
        .collect()
}

/// The panel's state, cloned into each handler at once.
#[derive(Clone)]
struct Panel {
    hooks: UseStateHandle<Vec<Webhook>>,
    extra: UseStateHandle<std::collections::BTreeMap<String, Extra>>,
    url: UseStateHandle<String>,
    format: UseStateHandle<Format>,
    tried: UseStateHandle<bool>,
    created: UseStateHandle<Option<(String, String)>>,
    /// For a secret shown after *New secret*: until when the old one signs.
    old_until: UseStateHandle<Option<String>>,
    error: UseStateHandle<Option<String>>,
    errors: UseStateHandle<mailroom_shared::FieldMessages>,
    /// The webhook the form edits (its secret stays), or none: a new one.
    editing: UseStateHandle<Option<String>>,
    /// What the last edit saved.
    saved: UseStateHandle<Option<String>>,
    /// The webhook whose Delete asks first: its secret goes with it.
    deleting: UseStateHandle<Option<String>>,
    /// The webhook whose New secret asks first.
    replacing: UseStateHandle<Option<String>>,
    /// The webhook whose End old secret asks first.
    ending: UseStateHandle<Option<String>>,
    unauthorized: Callback<()>,
}

impl Panel {
    /// Shows a failed call: sign-in again, or its message.
    fn failed(&self, e: ApiError) {
        match e {
            ApiError::Unauthorized(_) => self.unauthorized.emit(()),
            ApiError::Invalid(m, errors) => {
                self.errors.set(errors);
                self.error.set(Some(m));
            }
            e => self.error.set(Some(e.message().to_string())),
        }
    }

    /// A question's *yes*: the webhook it asked about (in `about`) gets
    /// the list's own action `act`, now asked, and the question goes.
    fn answered(&self, about: &UseStateHandle<Option<String>>, act: &'static str) -> Callback<()> {
        let (panel, about) = (self.clone(), about.clone());
        Callback::from(move |()| {
            if let Some(id) = (*about).clone() {
                about.set(None);
                panel.act(act.into(), id);
            }
        })
    }

    fn reload(&self) {
        let panel = self.clone();
        crate::spawn(async move {
            match api::typed(Method::GET, "/api/webhooks", crate::read::webhook_list).await {
                Ok(list) => panel.hooks.set(list),
                Err(e) => panel.failed(e),
            }
        });
    }

    /// Back to a new webhook's form.
    fn clear(&self) {
        self.tried.set(false);
        self.errors.set(Default::default());
        self.error.set(None);
        self.url.set(String::new());
        self.format.set(Format::Standard);
        self.editing.set(None);
    }

    /// The form filled in with a webhook's URL, events and format, to edit.
    fn edit(&self, id: &str) {
        let Some(w) = self.hooks.iter().find(|w| w.id == id) else {
            return;
        };
        self.clear();
        self.url.set(w.url.clone());
        self.format.set(w.format);
        self.editing.set(Some(w.id.clone()));
        self.saved.set(None);
        crate::hooks::focus::focus("webhook-url");
    }

    /// Checks the form, then adds the webhook (or saves the one edited).
    fn add(&self) {
        self.tried.set(true);
        let events = checked_events();
        let mut local = mailroom_shared::FieldMessages::new();
        if let Err(m) = check_url(&self.url) {
            local.push("url", m);
        }
        if let Err(m) = check_events(&events) {
            local.push("events", m);
        }
        if let Err(m) = check_format(&self.url, *self.format) {
            local.push("format", m);
        }
        if !local.is_empty() {
            self.errors.set(local);
            return;
        }
        let body = NewWebhook {
            url: self.url.trim().to_string(),
            events,
            format: *self.format,
        };
        let panel = self.clone();
        if let Some(id) = (*self.editing).clone() {
            let change = WebhookChange {
                url: Some(body.url),
                events: Some(body.events),
                format: Some(body.format),
            };
            crate::spawn(async move {
                let path = ["/api/webhooks/", &id].concat();
                match api::json_body(Method::PATCH, &path, api::encode(&change)).await {
                    Ok(_) => {
                        panel.clear();
                        // Its last test and deliveries were of the webhook
                        // before the change (another URL, perhaps).
                        let mut extra = (*panel.extra).clone();
                        extra.remove(&id);
                        panel.extra.set(extra);
                        panel.saved.set(Some(
                            [
                                "Webhook ",
                                &id,
                                " is saved; its signing secret stays the same.",
                            ]
                            .concat(),
                        ));
                        panel.reload();
                    }
                    Err(e) => panel.failed(e),
                }
            });
            return;
        }
        crate::spawn(async move {
            match api::json_body(Method::POST, "/api/webhooks", api::encode(&body)).await {
                Ok(v) => {
                    panel.created.set(crate::read::webhook_created(&v));
                    panel.old_until.set(None);
                    panel.tried.set(false);
                    panel.errors.set(Default::default());
                    panel.error.set(None);
                    panel.url.set(String::new());
                    panel.reload();
                }
                Err(e) => panel.failed(e),
            }
        });
    }

    /// Test, deliveries, edit or delete (which asks first; `remove` is
    /// the answer), for one webhook.
    fn act(&self, act: String, id: String) {
        match act.as_str() {
            "edit" => return self.edit(&id),
            "delete" => return self.deleting.set(Some(id)),
            // A secret shown once is not replaced by another before it is
            // said copied.
            "secret" if self.created.is_some() => {
                self.error.set(Some("Copy the signing secret shown above first, then choose “I have copied the secret”: it is shown only once.".into()));
                crate::hooks::focus::focus("webhook-secret-done");
                return;
            }
            "secret" => return self.replacing.set(Some(id)),
            "end-old-secret" => return self.ending.set(Some(id)),
            _ => {}
        }
        let panel = self.clone();
        crate::spawn(async move {
            let path = ["/api/webhooks/", &id].concat();
            let mut next = panel.extra.get(&id).cloned().unwrap_or_default();
            let done = match act.as_str() {
                "test" => api::json(Method::POST, &[path.as_str(), "/test"].concat())
                    .await
                    .map(|v| next.test = crate::read::webhook_test(&v)),
                "new-secret" => api::json(Method::POST, &[path.as_str(), "/secret"].concat())
                    .await
                    .map(|v| {
                        match crate::read::webhook_secret_replaced(&v) {
                            Some((id, secret, until)) => {
                                panel.created.set(Some((id, secret)));
                                panel.old_until.set(Some(until));
                                panel.error.set(None);
                                // An earlier edit's "its secret stays the same" no longer holds.
                                panel.saved.set(None);
                                // The list says until when, with End old secret.
                                panel.reload();
                            }
                            // The server made the secret: say so, never nothing.
                            None => panel.error.set(Some("The server's answer to New secret was not understood, so its new secret cannot be shown. Reload the page (the server may be newer than it) and give the webhook a new secret again.".into())),
                        }
                    }),
                "end-old" => api::fetch(
                    Method::DELETE,
                    &[path.as_str(), "/old-secret"].concat(),
                    None,
                )
                .await
                .map(|_| {
                    // A test passed while both signed says nothing of the
                    // new secret alone: it goes, for one sent now.
                    next.test = None;
                    panel.saved.set(Some(
                        [
                            "Webhook ",
                            &id,
                            " now signs with its new secret only. Send a test to check that the receiver takes it.",
                        ]
                        .concat(),
                    ));
                    panel.reload();
                }),
                "deliveries" => api::typed(
                    Method::GET,
                    &[path.as_str(), "/deliveries"].concat(),
                    crate::read::delivery_list,
                )
                .await
                .map(|list| next.deliveries = Some(list)),
                // "remove"
                _ => api::fetch(Method::DELETE, &path, None).await.map(|_| {
                    // The form no longer edits a webhook that is gone.
                    if panel.editing.as_deref() == Some(id.as_str()) {
                        panel.clear();
                    }
                    panel.reload();
                }),
            };
            match done {
                Ok(()) => {
                    let mut all = (*panel.extra).clone();
                    all.insert(id, next);
                    panel.extra.set(all);
                }
                Err(e) => panel.failed(e),
            }
        });
    }
}

/// A new webhook's secret with a copy button (named for what it copies).
fn secret_row(secret: &str) -> Html {
    let mut m = crate::markup::Markup::default();
    crate::markup::command(&mut m, secret, "signing secret");
    let onclick = Callback::from(|e: MouseEvent| {
        crate::markup::copy_click(&e);
    });
    html! { <div class="secret" {onclick}>{ m.html() }</div> }
}

/// The panel.
#[function_component(Webhooks)]
pub fn webhooks(p: &WebhooksProps) -> Html {
    let question = crate::hooks::use_question::<String>("webhook-delete-prompt");
    let replace_question = crate::hooks::use_question::<String>("webhook-secret-prompt");
    let end_question = crate::hooks::use_question::<String>("webhook-end-old-secret-prompt");
    let panel = Panel {
        hooks: use_state(Vec::new),
        extra: use_state(Default::default),
        url: use_state(String::new),
        format: use_state(|| Format::Standard),
        tried: use_state(|| false),
        created: use_state(|| None),
        old_until: use_state(|| None),
        error: use_state(|| None),
        errors: use_state(Default::default),
        editing: use_state(|| None),
        saved: use_state(|| None),
        deleting: question.about.clone(),
        replacing: replace_question.about.clone(),
        ending: end_question.about.clone(),
        unauthorized: p.on_unauthorized.clone(),
    };
    {
        let panel = panel.clone();
        use_effect_with((), move |_| panel.reload());
    }
    let add = {
        let panel = panel.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            panel.add();
        })
    };
    let on_url = {
        let panel = panel.clone();
        Callback::from(move |e: InputEvent| {
            panel.url.set(
                e.target_unchecked_into::<web_sys::HtmlInputElement>()
                    .value(),
            );
            panel.errors.set(Default::default());
        })
    };
    let on_format = {
        let panel = panel.clone();
        Callback::from(move |e: Event| {
            let v = e
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            panel.format.set(Format::from_id(&v).unwrap_or_default());
        })
    };
    let cancel = {
        let panel = panel.clone();
        Callback::from(move |_: MouseEvent| panel.clear())
    };
    let delete = panel.answered(&panel.deleting, "remove");
    let replace = panel.answered(&panel.replacing, "new-secret");
    let end_old = panel.answered(&panel.ending, "end-old");
    let on_click = {
        let panel = panel.clone();
        Callback::from(move |e: MouseEvent| {
            if let Some((act, id)) = clicked(&e) {
                panel.act(act, id);
            }
        })
    };
    // A new secret is shown once: leaving the page while it shows asks
    // first, and it goes when said copied.
    crate::hooks::use_unsaved(
        crate::route::View::Settings.hash(),
        panel.created.as_ref().map(|(id, _)| {
            [
                "The signing secret of webhook ",
                id,
                " is shown only once, and it is not marked as copied.",
            ]
            .concat()
        }),
    );
    let secret_done = {
        let (created, error) = (panel.created.clone(), panel.error.clone());
        Callback::from(move |_: MouseEvent| {
            created.set(None);
            error.set(None);
            crate::hooks::focus::focus("webhook-url");
        })
    };
    let Panel {
        hooks,
        extra,
        url,
        format,
        tried,
        created,
        old_until,
        error,
        errors,
        editing,
        saved,
        deleting,
        replacing,
        ending,
        ..
    } = &panel;
    let url_error = check_url(url).err();
    let mut url_errors: Vec<String> = if **tried {
        url_error.into_iter().collect()
    } else {
        Vec::new()
    };
    url_errors.extend(errors.get("url").cloned().unwrap_or_default());
    url_errors.dedup();
    // As the URL is pasted: the format that URL refuses is named at once,
    // and goes when another is chosen.
    let format_errors: Vec<String> = check_format(url, **format).err().into_iter().collect();
    let format_advice: Vec<String> = format_advice(url, **format).into_iter().collect();
    // The events of the webhook edited, or a new one's defaults. The
    // fieldset names which, so the boxes are drawn again on a switch.
    let edited = editing
        .as_ref()
        .and_then(|id| hooks.iter().find(|w| &w.id == id));
    let mut form = Markup::default();
    form.open(
        "fieldset",
        &[
            ("id", "webhook-events"),
            ("data-for", edited.map_or("", |w| w.id.as_str())),
        ],
    )
    .el("legend", &[], "Events");
    for (i, (id, label)) in EVENTS.iter().enumerate() {
        let input = ["webhook-event-", &id.replace('.', "-")].concat();
        form.open("label", &[("class", "check"), ("for", &input)]);
        let checked = match edited {
            Some(w) => w.events.iter().any(|e| e == id),
            None => i < 3 || *id == "credential.expiring",
        };
        if checked {
            form.open(
                "input",
                &[("type", "checkbox"), ("id", &input), ("checked", "")],
            );
        } else {
            form.open("input", &[("type", "checkbox"), ("id", &input)]);
        }
        form.text(label).close("label");
    }
    form.close("fieldset");
    html! {
        <section class="webhooks" id="webhooks" aria-labelledby="webhooks-heading">
            <h2 id="webhooks-heading">{ "Alerts: webhooks" }</h2>
            <p class="help">{ "Hear about a pause, a failed message or an expiring credential of any profile in Teams, Slack or any receiver. Each event is stored before it is sent and retried for 13 hours; Teams and Slack get a burst of events as one post; a slow receiver never slows mail." }</p>
            if let Some((id, secret)) = &**created {
                <div class="banner success" id="webhook-secret" role="status">
                    if let Some(until) = &**old_until {
                        <p>{ "Webhook " }<code>{ id.clone() }</code>{ " has a new signing secret, shown only now. The old one still signs each request beside it until " }{ crate::markup::local_time(until) }{ ": give the receiver this one before then." }</p>
                    } else {
                        <p>{ "Webhook " }<code>{ id.clone() }</code>{ " added. Its signing secret, shown only now (check each request's webhook-signature with it):" }</p>
                    }
                    { secret_row(secret) }
                    <div class="actions">
                        <button type="button" id="webhook-secret-done" onclick={secret_done}>{ "I have copied the secret" }</button>
                    </div>
                </div>
            }
            if let Some(m) = &**saved {
                <p class="banner success" id="webhook-saved" role="status">{ m.clone() }</p>
            }
            <div onclick={on_click}>{ list_markup(hooks, extra) }</div>
            <form id="webhook-form" onsubmit={add} novalidate=true>
                if let Some(id) = &**editing {
                    <p class="help" id="webhook-editing">{ "Editing webhook " }<code>{ id.clone() }</code>{ ": its signing secret stays the same, so its receiver keeps checking the signatures." }</p>
                }
                <div class="field">
                    <label for="webhook-url">{ "Receiver URL" }</label>
                    <input id="webhook-url" type="url" value={(**url).clone()} oninput={on_url}
                        placeholder="https://contoso.webhook.office.com/…" autocomplete="off" />
                    <p class="help">{ "https, or http to this machine only. Teams: a Workflows “post to a channel when a webhook request is received” URL; Slack: an incoming webhook URL." }</p>
                    { field_messages("webhook-url", &url_errors, &[]) }
                </div>
                { form.html() }
                { field_messages("webhook-events", &errors.get("events").cloned().unwrap_or_default(), &[]) }
                <div class="field">
                    <label for="webhook-format">{ "Format" }</label>
                    <select id="webhook-format" onchange={on_format}>
                        { for [
                            (Format::Standard, "Standard Webhooks (signed JSON)"),
                            (Format::Teams, "Microsoft Teams (Adaptive Card)"),
                            (Format::Slack, "Slack (text)"),
                        ].into_iter().map(|(f, label)| html! {
                            <option value={f.id()} selected={**format == f}>{ label }</option>
                        }) }
                    </select>
                    { field_messages("webhook-format", &format_errors, &format_advice) }
                </div>
                if editing.is_some() {
                    <button type="submit" id="webhook-save">{ "Save webhook" }</button>
                    <button type="button" id="webhook-cancel" onclick={cancel}>{ "Cancel" }</button>
                } else {
                    <button type="submit" id="webhook-add">{ "Add webhook" }</button>
                }
            </form>
            if let Some(m) = &**error {
                <p class="error" id="webhook-error" role="alert">{ m.clone() }</p>
            }
            if let Some(w) = deleting.as_ref().and_then(|id| hooks.iter().find(|w| &w.id == id)) {
                { confirm(ConfirmProps {
                    id: "webhook-delete-prompt",
                    dialog: question.dialog.clone(),
                    title: ["Delete the webhook to ", &w.url, "?"].concat().into(),
                    children: html! { <p>{ "Its receiver gets no more events, and its signing secret goes: adding it again makes a new secret, which the receiver must then be given." }</p> },
                    default_label: "Keep it".into(),
                    on_default: question.close.clone(),
                    other_label: "Delete webhook".into(),
                    on_other: delete,
                    danger: true,
                    on_close: question.close.clone(),
                }) }
            }
            if let Some(w) = replacing.as_ref().and_then(|id| hooks.iter().find(|w| &w.id == id)) {
                { confirm(ConfirmProps {
                    id: "webhook-secret-prompt",
                    dialog: replace_question.dialog.clone(),
                    title: ["Give the webhook to ", &w.url, " a new signing secret?"].concat().into(),
                    children: html! { <p>{ "The new secret is shown once. For 24 hours each request is signed with the old secret as well, so the receiver goes on taking them until it is given the new one." }</p> },
                    default_label: "Keep the current secret".into(),
                    on_default: replace_question.close.clone(),
                    other_label: "Make a new secret".into(),
                    on_other: replace,
                    danger: false,
                    on_close: replace_question.close.clone(),
                }) }
            }
            if let Some((w, until)) = ending
                .as_ref()
                .and_then(|id| hooks.iter().find(|w| &w.id == id))
                .and_then(|w| Some((w, w.old_secret_until.as_deref()?)))
            {
                { confirm(ConfirmProps {
                    id: "webhook-end-old-secret-prompt",
                    dialog: end_question.dialog.clone(),
                    title: ["Stop signing with the old secret of ", &w.url, "?"].concat().into(),
                    children: html! { <p>{ [
                        "Otherwise it signs each request beside the new one until ",
                        &crate::markup::local_time(until),
                        ". From now on only the new secret signs: a receiver that still has the old one refuses the requests, so give it the new one first.",
                    ].concat() }</p> },
                    default_label: "Keep both until then".into(),
                    on_default: end_question.close.clone(),
                    other_label: "End old secret".into(),
                    on_other: end_old,
                    danger: true,
                    on_close: end_question.close.clone(),
                }) }
            }
        </section>
    }
}
