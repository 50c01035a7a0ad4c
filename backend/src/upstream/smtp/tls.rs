//! TLS for SMTP: the trusted roots (system plus `--extra-ca-file`), a
//! verifier that remembers the presented certificate for the diagnosis, and
//! the handshake itself. Certificate checks are never switched off.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::SmtpFailure;

/// Delegates every check to webpki, remembering the end-entity certificate so
/// a failure can name its subject and issuer. Nothing is skipped.
#[derive(Debug)]
struct CapturingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: SeenCert,
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where the verifier leaves the certificate the server presented.
type SeenCert = Arc<Mutex<Option<Vec<u8>>>>;

/// Why `--extra-ca-file` could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("cannot read --extra-ca-file {path}: {1}", path = .0.display())]
    Read(PathBuf, std::io::Error),
    /// The file is not PEM.
    #[error("--extra-ca-file {path} is not valid PEM: {1}", path = .0.display())]
    Pem(PathBuf, String),
    /// A certificate in it is unusable as a root.
    #[error("--extra-ca-file {path} holds an unusable certificate: {1}", path = .0.display())]
    Unusable(PathBuf, String),
    /// It holds no certificate.
    #[error("--extra-ca-file {path} holds no PEM certificate", path = .0.display())]
    Empty(PathBuf),
}

/// The roots SMTP TLS trusts: the system's plus the extra CA file.
#[derive(Clone)]
pub struct TlsTrust {
    roots: usize,
    /// Built once; `Err` when no root is available at all (every TLS test then
    /// fails at stage `tls` with this message).
    verifier: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsTrust({} roots)", self.roots)
    }
}

impl TlsTrust {
    /// Loads the system roots and, when given, a PEM file of extra roots.
    pub fn load(extra_ca_file: Option<&Path>) -> Result<Self, TrustError> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca_file {
            let pem = std::fs::read(path).map_err(|e| TrustError::Read(path.into(), e))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| TrustError::Pem(path.into(), format!("{e:?}")))?;
                roots
                    .add(cert)
                    .map_err(|e| TrustError::Unusable(path.into(), e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(TrustError::Empty(path.into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let count = roots.len();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("no trusted root certificates are available: {e}"));
        Ok(TlsTrust {
            roots: count,
            verifier,
            provider,
        })
    }

    /// A client configuration over these roots, for other TLS clients of
    /// the server (PostgreSQL).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let verifier = self.verifier.clone()?;
        Ok(
            rustls::ClientConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .with_webpki_verifier(verifier)
                .with_no_client_auth(),
        )
    }

    fn connector(&self) -> Result<(TlsConnector, SeenCert), String> {
        let inner = self.verifier.clone()?;
        let seen = Arc::new(Mutex::new(None));
        let verifier = CapturingVerifier {
            inner,
            seen: seen.clone(),
        };
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok((TlsConnector::from(Arc::new(config)), seen))
    }
}

fn describe_cert(der: &[u8]) -> (Option<String>, Option<String>) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => (
            Some(cert.subject().to_string()),
            Some(cert.issuer().to_string()),
        ),
        Err(_) => (None, None),
    }
}

fn tls_failure(detail: String, seen: &SeenCert) -> SmtpFailure {
    let cert = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (subject, issuer) = cert.as_deref().map(describe_cert).unwrap_or((None, None));
    SmtpFailure::Tls {
        detail,
        subject,
        issuer,
    }
}

pub(super) async fn handshake(
    tcp: TcpStream,
    trust: &TlsTrust,
    host: &str,
) -> Result<TlsStream<TcpStream>, SmtpFailure> {
    let (connector, seen) = trust.connector().map_err(|detail| SmtpFailure::Tls {
        detail,
        subject: None,
        issuer: None,
    })?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| SmtpFailure::Tls {
        detail: e.to_string(),
        subject: None,
        issuer: None,
    })?;
    connector.connect(name, tcp).await.map_err(|e| {
        let detail = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls_err) => rustls_err.to_string(),
            None => e.to_string(),
        };
        tls_failure(detail, &seen)
    })
}
