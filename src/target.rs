//! Where load goes: the one parser of target URLs (`ab`'s URL, a scenario's `[target] url`, a
//! `cluster up` endpoint), and the one rule about them — grab-bench sends load to loopback
//! (127.0.0.0/8, `localhost`, `[::1]`) only, unless the person running it says a remote host is
//! theirs to load ([`Reach::Anywhere`]: `--allow-remote`, `[target] allow_remote = true`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

/// A parsed `http://host[:port]/path` or `https://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written (`127.0.0.1`, `localhost`, `[::1]`).
    pub host: String,
    /// The port (explicit, or 80 for http and 443 for https).
    pub port: u16,
    /// Whether the URL gave the port.
    pub explicit_port: bool,
    /// Origin-form path and query, `/` when empty.
    pub path: String,
    /// `https://`: the connection is TLS, its server name [`Target::server_name`].
    pub https: bool,
}

/// How far load may go: the one switch between loopback and a remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reach {
    /// 127.0.0.0/8, `localhost`, `[::1]` only: the default everywhere.
    #[default]
    Loopback,
    /// Any host, because `by` (the flag or the key, named in the warning) says so.
    Anywhere {
        /// What allowed it: `"--allow-remote"` or `"[target] allow_remote = true"`.
        by: &'static str,
    },
}

impl Reach {
    /// What the command line's `--allow-remote` gives.
    pub const FLAG: Reach = Reach::Anywhere {
        by: "--allow-remote",
    };
    /// What a scenario's `[target] allow_remote = true` gives.
    pub const SCENARIO: Reach = Reach::Anywhere {
        by: "[target] allow_remote = true",
    };
}

impl Reach {
    /// The one rule for every store grab-bench connects to (a Redis, a Redis Cluster's
    /// masters, an SQL database, a broker): its host must be loopback unless `self` allows
    /// more. `what` names the store in the refusal ("the Redis of [target] redis"); `url` is
    /// any `scheme://[user[:password]@]host[:port]/…` URL, and only its host is shown, never
    /// its password. A URL without a host (a Unix socket, `redis+unix://`, libpq's default)
    /// is local. Called before any name is resolved or any connection made.
    pub fn check_store(self, what: &str, url: &str) -> Result<(), String> {
        match url_host(url) {
            Some(host) if self == Reach::Loopback && !host_is_loopback(&host) => Err(format!(
                "refusing {what} at {host}: grab-bench connects to stores on loopback only \
                 (127.0.0.0/8, localhost, [::1]); if that host is yours to read, say so with \
                 --allow-remote (run, audit) or allow_remote = true in the scenario's [target]"
            )),
            _ => Ok(()),
        }
    }
}

