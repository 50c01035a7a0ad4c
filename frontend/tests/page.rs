//! Component tests in headless Chromium.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn renders_heading() {
    let doc = web_sys::window().unwrap().document().unwrap();
    let root = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&root).unwrap();
    yew::Renderer::<mailroom_frontend::App>::with_root(root.clone()).render();
    yew::scheduler::flush().await;
    assert!(root.inner_html().contains("Email server"));
}
