//! The page's components, one per role.

pub mod checklist;
pub mod code;
pub mod field;
pub mod sections;
pub mod settings_form;
pub mod sign_in;
pub mod test_dialog;
