//! HTTPS for `provsync serve`: a certificate chain and its private key from PEM
//! files, served with rustls on the aws-lc-rs provider (the one reqwest already
//! uses; no second crypto backend). Only HTTP/1.1 is offered over ALPN, as the
//! server speaks nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read (the OS error says why).
    #[error("cannot read {path}: {source}")]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file cannot be read (the OS error says why).
    #[error("cannot read {path}: {source}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE` block, or a broken one.
    #[error("{path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`){detail}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong, if anything.
        detail: String,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key (expected `-----BEGIN PRIVATE KEY-----`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY`){detail}"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong, if anything.
        detail: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, an
    /// unsupported key type).
    #[error("the key in {key} does not go with the certificate in {cert}: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

impl TlsError {
    /// The `[tls]` key of the file at fault.
    pub fn config_key(&self) -> &'static str {
        match self {
            TlsError::ReadCert { .. } | TlsError::NoCertificate { .. } => "cert_file",
            TlsError::ReadKey { .. } | TlsError::NoKey { .. } | TlsError::Mismatch { .. } => {
                "key_file"
            }
        }
    }
}

/// The server configuration for a certificate chain (leaf first) and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_owned(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: cert.to_owned(),
            detail: format!(": {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
            detail: String::new(),
        });
    }
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_owned(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => String::new(),
            other => format!(": {other}"),
        },
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|source| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn a_certificate_and_its_key_load_and_offer_http_1_1() {
        let c = server_config(&fixture("server.crt"), &fixture("server.key")).unwrap();
        assert_eq!(c.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn missing_garbage_and_mismatched_files_name_the_key_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let (crt, key) = (fixture("server.crt"), fixture("server.key"));

        let e = server_config(&missing, &key).unwrap_err();
        assert_eq!(e.config_key(), "cert_file");
        let m = e.to_string();
        assert!(m.contains("missing.pem") && m.contains("os error 2"), "{m}");

        let e = server_config(&crt, &missing).unwrap_err();
        assert_eq!(e.config_key(), "key_file");
        assert!(e.to_string().contains("os error 2"), "{e}");

        let e = server_config(&garbage, &key).unwrap_err();
        assert_eq!(e.config_key(), "cert_file");
        let m = e.to_string();
        assert!(m.contains("garbage.pem holds no PEM certificate"), "{m}");

        // A certificate where the key belongs is no key either.
        let e = server_config(&crt, &crt).unwrap_err();
        assert_eq!(e.config_key(), "key_file");
        assert!(
            e.to_string()
                .contains("server.crt holds no PEM private key"),
            "{e}"
        );

        // The CA's certificate with the server's key: not a pair.
        let e = server_config(&fixture("ca.crt"), &key).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        assert_eq!(e.config_key(), "key_file");
    }
}
