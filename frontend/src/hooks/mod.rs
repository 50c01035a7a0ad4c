//! The page's custom hooks, one per behaviour the page needs.

pub mod activity;
pub mod before_unload;
pub mod focus;
pub mod interval;
pub mod modal;
pub mod save;

pub use activity::{use_activity, ActivityAction, ActivityState, UseActivity};
pub use before_unload::{use_before_unload, use_unsaved};
pub use focus::use_focus_request;
pub use interval::use_interval;
pub use modal::{use_modal, use_question, Question};
pub use save::{use_save, Banner, UseSave};
