//! The HTTP routes of the sending side; each area has its own `routes()`.

pub mod activity;
pub mod certificate;
pub mod profiles;
pub mod submit;
