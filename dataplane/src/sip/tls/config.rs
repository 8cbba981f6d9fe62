//! rustls configurations for SIP over TLS: a client one per trunk (whom to trust, and our
//! certificate for mutual TLS) and a server one for the SIP listener (our certificate, and
//! the CAs its TLS peers' certificates must chain to, if any), from PEM files. Build
//! each once and share the `Arc` with every connection: loading the system's CA certificates
//! reads hundreds of files.
//!
//! TLS 1.2 and 1.3 with rustls's default cipher suites, on aws-lc-rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
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
    #[error("`{key}` ({}) cannot check client certificates ({source}): give PEM X.509 CA certificate(s)", path.display())]
    ClientVerifier {
        key: &'static str,
        path: PathBuf,
        source: VerifierBuilderError,
    },
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

/// The CA certificates of `path` (the setting `key`), every one of them usable.
fn ca_certificates(key: &'static str, path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(key, path)? {
        roots.add(cert).map_err(|source| TlsConfigError::BadCa {
            key,
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    if let Some(path) = ca_file {
        return ca_certificates("tls_ca_file", path);
    }
    let mut roots = RootCertStore::empty();
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

/// A server configuration for the SIP listener: our certificate chain (`sip.tls_cert_file`,
/// PEM, leaf first) and its key (`sip.tls_key_file`). With `client_ca_file`
/// (`sip.tls_client_ca_file`) every peer must present a certificate chaining to one of its
/// CAs, or its handshake fails (mutual TLS); without, no certificate is asked for.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certificates("sip.tls_cert_file", cert_file)?;
    let key = read_key("sip.tls_key_file", key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::KeyMismatch)?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            const KEY: &str = "sip.tls_client_ca_file";
            let roots = ca_certificates(KEY, path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|source| TlsConfigError::ClientVerifier {
                    key: KEY,
                    path: path.to_owned(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
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
            None,
        )
        .expect_err("no such file");
        assert!(
            matches!(
                error,
                TlsConfigError::File {
                    key: "sip.tls_cert_file",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    /// A directory of PEM files made by the `openssl` CLI, removed on drop: `ca`, `other-ca`,
    /// a `server` certificate signed by `ca`, and a `client` certificate signed by each CA
    /// (`client`, `other-client`).
    struct Pki(PathBuf);

    impl Pki {
        fn new(label: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("outdial-tls-config-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let pki = Self(dir);
            pki.ca("ca");
            pki.ca("other-ca");
            pki.leaf("server", "ca", "serverAuth");
            pki.leaf("client", "ca", "clientAuth");
            pki.leaf("other-client", "other-ca", "clientAuth");
            pki
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Runs `openssl` with `command`'s words (no word holds a space) in the directory.
        fn openssl(&self, command: &str) {
            let output = std::process::Command::new("openssl")
                .args(command.split(' '))
                .current_dir(&self.0)
                .output()
                .expect("the openssl CLI is installed");
            assert!(
                output.status.success(),
                "openssl {command}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }

        fn ca(&self, name: &str) {
            self.openssl(&format!(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                 -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
            ));
        }

        fn leaf(&self, name: &str, ca: &str, usage: &str) {
            self.openssl(&format!(
                "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                 -keyout {name}.key -out {name}.csr -subj /CN=sip.test"
            ));
            std::fs::write(
                self.path(&format!("{name}.ext")),
                format!("subjectAltName=DNS:sip.test\nextendedKeyUsage={usage}\n"),
            )
            .expect("write extensions");
            self.openssl(&format!(
                "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
                 -out {name}.pem -days 2 -extfile {name}.ext"
            ));
        }

        fn server(&self, client_ca: Option<&str>) -> Result<Arc<ServerConfig>, TlsConfigError> {
            let client_ca = client_ca.map(|name| self.path(name));
            server_config(
                &self.path("server.pem"),
                &self.path("server.key"),
                client_ca.as_deref(),
            )
        }

        /// A client trusting `ca`, presenting `<identity>.pem` if given.
        fn client(&self, identity: Option<&str>) -> Arc<ClientConfig> {
            client_config(&ClientTlsFiles {
                ca_file: Some(self.path("ca.pem")),
                cert_file: identity.map(|name| self.path(&format!("{name}.pem"))),
                key_file: identity.map(|name| self.path(&format!("{name}.key"))),
            })
            .expect("client config")
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs a handshake in memory (and one message from the client); the server's error, if any.
    fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<(), super::super::TlsError> {
        use super::super::TlsStream;
        let mut client = TlsStream::client(client, "sip.test").expect("client");
        let mut server = TlsStream::server(server).expect("server");
        client.write_plaintext(b"OPTIONS").expect("queued");
        let mut received = Vec::new();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.poll_ciphertext(&mut wire);
            server.receive_ciphertext(&wire)?;
            server.read_plaintext(&mut received);
            wire.clear();
            server.poll_ciphertext(&mut wire);
            // The client's own view does not matter here: the server decides.
            let _ = client.receive_ciphertext(&wire);
        }
        assert_eq!(received, b"OPTIONS", "the handshake completed");
        Ok(())
    }

    #[test]
    fn a_client_ca_makes_the_listener_demand_a_certificate_signed_by_it() {
        use super::super::TlsError;
        let pki = Pki::new("client-ca");
        // Without: no certificate asked for, none needed.
        let open = pki.server(None).expect("server config");
        handshake(Arc::clone(&open), pki.client(None)).expect("no certificate needed");
        // With: a certificate from that CA is needed.
        let mutual = pki.server(Some("ca.pem")).expect("server config");
        handshake(Arc::clone(&mutual), pki.client(Some("client"))).expect("a trusted certificate");
        let none = handshake(Arc::clone(&mutual), pki.client(None)).expect_err("no certificate");
        assert!(matches!(none, TlsError::NoClientCertificate), "{none:?}");
        assert!(
            none.to_string().contains("`sip.tls_client_ca_file`"),
            "{none}"
        );
        let other = handshake(mutual, pki.client(Some("other-client"))).expect_err("another CA");
        assert!(
            matches!(other, TlsError::UntrustedClientCertificate),
            "{other:?}"
        );
        assert!(
            other.to_string().contains("`sip.tls_client_ca_file`"),
            "{other}"
        );
    }

    #[test]
    fn a_bad_client_ca_file_names_its_key() {
        let pki = Pki::new("bad-client-ca");
        let missing = pki.server(Some("missing.pem")).expect_err("no such file");
        assert!(
            matches!(
                missing,
                TlsConfigError::File {
                    key: "sip.tls_client_ca_file",
                    ..
                }
            ),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
        // A key is no certificate.
        let no_cert = pki.server(Some("ca.key")).expect_err("no certificate");
        assert!(
            matches!(
                no_cert,
                TlsConfigError::NoCertificate {
                    key: "sip.tls_client_ca_file",
                    ..
                }
            ),
            "{no_cert:?}"
        );
        assert!(
            no_cert.to_string().contains("`sip.tls_client_ca_file`"),
            "{no_cert}"
        );
    }
}
