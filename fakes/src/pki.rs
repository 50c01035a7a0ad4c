//! A throwaway CA and a server certificate for `localhost` and `127.0.0.1`.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA (written as PEM for `--extra-ca-file`) and a leaf it signed.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate.
    pub leaf: CertificateDer<'static>,
    /// The server key, PKCS#8 DER.
    pub leaf_key: Vec<u8>,
}

impl TestPki {
    /// A fresh CA named `ca_name` and a leaf for localhost/127.0.0.1.
    pub fn new(ca_name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "fake-smtp.localhost");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("sign leaf");
        TestPki {
            ca_pem: ca_cert.pem(),
            leaf: leaf_cert.der().clone(),
            leaf_key: leaf_key.serialize_der(),
        }
    }

    /// Writes the CA certificate as a PEM file.
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write CA PEM");
    }

    /// A TLS server config presenting the leaf.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone())),
            )
            .expect("server cert");
        Arc::new(config)
    }
}
