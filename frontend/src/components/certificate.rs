//! The certificate panel (docs/API.md §13): generate one on the server or
//! bring your own, see the active and pending ones with their thumbprints
//! and dates, download the public part for Entra, discard a pending one.

use gloo_net::http::Method;
use mailroom_shared::api::{CertInfo, Certificates, NewCertificate};
use mailroom_shared::validate::{pem_mistake, PemBox};
use mailroom_shared::FieldMessages;
use yew::prelude::*;

use super::confirm::{confirm, ConfirmProps};
use super::field::field_messages;
use crate::api::{self, ApiError};
use crate::markup::Markup;
use crate::state::{Action, FormState};

#[derive(Properties, PartialEq)]
pub struct CertificatePanelProps {
    /// The form (its certificates, and where the new listing goes).
    pub form: UseReducerHandle<FormState>,
    /// A call answered 401.
    #[prop_or_default]
    pub on_unauthorized: Callback<()>,
}

/// Reads the listing again into the form.
pub async fn reload(form: &UseReducerHandle<FormState>) -> Result<(), ApiError> {
    let certs: Certificates = api::typed(
        Method::GET,
        &api::profile_path("/certificate"),
        crate::read::certificates,
    )
    .await?;
    form.dispatch(Action::Certificates(certs));
    Ok(())
}

fn details(id: &str, title: &str, c: &CertInfo, which: &str) -> Html {
    let mut m = Markup::default();
    m.open("div", &[("class", "cert"), ("id", id)])
        .el("h3", &[], title)
        .open("dl", &[]);
    for (label, value) in [
        ("Subject", c.subject.as_str()),
        (
            "Thumbprint (SHA-1, as the portal shows it)",
            &c.thumbprint_sha1,
        ),
        ("SHA-256", &c.thumbprint_sha256),
    ] {
        m.el("dt", &[], label).open("dd", &[]);
        if label == "Subject" {
            m.text(value);
        } else {
            m.el("code", &[("class", "thumb")], value);
        }
        m.close("dd");
    }
    m.el("dt", &[], "Valid")
        .open("dd", &[])
        .time(&c.not_before)
        .text(" to ")
        .open("strong", &[])
        .time(&c.not_after)
        .close("strong")
        .close("dd")
        .el("dt", &[], "Key")
        .el(
            "dd",
            &[],
            if c.generated {
                "made by Mailroom; it never leaves this server"
            } else {
                "brought by you"
            },
        )
        .close("dl")
        .el(
            "a",
            &[
                ("class", "button"),
                (
                    "href",
                    &[
                        api::relative(&api::profile_path("/certificate.pem?which=")),
                        which,
                    ]
                    .concat(),
                ),
                ("download", ""),
            ],
            "Download the public certificate",
        )
        .close("div");
    m.html()
}

