//! `use_focus_request`: focus an element by id after the render that shows it.

use wasm_bindgen::JsCast;
use yew::prelude::*;

/// Focuses the element with this id, if there is one.
pub fn focus(id: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

/// A callback that asks for the focus to move to an element id. The move
/// happens after the next render, so an element that the same change makes
/// visible (an opened section) can take it; asking twice for the same id works.
#[hook]
pub fn use_focus_request() -> Callback<&'static str> {
    let target = use_state(|| None::<(&'static str, u32)>);
    use_effect_with(*target, |target| {
        if let Some((id, _)) = target {
            focus(id);
        }
    });
    Callback::from(move |id: &'static str| {
        let n = target.map(|(_, n)| n + 1).unwrap_or(0);
        target.set(Some((id, n)));
    })
}
