//! The SMTP client session, driven step by step with lettre's
//! `AsyncSmtpConnection` over a stream of ours that does TLS with rustls and
//! records every line in plain text, so the transcript shows the real
//! conversation. Split as lettre splits its own client: the recorded stream
//! ([`record`]), TLS ([`tls`]) and the session's stages ([`session`]).

pub mod record;
pub mod session;
pub mod tls;

use std::time::{Duration, Instant};

use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use mailroom_shared::api::{Stage, StageTiming, TranscriptLine};
use mailroom_shared::Security;

use crate::crypto::Secret;
pub use record::{MAX_LINE, MAX_REPLY, TRANSCRIPT_MAX_BYTES, TRANSCRIPT_MAX_LINES};
pub use session::{Progress, SmtpSession, Target};
pub use tls::TlsTrust;

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the whole SMTP session.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How to sign in.
#[derive(Debug, Clone)]
pub enum SmtpAuth {
    /// No AUTH.
    None,
    /// AUTH PLAIN with the username and an empty password, when the server offers AUTH.
    UsernameOnly(String),
    /// PLAIN, else LOGIN.
    Password(String, Secret),
    /// XOAUTH2 with the mailbox and the access token.
    Xoauth2(String, Secret),
}

/// One message to send over a fresh session.
#[derive(Debug, Clone)]
pub struct SmtpPlan {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// STARTTLS, implicit TLS or none.
    pub security: Security,
    /// The EHLO name.
    pub hello: ClientId,
    /// How to sign in.
    pub auth: SmtpAuth,
    /// Envelope sender.
    pub from: Address,
    /// Envelope recipient.
    pub to: Address,
    /// The formatted message.
    pub message: Vec<u8>,
    /// Time allowed to open the TCP connection, normally [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Time allowed for the whole session, normally [`SESSION_TIMEOUT`].
    pub session_timeout: Duration,
}

/// How an SMTP session failed.
#[derive(Debug, Clone)]
pub enum SmtpFailure {
    /// A negative reply; the reply's lines are in `reply`.
    Reply {
        /// The stage it happened in.
        stage: Stage,
        /// The reply's code.
        code: u16,
        /// The reply text, lines joined with spaces.
        text: String,
    },
    /// The host name did not resolve.
    Dns(String),
    /// Nothing listens there.
    Refused,
    /// No answer in time.
    Timeout(Stage),
    /// The TCP connection could not be opened in time.
    ConnectTimeout,
    /// STARTTLS was required but not offered.
    NoStarttls,
    /// The TLS handshake failed; with the certificate's subject and issuer when seen.
    Tls {
        /// What rustls said.
        detail: String,
        /// Subject of the presented certificate.
        subject: Option<String>,
        /// Issuer of the presented certificate.
        issuer: Option<String>,
    },
    /// The server closed the connection.
    Dropped(Stage),
    /// The server offered no mechanism we can use.
    NoMechanism(String),
    /// Anything else on the network.
    Network(Stage, String),
}

/// The outcome of a session: timings, transcript, and the failure if any.
#[derive(Debug, Clone)]
pub struct SmtpOutcome {
    /// Each stage run.
    pub stages: Vec<StageTiming>,
    /// Every line, unmasked (the caller masks secrets).
    pub transcript: Vec<TranscriptLine>,
    /// `None` when the message was accepted.
    pub failure: Option<SmtpFailure>,
}

impl SmtpPlan {
    /// Where the plan connects.
    pub fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            security: self.security,
            hello: self.hello.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// Opens a session, sends the plan's one message and quits, all within the
/// plan's session timeout.
pub async fn run(plan: &SmtpPlan, trust: &TlsTrust) -> SmtpOutcome {
    let mut progress = Progress::default();
    let started = Instant::now();
    let drive = async {
        let p = &mut progress;
        let mut session = SmtpSession::open(&plan.target(), &plan.auth, trust, p).await?;
        let sent = session
            .send(&plan.from, std::slice::from_ref(&plan.to), &plan.message, p)
            .await;
        session.quit().await;
        sent
    };
    let result = tokio::time::timeout(plan.session_timeout, drive).await;
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => {
            let stage = next_stage(&progress.stages);
            progress.stages.push(StageTiming {
                name: stage,
                ok: false,
                ms: started.elapsed().as_millis() as u64,
            });
            Some(SmtpFailure::Timeout(stage))
        }
    };
    let transcript = progress.take_transcript();
    SmtpOutcome {
        stages: progress.stages,
        transcript,
        failure,
    }
}

fn next_stage(done: &[StageTiming]) -> Stage {
    match done.last().map(|s| (s.name, s.ok)) {
        None => Stage::Connect,
        Some((stage, false)) => stage,
        Some((Stage::Connect, true)) => Stage::Tls,
        Some((Stage::Tls, true)) => Stage::Auth,
        Some((_, true)) => Stage::Send,
    }
}
