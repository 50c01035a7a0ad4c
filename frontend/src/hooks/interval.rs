//! `use_interval`: calls back every few seconds while the component is shown.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// Calls `tick` every `ms` milliseconds until the component goes away. The
/// newest `tick` is used, so it may capture the latest state.
#[hook]
pub fn use_interval(ms: i32, tick: Callback<()>) {
    let latest = use_mut_ref(|| tick.clone());
    *latest.borrow_mut() = tick;
    use_effect_with(ms, move |&ms| {
        let listener = Closure::<dyn Fn()>::new(move || latest.borrow().emit(()));
        let window = web_sys::window();
        let id = window.as_ref().and_then(|w| {
            w.set_interval_with_callback_and_timeout_and_arguments_0(
                listener.as_ref().unchecked_ref(),
                ms,
            )
            .ok()
        });
        move || {
            if let (Some(w), Some(id)) = (window, id) {
                w.clear_interval_with_handle(id);
            }
            drop(listener);
        }
    });
}
