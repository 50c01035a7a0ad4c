//! Certificate credentials (docs/API.md §13): a key that signs the client
//! assertion of the token request instead of a client secret.
//!
//! RSA work is done by aws-lc-rs (constant time, maintained; never the `rsa`
//! crate, RUSTSEC-2023-0071); rcgen writes the self-signed certificate around
//! a key aws-lc-rs made; x509-parser reads certificates.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use mailroom_shared::api::CertInfo;
use mailroom_shared::validate::{pem_mistake, PemBox};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::crypto::Secret;

/// How long a generated certificate is valid: a year, then a new one
/// (made and activated without a pause, docs/API.md §13).
pub const GENERATED_VALIDITY_DAYS: i64 = 365;
/// The smallest RSA key Entra accepts.
pub const MIN_RSA_BITS: usize = 2048;
/// A client assertion's lifetime: Entra takes at most 10 minutes.
pub const ASSERTION_LIFETIME_SECS: i64 = 600;

/// A certificate and its private key, ready to sign assertions.
pub struct CertKey {
    der: Vec<u8>,
    key: KeyPair,
    /// What the page and the API show.
    pub info: CertInfo,
    /// `not_after` as Unix seconds.
    pub not_after_unix: i64,
    /// Made by Mailroom.
    pub generated: bool,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("thumbprint_sha256", &self.info.thumbprint_sha256)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key cannot be used; each says which field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// About `certificate_pem`.
    #[error("{0}")]
    Certificate(String),
    /// About `private_key_pem`.
    #[error("{0}")]
    Key(String),
    /// Making one failed (should not happen).
    #[error("{0}")]
    Generate(String),
}

impl CertError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            CertError::Certificate(_) => "certificate_pem",
            CertError::Key(_) | CertError::Generate(_) => "private_key_pem",
        }
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The base64url SHA-256 of the certificate's DER: the `x5t#S256` header.
pub fn x5t_s256(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Reads what the API shows of a certificate, and its RSA public key.
fn read_certificate(der: &[u8]) -> Result<(CertInfo, i64, Vec<u8>, usize), CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        CertError::Certificate(format!(
            "The certificate does not parse ({e}). Export it again as PEM (Base-64 encoded X.509)."
        ))
    })?;
    let spki = cert.public_key();
    let (modulus_bits, public) = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            let m = rsa.modulus.iter().skip_while(|b| **b == 0).count();
            (m * 8, spki.subject_public_key.data.to_vec())
        }
        _ => {
            return Err(CertError::Certificate(
                "The certificate's key is not RSA; Entra needs an RSA key of 2048 bits or more. Make an RSA certificate, or let Mailroom generate one.".into(),
            ))
        }
    };
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let info = CertInfo {
        subject: cert.subject().to_string(),
        thumbprint_sha1: hex_upper(sha1.as_ref()),
        thumbprint_sha256: hex_upper(&Sha256::digest(der)),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        generated: false,
    };
    Ok((info, not_after.unix_timestamp(), public, modulus_bits))
}

fn weak_key(bits: usize) -> CertError {
    CertError::Key(format!(
        "The key is RSA {bits} bits; Entra accepts RSA keys of {MIN_RSA_BITS} bits or more. Make a new key of at least {MIN_RSA_BITS} bits, or let Mailroom generate the certificate."
    ))
}

/// Why a box holds no certificate or no private key: the other PEM block
/// it holds ([`pem_mistake`]), else that it is not PEM, with how to paste it.
fn not_pem(pem_box: PemBox, text: &str) -> String {
    let (what, whole) = match pem_box {
        PemBox::Certificate => ("a PEM certificate", "Paste the whole text from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----."),
        PemBox::PrivateKey => ("a PEM private key", "Paste the whole text from -----BEGIN PRIVATE KEY----- (or BEGIN RSA PRIVATE KEY) to its END line."),
    };
    match pem_mistake(pem_box, text) {
        Some(said) => format!("{said} {whole}"),
        None => format!("This is not {what}. {whole}"),
    }
}

