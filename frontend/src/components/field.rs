//! A labelled text input with help, warnings and errors tied to it for
//! assistive technology (`aria-invalid`, `aria-describedby`), and the same
//! messages for selects and radio groups ([`field_messages`]). Errors sit in a
//! polite live region that is always in the page, so a screen reader reads a
//! new message once typing pauses, instead of an alert on every keystroke.

use web_sys::HtmlInputElement;
use yew::prelude::*;

/// What one text field shows.
pub struct TextFieldProps {
    /// The input's id and the SETTINGS field name.
    pub id: AttrValue,
    /// The label.
    pub label: AttrValue,
    /// The value.
    pub value: AttrValue,
    /// One line saying where to find the value.
    pub help: Option<AttrValue>,
    /// Shown inside the empty input.
    pub placeholder: Option<AttrValue>,
    /// `text`, `email`, `password`…
    pub input_type: AttrValue,
    /// Errors to show.
    pub errors: Vec<String>,
    /// Warnings to show.
    pub warnings: Vec<String>,
    /// Autocomplete hint.
    pub autocomplete: AttrValue,
    /// Input mode for mobile keyboards.
    pub inputmode: Option<AttrValue>,
    /// Called with the new value on every keystroke.
    pub on_input: Callback<String>,
    /// Called when the field loses focus.
    pub on_blur: Callback<()>,
    /// Extra content after the input (a show/hide button).
    pub children: Html,
}

impl Default for TextFieldProps {
    fn default() -> Self {
        TextFieldProps {
            id: AttrValue::default(),
            label: AttrValue::default(),
            value: AttrValue::default(),
            help: None,
            placeholder: None,
            input_type: AttrValue::Static("text"),
            errors: Vec::new(),
            warnings: Vec::new(),
            autocomplete: AttrValue::Static("off"),
            inputmode: None,
            on_input: Callback::noop(),
            on_blur: Callback::noop(),
            children: Html::default(),
        }
    }
}

/// The ids that describe a control: its help, and its errors and warnings
/// when there are any; `None` when nothing does.
pub fn described_by(id: &str, help: bool, errors: bool, warnings: bool) -> Option<String> {
    let parts: Vec<String> = [(help, "help"), (errors, "error"), (warnings, "warning")]
        .iter()
        .filter(|(present, _)| *present)
        .map(|(_, kind)| format!("{id}-{kind}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A control's errors (in an always-present polite live region) and warnings.
/// A plain view function, not a component: it keeps the bundle small.
pub fn field_messages(id: &str, errors: &[String], warnings: &[String]) -> Html {
    html! {
        <>
            <div id={format!("{id}-error")} class={classes!((!errors.is_empty()).then_some("error"))} aria-live="polite">
                { for errors.iter().map(|e| html! { <p>{ e.clone() }</p> }) }
            </div>
            if !warnings.is_empty() {
                <div class="warning" id={format!("{id}-warning")}>
                    { for warnings.iter().map(|w| html! { <p>{ w.clone() }</p> }) }
                </div>
            }
        </>
    }
}

/// One form field (a view function, not a component: smaller).
pub fn text_field(props: TextFieldProps) -> Html {
    let id = props.id.to_string();
    let help_id = format!("{id}-help");
    let described = described_by(
        &id,
        props.help.is_some(),
        !props.errors.is_empty(),
        !props.warnings.is_empty(),
    );
    let oninput = {
        let cb = props.on_input.clone();
        Callback::from(move |e: InputEvent| {
            cb.emit(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let onblur = {
        let cb = props.on_blur.clone();
        Callback::from(move |_: FocusEvent| cb.emit(()))
    };
    let invalid = !props.errors.is_empty();
    html! {
        <div class={classes!("field", invalid.then_some("invalid"))}>
            <label for={id.clone()}>{ props.label.clone() }</label>
            <div class="input-row">
                <input
                    id={id.clone()}
                    name={id.clone()}
                    type={props.input_type.clone()}
                    value={props.value.clone()}
                    placeholder={props.placeholder.clone()}
                    autocomplete={props.autocomplete.clone()}
                    inputmode={props.inputmode.clone()}
                    spellcheck="false"
                    aria-invalid={if invalid { "true" } else { "false" }}
                    aria-describedby={described}
                    {oninput}
                    {onblur}
                />
                { props.children.clone() }
            </div>
            if let Some(help) = &props.help {
                <p class="help" id={help_id}>{ help.clone() }</p>
            }
            { field_messages(&props.id, &props.errors, &props.warnings) }
        </div>
    }
}
