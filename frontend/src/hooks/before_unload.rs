//! `use_before_unload`: asks before the page is left while `active`.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// While `active` (unsaved changes), leaving the page asks first.
#[hook]
pub fn use_before_unload(active: bool) {
    let handler = use_mut_ref(|| None::<Closure<dyn Fn(web_sys::BeforeUnloadEvent)>>);
    use_effect_with(active, move |active| {
        if let Some(w) = web_sys::window() {
            if *active {
                let h = Closure::<dyn Fn(web_sys::BeforeUnloadEvent)>::new(
                    |e: web_sys::BeforeUnloadEvent| {
                        e.prevent_default();
                        e.set_return_value("You have unsaved changes.");
                    },
                );
                w.set_onbeforeunload(Some(h.as_ref().unchecked_ref()));
                *handler.borrow_mut() = Some(h);
            } else {
                w.set_onbeforeunload(None);
                handler.borrow_mut().take();
            }
        }
    });
}
