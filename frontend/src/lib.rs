//! Mailroom's settings page.
use yew::prelude::*;

/// The whole page.
#[function_component(App)]
pub fn app() -> Html {
    html! { <main><h1>{ "Email server" }</h1></main> }
}
