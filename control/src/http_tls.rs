//! HTTPS for the API: the rustls configuration from `[https] cert`/`key`, reloaded on SIGHUP.
//! A reload that fails (a missing file, a key that does not match) keeps the certificate in
//! use and says why; connections already open are never touched, new ones get the new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// The current server configuration and where it came from.
#[derive(Debug)]
pub struct TlsReloader {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let config = crate::smtp::tls::server_config(cert, key).map_err(|e| e.to_string())?;
    let mut config = ServerConfig::clone(&config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl TlsReloader {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key); an error names the
    /// file and what is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let current = load(cert, key).map_err(|e| {
            Error::Config(format!(
                "`https.cert`/`https.key`: {e}; check the PEM files are readable and match"
            ))
        })?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(current),
        })
    }

    /// Reads the files again; on failure keeps the configuration in use and returns why.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(Arc::clone(&config))
    }

    /// Reloads on every SIGHUP until the process ends, logging the outcome.
    pub fn reload_on_sighup(self: Arc<Self>) -> Result<(), Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert = %self.cert.display(),
                        "HTTPS certificate reloaded; new connections use it"
                    ),
                    Err(e) => tracing::warn!(
                        cert = %self.cert.display(),
                        error = %e,
                        "HTTPS certificate reload failed; still serving the previous certificate"
                    ),
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_refused_with_the_key_names() {
        let missing = Path::new("/nonexistent/outdial-cert.pem");
        let err = TlsReloader::load(missing, missing)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("https.cert") && e.contains("outdial-cert.pem")),
            "{err:?}"
        );
    }
}
