//! The form's buttons: send a test email, save.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct ActionsProps {
    /// A save is in flight.
    pub saving: bool,
    /// "Send test email" was pressed.
    pub on_test: Callback<()>,
}

/// Test and Save (Save submits the form).
#[function_component(Actions)]
pub fn actions(p: &ActionsProps) -> Html {
    let onclick = {
        let cb = p.on_test.clone();
        Callback::from(move |_: MouseEvent| cb.emit(()))
    };
    html! {
        <div class="actions">
            <button type="button" id="test-button" {onclick}>{ "Send test email" }</button>
            <button type="submit" id="save-button" class="primary" disabled={p.saving}>
                { if p.saving { "Saving…" } else { "Save" } }
            </button>
        </div>
    }
}
