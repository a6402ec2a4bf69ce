//! TLS for both ends of the HTTP API: the server's configuration (`serve --tls-cert --tls-key`)
//! and the client's (`run --server https://...`, trusting the system's roots plus `--server-ca`).
//!
//! Everything uses rustls with the `ring` provider, chosen explicitly here (never a process-wide
//! default, never aws-lc, never the system's OpenSSL). PEM files are read with rustls-pki-types.
//! This room only builds configurations; sockets and handshakes belong to `serve::listen` and
//! `client`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::sanitize;

/// Why a TLS configuration could not be built. Each message names the file and the flag.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{flag} {}: {problem}", sanitize::path(.path))]
    File {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "the certificate (--tls-cert) and the key (--tls-key) do not go together ({0}): give the \
         key the certificate was made for"
    )]
    Mismatch(String),
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The only crypto provider safe-exec uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file, in order (a chain: the server's first).
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem = |problem: String| TlsError::File {
        flag,
        path: path.to_path_buf(),
        problem,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| problem(pem_problem(&error)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(pem_problem(&error)))?;
    if certificates.is_empty() {
        return Err(problem(
            "no certificate in it (expected a PEM `BEGIN CERTIFICATE` block)".to_owned(),
        ));
    }
    Ok(certificates)
}

fn pem_problem(error: &rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(error) => crate::source::describe_io(error),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind in it".to_owned()
        }
        other => format!("not a valid PEM file ({other})"),
    }
}

/// The server's configuration: the certificate chain in `cert` and its private key in `key`
/// (PEM; PKCS#8, PKCS#1 or SEC1), HTTP/1.1 only.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("--tls-cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::File {
        flag: "--tls-key",
        path: key.to_path_buf(),
        problem: match error {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key in it (expected a PEM `BEGIN PRIVATE KEY` block)".to_owned()
            }
            other => pem_problem(&other),
        },
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Setup(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Mismatch(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client's configuration: the system's trusted roots, plus every certificate in `extra_ca`
/// (a private CA, or the server's own self-signed certificate).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system stores are not fatal: with `--server-ca` the private CA suffices, and
    // without it the handshake fails with a message naming `--server-ca`.
    let system = rustls_native_certs::load_native_certs();
    let _ = roots.add_parsable_certificates(system.certs);
    if let Some(path) = extra_ca {
        for certificate in certificates("--server-ca", path)? {
            roots.add(certificate).map_err(|error| TlsError::File {
                flag: "--server-ca",
                path: path.to_path_buf(),
                problem: format!("not a usable CA certificate ({error})"),
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Setup(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
