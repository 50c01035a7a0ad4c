//! The settings form's sections, one file each. They are view functions over
//! the form, not components: each Yew component costs bundle bytes, and the
//! page must stay under its size budget. The report is computed once per
//! render and shared.

pub mod actions;
pub mod advanced;
pub mod oauth;
pub mod provider;
pub mod sender;

pub use actions::actions;
pub use advanced::advanced_section;
pub use oauth::{credentials_section, oauth_section};
pub use provider::provider_section;
pub use sender::sender_section;

use mailroom_shared::Report;
use yew::prelude::*;

use super::field::{text_field, TextFieldProps};
use crate::state::{Action, Field, FormState};

/// What every section renders from: the form and its validation report.
pub struct Section<'a> {
    /// The form's state and dispatcher.
    pub form: &'a UseReducerHandle<FormState>,
    /// `form.report()`, computed once.
    pub report: &'a Report,
}

impl Section<'_> {
    /// The errors to show next to a field.
    pub fn errors(&self, f: Field) -> Vec<String> {
        self.form.errors_for(self.report, f)
    }

    /// The warnings to show next to a field.
    pub fn warnings(&self, f: Field) -> Vec<String> {
        self.form.warnings_for(self.report, f)
    }

    /// A callback that sets a text field.
    pub fn set(&self, field: Field) -> Callback<String> {
        let form = self.form.clone();
        Callback::from(move |v: String| form.dispatch(Action::Set(field, v)))
    }

    /// A callback that marks a field touched.
    pub fn touch(&self, field: Field) -> Callback<()> {
        let form = self.form.clone();
        Callback::from(move |()| form.dispatch(Action::Touch(field)))
    }
}

/// What sets one text field apart from the plain case.
#[derive(Default)]
pub struct Look {
    /// `text` when empty; `email`, `password`…
    pub input_type: &'static str,
    /// Shown inside the empty input.
    pub placeholder: Option<AttrValue>,
    /// `off` when empty.
    pub autocomplete: &'static str,
    /// Input mode for mobile keyboards.
    pub inputmode: Option<AttrValue>,
    /// Extra content after the input (a show/hide button).
    pub children: Html,
}

impl Section<'_> {
    /// One text field of the form, its messages and callbacks taken from
    /// `field`. Built in this one place rather than at each field: the
    /// props code is compiled once (a smaller bundle).
    #[inline(never)]
    pub fn text(
        &self,
        field: Field,
        label: &'static str,
        value: String,
        help: &'static str,
        look: Look,
    ) -> Html {
        let or = |v: &'static str, default: &'static str| {
            AttrValue::Static(if v.is_empty() { default } else { v })
        };
        text_field(TextFieldProps {
            id: AttrValue::Static(field.as_str()),
            label: AttrValue::Static(label),
            value: value.into(),
            help: Some(AttrValue::Static(help)),
            placeholder: look.placeholder,
            input_type: or(look.input_type, "text"),
            autocomplete: or(look.autocomplete, "off"),
            inputmode: look.inputmode,
            errors: self.errors(field),
            warnings: self.warnings(field),
            on_input: self.set(field),
            on_blur: self.touch(field),
            children: look.children,
        })
    }
}

/// The placeholder of a secret field that has a usable stored value.
pub fn stored_placeholder(usable: bool) -> Option<AttrValue> {
    usable.then_some(AttrValue::Static("stored — leave empty to keep"))
}
