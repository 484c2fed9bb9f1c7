//! A minimal HTTP/1.1 client connection for the hot path: one `write` of pre-serialised request
//! bytes, responses parsed in place with `httparse`, bodies sliced out of the read buffer.
//!
//! Measured against hyper's connection API on a 2-core machine against static nginx, hyper spends
//! ~2–3 µs of user CPU per request (channels, wakers, header maps, request objects); this spends a
//! fraction of that, which is what lets one engine thread keep up with wrk. It supports exactly
//! what the engine needs: `Content-Length`, `chunked` and read-until-close bodies, keep-alive and
//! `Connection: close`, over plain TCP or TLS ([`Stream`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::Tls;
use crate::protocol::Reason;

/// Most headers a response may have (more is [`Reason::Garbled`]).
const MAX_HEADERS: usize = 64;

/// Most bytes a response head (status line and headers, interim 1xx heads each) may take. A
/// server that sends an endless header line or endless headers is cut off here and the answer
/// is [`Reason::Garbled`], not a buffer that grows until the machine runs out of memory.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Default most body bytes an answer may carry ([`RawConn::with_body_limit`] changes it). Past
/// it the connection is closed without reading the rest and the answer is
/// [`Reason::BodyOverLimit`] (indeterminate: the server's word on the buy was never read).
///
/// Memory per connection is therefore bounded: the read buffer holds at most
/// `MAX_HEAD_BYTES + body limit + READ_SLACK` bytes (~136 KiB by default) and the caller's body
/// buffer at most the body limit, whatever the server sends.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Room kept free in the read buffer for one read; also the most a single read may overshoot a
/// limit by before it is noticed.
const READ_SLACK: usize = 8192;

