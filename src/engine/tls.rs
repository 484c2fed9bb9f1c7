//! HTTPS on the load path: the client configuration every connection of a run shares, and the
//! handshake in words a person can act on.
//!
//! rustls with the ring provider. The roots are the system store's (what `curl` and the
//! distribution trust: `rustls-native-certs` reads the same bundle as OpenSSL) plus, when given,
//! a CA file in PEM (`ab --cacert FILE`, `[target] ca_file`): a staging host's private CA, or the
//! tests' throwaway one. One `ClientConfig` per run, shared by every connection through an
//! `Arc`, so its session cache lets reconnects (ab without `-k`) resume instead of doing a full
//! handshake each time.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};

/// How a run's connections speak TLS: the shared client configuration and the server name.
#[derive(Clone)]
pub struct Tls {
    /// Roots, protocol versions, session cache; shared by every connection of the run.
    config: Arc<ClientConfig>,
    /// Sent as SNI when it is a DNS name, and what the certificate must be valid for.
    name: ServerName<'static>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration's own Debug lists every root certificate: the name says enough.
        f.debug_struct("Tls")
            .field("name", &self.name.to_str())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS for the server `name` (a DNS name or an IP address, no brackets), trusting the system
    /// store plus the certificates of `ca_file`, if given.
    pub fn new(name: &str, ca_file: Option<&Path>) -> anyhow::Result<Tls> {
        let name = ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a name TLS can check a certificate for"))?;
        let mut roots = RootCertStore::empty();
        // A broken entry in the system store is skipped, as OpenSSL does; an unreadable store
        // with no CA file given is an error below (no roots at all).
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            for cert in read_ca_file(path)? {
                roots.add(cert).with_context(|| {
                    format!("{}: a certificate rustls cannot use", path.display())
                })?;
            }
        }
        if roots.is_empty() {
            bail!(
                "no trusted CA certificates: the system store is empty or unreadable (install the \
                 ca-certificates package) and no CA file was given (--cacert FILE, [target] ca_file)"
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The engine speaks HTTP/1.1 only: say so, so that a server offering h2 does not pick it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }

    /// Runs the client handshake over `tcp`; a failure is said in words (which certificate
    /// check failed, and what to give).
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| self.describe(&e))
    }

    /// A handshake error as a sentence naming the server and, for certificates, what to do.
    fn describe(&self, err: &std::io::Error) -> String {
        let name = self.name.to_str();
        let tls = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match tls {
            // No trusted CA of the issuer's name (UnknownIssuer), or one of that name that did
            // not sign it (BadSignature: another CA file than the server's).
            Some(
                e @ rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ),
            ) => format!(
                "TLS handshake with {name} failed: {e}: it is not signed by a CA this machine \
                 trusts (give the CA that signed it with --cacert FILE or [target] ca_file)"
            ),
            Some(
                e @ rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ),
            ) => format!(
                "TLS handshake with {name} failed: the server's certificate is not valid for \
                 {name} ({e})"
            ),
            Some(e) => format!("TLS handshake with {name} failed: {e}"),
            None => format!("TLS handshake with {name} failed: {err}"),
        }
    }
}

/// The certificates of a PEM file (`-----BEGIN CERTIFICATE-----` blocks; anything else in the
/// file is skipped): at least one, or an error naming the file.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    // Read first, so that a missing file is said as such rather than as a PEM error.
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{}: no certificate in it (a CA file is PEM: -----BEGIN CERTIFICATE----- ...)",
            path.display()
        );
    }
    Ok(certs)
}
