//! The relay's TLS certificate (STARTTLS and implicit TLS): the
//! `--smtp-tls-cert` and `--smtp-tls-key` files, or a self-signed pair for
//! `--smtp-hostname` generated with rcgen into the data dir on first start
//! and reused after. The files are read again while the relay runs
//! ([`Reloading`]), so a renewed certificate (certbot renews every 60 days)
//! is served without a restart, and one close to its end is reported.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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
        // Made for another name (the machine's, before --smtp-hostname was
        // set): devices that check the name would refuse it, so a new one.
        match dns_names(&cert) {
            Some(names) if !names.iter().any(|n| n.eq_ignore_ascii_case(hostname)) => {
                tracing::info!(
                    cert = %cert.display(),
                    was = %names.join(", "),
                    now = hostname,
                    "the relay's generated certificate names another host; generating one for this name (devices given the old one need the new one)"
                );
            }
            _ => return Ok((cert, key)),
        }
    }
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate the relay's certificate: {e}"))?;
    crate::crypto::replace_private_file(&key, generated.key_pair.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    crate::crypto::replace_private_file(&cert, generated.cert.pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the SMTP relay");
    Ok((cert, key))
}

/// The DNS names of the (first) certificate in a PEM file, if it reads.
fn dns_names(path: &Path) -> Option<Vec<String>> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    let der = CertificateDer::from_pem_file(path).ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    Some(
        names
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
    )
}

/// The acceptor for STARTTLS and implicit TLS, and its certificate.
pub fn acceptor(
    args: &RelayArgs,
    data_dir: &Path,
    hostname: &str,
) -> Result<(TlsAcceptor, Arc<Reloading>), String> {
    let (cert, key) = files(args, data_dir, hostname)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = read_pair(&cert, &key)?;
    let loaded = load(&pair, &cert, &key, &provider)?;
    let certs = Arc::new(Reloading {
        cert,
        key,
        provider: provider.clone(),
        state: RwLock::new(State {
            loaded,
            seen: pair.0,
            split: pair.1,
            refused: None,
        }),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    Ok((TlsAcceptor::from(Arc::new(config)), certs))
}

/// Reads the pair's files as one run of bytes (to see a change), and
/// where the certificate's bytes end in it.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, usize), String> {
    let cert_pem = read_pem(cert, "certificate")?;
    let split = cert_pem.len();
    Ok(([cert_pem, read_pem(key, "key")?].concat(), split))
}

/// Checks a pair read by [`read_pair`]: the certificate chain, a private
/// key, and that the key is the certificate's.
fn load(
    (bytes, split): &(Vec<u8>, usize),
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let (certs, private) = parse(&bytes[..*split], &bytes[*split..], cert, key)?;
    let loaded = CertifiedKey::from_der(certs, private, provider).map_err(|e| {
        format!(
            "{} and {} do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(loaded))
}

/// The relay's certificate pair, served to each handshake, and read again
/// from its files by [`Reloading::reload`].
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    loaded: Arc<CertifiedKey>,
    /// The files' bytes when `loaded` was read: the certificate's, then the key's.
    seen: Vec<u8>,
    /// Where the key's bytes start in `seen`.
    split: usize,
    /// Why the files as they are now were refused, and whether that was
    /// said: it is said when a second reading finds the same, so a renewal
    /// caught between writing its two files says nothing.
    refused: Option<(String, bool)>,
}

/// What reading the files again found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing changed, or a refusal seen once or already reported.
    Same,
    /// A new pair is in use.
    New,
    /// The files changed but do not load, found twice in a row; the pair
    /// in use stays.
    Refused(String),
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Some(state.loaded.clone())
    }
}

impl Reloading {
    /// The certificate file.
    pub fn path(&self) -> &Path {
        &self.cert
    }

    /// Reads the files again and, when they changed and load, serves the
    /// new pair to the next handshakes. A half-written or mismatched pair
    /// (the certificate renewed, the key not yet) keeps the old one.
    pub fn reload(&self) -> Reloaded {
        let read = read_pair(&self.cert, &self.key);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if read.as_ref().is_ok_and(|(bytes, _)| *bytes == state.seen) {
            state.refused = None;
            return Reloaded::Same;
        }
        let loaded = read.and_then(|pair| {
            load(&pair, &self.cert, &self.key, &self.provider).map(|loaded| (loaded, pair))
        });
        match loaded {
            Ok((loaded, (seen, split))) => {
                *state = State {
                    loaded,
                    seen,
                    split,
                    refused: None,
                };
                Reloaded::New
            }
            Err(why) => match &mut state.refused {
                Some((seen, said)) if *seen == why => {
                    if std::mem::replace(said, true) {
                        Reloaded::Same
                    } else {
                        Reloaded::Refused(why)
                    }
                }
                other => {
                    *other = Some((why, false));
                    Reloaded::Same
                }
            },
        }
    }

    /// The certificate in use (DER), for tests.
    #[cfg(test)]
    fn serving(&self) -> Vec<u8> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.loaded.cert[0].to_vec()
    }

    /// The certificate in use, as its file held it (PEM, the chain as given).
    pub fn pem(&self) -> Vec<u8> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.seen[..state.split].to_vec()
    }

    /// When the certificate in use ends, as Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let leaf = state.loaded.end_entity_cert().ok()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }
}