impl CertKey {
    /// Makes a new RSA 2048 key and a self-signed certificate for it, valid
    /// for [`GENERATED_VALIDITY_DAYS`] from `now`; the key never leaves the server.
    pub fn generate(
        common_name: &str,
        now: OffsetDateTime,
    ) -> Result<(CertKey, Secret), CertError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            CertError::Generate(format!("Could not {what}: {e}."))
        };
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| fail("make an RSA key", &e))?;
        let pkcs8: Pkcs8V1Der = key.as_der().map_err(|e| fail("encode the key", &e))?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.clone()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(|e| fail("load the key", &e))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(GENERATED_VALIDITY_DAYS);
        let mut serial = [0u8; 16];
        use rand::RngCore;
        rand::thread_rng().fill_bytes(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&signer)
            .map_err(|e| fail("sign the certificate", &e))?;
        let mut made = CertKey::from_der(cert.der().to_vec(), &pkcs8)?;
        made.generated = true;
        made.info.generated = true;
        Ok((made, pkcs8_secret(&pkcs8)))
    }

    /// Checks a certificate and key the administrator brings: both PEM, the
    /// key RSA of at least 2048 bits and the certificate's, the certificate
    /// valid now. Returns the pair and the key as PKCS#8 for storing.
    pub fn bring(
        certificate_pem: &str,
        key_pem: &str,
        now: OffsetDateTime,
    ) -> Result<(CertKey, Secret), CertError> {
        let cert_der = match CertificateDer::pem_slice_iter(certificate_pem.as_bytes()).next() {
            Some(Ok(der)) => der.to_vec(),
            _ => {
                return Err(CertError::Certificate(not_pem(
                    PemBox::Certificate,
                    certificate_pem,
                )))
            }
        };
        let (_, not_after, _, bits) = read_certificate(&cert_der)?;
        if let Some(said) = pem_mistake(PemBox::PrivateKey, key_pem) {
            return Err(CertError::Key(said.into()));
        }
        let pkcs8 = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
            Ok(PrivateKeyDer::Pkcs1(k)) => {
                if bits < MIN_RSA_BITS {
                    return Err(weak_key(bits));
                }
                let key = KeyPair::from_der(k.secret_pkcs1_der()).map_err(|e| {
                    CertError::Key(format!("The RSA private key is not usable ({e})."))
                })?;
                let der: Pkcs8V1Der = key.as_der().map_err(|e| {
                    CertError::Key(format!("The RSA private key is not usable ({e})."))
                })?;
                der.as_ref().to_vec()
            }
            Ok(_) => {
                return Err(CertError::Key(
                    "The key is not an RSA key (it is an EC key); Entra needs RSA of 2048 bits or more. Make an RSA key, or let Mailroom generate the certificate.".into(),
                ))
            }
            Err(_) => return Err(CertError::Key(not_pem(PemBox::PrivateKey, key_pem))),
        };
        if bits < MIN_RSA_BITS {
            return Err(weak_key(bits));
        }
        let pair = CertKey::from_der(cert_der, &pkcs8)?;
        if not_after < now.unix_timestamp() {
            return Err(CertError::Certificate(format!(
                "This certificate expired on {}. Make a new one (or let Mailroom generate one) and upload that in Entra.",
                &pair.info.not_after[..10]
            )));
        }
        Ok((pair, pkcs8_secret(&pkcs8)))
    }

    /// A stored pair: the certificate's DER and the key's PKCS#8 DER.
    pub fn from_der(cert_der: Vec<u8>, pkcs8: &[u8]) -> Result<CertKey, CertError> {
        let (info, not_after_unix, public, bits) = read_certificate(&cert_der)?;
        let key = KeyPair::from_pkcs8(pkcs8).map_err(|e| {
            let why = e.to_string();
            if why.contains("TooSmall") || bits < MIN_RSA_BITS {
                weak_key(bits)
            } else if why.contains("WrongAlgorithm") {
                CertError::Key("The key is not an RSA key; Entra needs RSA of 2048 bits or more. Make an RSA key, or let Mailroom generate the certificate.".into())
            } else {
                CertError::Key(format!("The private key is not usable ({why})."))
            }
        })?;
        use aws_lc_rs::signature::KeyPair as _;
        if key.public_key().as_ref() != public.as_slice() {
            return Err(CertError::Key(
                "This private key does not belong to the certificate: their public keys differ. Paste the key that was made together with this certificate.".into(),
            ));
        }
        Ok(CertKey {
            der: cert_der,
            key,
            info,
            not_after_unix,
            generated: false,
        })
    }

    /// From the stored form: DER certificate and the decrypted key.
    pub fn from_stored(
        cert_der: Vec<u8>,
        key: &Secret,
        generated: bool,
    ) -> Result<CertKey, CertError> {
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .map_err(|e| CertError::Key(format!("The stored key does not decode ({e}).")))?;
        let mut k = CertKey::from_der(cert_der, &pkcs8)?;
        k.generated = generated;
        k.info.generated = generated;
        Ok(k)
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The public certificate as PEM, for the upload in Entra.
    pub fn pem(&self) -> String {
        pem_of(&self.der)
    }

    /// The client assertion (docs/API.md §13): RS256, `x5t#S256`, `aud` the
    /// cloud's real token URL, `iss` = `sub` = the client id, a fresh `jti`,
    /// valid from `now` for [`ASSERTION_LIFETIME_SECS`].
    pub fn assertion(
        &self,
        audience: &str,
        client_id: &str,
        now_unix: i64,
    ) -> Result<Secret, CertError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header =
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": x5t_s256(&self.der)});
        let mut jti = [0u8; 16];
        use rand::RngCore;
        rand::thread_rng().fill_bytes(&mut jti);
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": hex::encode(jti),
            "nbf": now_unix,
            "iat": now_unix,
            "exp": now_unix + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| {
                CertError::Generate(format!("Could not sign the client assertion: {e}."))
            })?;
        Ok(Secret::new(format!("{signing_input}.{}", b64.encode(sig))))
    }
}

