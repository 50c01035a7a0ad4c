//! The way out: everything that talks to Microsoft and to the upstream SMTP
//! server, for the test email and the delivery engine alike. [`Upstream`]
//! ([`client`]) gets the Entra token ([`entra`]), opens a signed-in SMTP
//! session ([`smtp`]) and explains any failure ([`diagnose`]), masking every
//! secret ([`mask`]). The test email is one session sending one message
//! ([`test_message`]); delivery sends many over one session.

pub mod certificate;
pub mod client;
pub mod diagnose;
pub mod entra;
pub mod graph;
pub mod mask;
pub mod smtp;
pub mod test_message;

pub use client::{is_plain_http_to_remote, Timeouts, Upstream, MAX_CONCURRENT_TESTS};
pub use mask::{mask_text, mask_transcript};
pub use test_message::build_message;