/// What to say of a certificate that ends at `not_after` (Unix seconds),
/// `now` being now: nothing while more than `soon` seconds are left.
pub fn expiry_warning(path: &Path, not_after: i64, now: i64, soon: i64) -> Option<String> {
    let left = not_after - now;
    if left > soon {
        return None;
    }
    let date = crate::clock::rfc3339_at(not_after).unwrap_or_else(|| not_after.to_string());
    let renew = "renew it and write the new pair over the same files: the relay reads them again within a minute, without a restart";
    Some(if left <= 0 {
        format!("the relay's TLS certificate {} expired on {date}: devices that check certificates refuse its TLS; {renew}", path.display())
    } else {
        format!(
            "the relay's TLS certificate {} expires on {date}, in {} days: {renew}",
            path.display(),
            left / 86_400
        )
    })
}

/// A certificate this close to its end is reported, once a day.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Reads the relay's certificate files again every `every` (and when `now`
/// is notified), so that a
/// renewed pair is served without a restart, and says at start, once a day
/// and for each new pair when the one in use ends within [`EXPIRY_WARNING`].
pub(super) async fn watch(
    certs: Arc<Reloading>,
    every: Duration,
    now: Arc<tokio::sync::Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const DAY: Duration = Duration::from_secs(86_400);
    let every = every.max(Duration::from_millis(50));
    let label = crate::metrics::CertLabel {
        cert: crate::metrics::LabelText(certs.path().display().to_string()),
    };
    let mut checked: Option<tokio::time::Instant> = None;
    loop {
        if checked.is_none_or(|at| at.elapsed() >= DAY) {
            checked = Some(tokio::time::Instant::now());
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let soon = EXPIRY_WARNING.as_secs() as i64;
            let end = record_end(&certs, &metrics, &label);
            let warning = end.and_then(|end| expiry_warning(certs.path(), end, now, soon));
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = now.notified() => {}
            _ = stop.changed() => return,
        }
        let reading = certs.clone();
        let Ok(reloaded) = tokio::task::spawn_blocking(move || reading.reload()).await else {
            continue;
        };
        match reloaded {
            Reloaded::Same => {}
            Reloaded::New => {
                record_end(&certs, &metrics, &label);
                tracing::info!(cert = %certs.path().display(), "the relay's TLS certificate changed on disk: new connections get the new one");
                checked = None;
            }
            Reloaded::Refused(reason) => {
                tracing::warn!(%reason, "the relay's TLS certificate files changed but do not load; the relay keeps serving the pair it has");
            }
        }
    }
}

