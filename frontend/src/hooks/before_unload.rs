//! `use_before_unload`: asks before the page is left while anything on it
//! would be lost (the settings form's unsaved changes, a new app's key not
//! yet marked as copied).

use std::cell::{Cell, RefCell};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// The page's `onbeforeunload` handler.
type Handler = Closure<dyn Fn(web_sys::BeforeUnloadEvent)>;

thread_local! {
    /// How many mounted callers are active now.
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
    /// The handler while one is set.
    static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// While `active` (unsaved changes), leaving the page asks first. Callers
/// are counted: the question stays while any of them is active, and a
/// caller unmounted while active no longer counts.
#[hook]
pub fn use_before_unload(active: bool) {
    use_effect_with(active, move |active| {
        let held = *active;
        if held {
            hold(true);
        }
        move || {
            if held {
                hold(false);
            }
        }
    });
}

/// How many callers are active now: leaving the page asks while any is.
pub fn holders() -> u32 {
    ACTIVE.with(Cell::get)
}

fn hold(on: bool) {
    let count = ACTIVE.with(|a| {
        let n = if on {
            a.get() + 1
        } else {
            a.get().saturating_sub(1)
        };
        a.set(n);
        n
    });
    let Some(w) = web_sys::window() else { return };
    HANDLER.with(|h| {
        let mut h = h.borrow_mut();
        if count > 0 {
            let f = h.get_or_insert_with(|| {
                Closure::new(|e: web_sys::BeforeUnloadEvent| {
                    e.prevent_default();
                    e.set_return_value("You have unsaved changes.");
                })
            });
            w.set_onbeforeunload(Some(f.as_ref().unchecked_ref()));
        } else {
            w.set_onbeforeunload(None);
            h.take();
        }
    });
}
