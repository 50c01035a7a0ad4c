//! Helpers the browser test files share.

use web_sys::Element;

/// A new, empty root for one test's component. Earlier tests' roots go, so
/// ids stay unique; the runner's own nodes stay.
pub fn fresh_root() -> Element {
    let doc = web_sys::window().unwrap().document().unwrap();
    let body = doc.body().unwrap();
    let old = doc.query_selector_all(".test-root").unwrap();
    for i in 0..old.length() {
        if let Some(node) = old.item(i) {
            body.remove_child(&node).unwrap();
        }
    }
    let root = doc.create_element("div").unwrap();
    root.set_class_name("test-root");
    body.append_child(&root).unwrap();
    root
}
