//! A user's cookie jar: the subset of RFC 6265 a flash-sale session needs. `Set-Cookie` gives a
//! name and a value, with `Path`, `Max-Age` and `Expires` (an expiry in the past, or
//! `Max-Age=0`, removes the cookie); every later request of the user whose path is within a
//! cookie's path sends it back in one `Cookie` header. All requests go to the one target host,
//! so the domain is not looked at. Attributes a client need not act on here (`Secure`,
//! `HttpOnly`, `SameSite`, `Domain`) are read over.

/// One cookie the server set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    /// Its name.
    name: Box<[u8]>,
    /// Its value.
    value: Box<[u8]>,
    /// The path it is sent under (`/` unless `Path` says otherwise: RFC 6265's default path is
    /// the request's directory, which for the APIs here is `/` or the API's prefix).
    path: Box<[u8]>,
    /// When it expires, µs on the run's clock; `None`: a session cookie (the whole run).
    expires_us: Option<u64>,
}

/// The cookies one user holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jar {
    /// The cookies, one per (name, path).
    cookies: Vec<Cookie>,
}

impl Jar {
    /// Whether the jar holds nothing.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Takes the `Set-Cookie` headers of a response head (`head`: the status line and the
    /// header lines, as received) at `now_us` on the run's clock. `now_unix_s` is the Unix time
    /// then, for `Expires`.
    pub fn update(&mut self, head: &[u8], now_us: u64, now_unix_s: u64) {
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            if !line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"set-cookie")
            {
                continue;
            }
            if let Some(c) = parse(line[colon + 1..].trim_ascii(), now_us, now_unix_s) {
                self.cookies
                    .retain(|old| !(old.name == c.name && old.path == c.path));
                if c.expires_us.is_none_or(|e| e > now_us) {
                    self.cookies.push(c);
                }
            }
        }
    }

    /// Writes the `Cookie` header's value for a request to `path` at `now_us` into `out`
    /// (nothing when no cookie applies); expired cookies are dropped.
    pub fn header(&mut self, path: &[u8], now_us: u64, out: &mut Vec<u8>) {
        self.cookies
            .retain(|c| c.expires_us.is_none_or(|e| e > now_us));
        let path = path.split(|&b| b == b'?').next().unwrap_or(b"/");
        for c in self.cookies.iter().filter(|c| path_matches(&c.path, path)) {
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(&c.name);
            out.push(b'=');
            out.extend_from_slice(&c.value);
        }
    }

    /// The value of the cookie `name`, if the jar holds it.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.cookies
            .iter()
            .find(|c| &*c.name == name)
            .map(|c| &*c.value)
    }
}

/// RFC 6265 5.1.4: `cookie` is sent to `request` when it is the same path, or a prefix ending at
/// a `/`.
fn path_matches(cookie: &[u8], request: &[u8]) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with(b"/") || request.get(cookie.len()) == Some(&b'/')))
}

/// One `Set-Cookie` value: `name=value; Attr=…; …`.
fn parse(v: &[u8], now_us: u64, now_unix_s: u64) -> Option<Cookie> {
    let mut parts = v.split(|&b| b == b';');
    let pair = parts.next()?;
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = pair[..eq].trim_ascii();
    if name.is_empty() {
        return None;
    }
    let value = pair[eq + 1..].trim_ascii();
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    let mut path: &[u8] = b"/";
    let mut max_age: Option<i64> = None;
    let mut expires: Option<u64> = None;
    for attr in parts {
        let (k, val) = match attr.iter().position(|&b| b == b'=') {
            Some(i) => (attr[..i].trim_ascii(), attr[i + 1..].trim_ascii()),
            None => (attr.trim_ascii(), &b""[..]),
        };
        if k.eq_ignore_ascii_case(b"path") && val.starts_with(b"/") {
            path = val;
        } else if k.eq_ignore_ascii_case(b"max-age") {
            max_age = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok());
        } else if k.eq_ignore_ascii_case(b"expires") {
            expires = std::str::from_utf8(val)
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
        }
    }
    // Max-Age wins over Expires (RFC 6265 5.3 step 3).
    let expires_us = match (max_age, expires) {
        (Some(a), _) if a <= 0 => Some(0),
        (Some(a), _) => Some(now_us.saturating_add(a as u64 * 1_000_000)),
        (None, Some(at)) if at <= now_unix_s => Some(0),
        (None, Some(at)) => Some(now_us.saturating_add((at - now_unix_s) * 1_000_000)),
        (None, None) => None,
    };
    Some(Cookie {
        name: name.into(),
        value: value.into(),
        path: path.into(),
        expires_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(jar: &mut Jar, path: &str, now: u64) -> String {
        let mut out = Vec::new();
        jar.header(path.as_bytes(), now, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn set_cookies_come_back_by_path_until_they_expire() {
        let mut jar = Jar::default();
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
            Set-Cookie: userTicket=abc123; Path=/; HttpOnly\r\n\
            set-cookie: cart=\"x y\"; Path=/cart; Max-Age=10\r\n\
            Set-Cookie: theme=dark\r\n\r\n";
        jar.update(head, 1_000_000, 1_700_000_000);
        assert_eq!(
            header(&mut jar, "/seckill/do?x=1", 2_000_000),
            "userTicket=abc123; theme=dark"
        );
        assert_eq!(
            header(&mut jar, "/cart/items", 2_000_000),
            "userTicket=abc123; cart=x y; theme=dark"
        );
        assert_eq!(
            header(&mut jar, "/cartoon", 2_000_000),
            "userTicket=abc123; theme=dark"
        );
        // Max-Age=10 from 1 s: gone at 11 s.
        assert!(!header(&mut jar, "/cart", 11_000_001).contains("cart="));
        assert_eq!(jar.get(b"userTicket"), Some(&b"abc123"[..]));
        // A new value replaces the old; Max-Age=0 and a past Expires delete.
        jar.update(b"Set-Cookie: userTicket=zzz\r\n", 12_000_000, 1_700_000_011);
        assert_eq!(jar.get(b"userTicket"), Some(&b"zzz"[..]));
        jar.update(
            b"Set-Cookie: theme=; Max-Age=0\r\n",
            12_000_000,
            1_700_000_011,
        );
        jar.update(
            b"Set-Cookie: userTicket=q; Expires=Thu, 01 Jan 1970 00:00:00 GMT\r\n",
            12_000_000,
            1_700_000_011,
        );
        assert!(jar.is_empty(), "{jar:?}");
        // A future Expires holds until then.
        jar.update(
            b"Set-Cookie: s=1; Expires=Wed, 21 Oct 2093 07:28:00 GMT\r\n",
            0,
            1_700_000_000,
        );
        assert_eq!(header(&mut jar, "/", 5_000_000), "s=1");
        // Not cookies: no name, no `=`.
        jar.update(b"Set-Cookie: =v\r\nSet-Cookie: junk\r\n", 0, 0);
        assert_eq!(header(&mut jar, "/", 5_000_000), "s=1");
    }
}
