//! Where load goes: the one parser of target URLs (`ab`'s URL, a scenario's `[target] url`, a
//! `cluster up` endpoint), and the one rule about them — grab-bench sends load to loopback
//! (127.0.0.0/8, `localhost`, `[::1]`) only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written (`127.0.0.1`, `localhost`, `[::1]`).
    pub host: String,
    /// The port (explicit, or 80).
    pub port: u16,
    /// Whether the URL gave the port.
    pub explicit_port: bool,
    /// Origin-form path and query, `/` when empty.
    pub path: String,
}

impl Target {
    /// Parses `url`: `http://` only; the host may be a name, an IPv4 or a bracketed IPv6.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((other, _)) => bail!("only http:// URLs are supported, not {other}://"),
            None => bail!("the URL needs a scheme: http://127.0.0.1:PORT/path"),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = match path.split('#').next().unwrap_or("") {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.contains('@') {
            bail!("user names in URLs are not supported: {url:?}");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .with_context(|| format!("unclosed [ in {url:?}"))?;
            (format!("[{h}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            bail!("the URL has no host: {url:?}");
        }
        let (port, explicit_port) = match port {
            Some(p) => (
                p.parse()
                    .with_context(|| format!("bad port {p:?} in {url:?}"))?,
                true,
            ),
            None => (80, false),
        };
        Ok(Target {
            host,
            port,
            explicit_port,
            path,
        })
    }

    /// Parses `url` and refuses any host that is not loopback.
    pub fn parse_loopback(url: &str) -> anyhow::Result<Target> {
        let t = Target::parse(url)?;
        if !t.is_loopback() {
            bail!(
                "refusing {}: grab-bench sends load to loopback only (127.0.0.0/8, localhost, [::1])",
                t.host
            );
        }
        Ok(t)
    }

    /// Whether the host is on loopback.
    pub fn is_loopback(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_loopback())
    }

    /// The host as an address, when it is one (`localhost` is 127.0.0.1).
    fn ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The value of the `Host` header.
    pub fn host_header(&self) -> String {
        if self.explicit_port {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.clone()
        }
    }

    /// The socket address to connect to (resolving a name).
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        if let Some(ip) = self.ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("cannot resolve {}", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:8080/buy/ticket?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/buy/ticket?x=1")
        );
        assert_eq!(t.host_header(), "127.0.0.1:8080");
        assert_eq!(t.addr().unwrap(), "127.0.0.1:8080".parse().unwrap());
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.host_header().as_str()),
            (80, "/", "localhost")
        );
        let t = Target::parse("http://[::1]:9/a#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("[::1]", 9, "/a")
        );
        assert_eq!(Target::parse("http://h?q=1").unwrap().path, "/?q=1");
    }

    #[test]
    fn only_loopback_is_a_target() {
        for ok in [
            "http://127.0.0.1/",
            "http://127.9.9.9:1/",
            "http://localhost:3/",
            "http://[::1]/",
        ] {
            assert!(Target::parse_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1/", "http://example.com/", "http://[::2]/"] {
            let err = Target::parse_loopback(bad).unwrap_err().to_string();
            assert!(err.contains("loopback"), "{bad}: {err}");
        }
        assert!(Target::parse("https://127.0.0.1/").is_err());
        assert!(Target::parse("127.0.0.1:80/").is_err());
        assert!(Target::parse("http://127.0.0.1:x/").is_err());
        assert!(Target::parse("http:///").is_err());
    }
}
