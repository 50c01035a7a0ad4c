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

/// The placeholder of a secret field that has a usable stored value.
pub fn stored_placeholder(usable: bool) -> Option<AttrValue> {
    usable.then_some(AttrValue::Static("stored — leave empty to keep"))
}
