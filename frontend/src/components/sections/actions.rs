//! The form's buttons: send a test email, save.

use yew::prelude::*;

/// Test and Save (Save submits the form); `saving` disables Save.
pub fn actions(saving: bool, on_test: Callback<()>) -> Html {
    let onclick = Callback::from(move |_: MouseEvent| on_test.emit(()));
    html! {
        <div class="actions">
            <button type="button" id="test-button" {onclick}>{ "Send test email" }</button>
            <button type="submit" id="save-button" class="primary" disabled={saving}>
                { if saving { "Saving…" } else { "Save" } }
            </button>
        </div>
    }
}
