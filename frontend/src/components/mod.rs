//! The page's components, one per role.

pub mod activity;
pub mod apps;
pub mod certificate;
pub mod checklist;
pub mod common;
pub mod confirm;
pub mod field;
pub mod history;
pub mod profiles;
pub mod sections;
pub mod settings_form;
pub mod sign_in;
pub mod test_dialog;
pub mod webhooks;
