//! rustls configurations for SIP over TLS: a client one per trunk (whom to trust, and our
//! certificate for mutual TLS) and a server one for a TLS listener, from PEM files. Build
//! each once and share the `Arc` with every connection: loading the system's CA certificates
//! reads hundreds of files.
//!
//! TLS 1.2 and 1.3 with rustls's default cipher suites, on aws-lc-rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read `{key}` ({}): {reason}; check the path and that it is a readable PEM file", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("`{key}` ({}) holds no CERTIFICATE block: give the PEM certificate(s)", path.display())]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("`{key}` ({}) holds a certificate rustls refuses ({source}): give a PEM X.509 CA certificate", path.display())]
    BadCa {
        key: &'static str,
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "no usable CA certificate found on this system{reason}: install the ca-certificates \
         package, or set the trunk's `tls_ca_file`"
    )]
    NoSystemRoots { reason: String },
    #[error("`tls_cert_file` and `tls_key_file` go together: set both for mutual TLS, or neither")]
    HalfClientCertificate,
    #[error(
        "rustls refused the certificate and key ({0}): check that the key is the one of the \
         first certificate in the file"
    )]
    KeyMismatch(rustls::Error),
}

/// The PEM files of one trunk's TLS settings, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CA certificate(s) to trust instead of the system's (`tls_ca_file`).
    pub ca_file: Option<PathBuf>,
    /// Our certificate chain, leaf first, for mutual TLS (`tls_cert_file`).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (`tls_key_file`).
    pub key_file: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let unreadable = |reason: String| TlsConfigError::File {
        key,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsConfigError::File {
        key,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in read_certificates("tls_ca_file", path)? {
            roots.add(cert).map_err(|source| TlsConfigError::BadCa {
                key: "tls_ca_file",
                path: path.to_owned(),
                source,
            })?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(TlsConfigError::NoSystemRoots { reason });
    }
    Ok(roots)
}

/// A client configuration: trusts `files.ca_file` alone if set, else the system's CA
/// certificates; presents `cert_file`/`key_file` when the server asks for a certificate.
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let identity = match (&files.cert_file, &files.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => return Err(TlsConfigError::HalfClientCertificate),
    };
    let roots = roots(files.ca_file.as_deref())?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::KeyMismatch)?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates("tls_cert_file", cert)?;
            let key = read_key("tls_key_file", key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::KeyMismatch)?
        }
    };
    Ok(Arc::new(config))
}

/// A server configuration for a TLS listener: our certificate chain (PEM, leaf first) and
/// its key; no client certificate asked for.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certificates("tls_cert_file", cert_file)?;
    let key = read_key("tls_key_file", key_file)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::KeyMismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsConfigError::KeyMismatch)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_without_its_key_is_refused_before_any_file_is_read() {
        let files = ClientTlsFiles {
            ca_file: None,
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: None,
        };
        let error = client_config(&files).expect_err("half a pair");
        assert!(
            matches!(error, TlsConfigError::HalfClientCertificate),
            "{error:?}"
        );
    }

    #[test]
    fn a_missing_ca_file_names_the_key_and_the_path() {
        let files = ClientTlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientTlsFiles::default()
        };
        let error = client_config(&files).expect_err("no such file");
        let text = error.to_string();
        assert!(text.contains("`tls_ca_file`"), "{text}");
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    }

    #[test]
    fn a_ca_file_with_no_certificate_is_refused() {
        let path =
            std::env::temp_dir().join(format!("outdial-tls-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("temp file");
        let error = client_config(&ClientTlsFiles {
            ca_file: Some(path.clone()),
            ..ClientTlsFiles::default()
        })
        .expect_err("no certificate");
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(
                error,
                TlsConfigError::NoCertificate {
                    key: "tls_ca_file",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_server_config_needs_readable_files() {
        let error = server_config(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .expect_err("no such file");
        assert!(
            matches!(
                error,
                TlsConfigError::File {
                    key: "tls_cert_file",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
