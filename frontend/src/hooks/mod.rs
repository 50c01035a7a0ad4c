//! The page's custom hooks, one per behaviour the form needs.

pub mod before_unload;
pub mod focus;
pub mod save;

pub use before_unload::use_before_unload;
pub use focus::use_focus_request;
pub use save::{use_save, Banner, UseSave};
