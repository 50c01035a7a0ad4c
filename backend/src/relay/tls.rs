//! The relay's STARTTLS certificate: the `--smtp-tls-cert` and
//! `--smtp-tls-key` files, or a self-signed pair for `--smtp-hostname`
//! generated with rcgen into the data dir on first start and reused after.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::RelayArgs;

/// The generated certificate's file in the data dir.
pub const GENERATED_CERT: &str = "smtp-tls-cert.pem";
/// The generated key's file in the data dir (mode 0600).
pub const GENERATED_KEY: &str = "smtp-tls-key.pem";

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("cannot read the relay's TLS {what} {}: {e}", path.display()))
}

fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls::pki_types::pem::{self, PemObject};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate: {e:?}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err(format!(
                "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
                key.display()
            ))
        }
        Err(e) => return Err(format!("{} is not a PEM private key: {e:?}", key.display())),
    };
    Ok((certs, private))
}

/// The files to use: the given pair, or the generated pair (made now when missing).
fn files(args: &RelayArgs, data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), String> {
    if let (Some(cert), Some(key)) = (&args.smtp_tls_cert, &args.smtp_tls_key) {
        return Ok((cert.clone(), key.clone()));
    }
    let (cert, key) = (data_dir.join(GENERATED_CERT), data_dir.join(GENERATED_KEY));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate the relay's certificate: {e}"))?;
    crate::crypto::write_private_file(&key, generated.key_pair.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    crate::crypto::write_private_file(&cert, generated.cert.pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the SMTP relay");
    Ok((cert, key))
}

/// The acceptor for STARTTLS.
pub fn acceptor(args: &RelayArgs, data_dir: &Path, hostname: &str) -> Result<TlsAcceptor, String> {
    let (cert, key) = files(args, data_dir, hostname)?;
    let (certs, private) = parse(
        &read_pem(&cert, "certificate")?,
        &read_pem(&key, "key")?,
        &cert,
        &key,
    )?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let args = RelayArgs::default();
        acceptor(&args, dir.path(), "relay.contoso.test").unwrap();
        let first = std::fs::read(dir.path().join(GENERATED_CERT)).unwrap();
        acceptor(&args, dir.path(), "relay.contoso.test").unwrap();
        assert_eq!(
            first,
            std::fs::read(dir.path().join(GENERATED_CERT)).unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_is_not_pem_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let args = RelayArgs {
            smtp_tls_cert: Some(cert.clone()),
            smtp_tls_key: Some(cert.clone()),
            ..Default::default()
        };
        let e = acceptor(&args, dir.path(), "h").err().unwrap();
        assert!(e.contains("c.pem"), "{e}");
    }

    #[test]
    fn a_given_pair_loads_and_a_missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // Generate a pair, then give it as --smtp-tls-cert/--smtp-tls-key.
        acceptor(&RelayArgs::default(), dir.path(), "relay.contoso.test").unwrap();
        let (cert, key) = (
            dir.path().join(GENERATED_CERT),
            dir.path().join(GENERATED_KEY),
        );
        let given = |cert: &Path, key: &Path| RelayArgs {
            smtp_tls_cert: Some(cert.to_path_buf()),
            smtp_tls_key: Some(key.to_path_buf()),
            ..Default::default()
        };
        assert!(acceptor(&given(&cert, &key), dir.path(), "h").is_ok());
        // The certificate file where the key belongs: no private key in it.
        let e = acceptor(&given(&cert, &cert), dir.path(), "h")
            .err()
            .unwrap();
        assert!(e.contains("holds no PEM private key"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = acceptor(&given(&empty, &key), dir.path(), "h")
            .err()
            .unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