/// The host of a `scheme://[userinfo@]host[:port][/…]` URL, `None` when it names none (a Unix
/// socket path, an empty authority) or is not such a URL. IPv6 literals keep their brackets.
pub fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.to_ascii_lowercase().contains("unix") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // The password may hold `@` or `:` (percent-encoded or not): the host is after the last `@`.
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if hostport.starts_with('[') {
        hostport.split_once(']').map(|(h, _)| format!("{h}]"))?
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` (as written in a URL) is on loopback: `localhost`, 127.0.0.0/8 or `[::1]`.
fn host_is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

impl Target {
    /// Parses `url`: `http://` or `https://`; the host may be a name, an IPv4 or a bracketed
    /// IPv6. Nothing is resolved and nothing is connected to.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        // Schemes are case-insensitive (RFC 3986 3.1): `HTTP://` is `http://`.
        let split = url
            .split_once("://")
            .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest));
        let (rest, https) = match split.as_ref().map(|(s, r)| (s.as_str(), *r)) {
            Some(("http", rest)) => (rest, false),
            Some(("https", rest)) => (rest, true),
            Some((other, _)) => {
                bail!("only http:// and https:// URLs are supported, not {other}://")
            }
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
            None if https => (443, false),
            None => (80, false),
        };
        Ok(Target {
            host,
            port,
            explicit_port,
            path,
            https,
        })
    }

    /// Parses `url` and refuses any host that is not loopback.
    pub fn parse_loopback(url: &str) -> anyhow::Result<Target> {
        Target::parse_for_load(url, Reach::Loopback)
    }

    /// Parses `url` as a place to send load: a host that is not loopback is refused unless
    /// `reach` allows it. The refusal comes before any name is resolved or any connection made.
    pub fn parse_for_load(url: &str, reach: Reach) -> anyhow::Result<Target> {
        let t = Target::parse(url)?;
        if reach == Reach::Loopback && !t.is_loopback() {
            bail!(
                "refusing {}: grab-bench sends load to loopback only (127.0.0.0/8, localhost, [::1]); \
                 if that host is yours to load, say so with --allow-remote (ab, run) or \
                 allow_remote = true in the scenario's [target]",
                t.host
            );
        }
        Ok(t)
    }

    /// The warning to print (on stderr) before loading a host that is not loopback; `None` on
    /// loopback. A remote target is only ever loaded after this was said.
    pub fn remote_warning(&self, reach: Reach) -> Option<String> {
        match reach {
            _ if self.is_loopback() => None,
            Reach::Anywhere { by } => Some(format!(
                "grab-bench: WARNING: sending load to {}:{} (not loopback), as {by} says",
                self.host, self.port
            )),
            // `parse_for_load` refused it; a caller that parsed otherwise still gets a warning.
            Reach::Loopback => Some(format!(
                "grab-bench: WARNING: sending load to {}:{} (not loopback)",
                self.host, self.port
            )),
        }
    }

    /// Whether the host is on loopback.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.host)
    }

    /// The host as an address, when it is one (`localhost` is 127.0.0.1).
    fn ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.server_name().parse().ok()
    }

    /// The name TLS asks for and checks the certificate against (SNI, when it is a DNS name):
    /// the host without an IPv6 literal's brackets.
    pub fn server_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The value of the `Host` header.
    pub fn host_header(&self) -> String {
        if self.explicit_port {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.clone()
        }
    }

    /// `host:port` for messages.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
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
        assert!(!Target::parse("HTTP://127.0.0.1:9/").unwrap().https);
        assert!(Target::parse("HttpS://127.0.0.1:9/").unwrap().https);
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
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
        assert!(Target::parse("127.0.0.1:80/").is_err());
        assert!(Target::parse("http://127.0.0.1:x/").is_err());
        assert!(Target::parse("http:///").is_err());
    }

    #[test]
    fn stores_are_loopback_unless_allowed() {
        let local = [
            "redis://127.0.0.1:6379/0",
            "redis://:pw@localhost/0",
            "postgres://u:p@ss@127.0.0.2:5432/d",
            "mysql://u@[::1]:3306/d",
            "redis+unix:///tmp/redis.sock",
            "postgres://u@/shop?host=/var/run/postgresql",
        ];
        for url in local {
            assert_eq!(
                Reach::Loopback.check_store("the Redis", url),
                Ok(()),
                "{url}"
            );
        }
        for url in [
            "redis://10.1.2.3:6379/0",
            "redis://:secret@cache.example.com",
            "postgres://u:hunter2@db.internal:5432/shop",
            "mysql://root@[2001:db8::1]:3306/x",
            "amqp://guest:guest@192.0.2.7:5672/%2f",
            "REDIS://10.0.0.1",
        ] {
            let err = Reach::Loopback.check_store("the Redis", url).unwrap_err();
            assert!(
                err.contains("loopback only") && err.contains("--allow-remote"),
                "{err}"
            );
            assert!(!err.contains("secret") && !err.contains("hunter2"), "{err}");
            assert_eq!(Reach::FLAG.check_store("the Redis", url), Ok(()));
            assert_eq!(Reach::SCENARIO.check_store("the Redis", url), Ok(()));
        }
        assert_eq!(
            url_host("postgres://u:p:q@w@db.example:1/x").as_deref(),
            Some("db.example")
        );
        assert_eq!(url_host("mysql://u@[::1]:3306/d").as_deref(), Some("[::1]"));
    }

    #[test]
    fn https_urls_default_to_443_and_name_the_server() {
        let t = Target::parse("https://localhost/buy?x=1").unwrap();
        assert!(t.https);
        assert_eq!(
            (t.port, t.explicit_port, t.path.as_str()),
            (443, false, "/buy?x=1")
        );
        assert_eq!(
            (t.server_name(), t.host_header().as_str()),
            ("localhost", "localhost")
        );
        assert_eq!(t.addr().unwrap(), "127.0.0.1:443".parse().unwrap());
        let t = Target::parse("https://localhost:8443").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8443, "/"));
        assert_eq!(t.host_header(), "localhost:8443");
        // IPv6: brackets in the Host header, none in the server name (an IP, not a DNS name).
        let t = Target::parse("https://[::1]/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.server_name()),
            ("[::1]", 443, "::1")
        );
        assert_eq!(t.host_header(), "[::1]");
        assert_eq!(t.addr().unwrap(), "[::1]:443".parse().unwrap());
        let t = Target::parse("https://[::1]:9443/a").unwrap();
        assert_eq!((t.port, t.host_header().as_str()), (9443, "[::1]:9443"));
        assert_eq!(
            Target::parse("https://127.0.0.1:1/").unwrap().server_name(),
            "127.0.0.1"
        );
        assert!(!Target::parse("http://localhost/").unwrap().https);
        assert_eq!(Target::parse("http://localhost/").unwrap().port, 80);
    }

    #[test]
    fn remote_hosts_only_when_allowed_and_then_with_a_warning() {
        // Refused by the parser itself: a name that could not even be resolved shows the
        // refusal, not a resolution error, so nothing was looked up or connected to.
        let err = Target::parse_for_load("https://staging.example.invalid/buy", Reach::Loopback)
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback only"), "{err}");
        assert!(
            err.contains("--allow-remote") && err.contains("allow_remote = true"),
            "{err}"
        );
        for reach in [Reach::FLAG, Reach::SCENARIO] {
            let t = Target::parse_for_load("https://staging.example.com/buy", reach).unwrap();
            assert_eq!(t.authority(), "staging.example.com:443");
            let warning = t.remote_warning(reach).unwrap();
            assert!(warning.contains("WARNING: sending load to staging.example.com:443"));
            let Reach::Anywhere { by } = reach else {
                unreachable!()
            };
            assert!(warning.ends_with(&format!("as {by} says")), "{warning}");
        }
        let local = Target::parse_for_load("https://localhost:1/", Reach::FLAG).unwrap();
        assert_eq!(local.remote_warning(Reach::FLAG), None);
        assert_eq!(local.remote_warning(Reach::Loopback), None);
    }
}
