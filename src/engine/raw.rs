//! A minimal HTTP/1.1 client connection for the hot path: one `write` of pre-serialised request
//! bytes, responses parsed in place with `httparse`, bodies sliced out of the read buffer.
//!
//! Measured against hyper's connection API on a 2-core machine against static nginx, hyper spends
//! ~2–3 µs of user CPU per request (channels, wakers, header maps, request objects); this spends a
//! fraction of that, which is what lets one engine thread keep up with wrk. It supports exactly
//! what the engine needs: `Content-Length`, `chunked` and read-until-close bodies, keep-alive and
//! `Connection: close`.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::Reason;

/// Most headers a response may have.
const MAX_HEADERS: usize = 64;

/// An open connection plus its read buffer.
pub(crate) struct RawConn {
    /// The socket (`TCP_NODELAY` set).
    stream: TcpStream,
    /// Bytes read and not yet consumed (a response, or the start of one).
    rbuf: Vec<u8>,
    /// The connection must not be reused (server said close, or a body ran to EOF).
    closed: bool,
    /// When the last exchange finished, to decide whether an idle check is worth a syscall.
    last_used: Instant,
}

/// What one exchange produced; the body is copied into the caller's buffer.
pub(crate) struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Exact size of the status line and headers.
    pub head_bytes: u64,
    /// When the head was complete.
    pub head_at: Instant,
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
    /// Connects with `TCP_NODELAY`.
    pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            rbuf: Vec::with_capacity(8192),
            closed: false,
            last_used: Instant::now(),
        })
    }

    /// Whether the connection can carry another request. After an idle spell, a non-blocking
    /// read detects a server that closed it meanwhile, so that is not counted as a failure.
    pub fn usable(&mut self) -> bool {
        if self.closed {
            return false;
        }
        if self.last_used.elapsed().as_millis() < 200 {
            return true;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Ok(0) => false,
            Ok(_) => false, // unsolicited bytes: the stream is out of step
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
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
        let head = loop {
            match parse_head(&self.rbuf, want_server)? {
                Some(h) => break h,
                None => self.fill().await?,
            }
        };
        let head_at = Instant::now();
        let framing = if head_only || head.status == 204 || head.status == 304 || head.status < 200
        {
            Framing::Length(0)
        } else {
            head.body
        };
        body.clear();
        let consumed = match framing {
            Framing::Length(n) => {
                while self.rbuf.len() < head.len + n {
                    self.fill().await?;
                }
                body.extend_from_slice(&self.rbuf[head.len..head.len + n]);
                head.len + n
            }
            Framing::Chunked => loop {
                match decode_chunked(&self.rbuf[head.len..], body)? {
                    Some(n) => break head.len + n,
                    None => self.fill().await?,
                }
            },
            Framing::UntilClose => {
                self.closed = true;
                loop {
                    let before = self.rbuf.len();
                    if self.fill_or_eof().await? == 0 && self.rbuf.len() == before {
                        break;
                    }
                }
                body.extend_from_slice(&self.rbuf[head.len..]);
                self.rbuf.len()
            }
        };
        self.rbuf.drain(..consumed);
        self.closed |= head.close;
        self.last_used = Instant::now();
        Ok(RawResponse {
            status: head.status,
            head_bytes: head.len as u64,
            head_at,
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
            self.rbuf.reserve(8192);
        }
        self.stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|_| Reason::IoError)
    }
}

/// Parses a response head at the start of `buf`; `None` when more bytes are needed.
fn parse_head(buf: &[u8], want_server: bool) -> Result<Option<Head>, Reason> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
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
                body = Framing::Length(n as usize);
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
        if buf.len() < i + size + 2 {
            out.clear();
            return Ok(None);
        }
        out.extend_from_slice(&buf[i..i + size]);
        i += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        let mut out = Vec::new();
        let body = b"4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\nTrailer: 1\r\n\r\nNEXT";
        assert_eq!(decode_chunked(body, &mut out), Ok(Some(body.len() - 4)));
        assert_eq!(out, b"Wikipedia ");
        assert_eq!(decode_chunked(&body[..10], &mut out), Ok(None));
        assert_eq!(decode_chunked(b"zz\r\n", &mut out), Err(Reason::Garbled));
    }

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
}
