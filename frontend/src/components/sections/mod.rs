//! The settings form's sections. Each takes the form's reducer handle, runs
//! the shared validation for its own fields, and dispatches its own actions.

pub mod actions;
pub mod advanced;
pub mod oauth;
pub mod provider;
pub mod sender;

pub use actions::Actions;
pub use advanced::AdvancedSection;
pub use oauth::{CredentialsSection, OAuthSection};
pub use provider::ProviderSection;
pub use sender::SenderSection;

use yew::prelude::*;

use crate::state::{Action, Field, FormState};

/// What every section gets: the form.
#[derive(Properties, PartialEq)]
pub struct SectionProps {
    /// The form's state and dispatcher.
    pub form: UseReducerHandle<FormState>,
}

/// A callback that sets a text field.
pub fn set(form: &UseReducerHandle<FormState>, field: Field) -> Callback<String> {
    let form = form.clone();
    Callback::from(move |v: String| form.dispatch(Action::Set(field, v)))
}

/// A callback that marks a field touched.
pub fn touch(form: &UseReducerHandle<FormState>, field: Field) -> Callback<()> {
    let form = form.clone();
    Callback::from(move |()| form.dispatch(Action::Touch(field)))
}

/// The placeholder of a secret field that has a usable stored value.
pub fn stored_placeholder(usable: bool) -> Option<AttrValue> {
    usable.then_some(AttrValue::Static("stored — leave empty to keep"))
}