/// A certificate's DER as PEM, 64 characters a line.
pub fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// What the API shows of a stored certificate (no key needed).
pub fn info_of(der: &[u8], generated: bool) -> Result<CertInfo, CertError> {
    let (mut info, ..) = read_certificate(der)?;
    info.generated = generated;
    Ok(info)
}

/// When a stored certificate ends (Unix seconds) and its SHA-1 thumbprint,
/// for the expiry warning.
pub fn expiry_of(der: &[u8]) -> Option<(i64, String)> {
    let (info, not_after, ..) = read_certificate(der).ok()?;
    Some((not_after, info.thumbprint_sha1))
}

fn pkcs8_secret(pkcs8: &[u8]) -> Secret {
    Secret::new(base64::engine::general_purpose::STANDARD.encode(pkcs8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_generated_pair_signs_assertions_that_its_certificate_verifies() {
        let (k, stored) = CertKey::generate("Mailroom test", now()).unwrap();
        assert!(k.generated && k.info.generated);
        assert_eq!(k.info.subject, "CN=Mailroom test");
        assert_eq!(k.info.thumbprint_sha1.len(), 40);
        assert_eq!(
            k.info.thumbprint_sha256,
            k.info.thumbprint_sha256.to_uppercase()
        );
        let again = CertKey::from_stored(k.der().to_vec(), &stored, true).unwrap();
        assert_eq!(again.info, k.info);
        let jwt = k
            .assertion(
                "https://login.microsoftonline.com/t/oauth2/v2.0/token",
                "c",
                1_000,
            )
            .unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["x5t#S256"], x5t_s256(k.der()));
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("c"), Some("c"))
        );
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
            600
        );
        // The certificate's public key verifies the signature.
        let (_, cert) = x509_parser::parse_x509_certificate(k.der()).unwrap();
        let public = cert.public_key().subject_public_key.data.to_vec();
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        key.verify(input.as_bytes(), &b64.decode(parts[2]).unwrap())
            .unwrap();
        let pem = k.pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let (brought, _) = CertKey::bring(&pem, &pkcs8_pem(&stored), now()).unwrap();
        assert_eq!(brought.info.thumbprint_sha256, k.info.thumbprint_sha256);
        assert!(!brought.generated);
    }

    /// A PEM block of another kind in a box is named, with where it goes.
    #[test]
    fn a_pem_block_in_the_wrong_box_is_named() {
        let (k, stored) = CertKey::generate("Mailroom test", now()).unwrap();
        let (cert, key) = (k.pem(), pkcs8_pem(&stored));
        let certificate_error = |text: &str| match CertKey::bring(text, &key, now()) {
            Err(CertError::Certificate(m)) => m,
            other => panic!("{:?}", other.map(|_| ())),
        };
        let key_error = |text: &str| match CertKey::bring(&cert, text, now()) {
            Err(CertError::Key(m)) => m,
            other => panic!("{:?}", other.map(|_| ())),
        };
        assert!(certificate_error(&key).starts_with("This is a private key, not the certificate"));
        let csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        assert!(certificate_error(csr).contains("signing request (CSR)"));
        let public = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n";
        assert!(certificate_error(public).starts_with("This is a public key"));
        assert!(certificate_error("hello").starts_with("This is not a PEM certificate."));
        assert!(key_error(&cert).starts_with("This is a certificate, not its private key"));
        assert!(key_error(public).starts_with("This is a public key"));
        assert!(key_error("hello").starts_with("This is not a PEM private key."));
    }

    fn pkcs8_pem(stored: &Secret) -> String {
        let der = base64::engine::general_purpose::STANDARD
            .decode(stored.expose())
            .unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", der))
    }
}
