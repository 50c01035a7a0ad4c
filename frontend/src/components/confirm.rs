//! A question in a modal dialog with two answers; the default one has the
//! focus, so Enter takes it, and Escape closes without either.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct ConfirmProps {
    /// The dialog's id; its buttons are `{id}-default` and `{id}-other`.
    pub id: AttrValue,
    /// The question.
    pub title: AttrValue,
    /// What the answers mean.
    #[prop_or_default]
    pub children: Html,
    /// The safe answer, focused.
    pub default_label: AttrValue,
    /// Taking the safe answer.
    pub on_default: Callback<()>,
    /// The other answer.
    pub other_label: AttrValue,
    /// Taking the other answer.
    pub on_other: Callback<()>,
    /// The other answer destroys something: shown in red.
    #[prop_or_default]
    pub danger: bool,
    /// Escape, or the dialog closed otherwise.
    pub on_close: Callback<()>,
}

/// The dialog.
#[function_component(Confirm)]
pub fn confirm(p: &ConfirmProps) -> Html {
    let dialog = use_node_ref();
    let mut default_id = p.id.to_string();
    default_id.push_str("-default");
    let mut other_id = p.id.to_string();
    other_id.push_str("-other");
    let mut title_id = p.id.to_string();
    title_id.push_str("-title");
    crate::hooks::use_modal(dialog.clone(), AttrValue::from(default_id.clone()));
    let click = |cb: &Callback<()>| {
        let cb = cb.clone();
        Callback::from(move |_: MouseEvent| cb.emit(()))
    };
    let oncancel = {
        let cb = p.on_close.clone();
        Callback::from(move |e: Event| {
            e.prevent_default();
            cb.emit(());
        })
    };
    html! {
        <dialog class="dialog confirm" id={p.id.clone()} ref={dialog} role="alertdialog"
            aria-labelledby={title_id.clone()} {oncancel}>
            <h2 id={title_id}>{ p.title.clone() }</h2>
            { p.children.clone() }
            <div class="actions">
                <button type="button" id={other_id} class={if p.danger { "danger" } else { "" }}
                    onclick={click(&p.on_other)}>{ p.other_label.clone() }</button>
                <button type="button" id={default_id} class="primary"
                    onclick={click(&p.on_default)}>{ p.default_label.clone() }</button>
            </div>
        </dialog>
    }
}
