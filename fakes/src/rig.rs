//! The whole loopback rig in one call: a throwaway CA written to a PEM file,
//! the fake Entra with the sample app registered, and the fake SMTP server
//! presenting the CA's certificate and accepting Entra's tokens, and the fake
//! Graph `sendMail` accepting them too.

use std::path::PathBuf;

use crate::{FakeEntra, FakeGraph, FakeSmtp, SmtpConfig, TestPki};

use mailroom_shared::fixtures::{mailer, CLIENT, SECRET, TENANT};

/// A running rig; everything stops when it is dropped.
pub struct Loopback {
    /// The token endpoint.
    pub entra: FakeEntra,
    /// The SMTP server.
    pub smtp: FakeSmtp,
    /// Microsoft Graph's `sendMail`, with the sample mailbox.
    pub graph: FakeGraph,
    /// The CA that signed the SMTP server's certificate.
    pub pki: TestPki,
    /// The CA as a PEM file, for `--extra-ca-file`.
    pub ca_file: PathBuf,
    /// Holds the CA file.
    pub dir: tempfile::TempDir,
}

impl Loopback {
    /// Starts Entra (with the sample app of `mailroom_shared::fixtures`
    /// registered) and SMTP (with `config`) on 127.0.0.1 with free ports.
    pub async fn start(config: SmtpConfig) -> Loopback {
        let dir = tempfile::tempdir().expect("temporary dir for the rig");
        let pki = TestPki::new("Mailroom Test CA");
        let ca_file = dir.path().join("ca.pem");
        pki.write_ca(&ca_file);
        let entra = FakeEntra::start().await;
        entra.register(TENANT, CLIENT, SECRET);
        let smtp = FakeSmtp::start(config, &pki, entra.issued_tokens()).await;
        let graph = FakeGraph::start(entra.issued_tokens()).await;
        graph.add_mailbox(&mailer());
        Loopback {
            entra,
            smtp,
            graph,
            pki,
            ca_file,
            dir,
        }
    }

    /// The value for `--entra-authority`.
    pub fn authority(&self) -> String {
        self.entra.authority()
    }

    /// The value for `--graph-endpoint`.
    pub fn graph_endpoint(&self) -> String {
        self.graph.endpoint()
    }
}
