//! `use_before_unload`: asks before the page is left while anything on it
//! would be lost (the settings form's unsaved changes); `use_unsaved` does
//! the same and also says what, for the question before signing out (a
//! new app's key or a webhook's secret not yet marked as copied, typing).

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
    /// What each [`use_unsaved`] caller would lose: its number, the address
    /// of the view that shows it, and what.
    static LOST: RefCell<Vec<(u32, &'static str, String)>> = const { RefCell::new(Vec::new()) };
    /// The next caller's number.
    static NEXT: Cell<u32> = const { Cell::new(0) };
}

/// While `lost` says what would be lost, leaving the page asks first, and
/// [`unsaved`] lists it with `view`, the address of the view showing it.
#[hook]
pub fn use_unsaved(view: &'static str, lost: Option<String>) {
    let id = *use_state(|| {
        NEXT.with(|n| {
            n.set(n.get() + 1);
            n.get()
        })
    });
    use_effect_with(lost, move |lost| {
        let held = lost.is_some();
        if let Some(what) = lost {
            LOST.with(|l| l.borrow_mut().push((id, view, what.clone())));
            hold(true);
        }
        move || {
            if held {
                LOST.with(|l| l.borrow_mut().retain(|(i, ..)| *i != id));
                hold(false);
            }
        }
    });
}

/// What would be lost now, each with the address of its view, first
/// held first.
pub fn unsaved() -> Vec<(&'static str, String)> {
    LOST.with(|l| l.borrow().iter().map(|(_, v, w)| (*v, w.clone())).collect())
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
