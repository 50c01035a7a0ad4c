//! Read-only tables as HTML text instead of virtual DOM: a table of fifty
//! rows costs a few string pushes instead of the code of thousands of nodes,
//! which keeps the bundle small. Every piece of data goes through [`esc`];
//! only the fixed tags and attribute names here are markup. Yew replaces the
//! HTML only when the text changes; buttons inside are handled by one
//! delegated click listener that reads their `data-` attributes.

use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use yew::{AttrValue, Html};

/// Text made safe for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A count with its thousands grouped, as the page writes numbers: `10,000`.
pub use mailroom_shared::group_thousands as count;

/// HTML being written.
#[derive(Default)]
pub struct Markup(String);

impl Markup {
    /// `<tag a="v" …>`; values are escaped.
    pub fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        for (name, value) in attrs {
            self.0.push(' ');
            self.0.push_str(name);
            self.0.push_str("=\"");
            self.0.push_str(&esc(value));
            self.0.push('"');
        }
        self.0.push('>');
        self
    }

    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// Escaped text.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.0.push_str(&esc(text));
        self
    }

    /// `<tag attrs>text</tag>`.
    pub fn el(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(tag, attrs).text(text).close(tag)
    }

    /// A status word on a badge: the word carries the meaning, the colour repeats it.
    pub fn badge(&mut self, status: &str) -> &mut Self {
        self.el("span", &[("class", &["badge ", status].concat())], status)
    }

    /// A `<time>` in the reader's own zone and format.
    pub fn time(&mut self, rfc3339: &str) -> &mut Self {
        self.el("time", &[("datetime", rfc3339)], &local_time(rfc3339))
    }

    /// A table head of column names.
    pub fn head(&mut self, columns: &[&str]) -> &mut Self {
        self.open("thead", &[]).open("tr", &[]);
        for c in columns {
            self.el("th", &[("scope", "col")], c);
        }
        self.close("tr").close("thead")
    }

    /// The HTML for Yew.
    pub fn html(self) -> Html {
        Html::from_html_unchecked(AttrValue::from(self.0))
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A command line with a button that copies it (handled by [`copy_click`]),
/// labelled "Copy the `what`", or after the command's first word when `what` is empty.
pub fn command(m: &mut Markup, cmd: &str, what: &str) {
    let what = if what.is_empty() {
        [
            cmd.split_whitespace().next().unwrap_or("command"),
            " command",
        ]
        .concat()
    } else {
        what.to_string()
    };
    m.open("div", &[("class", "command")])
        .el("code", &[], cmd)
        .el(
            "button",
            &[
                ("type", "button"),
                ("class", "copy"),
                ("data-act", "copy"),
                ("data-id", cmd),
                ("aria-label", &["Copy the ", &what].concat()),
            ],
            "Copy",
        )
        .close("div");
}

/// A [`command`] as HTML with its own copy listener, for yew views.
pub fn command_html(cmd: &str) -> Html {
    let mut m = Markup::default();
    command(&mut m, cmd, "");
    let onclick = yew::Callback::from(|e: web_sys::MouseEvent| {
        copy_click(&e);
    });
    yew::html! { <div {onclick}>{ m.html() }</div> }
}

/// Handles a click on a copy button of [`command`]: copies, and says so.
/// Returns the click's `(action, id)` when it was something else.
pub fn copy_click(event: &web_sys::MouseEvent) -> Option<(String, String)> {
    let (act, id) = clicked(event)?;
    if act != "copy" {
        return Some((act, id));
    }
    if let Some(w) = web_sys::window() {
        let _ = w.navigator().clipboard().write_text(&id);
    }
    if let Some(button) = event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|e| e.closest("button").ok().flatten())
    {
        button.set_text_content(Some("Copied"));
    }
    None
}

/// A hint: prose, with each `backticked` command on its own line with a copy button.
/// The commas and stops between commands (`` `a`, `b`. ``) are left out: each
/// command is a line of its own, and they stood alone between them.
pub fn hint(m: &mut Markup, hint: &str) {
    m.open("div", &[("class", "hint")]);
    for (i, part) in hint.split('`').enumerate() {
        if part.trim().trim_matches([',', ';', '.']).trim().is_empty() {
            continue;
        }
        if i % 2 == 1 {
            command(m, part, "");
        } else {
            m.el("span", &[], part);
        }
    }
    m.close("div");
}

/// "Stage: auth · Code: 5.7.139", as the test dialog shows it.
pub fn stage_line(m: &mut Markup, stage: &str, code: &str) {
    m.open("p", &[("class", "stage")]);
    if !stage.is_empty() {
        m.text("Stage: ").el("strong", &[], stage);
    }
    if !code.is_empty() {
        m.text(" · Code: ").el("strong", &[("class", "code")], code);
    }
    m.close("p");
}

/// The `data-` attribute `name` of the button a click landed in, with the
/// button's `data-id`: `(action, id)`.
pub fn clicked(event: &web_sys::MouseEvent) -> Option<(String, String)> {
    let target: web_sys::Element = event.target()?.dyn_into().ok()?;
    let button = target.closest("button[data-act]").ok()??;
    Some((
        button.get_attribute("data-act")?,
        button.get_attribute("data-id").unwrap_or_default(),
    ))
}

/// Reads JSON as the browser parsed it, without a typed decoder per view:
/// `get(&v, "subject")`.
pub fn get(value: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A string field, or "" when it is missing or null.
pub fn text(value: &JsValue, key: &str) -> String {
    get(value, key).as_string().unwrap_or_default()
}

/// A number field as text ("" when missing).
pub fn number(value: &JsValue, key: &str) -> String {
    get(value, key)
        .as_f64()
        .map(|n| (n as u64).to_string())
        .unwrap_or_default()
}

/// An array field's items (none when missing).
pub fn items(value: &JsValue, key: &str) -> Vec<JsValue> {
    let v = get(value, key);
    if js_sys::Array::is_array(&v) {
        js_sys::Array::from(&v).to_vec()
    } else {
        Vec::new()
    }
}

/// An RFC 3339 time in the reader's own zone and format; the text itself
/// when the browser cannot read it.
pub fn local_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return rfc3339.to_string();
    }
    String::from(date.to_locale_string("default", &JsValue::UNDEFINED))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_by_thousands() {
        let cases = [
            (0, "0"),
            (7, "7"),
            (999, "999"),
            (1_000, "1,000"),
            (10_000, "10,000"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ];
        for (n, want) in cases {
            assert_eq!(super::count(n), want);
        }
    }
}