/// Sets the metric of when the certificate in use ends, and returns it.
fn record_end(
    certs: &Reloading,
    metrics: &crate::metrics::Metrics,
    label: &crate::metrics::CertLabel,
) -> Option<i64> {
    let end = certs.not_after();
    match end {
        Some(end) => {
            metrics
                .relay_certificate_expiry
                .get_or_create(label)
                .set(end);
        }
        None => {
            metrics.relay_certificate_expiry.remove(label);
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed pair for localhost ending in `year`: (cert PEM, key PEM, cert DER).
    fn pair(year: i32) -> (String, String, Vec<u8>) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    #[test]
    fn changed_files_are_served_and_a_broken_pair_keeps_the_old_one_saying_why_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
        let (a_cert, a_key, a_der) = pair(2031);
        std::fs::write(&cert, &a_cert).unwrap();
        std::fs::write(&key, &a_key).unwrap();
        let args = RelayArgs {
            smtp_tls_cert: Some(cert.clone()),
            smtp_tls_key: Some(key.clone()),
            ..Default::default()
        };
        let (_, certs) = acceptor(&args, dir.path(), "localhost").unwrap();
        assert_eq!(certs.serving(), a_der);
        assert_eq!(certs.reload(), Reloaded::Same);
        // Renewed: both files replaced.
        let (b_cert, b_key, b_der) = pair(2032);
        std::fs::write(&cert, &b_cert).unwrap();
        std::fs::write(&key, &b_key).unwrap();
        assert_eq!(certs.reload(), Reloaded::New);
        assert_eq!(certs.serving(), b_der);
        // The certificate renewed and the key not yet: the pair in use stays.
        let (c_cert, _, _) = pair(2033);
        std::fs::write(&cert, &c_cert).unwrap();
        assert_eq!(
            certs.reload(),
            Reloaded::Same,
            "maybe mid-renewal: not said yet"
        );
        match certs.reload() {
            Reloaded::Refused(why) => assert!(why.contains("do not make a usable pair"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(certs.serving(), b_der);
        assert_eq!(certs.reload(), Reloaded::Same, "said once");
        // A file gone for a moment (a renewal's rename) is no change either.
        std::fs::remove_file(&key).unwrap();
        assert_eq!(certs.reload(), Reloaded::Same);
        assert!(matches!(certs.reload(), Reloaded::Refused(why) if why.contains("relay.key")));
        assert_eq!(certs.serving(), b_der);
        std::fs::write(&cert, &b_cert).unwrap();
        std::fs::write(&key, &b_key).unwrap();
        assert_eq!(certs.reload(), Reloaded::Same, "back to the pair in use");
        let end = certs.not_after().unwrap();
        assert_eq!(
            end,
            time::macros::datetime!(2032-01-01 0:00 UTC).unix_timestamp()
        );
    }

    #[test]
    fn a_certificate_near_its_end_is_reported_with_the_date_and_what_to_do() {
        let path = Path::new("/etc/mailroom/relay.crt");
        let end = time::macros::datetime!(2027-01-01 0:00 UTC).unix_timestamp();
        let day = 86_400;
        assert_eq!(expiry_warning(path, end, end - 15 * day, 14 * day), None);
        let soon = expiry_warning(path, end, end - 10 * day, 14 * day).unwrap();
        assert!(
            soon.contains("/etc/mailroom/relay.crt expires on 2027-01-01T00:00:00Z, in 10 days"),
            "{soon}"
        );
        assert!(soon.contains("without a restart"), "{soon}");
        let gone = expiry_warning(path, end, end + day, 14 * day).unwrap();
        assert!(gone.contains("expired on 2027-01-01T00:00:00Z"), "{gone}");
    }

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
    fn a_generated_pair_for_another_name_is_made_anew_for_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let args = RelayArgs::default();
        acceptor(&args, dir.path(), "debian").unwrap();
        let path = dir.path().join(GENERATED_CERT);
        assert_eq!(dns_names(&path).unwrap(), ["debian", "localhost"]);
        let first = std::fs::read(&path).unwrap();
        // --smtp-hostname set later: a certificate for that name.
        acceptor(&args, dir.path(), "Relay.Contoso.test").unwrap();
        assert_eq!(
            dns_names(&path).unwrap(),
            ["Relay.Contoso.test", "localhost"]
        );
        assert_ne!(std::fs::read(&path).unwrap(), first);
        // The same name, in another case: kept.
        let second = std::fs::read(&path).unwrap();
        acceptor(&args, dir.path(), "relay.contoso.test").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), second);
        // Only the certificate left (the key deleted by hand): a new pair.
        std::fs::remove_file(dir.path().join(GENERATED_KEY)).unwrap();
        acceptor(&args, dir.path(), "relay.contoso.test").unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), second);
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
