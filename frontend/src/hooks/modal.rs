//! `use_modal`: shows a native `<dialog>` with `showModal()` (the browser traps
//! the focus and makes the page behind it inert), focuses an element in it,
//! and gives the focus back to whatever opened it when it goes.

use wasm_bindgen::JsCast;
use yew::prelude::*;

/// While `open`, shows `dialog` as a modal, focusing the element `focus_id`;
/// when it closes (or the caller unmounts), gives the focus back.
#[hook]
pub fn use_modal(open: bool, dialog: NodeRef, focus_id: AttrValue) {
    use_effect_with(open, move |open| {
        let open = *open;
        let opener = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element());
        if open {
            if let Some(d) = dialog.cast::<web_sys::HtmlDialogElement>() {
                if !d.open() {
                    let _ = d.show_modal();
                }
            }
            super::focus::focus(&focus_id);
        }
        move || {
            if !open {
                return;
            }
            // Close first: while the dialog is modal, the page is inert and
            // cannot take the focus.
            if let Some(d) = dialog.cast::<web_sys::HtmlDialogElement>() {
                d.close();
            }
            if let Some(el) = opener.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
                let _ = el.focus();
            }
        }
    });
}

/// A question a confirm dialog asks (`components::confirm`): what it is
/// about while it is open, the dialog it is asked in (shown modal, its safe
/// answer focused), and the callback that closes it unanswered.
pub struct Question<T: 'static> {
    /// What the open question is about; `None` while closed.
    pub about: UseStateHandle<Option<T>>,
    /// The `<dialog>`, for `ConfirmProps::dialog`.
    pub dialog: NodeRef,
    /// Closes it (the safe answer, Escape).
    pub close: Callback<()>,
}

/// A question for the confirm dialog with id `id`: every destructive
/// button of the page asks first through one of these.
#[hook]
pub fn use_question<T: 'static>(id: &'static str) -> Question<T> {
    let about = use_state(|| None::<T>);
    let dialog = use_node_ref();
    use_modal(
        about.is_some(),
        dialog.clone(),
        crate::components::confirm::default_id(id),
    );
    let close = {
        let about = about.clone();
        Callback::from(move |()| about.set(None))
    };
    Question {
        about,
        dialog,
        close,
    }
}
