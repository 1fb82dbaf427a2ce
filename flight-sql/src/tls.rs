//! TLS for Flight SQL from `[tls]`: PEM files read once at start-up, so a bad path
//! or key stops `lakehouse up` with the setting named instead of failing each call.

use lakehouse_common::config::TlsConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::error::{Error, Result};

/// `None` when `tls.cert_path` is empty (plain gRPC).
pub fn server_tls(config: &TlsConfig) -> Result<Option<ServerTlsConfig>> {
    if !config.enabled() {
        return Ok(None);
    }
    let cert = read_pem("tls.cert_path", &config.cert_path)?;
    let key = read_pem("tls.key_path", &config.key_path)?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !config.client_ca_path.is_empty() {
        let ca = read_pem("tls.client_ca_path", &config.client_ca_path)?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}

fn read_pem(key: &str, path: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Config {
        key: key.to_string(),
        reason: format!("cannot read {path}: {e}"),
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::Config {
            key: key.to_string(),
            reason: format!("{path} is not a PEM file (no -----BEGIN line)"),
        });
    }
    Ok(bytes)
}
