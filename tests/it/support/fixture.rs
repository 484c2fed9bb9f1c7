//! A tiny HTTP/1.1 fixture server for the engine and ab tests: binds 127.0.0.1:0, runs on its own
//! thread and runtime, counts accepted connections, and answers through a handler closure; over
//! plain TCP ([`start`]) or HTTPS ([`start_tls`], with a certificate from [`super::tls`]).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What the handler sees of a request.
pub struct Req {
    /// Method and target from the request line, e.g. "GET" and "/buy/ticket?user_id=1".
    pub method: String,
    /// Origin-form target.
    pub target: String,
    /// Request body.
    pub body: Vec<u8>,
    /// The client asked to close the connection.
    pub close: bool,
    /// The request's headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Req {
    /// The first header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Wait this long before answering (a stall).
    pub delay: Duration,
    /// Header lines to add (`Set-Cookie`, a token in a header).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A 200 with `body`, answered at once.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

/// A running fixture server; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    /// Stops the accept loop and the connections.
    stop: CancellationToken,
    /// The server's thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Accepted connection count.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts a server answering every request with `handler`; it is listening when this returns.
pub fn start<H>(handler: H) -> Server
where
    H: Fn(&Req) -> Reply + Send + Sync + 'static,
{
    start_with(handler, None)
}

/// Like [`start`], over HTTPS: each connection's TLS handshake through `tls` first (one that
/// fails is closed, nothing answered).
pub fn start_tls<H>(handler: H, tls: TlsAcceptor) -> Server
where
    H: Fn(&Req) -> Reply + Send + Sync + 'static,
{
    start_with(handler, Some(tls))
}

fn start_with<H>(handler: H, tls: Option<TlsAcceptor>) -> Server
where
    H: Fn(&Req) -> Reply + Send + Sync + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let handler = Arc::new(handler);
    let thread = {
        let (accepted, requests, stop) = (accepted.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (sock, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                        _ = stop.cancelled() => break,
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.set_nodelay(true);
                    let (handler, requests, stop, tls) =
                        (handler.clone(), requests.clone(), stop.clone(), tls.clone());
                    tokio::spawn(async move {
                        let serve = async {
                            match tls {
                                None => serve_conn(sock, &*handler, &requests).await,
                                Some(tls) => {
                                    if let Ok(sock) = tls.accept(sock).await {
                                        serve_conn(sock, &*handler, &requests).await;
                                    }
                                }
                            }
                        };
                        tokio::select! {
                            _ = serve => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        })
    };
    Server {
        addr,
        accepted,
        requests,
        stop,
        thread: Some(thread),
    }
}

async fn serve_conn<S, H>(mut sock: S, handler: &H, requests: &AtomicU64)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(&Req) -> Reply,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Read one request head (and body, by Content-Length).
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let (mut len, mut close) = (0usize, false);
        let mut headers = Vec::new();
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            } else if k == "connection" && v == "close" {
                close = true;
            }
        }
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let req = Req {
            method,
            target,
            body,
            close,
            headers,
        };
        let reply = handler(&req);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let extra: String = reply
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let out = format!(
            "HTTP/1.1 {} X\r\nServer: fixture\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}{}\r\n{}",
            reply.status,
            reply.body.len(),
            if close { "Connection: close\r\n" } else { "" },
            reply.body
        );
        requests.fetch_add(1, Ordering::SeqCst);
        // TLS may hold back records it could not write at once: flush (a no-op over TCP).
        let sent = sock.write_all(out.as_bytes()).await.is_ok() && sock.flush().await.is_ok();
        if !sent || close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

/// The value of query parameter `name` in `target`.
pub fn query<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let q = target.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
