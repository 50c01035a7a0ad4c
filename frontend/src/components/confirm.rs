//! A question in a modal dialog with two answers; the default one has the
//! focus, so Enter takes it, and Escape closes without either.
//!
//! A view function, not a component (one component type less in the bundle):
//! the caller holds the dialog's `NodeRef` and opens it with
//! `use_modal(open, dialog, "{id}-default")`.

use yew::prelude::*;

/// What the dialog asks and what its answers do.
pub struct ConfirmProps {
    /// The dialog's id; its buttons are `{id}-default` and `{id}-other`.
    pub id: &'static str,
    /// The caller's reference to the `<dialog>`, for `use_modal`.
    pub dialog: NodeRef,
    /// The question.
    pub title: AttrValue,
    /// What the answers mean.
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
    pub danger: bool,
    /// Escape, or the dialog closed otherwise.
    pub on_close: Callback<()>,
}

/// The id of the default answer's button, which `use_modal` focuses.
pub fn default_id(id: &str) -> AttrValue {
    AttrValue::from([id, "-default"].concat())
}

/// The dialog.
pub fn confirm(p: ConfirmProps) -> Html {
    let title_id = [p.id, "-title"].concat();
    let click = |cb: Callback<()>| Callback::from(move |_: MouseEvent| cb.emit(()));
    let oncancel = {
        let cb = p.on_close;
        Callback::from(move |e: Event| {
            e.prevent_default();
            cb.emit(());
        })
    };
    html! {
        <dialog class="dialog confirm" id={p.id} ref={p.dialog} role="alertdialog"
            aria-labelledby={title_id.clone()} {oncancel}>
            <h2 id={title_id}>{ p.title }</h2>
            { p.children }
            <div class="actions">
                <button type="button" id={[p.id, "-other"].concat()} class={if p.danger { "danger" } else { "" }}
                    onclick={click(p.on_other)}>{ p.other_label }</button>
                <button type="button" id={default_id(p.id)} class="primary"
                    onclick={click(p.on_default)}>{ p.default_label }</button>
            </div>
        </dialog>
    }
}
