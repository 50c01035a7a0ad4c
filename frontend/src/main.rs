//! Entry point of the settings page.
fn main() {
    yew::Renderer::<mailroom_frontend::App>::new().render();
}
