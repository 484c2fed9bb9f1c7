//! HTTPS for the tests, all on loopback and all made at test time: a throwaway CA ([`Ca`]), server
//! certificates it signs for the names a test asks for, the fixture server over TLS
//! ([`super::fixture::start_tls`] with [`Ca::acceptor`]), and a TLS terminator ([`Terminator`])
//! that puts HTTPS in front of any plain server (a reference node). No key is ever written to the
//! source tree; the CA's certificate is written where a test asks, for `--cacert` and `ca_file`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

/// A certificate authority that exists for one test: its signing key and its certificate.
pub struct Ca {
    /// Signs server certificates.
    issuer: Issuer<'static, KeyPair>,
    /// Its own certificate, DER.
    der: CertificateDer<'static>,
    /// Its own certificate, PEM (what `--cacert` and `ca_file` read).
    pem: String,
}

impl Default for Ca {
    fn default() -> Self {
        Ca::new()
    }
}

impl Ca {
    /// A new CA with a fresh key.
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "grab-bench test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate (PEM) as `dir/name` and returns the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("writing the CA certificate");
        path
    }

    /// A server configuration whose certificate, signed by this CA, is valid for `names` (DNS
    /// names or IP addresses, e.g. `["localhost", "127.0.0.1"]`).
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "grab-bench test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let chain = vec![cert.der().clone(), self.der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// An acceptor for a server valid for `localhost` and `127.0.0.1`.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor_for(&["localhost", "127.0.0.1"])
    }

    /// An acceptor for a server valid for `names` only.
    pub fn acceptor_for(&self, names: &[&str]) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config(names))
    }
}

/// HTTPS on 127.0.0.1:0 in front of a plain HTTP server on loopback: each accepted connection's
/// TLS is terminated and its bytes copied both ways to `upstream`. Stops when dropped.
pub struct Terminator {
    /// Where it listens (HTTPS).
    pub addr: SocketAddr,
    /// Stops the accept loop and every connection.
    stop: CancellationToken,
    /// Its thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Terminator {
    /// Starts terminating TLS with `acceptor` for `upstream`; listening when this returns.
    pub fn start(acceptor: TlsAcceptor, upstream: SocketAddr) -> Terminator {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(accept_loop(std_listener, acceptor, upstream, stop));
                rt.shutdown_timeout(Duration::from_millis(100));
            })
        };
        Terminator {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    stop: CancellationToken,
) {
    let listener = TcpListener::from_std(listener).unwrap();
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = stop.cancelled() => break,
        };
        let (acceptor, stop) = (acceptor.clone(), stop.clone());
        tokio::spawn(async move {
            let relay = async {
                let _ = sock.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = plain.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            };
            tokio::select! {
                _ = relay => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