/// A connection's byte stream: plain TCP, or TLS over TCP.
///
/// An enum rather than a type parameter: the engine's connection task, `Conn` and the hyper path
/// stay one type whatever the scheme, and the cost is one predictable branch per read or write
/// (a syscall each), not a virtual call. The TLS state (~1 KiB of buffers) is boxed so that a
/// plain connection does not carry its size.
pub(crate) enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`: rustls over the TCP stream.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why a connection could not be opened; nothing was sent on it.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect failed (refused, unreachable).
    Tcp(io::Error),
    /// The TLS handshake failed: a certificate the client does not trust, a wrong name, no
    /// common protocol. Said in words ([`Tls`]).
    Tls(String),
    /// Neither finished in time.
    Timeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "{e}"),
            ConnectError::Tls(why) => f.write_str(why),
            ConnectError::Timeout => f.write_str("no connection within the time limit"),
        }
    }
}

impl Stream {
    /// Connects to `addr` with `TCP_NODELAY` and, given `tls`, runs the TLS handshake.
    pub async fn open(addr: SocketAddr, tls: Option<&Tls>) -> Result<Stream, ConnectError> {
        let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => {
                let stream = tls.handshake(tcp).await.map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    }

    /// Whether an idle stream is still open and in step: no EOF, no bytes nobody asked for.
    /// Never waits.
    fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Stream::Plain(tcp) => match tcp.try_read(&mut probe) {
                Ok(_) => false, // EOF, or unsolicited bytes: the stream is out of step
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            },
            // TLS: the socket may hold records that are no data (a TLS 1.3 session ticket), so
            // a raw peek cannot tell; one read through rustls with a no-op waker can. Pending is
            // idle and open; EOF (a close_notify or FIN), data or an error is not usable. The
            // next real read registers the task's own waker, and readiness that came meanwhile
            // is kept by tokio, so nothing is lost.
            Stream::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(&mut **tls)
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// An open connection plus its read buffer.
pub(crate) struct RawConn {
    /// The stream (`TCP_NODELAY` set), plain or TLS.
    stream: Stream,
    /// Bytes read and not yet consumed (a response, or the start of one).
    rbuf: Vec<u8>,
    /// The connection must not be reused (server said close, or a body ran to EOF).
    closed: bool,
    /// When the last exchange's answer arrived, to decide whether an idle check is worth a
    /// syscall.
    last_used: Instant,
    /// Most body bytes an answer may carry ([`BODY_LIMIT`] unless set otherwise).
    body_limit: usize,
    /// The last answer's head (status line and headers), kept only when asked for
    /// ([`RawConn::keeping_heads`]: a description that reads cookies or headers).
    head: Option<Vec<u8>>,
}

/// What one exchange produced; the body is copied into the caller's buffer.
pub(crate) struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Exact size of the status line and headers.
    pub head_bytes: u64,
    /// When the head was complete.
    pub head_at: Instant,
    /// When the whole answer was in: `head_at` when the body came with the head (a small
    /// answer, the usual case: no second clock read), else read once the body was complete.
    pub done_at: Instant,
    /// `Server` header, when asked for.
    pub server: Option<String>,
}

/// Facts from a response head, extracted before the buffer is read into again.
struct Head {
    /// Status code.
    status: u16,
    /// Length of the head in bytes.
    len: usize,
    /// Body framing.
    body: Framing,
    /// No further requests on this connection.
    close: bool,
    /// `Server` header, when asked for.
    server: Option<String>,
}

/// How the body's end is found.
#[derive(Clone, Copy)]
enum Framing {
    /// Exactly this many bytes.
    Length(usize),
    /// Chunked transfer encoding.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

impl RawConn {
    /// Connects to `addr` with `TCP_NODELAY`, over TLS when `tls` is given. (The engine opens
    /// its streams itself, for either client: `conn::io::open`.)
    #[cfg(test)]
    pub async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> Result<RawConn, ConnectError> {
        Ok(RawConn::new(Stream::open(addr, tls).await?))
    }

    /// A connection over an open stream.
    pub fn new(stream: Stream) -> RawConn {
        RawConn {
            stream,
            rbuf: Vec::with_capacity(READ_SLACK),
            closed: false,
            last_used: Instant::now(),
            body_limit: BODY_LIMIT,
            head: None,
        }
    }

    /// The same connection keeping each answer's head for [`RawConn::head`].
    pub fn keeping_heads(mut self) -> RawConn {
        self.head = Some(Vec::new());
        self
    }

    /// The last answer's head, when heads are kept (else empty).
    pub fn head(&self) -> &[u8] {
        self.head.as_deref().unwrap_or_default()
    }

    /// The same connection with another body limit (see [`BODY_LIMIT`]).
    #[allow(dead_code)]
    pub fn with_body_limit(mut self, limit: usize) -> RawConn {
        self.body_limit = limit;
        self
    }

    /// Gives up on the connection: it is closed (never reused) and `reason` is the answer.
    fn give_up(&mut self, reason: Reason) -> Reason {
        self.closed = true;
        self.rbuf = Vec::new();
        reason
    }

    /// Whether the connection can carry another request. After an idle spell, a non-blocking
    /// read detects a server that closed it meanwhile, so that is not counted as a failure.
    #[cfg(test)]
    pub fn usable(&mut self) -> bool {
        self.usable_at(Instant::now())
    }

    /// [`RawConn::usable`] at `now`, a time the caller has already read (the engine's connection
    /// task knows when its request starts: no clock read per request here).
    pub fn usable_at(&mut self, now: Instant) -> bool {
        if self.closed {
            return false;
        }
        if now.saturating_duration_since(self.last_used).as_millis() < 200 {
            return true;
        }
        self.stream.idle_and_open()
    }

    /// Writes `request` and reads one whole response; its body is copied into `body`.
    /// `head_only` is for responses that have no body whatever their headers say (HEAD).
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        want_server: bool,
        body: &mut Vec<u8>,
    ) -> Result<RawResponse, Reason> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| Reason::IoError)?;
        if let Stream::Tls(tls) = &mut self.stream {
            // rustls may keep records it could not write yet; plain TCP has nothing to flush.
            tls.flush().await.map_err(|_| Reason::IoError)?;
        }
        let head = loop {
            if self.rbuf.is_empty() {
                // The usual case after a request: nothing buffered, nothing to parse yet.
                self.fill().await?;
            }
            let parsed = parse_head(&self.rbuf, want_server);
            match parsed.map_err(|r| self.give_up(r))? {
                // An interim 1xx (103 Early Hints, an unasked 100 Continue) is not the answer:
                // RFC 9110 §15.2 has clients accept them even unasked. Returned as the answer,
                // it left the real one buffered for the next request, a step out of sync. (101
                // stays final: the engine never asks to switch protocols.)
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    self.rbuf.drain(..h.len);
                }
                Some(h) => break h,
                None if self.rbuf.len() > MAX_HEAD_BYTES => {
                    return Err(self.give_up(Reason::Garbled));
                }
                None => self.fill().await?,
            }
        };
        if let Some(kept) = self.head.as_mut() {
            kept.clear();
            kept.extend_from_slice(&self.rbuf[..head.len]);
        }
        // One clock read per exchange: when the head arrived, which is also when the connection
        // was last used (the body of a small answer comes with its head; a large one makes the
        // idle check in `usable_at` only come sooner).
        let head_at = Instant::now();
        let framing = if head_only || head.status == 204 || head.status == 304 || head.status < 200
        {
            Framing::Length(0)
        } else {
            head.body
        };
        body.clear();
        // Whether the body needed more reads after the head (then `done_at` is read anew).
        let mut more = false;
        let consumed = match framing {
            Framing::Length(n) => {
                // `n` is the server's word: near usize::MAX, `head.len + n` overflowed (a panic
                // in debug builds, a wrapped bound and an out-of-range slice in release).
                let end = head.len.checked_add(n).ok_or(Reason::Garbled)?;
                if n > self.body_limit {
                    // Said up front: nothing of it is read (a huge length then a hang costs
                    // neither memory nor the request timeout).
                    return Err(self.give_up(Reason::BodyOverLimit));
                }
                while self.rbuf.len() < end {
                    more = true;
                    self.fill().await?;
                }
                body.extend_from_slice(&self.rbuf[head.len..end]);
                end
            }
            Framing::Chunked => loop {
                match decode_chunked(&self.rbuf[head.len..], body)? {
                    Some(_) if body.len() > self.body_limit => {
                        body.clear();
                        return Err(self.give_up(Reason::BodyOverLimit));
                    }
                    Some(n) => break head.len + n,
                    // The encoded bytes bound the decoded ones: past the limit plus framing room
                    // (sizes, extensions, trailers) it cannot end within it.
                    None if self.rbuf.len() - head.len > self.body_limit + READ_SLACK => {
                        return Err(self.give_up(Reason::BodyOverLimit));
                    }
                    None => {
                        more = true;
                        self.fill().await?;
                    }
                }
            },
            Framing::UntilClose => {
                more = true;
                self.closed = true;
                loop {
                    let before = self.rbuf.len();
                    if self.fill_or_eof().await? == 0 && self.rbuf.len() == before {
                        break;
                    }
                    if self.rbuf.len() - head.len > self.body_limit {
                        return Err(self.give_up(Reason::BodyOverLimit));
                    }
                }
                body.extend_from_slice(&self.rbuf[head.len..]);
                self.rbuf.len()
            }
        };
        self.rbuf.drain(..consumed);
        self.closed |= head.close;
        self.last_used = head_at;
        Ok(RawResponse {
            status: head.status,
            head_bytes: head.len as u64,
            head_at,
            done_at: if more { Instant::now() } else { head_at },
            server: head.server,
        })
    }

    /// Reads more bytes; EOF before the response is complete is an error.
    async fn fill(&mut self) -> Result<(), Reason> {
        match self.fill_or_eof().await? {
            0 => Err(Reason::IoError),
            _ => Ok(()),
        }
    }

    /// Reads more bytes, returning how many (0 at EOF).
    async fn fill_or_eof(&mut self) -> Result<usize, Reason> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(READ_SLACK);
        }
        self.stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|_| Reason::IoError)
    }
}

/// Parses a response head at the start of `buf`; `None` when more bytes are needed.
fn parse_head(buf: &[u8], want_server: bool) -> Result<Option<Head>, Reason> {
    // Uninitialised header slots: `Response::new` over `[EMPTY_HEADER; 64]` wrote 2 KiB per
    // answer before parsing it; httparse fills only the slots it uses.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Reason::Garbled),
    };
    let status = resp.code.unwrap_or(0);
    let mut body = Framing::UntilClose;
    let mut close = resp.version == Some(0);
    let mut server = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if !matches!(body, Framing::Chunked) {
                let n = crate::protocol::parse_u64(trim(h.value)).ok_or(Reason::Garbled)?;
                // Not `as usize`: on a 32-bit target that would silently truncate the length.
                let n = usize::try_from(n).map_err(|_| Reason::Garbled)?;
                body = Framing::Length(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if trim(h.value).eq_ignore_ascii_case(b"chunked") {
                body = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = trim(h.value);
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        } else if want_server && h.name.eq_ignore_ascii_case("server") {
            server = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
    }
    Ok(Some(Head {
        status,
        len,
        body,
        close,
        server,
    }))
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Decodes a complete chunked body at the start of `buf` into `out`; returns the bytes consumed,
/// or `None` when more bytes are needed (then `out` is left cleared).
fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Reason> {
    out.clear();
    let mut i = 0;
    loop {
        let Some(eol) = find_crlf(&buf[i..]) else {
            out.clear();
            return Ok(None);
        };
        let line = &buf[i..i + eol];
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = usize::from_str_radix(
            std::str::from_utf8(trim(size_part)).map_err(|_| Reason::Garbled)?,
            16,
        )
        .map_err(|_| Reason::Garbled)?;
        i += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[i..]) else {
                    out.clear();
                    return Ok(None);
                };
                i += eol + 2;
                if eol == 0 {
                    return Ok(Some(i));
                }
            }
        }
        // The size is the server's word: near usize::MAX, `i + size + 2` overflowed (a panic in
        // debug builds, a wrapped bound and an out-of-range slice in release).
        let end = i
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or(Reason::Garbled)?;
        if buf.len() < end {
            out.clear();
            return Ok(None);
        }
        // The data must end in CRLF. Skipping those two bytes unchecked accepted a chunk longer
        // than its size line (`3\r\nabcd\r\n0\r\n\r\n` decoded as "abc"): a wrong body, where
        // Garbled is the truth.
        if &buf[i + size..end] != b"\r\n" {
            return Err(Reason::Garbled);
        }
        out.extend_from_slice(&buf[i..i + size]);
        i = end;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// The request every loopback test sends (no body, so the server reads exactly this).
    const REQ: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    /// Pause between scripted writes so that they reach the client as separate reads. The
    /// assertions hold however the pieces coalesce; the gap only makes the split (near) certain.
    const GAP: Duration = Duration::from_millis(5);
    /// Bound on anything that should finish at once, so that a regression fails instead of hanging.
    const HANG: Duration = Duration::from_secs(5);
    /// A plain keep-alive answer.
    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    /// A connected client and the server's end of the same loopback connection.
    async fn pair() -> (RawConn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (conn, accepted) = tokio::join!(RawConn::connect(addr, None), listener.accept());
        let (srv, _) = accepted.expect("accept");
        srv.set_nodelay(true).expect("nodelay");
        (conn.expect("connect"), srv)
    }

    /// Reads one request on the server side and checks it arrived intact.
    async fn expect_request(srv: &mut TcpStream) {
        let mut got = vec![0u8; REQ.len()];
        srv.read_exact(&mut got).await.expect("server read");
        assert_eq!(got, REQ);
    }

    /// Answers one request with `pieces`, each its own write, a short gap between them.
    async fn answer(srv: &mut TcpStream, pieces: &[&[u8]]) {
        expect_request(srv).await;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(GAP).await;
            }
            srv.write_all(piece).await.expect("server write");
        }
    }

    /// Runs `exchange` (bounded by [`HANG`]) while `server` plays its part; status and body.
    async fn run(
        conn: &mut RawConn,
        head_only: bool,
        server: impl Future<Output = ()>,
    ) -> Result<(u16, Vec<u8>), Reason> {
        let mut body = Vec::new();
        let work = tokio::time::timeout(HANG, conn.exchange(REQ, head_only, false, &mut body));
        let (r, ()) = tokio::join!(work, server);
        r.expect("exchange hung").map(|r| (r.status, body))
    }

    /// One exchange whose answer is `pieces`, written separately.
    async fn get(
        conn: &mut RawConn,
        srv: &mut TcpStream,
        pieces: &[&[u8]],
    ) -> Result<(u16, Vec<u8>), Reason> {
        run(conn, false, answer(srv, pieces)).await
    }

    /// One exchange on a fresh connection whose server writes `pieces` and then closes.
    async fn get_then_close(pieces: &[&[u8]]) -> (Result<(u16, Vec<u8>), Reason>, RawConn) {
        let (mut conn, mut srv) = pair().await;
        let server = async {
            answer(&mut srv, pieces).await;
            srv.shutdown().await.expect("server shutdown");
        };
        (run(&mut conn, false, server).await, conn)
    }

    fn ok(status: u16, body: &[u8]) -> Result<(u16, Vec<u8>), Reason> {
        Ok((status, body.to_vec()))
    }

    // decode_chunked: whole body decoded and what follows untouched; prefix None; non-hex Garbled.
    #[test]
    fn chunked_bodies() {
        let mut out = Vec::new();
        let body = b"4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\nTrailer: 1\r\n\r\nNEXT";
        assert_eq!(decode_chunked(body, &mut out), Ok(Some(body.len() - 4)));
        assert_eq!(out, b"Wikipedia ");
        assert_eq!(decode_chunked(&body[..10], &mut out), Ok(None));
        assert_eq!(decode_chunked(b"zz\r\n", &mut out), Err(Reason::Garbled));
    }

    // parse_head extracts status, head length, framing, close and Server; a partial head is None.
    #[test]
    fn heads() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.len, h.close), (200, 68, true));
        assert!(matches!(h.body, Framing::Length(5)));
        assert_eq!(h.server.as_deref(), Some("x"));
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-", false)
                .unwrap()
                .is_none()
        );
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(h.close && matches!(h.body, Framing::UntilClose));
    }

    // Several chunks (hex case, leading zeros, extensions, trailers) in one write decode exactly.
    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let (mut conn, mut srv) = pair().await;
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n\
            1\r\na\r\n\
            A;name=\"q;v\"\r\n0123456789\r\n\
            00010;a=1;b\r\nABCDEFGHIJKLMNOP\r\n\
            0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n";
        assert_eq!(
            get(&mut conn, &mut srv, &[resp]).await,
            ok(200, b"a0123456789ABCDEFGHIJKLMNOP")
        );
        // An empty chunked body.
        let empty: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(get(&mut conn, &mut srv, &[empty]).await, ok(200, b""));
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // Transfer-Encoding: chunked wins over Content-Length, whichever header comes first.
    #[tokio::test]
    async fn chunked_overrides_content_length() {
        let (mut conn, mut srv) = pair().await;
        let cl_first: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\
            Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n";
        let te_first: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
            Content-Length: 3\r\n\r\n6\r\nsecond\r\n0\r\n\r\n";
        assert_eq!(
            get(&mut conn, &mut srv, &[cl_first]).await,
            ok(200, b"first")
        );
        assert_eq!(
            get(&mut conn, &mut srv, &[te_first]).await,
            ok(200, b"second")
        );
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // A chunked body arriving in separate reads (split mid size line, data, CRLF) is reassembled.
    #[tokio::test]
    async fn chunked_split_across_reads() {
        let (mut conn, mut srv) = pair().await;
        let pieces: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"4\r\nWi",
            b"ki\r\n6;x=y\r\npedia \r",
            b"\n1",
            b"0\r\n0123456789abcdef\r\n0\r\nTrai",
            b"ler: 1\r\n",
            b"\r\n",
        ];
        assert_eq!(
            get(&mut conn, &mut srv, pieces).await,
            ok(200, b"Wikipedia 0123456789abcdef")
        );
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // A Content-Length body written in three pieces after its head is read in full.
    #[tokio::test]
    async fn content_length_body_split_across_reads() {
        let (mut conn, mut srv) = pair().await;
        let pieces: &[&[u8]] = &[
            b"HTTP/1.1 201 Created\r\nContent-Length: 26\r\n\r\n",
            b"abcdefgh",
            b"ijklmnopq",
            b"rstuvwxyz",
        ];
        assert_eq!(
            get(&mut conn, &mut srv, pieces).await,
            ok(201, b"abcdefghijklmnopqrstuvwxyz")
        );
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // A head split mid status line, mid header and mid final CRLF is waited for, then parsed.
    #[tokio::test]
    async fn head_split_mid_header() {
        let (mut conn, mut srv) = pair().await;
        let pieces: &[&[u8]] = &[
            b"HT",
            b"TP/1.1 2",
            b"00 OK\r\nContent-Le",
            b"ngth: 1",
            b"1\r\nX-A: b\r\n\r",
            b"\nhello world",
        ];
        assert_eq!(
            get(&mut conn, &mut srv, pieces).await,
            ok(200, b"hello world")
        );
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // Two responses pipelined in one write: the second is kept and returned by the next exchange.
    #[tokio::test]
    async fn pipelined_responses_in_one_write() {
        let (mut conn, mut srv) = pair().await;
        let both: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst\
            HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n";
        assert_eq!(get(&mut conn, &mut srv, &[both]).await, ok(200, b"first"));
        assert!(conn.usable());
        // The server only reads the second request; the answer is already in the buffer.
        assert_eq!(
            run(&mut conn, false, expect_request(&mut srv)).await,
            ok(404, b"second")
        );
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // 204, 304 and HEAD answers have no body whatever Content-Length says; nothing is waited for.
    #[tokio::test]
    async fn bodiless_answers() {
        let (mut conn, mut srv) = pair().await;
        let no_content: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
        let not_modified: &[u8] = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(get(&mut conn, &mut srv, &[no_content]).await, ok(204, b""));
        assert_eq!(
            get(&mut conn, &mut srv, &[not_modified]).await,
            ok(304, b"")
        );
        let answered = run(&mut conn, true, answer(&mut srv, &[head])).await;
        assert_eq!(answered, ok(200, b""));
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // `Connection: close`: the response is read without waiting for EOF, then usable() is false.
    #[tokio::test]
    async fn connection_close_is_read_then_unusable() {
        for resp in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nconnection: Close\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\nok\r\n0\r\n\r\n",
        ] {
            let (mut conn, mut srv) = pair().await;
            assert!(conn.usable());
            // The server keeps its end open: the exchange must end on the framing alone.
            assert_eq!(get(&mut conn, &mut srv, &[resp]).await, ok(200, b"ok"));
            assert!(!conn.usable());
        }
    }

    // With no length or chunking (HTTP/1.0 or 1.1) the body runs until EOF; then not usable.
    #[tokio::test]
    async fn body_until_close() {
        for head in [
            &b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
        ] {
            let (got, mut conn) = get_then_close(&[head, b"first ", b"second"]).await;
            assert_eq!(got, ok(200, b"first second"));
            assert!(!conn.usable());
        }
    }

    /// Sends one request to a server that answers with `head`, then writes `filler` without
    /// end; the client's result (the server is dropped once the client gives up).
    async fn endless(
        conn: &mut RawConn,
        srv: &mut TcpStream,
        head: &[u8],
        filler: &[u8],
    ) -> Reason {
        let server = async {
            expect_request(srv).await;
            if srv.write_all(head).await.is_ok() {
                while srv.write_all(filler).await.is_ok() {}
            }
            std::future::pending::<()>().await
        };
        let mut body = Vec::new();
        let work = tokio::time::timeout(HANG, conn.exchange(REQ, false, false, &mut body));
        tokio::select! {
            r = work => {
                assert!(body.len() <= BODY_LIMIT);
                r.expect("exchange hung").err().expect("an endless answer is no answer")
            }
            () = server => unreachable!(),
        }
    }

    // An endless header line, endless headers: cut off at MAX_HEAD_BYTES as Garbled, closed.
    #[tokio::test]
    async fn endless_head_is_garbled_and_closed() {
        for (head, filler) in [
            (&b"HTTP/1.1 200 OK\r\nX-Long: "[..], &[b'a'; 4096][..]),
            (
                b"HTTP/1.1 200 OK\r\n",
                &b"X-Many: header\r\n".repeat(256)[..],
            ),
        ] {
            let (mut conn, mut srv) = pair().await;
            let got = endless(&mut conn, &mut srv, head, filler).await;
            assert_eq!(got, Reason::Garbled);
            assert!(!conn.usable());
            assert_eq!(conn.rbuf.capacity(), 0, "buffer released");
        }
    }

    // Endless bodies, read-until-close and chunked: cut off past the body limit, closed, and
    // the buffer never held much more than head + limit + one read.
    #[tokio::test]
    async fn endless_body_is_over_limit_and_bounded() {
        let chunk = b"1000\r\n"
            .iter()
            .chain(&[b'b'; 4096])
            .chain(b"\r\n")
            .copied();
        let chunk: &'static [u8] = Vec::leak(chunk.collect());
        for (head, filler) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'b'; 4096][..]),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                chunk,
            ),
        ] {
            let (mut conn, mut srv) = pair().await;
            let got = endless(&mut conn, &mut srv, head, filler).await;
            assert_eq!(got, Reason::BodyOverLimit);
            assert!(!conn.usable());
        }
    }

    // A huge Content-Length then silence: over the limit at once, nothing waited for.
    #[tokio::test]
    async fn huge_content_length_is_over_limit_at_once() {
        let (mut conn, mut srv) = pair().await;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let server = async {
            answer(
                &mut srv,
                &[b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nab"],
            )
            .await;
            // Hang (keep the connection open) until the client is done.
            let _ = done_rx.await;
        };
        let client = async {
            let mut body = Vec::new();
            let r = tokio::time::timeout(HANG, conn.exchange(REQ, false, false, &mut body)).await;
            let _ = done_tx.send(());
            r.expect("exchange hung").map(|r| r.status)
        };
        let (got, ()) = tokio::join!(client, server);
        assert_eq!(got.err(), Some(Reason::BodyOverLimit));
    }

    // A body of exactly the limit is kept whole, whatever its framing; one byte more is not.
    #[tokio::test]
    async fn body_at_the_limit_is_kept() {
        let limit = 1000;
        for n in [limit, limit + 1] {
            let body = vec![b'x'; n];
            let length = [
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes(),
                body.clone(),
            ]
            .concat();
            let chunked = [
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n")
                    .into_bytes(),
                body.clone(),
                b"\r\n0\r\n\r\n".to_vec(),
            ]
            .concat();
            for resp in [length, chunked] {
                let (conn, mut srv) = pair().await;
                let mut conn = conn.with_body_limit(limit);
                let got = get(&mut conn, &mut srv, &[&resp]).await;
                if n == limit {
                    assert_eq!(got, ok(200, &body));
                } else {
                    assert_eq!(got, Err(Reason::BodyOverLimit));
                }
            }
        }
    }

    // HTTP/1.0 with `Connection: keep-alive` and a length is reused.
    #[tokio::test]
    async fn http10_keep_alive_is_reused() {
        let (mut conn, mut srv) = pair().await;
        let resp: &[u8] =
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(get(&mut conn, &mut srv, &[resp]).await, ok(200, b"ok"));
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // A lying Content-Length on an open connection ends in the timeout; on close, in IoError.
    #[tokio::test]
    async fn lying_content_length_times_out_then_fails_on_close() {
        let (mut conn, mut srv) = pair().await;
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            expect_request(&mut srv).await;
            srv.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await
                .expect("server write");
            sent_tx.send(()).expect("test waits for the bytes");
            close_rx.await.expect("test says when to close");
            // Dropping `srv` closes the connection.
        });
        let mut body = Vec::new();
        let work = conn.exchange(REQ, false, false, &mut body);
        tokio::pin!(work);
        // Drive the exchange until the server has sent all it ever will.
        tokio::select! {
            r = &mut work => panic!("exchange ended early: {:?}", r.map(|r| r.status)),
            sent = sent_rx => sent.expect("server sent"),
        }
        // Wrapped like the engine wraps it (conn/io.rs): the timeout is what ends it.
        let timed = tokio::time::timeout(Duration::from_millis(50), &mut work).await;
        assert!(
            timed.is_err(),
            "a short body must not complete the exchange"
        );
        close_tx.send(()).expect("server waiting");
        let after_close = tokio::time::timeout(HANG, &mut work).await;
        let after_close = after_close.expect("exchange hung after the server closed");
        assert_eq!(after_close.map(|r| r.status), Err(Reason::IoError));
        server.await.expect("server task");
    }

    // Interim 1xx answers (103, an unasked 100) are skipped: the final answer is returned.
    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let (mut conn, mut srv) = pair().await;
        let all: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal";
        assert_eq!(get(&mut conn, &mut srv, &[all]).await, ok(200, b"final"));
        let pieces: &[&[u8]] = &[
            b"HTTP/1.1 100 Continue\r\n",
            b"\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n",
            b"made",
        ];
        assert_eq!(get(&mut conn, &mut srv, pieces).await, ok(201, b"made"));
        assert!(conn.usable());
        assert_eq!(get(&mut conn, &mut srv, &[HELLO]).await, ok(200, b"hello"));
    }

    // Not HTTP instead of a status line is garbled.
    #[tokio::test]
    async fn garbage_status_line_is_garbled() {
        let (mut conn, mut srv) = pair().await;
        let got = get(&mut conn, &mut srv, &[b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]).await;
        assert_eq!(got, Err(Reason::Garbled));
        let (mut conn, mut srv) = pair().await;
        let got = get(&mut conn, &mut srv, &[b"HTTP/1.1 2x0 OK\r\n\r\n"]).await;
        assert_eq!(got, Err(Reason::Garbled));
    }

    // A Content-Length that is not a plain decimal number is garbled.
    #[tokio::test]
    async fn non_numeric_content_length_is_garbled() {
        for value in ["12abc", "-1", "", "0x10", "5, 5", "99999999999999999999999"] {
            let (mut conn, mut srv) = pair().await;
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nhello");
            let got = get(&mut conn, &mut srv, &[resp.as_bytes()]).await;
            assert_eq!(got, Err(Reason::Garbled), "Content-Length: {value:?}");
        }
    }

    // A Content-Length too large to add to the head's length is garbled, not a panic.
    #[tokio::test]
    async fn content_length_overflow_is_garbled() {
        let (mut conn, mut srv) = pair().await;
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nhello";
        assert_eq!(
            get(&mut conn, &mut srv, &[resp]).await,
            Err(Reason::Garbled)
        );
    }

    // A chunk size too large to index with is garbled, not a panic.
    #[test]
    fn chunk_size_overflow_is_garbled() {
        let mut out = Vec::new();
        for size in ["ffffffffffffffff", "fffffffffffffffe", "fffffffffffffffd"] {
            let buf = format!("{size}\r\nhello\r\n0\r\n\r\n");
            let got = decode_chunked(buf.as_bytes(), &mut out);
            assert_eq!(got, Err(Reason::Garbled), "chunk size {size}");
        }
    }

    // A chunk longer than its size line (data not followed by CRLF) is Garbled, not cut short.
    #[test]
    fn chunk_data_without_crlf_is_garbled() {
        let mut out = Vec::new();
        assert_eq!(
            decode_chunked(b"3\r\nabcd\r\n0\r\n\r\n", &mut out),
            Err(Reason::Garbled)
        );
        assert_eq!(
            decode_chunked(b"3\r\nabcXY0\r\n\r\n", &mut out),
            Err(Reason::Garbled)
        );
        // Still only a prefix: more bytes are needed, nothing is decided yet.
        assert_eq!(decode_chunked(b"3\r\nabc\r", &mut out), Ok(None));
    }

    // EOF before the head is complete (nothing at all, or part of a head) is an IoError.
    #[tokio::test]
    async fn eof_before_head_is_io_error() {
        let (got, _) = get_then_close(&[]).await;
        assert_eq!(got, Err(Reason::IoError));
        let (got, _) = get_then_close(&[b"HTTP/1.1 200 OK\r\nContent-"]).await;
        assert_eq!(got, Err(Reason::IoError));
    }

    // EOF inside a chunked body is an IoError, not a short body.
    #[tokio::test]
    async fn eof_inside_chunked_body_is_io_error() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (got, _) = get_then_close(&[head, b"5\r\nhel"]).await;
        assert_eq!(got, Err(Reason::IoError));
        let (got, _) = get_then_close(&[head, b"5\r\nhello\r\n0\r\n"]).await;
        assert_eq!(got, Err(Reason::IoError));
    }

    // ---- TLS ----

    /// A client over TLS (trusting a CA made here, for `localhost`) and the server's end.
    async fn tls_pair() -> (RawConn, tokio_rustls::server::TlsStream<TcpStream>) {
        use std::sync::Arc;
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio_rustls::rustls::{ServerConfig, crypto::ring::default_provider};
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("CA file");
        let tls = Tls::new("localhost", Some(&ca_file)).expect("client config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let accept = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            acceptor.accept(tcp).await.expect("server handshake")
        };
        let (conn, srv) = tokio::join!(RawConn::connect(addr, Some(&tls)), accept);
        (conn.expect("client handshake"), srv)
    }

    // Over TLS: an exchange works; an idle connection whose only unread record is no data (a
    // TLS 1.3 KeyUpdate here; session tickets alike) stays usable, where a peek at the socket
    // would have seen unsolicited bytes; one the server closed (close_notify, FIN) is not.
    #[tokio::test]
    async fn tls_exchange_and_idle_checks() {
        let (mut conn, mut srv) = tls_pair().await;
        let server = async {
            let mut got = vec![0u8; REQ.len()];
            srv.read_exact(&mut got).await.expect("server read");
            assert_eq!(got, REQ);
            srv.write_all(HELLO).await.expect("server write");
            srv.flush().await.expect("server flush");
        };
        assert_eq!(run(&mut conn, false, server).await, ok(200, b"hello"));
        srv.get_mut().1.refresh_traffic_keys().expect("key update");
        srv.flush().await.expect("server flush");
        // Past the 200 ms in which a connection is trusted without a look.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(conn.usable(), "idle and open");
        // And still in step: the next exchange, under the new keys, works.
        let server = async {
            let mut got = vec![0u8; REQ.len()];
            srv.read_exact(&mut got).await.expect("server read");
            srv.write_all(HELLO).await.expect("server write");
            srv.flush().await.expect("server flush");
        };
        assert_eq!(run(&mut conn, false, server).await, ok(200, b"hello"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        srv.shutdown().await.expect("server close");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.usable(), "closed by the server");
    }

    // ---- Property tests of the parser ----

    use proptest::prelude::*;
    use proptest::sample::Index;

    /// How a generated response frames its body.
    #[derive(Debug, Clone)]
    enum Frame {
        /// `Content-Length` in this spelling, its value padded with spaces or not.
        Length { name: &'static str, pad: bool },
        /// Chunked: body cut at `cuts`, size lines styled from `styles` in turn, then trailers.
        Chunked {
            cuts: Vec<Index>,
            styles: Vec<ChunkStyle>,
            trailers: Vec<(String, String)>,
        },
    }

    /// How one chunk-size line is written.
    #[derive(Debug, Clone)]
    struct ChunkStyle {
        /// Leading zeros.
        zeros: usize,
        /// Upper-case hex digits.
        upper: bool,
        /// A chunk extension (`;name` or `;name=value`).
        ext: Option<String>,
    }

    /// A response to serialise, with what the parser must recover from it.
    #[derive(Debug, Clone)]
    struct Spec {
        status: u16,
        reason: String,
        http10: bool,
        /// `Some(true)`: `Connection: close`; `Some(false)`: `Connection: keep-alive`.
        connection: Option<bool>,
        /// Other headers (never framing or connection ones).
        headers: Vec<(String, String)>,
        /// Where among `headers` the framing and connection headers go.
        at: (Index, Index),
        body: Vec<u8>,
        frame: Frame,
    }

    impl Spec {
        /// Whether the connection must not be reused after this response.
        fn close(&self) -> bool {
            self.connection.unwrap_or(self.http10)
        }

        /// The response's bytes and the length of its head.
        fn serialise(&self) -> (Vec<u8>, usize) {
            let mut lines: Vec<String> = self
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}\r\n"))
                .collect();
            let framing = match &self.frame {
                Frame::Length { name, pad: true } => format!("{name}:  {} \r\n", self.body.len()),
                Frame::Length { name, pad: false } => format!("{name}:{}\r\n", self.body.len()),
                Frame::Chunked { .. } => "Transfer-Encoding: chunked\r\n".to_string(),
            };
            lines.insert(self.at.0.index(lines.len() + 1), framing);
            if let Some(close) = self.connection {
                let v = if close { "close" } else { "keep-alive" };
                lines.insert(
                    self.at.1.index(lines.len() + 1),
                    format!("Connection: {v}\r\n"),
                );
            }
            let version = if self.http10 { 0 } else { 1 };
            let mut out = format!("HTTP/1.{version} {} {}\r\n", self.status, self.reason);
            out.extend(lines);
            out.push_str("\r\n");
            let mut out = out.into_bytes();
            let head_len = out.len();
            match &self.frame {
                Frame::Length { .. } => out.extend_from_slice(&self.body),
                Frame::Chunked {
                    cuts,
                    styles,
                    trailers,
                } => {
                    let mut at: Vec<usize> =
                        cuts.iter().map(|c| c.index(self.body.len() + 1)).collect();
                    at.push(self.body.len());
                    at.sort_unstable();
                    at.dedup();
                    let mut from = 0;
                    let mut n = 0;
                    for to in at.into_iter().filter(|&to| to > 0) {
                        size_line(&mut out, to - from, &styles[n % styles.len()]);
                        out.extend_from_slice(&self.body[from..to]);
                        out.extend_from_slice(b"\r\n");
                        (from, n) = (to, n + 1);
                    }
                    size_line(&mut out, 0, &styles[n % styles.len()]);
                    for (name, value) in trailers {
                        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            (out, head_len)
        }
    }

    /// Appends a chunk-size line for `size` written in `style`.
    fn size_line(out: &mut Vec<u8>, size: usize, style: &ChunkStyle) {
        let hex = if style.upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        out.extend(std::iter::repeat_n(b'0', style.zeros));
        out.extend_from_slice(hex.as_bytes());
        if let Some(ext) = &style.ext {
            out.push(b';');
            out.extend_from_slice(ext.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Header names other than the framing and connection ones, and printable values.
    fn header() -> impl Strategy<Value = (String, String)> {
        let name = "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}".prop_filter("chosen apart", |n| {
            !["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| n.eq_ignore_ascii_case(f))
        });
        (name, "[ -~]{0,24}")
    }

    fn chunk_style() -> impl Strategy<Value = ChunkStyle> {
        let ext = proptest::option::of("[a-z]{1,5}(=[a-z0-9]{0,5})?");
        (0..3usize, any::<bool>(), ext).prop_map(|(zeros, upper, ext)| ChunkStyle {
            zeros,
            upper,
            ext,
        })
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let length = (
            prop::sample::select(vec!["Content-Length", "content-length", "CONTENT-LENGTH"]),
            any::<bool>(),
        )
            .prop_map(|(name, pad)| Frame::Length { name, pad });
        let chunked = (
            prop::collection::vec(any::<Index>(), 0..8),
            prop::collection::vec(chunk_style(), 1..4),
            prop::collection::vec(header(), 0..3),
        )
            .prop_map(|(cuts, styles, trailers)| Frame::Chunked {
                cuts,
                styles,
                trailers,
            });
        prop_oneof![length, chunked]
    }

    /// Responses with any status in `status`.
    fn spec(status: std::ops::RangeInclusive<u16>) -> impl Strategy<Value = Spec> {
        (
            (status, "[A-Za-z ]{0,12}", any::<bool>()),
            proptest::option::of(any::<bool>()),
            prop::collection::vec(header(), 0..8),
            (any::<Index>(), any::<Index>()),
            prop::collection::vec(any::<u8>(), 0..300),
            frame(),
        )
            .prop_map(
                |((status, reason, http10), connection, headers, at, body, frame)| Spec {
                    status,
                    reason,
                    http10,
                    connection,
                    headers,
                    at,
                    body,
                    frame,
                },
            )
    }

    /// Interim statuses: 1xx but 101, which is final.
    fn interim_status() -> impl Strategy<Value = u16> {
        (100..=199u16).prop_filter("101 is final", |s| *s != 101)
    }

    /// Cuts `bytes` at `cuts` into non-empty pieces.
    fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.push(bytes.len());
        at.sort_unstable();
        at.dedup();
        let mut from = 0;
        let mut pieces = Vec::new();
        for to in at.into_iter().filter(|&to| to > 0) {
            pieces.push(bytes[from..to].to_vec());
            from = to;
        }
        pieces
    }

    /// Bytes that look a little like responses and chunked bodies, or not at all.
    fn junk() -> impl Strategy<Value = Vec<u8>> {
        let alphabet = b"0123456789abcdefABCDEFxX;=:,\"- \t\r\n\0HTPtrnsfe-codig".to_vec();
        let near = prop::collection::vec(prop::sample::select(alphabet), 0..120);
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            near.clone(),
            near.prop_map(|v| [b"HTTP/1.1 200 OK\r\n".as_slice(), &v].concat()),
            // A valid response with a few bytes overwritten.
            (
                spec(100..=999),
                prop::collection::vec((any::<Index>(), any::<u8>()), 1..4)
            )
                .prop_map(|(spec, edits)| {
                    let (mut bytes, _) = spec.serialise();
                    for (at, b) in edits {
                        let i = at.index(bytes.len());
                        bytes[i] = b;
                    }
                    bytes
                }),
        ]
    }

    /// Checks one call's result on any input: no other error than Garbled, and a length
    /// consumed that fits in the input.
    fn sane<T>(got: Result<Option<T>, Reason>, len: impl Fn(&T) -> usize, input: usize) -> bool {
        match got {
            Ok(None) | Err(Reason::Garbled) => true,
            Ok(Some(t)) => len(&t) <= input,
            Err(_) => false,
        }
    }

    /// A parser error on a valid response, as a property failure.
    fn failed(r: Reason) -> TestCaseError {
        TestCaseError::fail(format!("a valid response gave {r:?}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Any response, fed in any pieces: head and body are None until whole, then exact.
        #[test]
        fn parser_recovers_status_and_body(
            spec in spec(100..=999),
            cuts in prop::collection::vec(any::<Index>(), 0..12),
        ) {
            let (bytes, head_len) = spec.serialise();
            let total = bytes.len();
            let stream = [bytes.as_slice(), HELLO].concat();
            let mut ends: Vec<usize> = split(&stream, &cuts)
                .iter()
                .scan(0, |end, p| {
                    *end += p.len();
                    Some(*end)
                })
                .collect();
            ends.insert(0, 0);
            let mut out = Vec::new();
            for end in ends {
                let buf = &stream[..end];
                let Some(h) = parse_head(buf, true).map_err(failed)? else {
                    prop_assert!(end < head_len, "head complete at {head_len}, None at {end}");
                    continue;
                };
                prop_assert!(end >= head_len);
                prop_assert_eq!((h.status, h.len, h.close), (spec.status, head_len, spec.close()));
                match (&spec.frame, h.body) {
                    (Frame::Length { .. }, Framing::Length(n)) => {
                        prop_assert_eq!(n, spec.body.len());
                        if end >= total {
                            prop_assert_eq!(&buf[head_len..total], spec.body.as_slice());
                        }
                    }
                    (Frame::Chunked { .. }, Framing::Chunked) => {
                        match decode_chunked(&buf[head_len..], &mut out).map_err(failed)? {
                            None => prop_assert!(end < total, "whole at {total}, None at {end}"),
                            Some(n) => {
                                prop_assert!(end >= total);
                                prop_assert_eq!(n, total - head_len);
                                prop_assert_eq!(&out, &spec.body);
                            }
                        }
                    }
                    _ => prop_assert!(false, "wrong framing"),
                }
            }
        }

        // parse_head never panics on any bytes and only ever fails with Garbled.
        #[test]
        fn parse_head_never_panics(bytes in junk()) {
            prop_assert!(sane(parse_head(&bytes, true), |h| h.len, bytes.len()));
        }

        // decode_chunked never panics on any bytes (at any offset) and only fails with Garbled.
        #[test]
        fn decode_chunked_never_panics(bytes in junk(), from in any::<Index>()) {
            let mut out = Vec::new();
            let buf = &bytes[from.index(bytes.len() + 1)..];
            prop_assert!(sane(decode_chunked(buf, &mut out), |&n| n, buf.len()));
        }
    }

    proptest! {
        // Each case opens a loopback connection: fewer of them.
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Any response (after 1xx ones), in any pieces over loopback: exchange returns it exactly.
        #[test]
        fn exchange_recovers_status_and_body(
            spec in spec(200..=599).prop_filter("bodiless", |s| ![204, 304].contains(&s.status)),
            interim in prop::collection::vec(interim_status(), 0..3),
            cuts in prop::collection::vec(any::<Index>(), 0..12),
        ) {
            // Interim answers first; a close answer has nothing after it, a kept one the next.
            let mut stream: Vec<u8> = interim
                .iter()
                .flat_map(|s| format!("HTTP/1.1 {s} Interim\r\nX-I: {s}\r\n\r\n").into_bytes())
                .collect();
            stream.extend(spec.serialise().0);
            let close = spec.close();
            if !close {
                stream.extend_from_slice(HELLO);
            }
            let pieces = split(&stream, &cuts);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (mut conn, mut srv) = pair().await;
                let server = async {
                    expect_request(&mut srv).await;
                    for piece in &pieces {
                        srv.write_all(piece).await.expect("server write");
                        // Two yields let the driver see the bytes and the exchange read them
                        // before the next piece: nearly one read per piece, with no timing
                        // involved (pieces that coalesce anyway must decode the same).
                        tokio::task::yield_now().await;
                        tokio::task::yield_now().await;
                    }
                };
                let got = run(&mut conn, false, server).await;
                prop_assert_eq!(got, Ok((spec.status, spec.body.clone())));
                prop_assert_eq!(conn.usable(), !close);
                if !close {
                    let next = run(&mut conn, false, expect_request(&mut srv)).await;
                    prop_assert_eq!(next, ok(200, b"hello"));
                }
                Ok(())
            })?;
        }
    }

    // issue 28, bounded fuzzing: a few thousand seeded mutations (xorshift; the same cases every
    // run) of valid responses fed to parse_head and decode_chunked. No panic, no error but
    // Garbled, no length past the input; the framing a head reports always fits too.
    #[test]
    fn mutated_valid_responses_never_panic() {
        let valid: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 503 Busy\r\nConnection: close\r\n\r\n{\"code\":1}",
            b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
        ];
        let odd = [b'\r', b'\n', b':', b' ', b'0', b'f', b';', 0, 0xff, b'-'];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for round in 0..4000 {
            let mut bytes = valid[round % valid.len()].to_vec();
            for _ in 0..=next(4) {
                let at = next(bytes.len());
                match next(4) {
                    0 => bytes[at] = odd[next(odd.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, odd[next(odd.len())]),
                    _ => {
                        let piece = bytes[at..].to_vec();
                        bytes.truncate(at);
                        bytes.extend_from_slice(&piece[..piece.len() / 2]);
                        bytes.extend_from_slice(b"99999999999999999999");
                        bytes.extend_from_slice(&piece[piece.len() / 2..]);
                    }
                }
            }
            let head = parse_head(&bytes, true);
            if let Ok(Some(h)) = &head
                && matches!(h.body, Framing::Chunked)
            {
                let mut out = Vec::new();
                let rest = &bytes[h.len..];
                assert!(sane(decode_chunked(rest, &mut out), |&n| n, rest.len()));
            }
            assert!(
                sane(head, |h| h.len, bytes.len()),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
            let mut out = Vec::new();
            let from = next(bytes.len() + 1);
            assert!(sane(
                decode_chunked(&bytes[from..], &mut out),
                |&n| n,
                bytes.len() - from
            ));
        }
    }
}
