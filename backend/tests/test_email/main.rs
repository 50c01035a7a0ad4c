//! The test email against loopback fakes: the Entra token endpoint and an SMTP
//! server with STARTTLS, XOAUTH2, PLAIN and LOGIN and scripted Exchange replies.

#[path = "../common/mod.rs"]
mod common;
mod graph_wire;
mod replies;
mod routes;
mod token;
mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use mailroom_backend::config::TestArgs;
use mailroom_backend::upstream::{Timeouts, Upstream};
use mailroom_fakes::{
    addr, EntraMode, FakeEntra, FakeSmtp, Loopback, SmtpConfig, TestPki, TlsMode,
};
use mailroom_shared::api::{Stage, TestResult};
use mailroom_shared::{AuthMethod, Security, Settings};

struct Rig {
    entra: FakeEntra,
    smtp: FakeSmtp,
    args: TestArgs,
    _rig: Loopback,
}

impl Rig {
    async fn start(config: SmtpConfig) -> Rig {
        let rig = Loopback::start(config).await;
        Rig {
            entra: rig.entra.clone(),
            smtp: rig.smtp.clone(),
            args: test_args(&rig),
            _rig: rig,
        }
    }

    fn tester(&self) -> Upstream {
        Upstream::new(&self.args).unwrap()
    }

    fn settings(&self) -> Settings {
        oauth_settings("localhost", self.smtp.port())
    }
}

fn recipient() -> String {
    addr("admin", "contoso.com")
}

fn assert_fails(r: &TestResult, stage: Stage, code: Option<&str>) {
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.stage, Some(stage), "{r:?}");
    assert_eq!(r.code.as_deref(), code, "{r:?}");
    assert!(
        !r.message.is_empty() && r.hint.as_deref().is_some_and(|h| !h.is_empty()),
        "{r:?}"
    );
}

fn transcript_text(r: &TestResult) -> String {
    r.transcript
        .iter()
        .map(|l| format!("{:?} {}\n", l.dir, l.line))
        .collect()
}

async fn scripted(config: SmtpConfig, change: impl FnOnce(&mut Settings)) -> (TestResult, Rig) {
    let rig = Rig::start(config).await;
    let mut s = rig.settings();
    change(&mut s);
    (rig.tester().run(&s, None, &recipient()).await, rig)
}
