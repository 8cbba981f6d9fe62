//! The STARTTLS server configuration: a rustls `ServerConfig` from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::listener::SmtpError;

/// Reads a PEM certificate chain (leaf first) and its private key into a TLS 1.2/1.3 server
/// configuration (aws-lc-rs, no client certificates).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SmtpError> {
    let unreadable = |path: &Path, reason: String| SmtpError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unreadable(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(unreadable(
            cert,
            "no CERTIFICATE block in the file".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SmtpError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(SmtpError::Tls)?;
    Ok(Arc::new(config))
}