/// The panel under "Certificate" in the Entra section.
#[function_component(CertificatePanel)]
pub fn certificate_panel(p: &CertificatePanelProps) -> Html {
    let own = use_state(|| false);
    let cert_pem = use_state(String::new);
    let key_pem = use_state(String::new);
    let busy = use_state(|| false);
    // Discard asks first: the new key is deleted, and with it whatever was
    // uploaded of it to Entra.
    let discarding = crate::hooks::use_question::<()>("cert-discard-prompt");
    let errors = use_state(FieldMessages::new);
    let error = use_state(|| None::<String>);
    let post = {
        let (form, busy, errors, error, own, unauthorized) = (
            p.form.clone(),
            busy.clone(),
            errors.clone(),
            error.clone(),
            own.clone(),
            p.on_unauthorized.clone(),
        );
        move |body: NewCertificate| {
            let (form, busy, errors, error, own, unauthorized) = (
                form.clone(),
                busy.clone(),
                errors.clone(),
                error.clone(),
                own.clone(),
                unauthorized.clone(),
            );
            busy.set(true);
            crate::spawn(async move {
                let sent = api::fetch(
                    Method::POST,
                    &api::profile_path("/certificate"),
                    api::encode(&body),
                )
                .await;
                let result = match sent {
                    Ok(_) => reload(&form).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        errors.set(FieldMessages::new());
                        error.set(None);
                        own.set(false);
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(ApiError::Invalid(m, e)) => {
                        errors.set(e);
                        error.set(Some(m));
                    }
                    Err(e) => error.set(Some(e.message().to_string())),
                }
                busy.set(false);
            });
        }
    };
    let generate = {
        let post = post.clone();
        Callback::from(move |_: MouseEvent| post(NewCertificate::default()))
    };
    let upload = {
        let (post, cert_pem, key_pem) = (post.clone(), cert_pem.clone(), key_pem.clone());
        Callback::from(move |_: MouseEvent| {
            post(NewCertificate {
                certificate_pem: Some((*cert_pem).clone()),
                private_key_pem: Some((*key_pem).clone()),
            })
        })
    };
    let discard = {
        let (form, error, unauthorized) =
            (p.form.clone(), error.clone(), p.on_unauthorized.clone());
        Callback::from(move |()| {
            let (form, error, unauthorized) = (form.clone(), error.clone(), unauthorized.clone());
            crate::spawn(async move {
                let r = api::fetch(
                    Method::DELETE,
                    &api::profile_path("/certificate?which=pending"),
                    None,
                )
                .await;
                match r.map(|_| ()) {
                    Ok(()) => {
                        if let Err(e) = reload(&form).await {
                            error.set(Some(e.message().to_string()));
                        }
                    }
                    Err(ApiError::Unauthorized(_)) => unauthorized.emit(()),
                    Err(e) => error.set(Some(e.message().to_string())),
                }
            });
        })
    };
    let toggle_own = {
        let own = own.clone();
        Callback::from(move |_: MouseEvent| own.set(!*own))
    };
    let certs = &p.form.certs;
    // A PEM text box, with the server's message about it.
    let pem_area = |id: &'static str,
                    label: &'static str,
                    placeholder: &'static str,
                    state: &UseStateHandle<String>| {
        let state2 = state.clone();
        let oninput = Callback::from(move |e: InputEvent| {
            state2.set(
                e.target_unchecked_into::<web_sys::HtmlTextAreaElement>()
                    .value(),
            )
        });
        let mut said = errors.get(id).cloned().unwrap_or_default();
        // Another PEM block in this box, or an encrypted key, is named as it is pasted.
        let pem_box = if id == "certificate_pem" {
            PemBox::Certificate
        } else {
            PemBox::PrivateKey
        };
        if let Some(m) = pem_mistake(pem_box, state) {
            if !said.iter().any(|s| s.starts_with(m)) {
                said.insert(0, m.to_string());
            }
        }
        html! {
            <div class="field">
                <label for={id}>{ label }</label>
                <textarea id={id} rows="4" spellcheck="false" value={(**state).clone()} {oninput} {placeholder} />
                { field_messages(id, &said, &[]) }
            </div>
        }
    };
    if p.form.new_profile {
        return html! {
            <div class="cert-panel" id="cert-panel">
                <p class="help" id="cert-new-profile">{ mailroom_shared::validate::CERTIFICATE_AFTER_CREATE }</p>
            </div>
        };
    }
    html! {
        <div class="cert-panel" id="cert-panel">
            if let Some(a) = &certs.active {
                { details("cert-active", "Active certificate: delivery signs with it", a, "active") }
            }
            if let Some(pending) = &certs.pending {
                { details("cert-pending", "New certificate (pending)", pending, "pending") }
                <p class="notice" id="cert-pending-steps">{ "Upload it in Entra (App registrations › your app › Certificates & secrets › Certificates › Upload certificate), send a test email, then save: it becomes active only then, so delivery never switches to a certificate Entra does not know yet. Remove the old one from the app registration afterwards." }</p>
                <button type="button" class="link" id="cert-discard"
                    onclick={let d = discarding.about.clone(); Callback::from(move |_| d.set(Some(())))}>{ "Discard the new certificate" }</button>
            }
            if certs.active.is_none() && certs.pending.is_none() {
                <p class="help" id="cert-none">{ "No certificate yet. Microsoft recommends a certificate over a client secret: Mailroom makes the key, keeps it encrypted, and warns 30 days before it expires." }</p>
            }
            <div class="cert-actions">
                <button type="button" id="cert-generate" onclick={generate} disabled={*busy}>
                    { if certs.active.is_some() || certs.pending.is_some() { "Generate a new certificate" } else { "Generate a certificate" } }
                </button>
                <button type="button" class="secondary" id="cert-own" onclick={toggle_own} aria-expanded={if *own { "true" } else { "false" }}>{ "Use my own" }</button>
            </div>
            if *own {
                { pem_area("certificate_pem", "Certificate (PEM)", "-----BEGIN CERTIFICATE-----", &cert_pem) }
                { pem_area("private_key_pem", "Private key (PEM, RSA 2048 bits or more, not encrypted)", "-----BEGIN PRIVATE KEY-----", &key_pem) }
                <button type="button" id="cert-upload" onclick={upload} disabled={*busy}>{ "Check and keep it" }</button>
            }
            if let Some(m) = &*error {
                <p class="error" id="cert-error" role="alert">{ m.clone() }</p>
            }
            if discarding.about.is_some() && certs.pending.is_some() {
                { confirm(ConfirmProps {
                    id: "cert-discard-prompt",
                    dialog: discarding.dialog.clone(),
                    title: "Discard the new certificate?".into(),
                    children: html! { <p>{ "Its private key is deleted, so a copy already uploaded in Entra can never sign in: remove it there too. The active certificate (or secret) stays in use." }</p> },
                    default_label: "Keep it".into(),
                    on_default: discarding.close.clone(),
                    other_label: "Discard it".into(),
                    on_other: { let close = discarding.close.clone(); Callback::from(move |()| { close.emit(()); discard.emit(()); }) },
                    danger: true,
                    on_close: discarding.close.clone(),
                }) }
            }
        </div>
    }
}
