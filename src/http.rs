//! HTTP/1.1 requests on the wire: the one encoder that every request the tool writes itself
//! goes through — the engine's (ab's template, serialised once, and a described request,
//! rendered per attempt), a reference node's control-plane `GET`, the Prometheus remote-write
//! `POST` — so that the request line, the header lines and the body's length are written one
//! way. It allocates nothing of its own: it writes into the caller's buffer.

/// Whether a request of `method` says its length even with an empty body: a server may refuse
/// a `POST` without one (411 Length Required).
fn has_body(method: &[u8]) -> bool {
    matches!(method, b"POST" | b"PUT" | b"PATCH")
}

/// A request being written into a buffer: the request line when it is made, then header lines,
/// then [`RequestWriter::body`] ends the head and appends the body.
pub struct RequestWriter<'o> {
    /// The buffer the request is written into (cleared when the writer is made).
    out: &'o mut Vec<u8>,
    /// Whether the method says its length even with an empty body ([`has_body`]).
    sized: bool,
}

impl<'o> RequestWriter<'o> {
    /// Clears `out` and writes the request line `METHOD TARGET HTTP/1.1`, the target (origin
    /// form) as `target` writes it into the buffer (a template rendering in place).
    pub fn start(
        out: &'o mut Vec<u8>,
        method: &[u8],
        target: impl FnOnce(&mut Vec<u8>),
    ) -> RequestWriter<'o> {
        out.clear();
        out.extend_from_slice(method);
        out.push(b' ');
        target(out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        RequestWriter {
            out,
            sized: has_body(method),
        }
    }

    /// [`RequestWriter::start`] with the target as it is.
    pub fn new(out: &'o mut Vec<u8>, method: &[u8], target: &[u8]) -> RequestWriter<'o> {
        RequestWriter::start(out, method, |out| out.extend_from_slice(target))
    }

    /// Writes the header line `name: value`.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        header_line(self.out, name, value);
        self
    }

    /// Writes a header line whose value `value` writes into the buffer.
    pub fn header_with(&mut self, name: &[u8], value: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        value(self.out);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Writes header lines serialised before (each `name: value\r\n`, as [`header_line`]
    /// writes them).
    pub fn lines(&mut self, lines: &[u8]) -> &mut Self {
        self.out.extend_from_slice(lines);
        self
    }

    /// Ends the head and appends `body`, after a `content-length` line when there is a body or
    /// the method has one.
    pub fn body(self, body: &[u8]) {
        if !body.is_empty() || self.sized {
            self.out.extend_from_slice(b"content-length: ");
            push_decimal(self.out, body.len() as u64);
            self.out.extend_from_slice(b"\r\n");
        }
        self.framed_body(body);
    }

    /// Ends the head and appends `body`, the caller having said its length in a header of its
    /// own (as it spells it).
    pub fn framed_body(self, body: &[u8]) {
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
    }
}

/// Appends the header line `name: value\r\n` (a request's, or a response head written out).
pub fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into the end of `buf`.
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `n` in decimal to `out`, as `format!` writes it, without allocating.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `write` writes, as text.
    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"left over".to_vec();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    // A GET without a body says no length; its buffer is cleared first.
    #[test]
    fn a_get_is_a_line_and_headers() {
        let got = text(|out| {
            let mut w = RequestWriter::new(out, b"GET", b"/stats");
            w.header(b"Host", b"127.0.0.1:9")
                .header(b"Connection", b"close");
            w.body(b"");
        });
        assert_eq!(
            got,
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\n\r\n"
        );
    }

    // A body says its length; a POST, PUT or PATCH says it even when empty; pre-serialised
    // lines and rendered values go where they are written.
    #[test]
    fn a_body_and_a_method_with_one_say_their_length() {
        let got = text(|out| {
            let mut w = RequestWriter::start(out, b"POST", |o| o.extend_from_slice(b"/buy/1"));
            w.lines(b"host: x\r\n")
                .header_with(b"authorization", |o| o.extend_from_slice(b"Bearer t"));
            w.body(b"{\"a\":1}");
        });
        assert_eq!(
            got,
            "POST /buy/1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t\r\n\
             content-length: 7\r\n\r\n{\"a\":1}"
        );
        for method in ["POST", "PUT", "PATCH"] {
            let got = text(|out| RequestWriter::new(out, method.as_bytes(), b"/").body(b""));
            assert!(got.ends_with("\r\ncontent-length: 0\r\n\r\n"), "{got}");
        }
        let got = text(|out| RequestWriter::new(out, b"DELETE", b"/o/1").body(b"x"));
        assert!(got.ends_with("content-length: 1\r\n\r\nx"), "{got}");
    }

    // A caller that frames its body itself gets no second length.
    #[test]
    fn a_framed_body_gets_no_second_length() {
        let got = text(|out| {
            let mut w = RequestWriter::new(out, b"POST", b"/w");
            w.header(b"Content-Length", b"2");
            w.framed_body(b"ab");
        });
        assert_eq!(got, "POST /w HTTP/1.1\r\nContent-Length: 2\r\n\r\nab");
    }

    #[test]
    fn decimals_as_format_writes_them() {
        for n in [0, 7, 10, 99, 1_000_000, 4_294_967_295, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
