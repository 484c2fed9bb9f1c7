//! The URL of a SQL source as a scenario writes it — `postgres://USER[:PASS]@HOST[:PORT]/DB`,
//! `mysql://…` or `mariadb://…`, with `${NAME}` anywhere taken from the environment at connect
//! time — and the redaction of passwords from any text.
//!
//! The template is split into its parts before any variable is expanded, so a password from the
//! environment needs no URL escaping (it may hold `@`, `/` or `:`); text written in the URL
//! itself is percent-decoded as URLs are. No message quotes a part that may be a secret.

use std::fmt;

use super::{Dialect, SqlError, SqlErrorKind};

/// A password. Its `Debug` prints `***`; only the driver reads it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The password itself, for the driver.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One piece of a URL part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text as written (percent-encoded where the part is).
    Text(String),
    /// `${NAME}`: the environment variable NAME's value, as it is.
    Env(String),
}

/// One part of the URL (user, password, host, port, database) as written.
#[derive(Clone, PartialEq, Eq)]
struct Part {
    /// The text and the variables, in order.
    pieces: Vec<Piece>,
    /// The part as written, for [`UrlTemplate::describe`] (never used for the password).
    written: String,
}

impl Part {
    /// Splits `written` into text and `${NAME}` references (`$` alone is text).
    fn parse(written: &str) -> Result<Part, String> {
        let mut pieces = Vec::new();
        let mut rest = written;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let Some(len) = rest[start + 2..].find('}') else {
                return Err("the URL has a `${` without its `}`".into());
            };
            let name = &rest[start + 2..start + 2 + len];
            let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(
                    "the URL has a `${…}` that is not a variable name (letters, digits, _)".into(),
                );
            }
            pieces.push(Piece::Env(name.to_string()));
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Part {
            pieces,
            written: written.to_string(),
        })
    }

    /// The part's value: variables from `env`, text percent-decoded. The error is the name of a
    /// variable that is not set.
    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut value = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => value.push_str(&percent_decode(t)),
                Piece::Env(name) => value.push_str(&env(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(value)
    }

    /// Whether the part is all text (no variable).
    fn is_text(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// The variables it uses, as `${A}, ${B}`.
    fn vars(&self) -> String {
        let names: Vec<String> = self
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Env(n) => Some(format!("${{{n}}}")),
                Piece::Text(_) => None,
            })
            .collect();
        names.join(", ")
    }
}

/// A parsed URL template. Holds a password only when the URL itself has one written in it (the
/// scenario's own text); its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct UrlTemplate {
    /// The driver and wire protocol.
    pub dialect: Dialect,
    /// The product name from the scheme, for messages: PostgreSQL, MySQL or MariaDB.
    pub product: &'static str,
    /// The login.
    user: Part,
    /// The password, when the URL has one (text or variables).
    password: Option<Part>,
    /// Host name or address (brackets of an IPv6 address removed).
    host: Part,
    /// The port, when the URL has one (else the dialect's default).
    port: Option<Part>,
    /// The database.
    database: Part,
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A URL with every variable expanded: what one connection is made with.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The driver and wire protocol.
    pub dialect: Dialect,
    /// PostgreSQL, MySQL or MariaDB, for messages.
    pub product: &'static str,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The login.
    pub user: String,
    /// The password, if the URL gives one.
    pub password: Option<Secret>,
    /// The database.
    pub database: String,
    /// Where the password came from, for a refused login: "from ${PGPASSWORD}", "written in
    /// the URL" or "none: the URL gives no password".
    pub password_from: String,
}

impl Target {
    /// `HOST:PORT` (`[::1]:PORT` for IPv6).
    pub fn at(&self) -> String {
        host_port(&self.host, &self.port.to_string())
    }

    /// `PostgreSQL shop@127.0.0.1:5432/shop`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}@{}/{}",
            self.product,
            self.user,
            self.at(),
            self.database
        )
    }

    /// `text` with URL passwords and this password (as given and percent-encoded) replaced by
    /// `***`: the last guard on driver messages.
    pub fn scrub(&self, text: &str) -> String {
        let text = redact(text);
        match self.password.as_ref().filter(|p| !p.0.is_empty()) {
            Some(p) => text
                .replace(&p.0, "***")
                .replace(&percent_encode(&p.0), "***"),
            None => text,
        }
    }
}

/// `host:port`, the host in brackets when it is an IPv6 address.
fn host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl UrlTemplate {
    /// Parses a URL template. The error never quotes the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<UrlTemplate, String> {
        let expected = "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or mysql://, \
                        mariadb://)";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("the URL has no scheme; {expected}"));
        };
        let (dialect, product) = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => (Dialect::Postgres, "PostgreSQL"),
            "mysql" => (Dialect::MySql, "MySQL"),
            "mariadb" => (Dialect::MySql, "MariaDB"),
            _ if scheme.contains(['@', '/', ':']) || scheme.len() > 20 => {
                return Err(format!("the URL has no scheme; {expected}"));
            }
            other => return Err(format!("the URL's scheme is {other:?}; {expected}")),
        };
        let Some((authority, database)) = rest.split_once('/') else {
            return Err(format!("the URL names no database; {expected}"));
        };
        if database.contains(['?', '#']) {
            return Err("the URL has options (?…); none are supported (plain TCP, no TLS)".into());
        }
        if database.is_empty() || database.contains('/') {
            return Err(format!("the URL names no database; {expected}"));
        }
        let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
            return Err(format!("the URL names no user (USER@HOST); {expected}"));
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(Part::parse(p)?)),
            None => (userinfo, None),
        };
        if user.is_empty() {
            return Err(format!("the URL names no user (USER@HOST); {expected}"));
        }
        let (host, port) = split_host_port(hostport)?;
        Ok(UrlTemplate {
            dialect,
            product,
            user: Part::parse(user)?,
            password,
            host: Part::parse(host)?,
            port: port.map(Part::parse).transpose()?,
            database: Part::parse(database)?,
        })
    }

    /// `PostgreSQL shop@127.0.0.1:5432/shop`, the parts as written (`${NAME}` unexpanded),
    /// never the password.
    pub fn describe(&self) -> String {
        let port = match &self.port {
            Some(p) => p.written.clone(),
            None => self.dialect.default_port().to_string(),
        };
        format!(
            "{} {}@{}/{}",
            self.product,
            self.user.written,
            host_port(&self.host.written, &port),
            self.database.written
        )
    }

    /// Expands the variables from `env`: a variable that is not set is a
    /// [`SqlErrorKind::MissingEnv`] naming it.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, SqlError> {
        let missing = |name: String| SqlError {
            message: format!(
                "the URL of the SQL source ({}) uses ${{{name}}}, which is not set in \
                 grab-bench's environment",
                self.describe()
            ),
            kind: SqlErrorKind::MissingEnv(name),
        };
        let host = self.host.resolve(env).map_err(missing)?;
        let port = match &self.port {
            None => self.dialect.default_port(),
            Some(p) => {
                let text = p.resolve(env).map_err(missing)?;
                text.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| SqlError {
                        kind: SqlErrorKind::Unreachable,
                        message: format!(
                            "the port of the SQL source ({}), from {}, is not a number from 1 \
                             to 65535",
                            self.describe(),
                            p.vars()
                        ),
                    })?
            }
        };
        let password = self
            .password
            .as_ref()
            .map(|p| p.resolve(env).map(Secret))
            .transpose()
            .map_err(missing)?;
        let password_from = match &self.password {
            None => "none: the URL gives no password".to_string(),
            Some(p) if p.is_text() => "written in the URL".to_string(),
            Some(p) => format!("from {}", p.vars()),
        };
        Ok(Target {
            dialect: self.dialect,
            product: self.product,
            host,
            port,
            user: self.user.resolve(env).map_err(missing)?,
            password,
            database: self.database.resolve(env).map_err(missing)?,
            password_from,
        })
    }
}

/// `HOST[:PORT]` or `[V6]:PORT`; a port written as text must be a number now.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err("the URL's host has a `[` without its `]`".into());
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("the URL has text after the host's `]`".into()),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host (USER@HOST)".into());
    }
    if let Some(port) = port
        && !port.contains("${")
        && port.parse::<u16>().ok().filter(|p| *p > 0).is_none()
    {
        return Err("the URL's port is not a number from 1 to 65535".into());
    }
    Ok((host, port))
}

/// Decodes `%XX` escapes (invalid ones stay as they are; invalid UTF-8 becomes U+FFFD).
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes every byte but ASCII letters and digits (as a URL might carry a password).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Replaces the password of every URL in `text` (`scheme://user:PASSWORD@host…`) with `***`.
/// A password that is only `${NAME}` references is no secret and stays, so a scenario copy
/// still says where the password comes from.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at a path, query or fragment, or where the URL ends in the text.
        let end = after
            .find(|c: char| "/?#\"'`<>".contains(c) || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, password)) if !env_only(password) => {
                    out.push_str(&format!("{user}:***@{host}"));
                }
                _ => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `password` is nothing but `${NAME}` references (at least one).
fn env_only(password: &str) -> bool {
    Part::parse(password)
        .is_ok_and(|p| !p.pieces.is_empty() && p.pieces.iter().all(|x| matches!(x, Piece::Env(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PGPASSWORD" => Some("p@ss:w/rd%41".into()),
            "DBHOST" => Some("db.internal".into()),
            "DBPORT" => Some("6543".into()),
            "BADPORT" => Some("sixty".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn target(url: &str) -> Result<Target, SqlError> {
        UrlTemplate::parse(url).unwrap().resolve(&env)
    }

    #[test]
    fn urls_name_dialect_host_port_user_and_database() {
        let t = target("postgres://shop:${PGPASSWORD}@127.0.0.1:5432/shop").unwrap();
        assert_eq!(t.dialect, Dialect::Postgres);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5432));
        assert_eq!((t.user.as_str(), t.database.as_str()), ("shop", "shop"));
        // The variable's value is taken as it is: no URL escaping needed, none undone.
        assert_eq!(t.password.as_ref().unwrap().expose(), "p@ss:w/rd%41");
        assert_eq!(t.password_from, "from ${PGPASSWORD}");
        assert_eq!(t.describe(), "PostgreSQL shop@127.0.0.1:5432/shop");

        let t = target("postgresql://a%40b:x%2Fy@localhost/d%20b").unwrap();
        assert_eq!((t.user.as_str(), t.database.as_str()), ("a@b", "d b"));
        assert_eq!(t.password.unwrap().expose(), "x/y");
        assert_eq!(
            (t.port, t.password_from.as_str()),
            (5432, "written in the URL")
        );

        let t = target("mysql://grab@[::1]:3307/grab").unwrap();
        assert_eq!(
            (t.dialect, t.host.as_str(), t.port),
            (Dialect::MySql, "::1", 3307)
        );
        assert_eq!(t.at(), "[::1]:3307");
        assert!(t.password.is_none());
        let t = target("mariadb://u@${DBHOST}:${DBPORT}/${EMPTY}x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.product),
            ("db.internal", 6543, "MariaDB")
        );
        assert_eq!(t.database, "x");
        assert_eq!(target("MySQL://u@h/d").unwrap().port, 3306);
    }

    #[test]
    fn describe_shows_the_template_never_the_password() {
        let u = UrlTemplate::parse("postgres://shop:hunter2@${DBHOST}/shop").unwrap();
        assert_eq!(u.describe(), "PostgreSQL shop@${DBHOST}:5432/shop");
        assert_eq!(format!("{u:?}"), u.describe());
        let t = u.resolve(&env).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"), "{t:?}");
        assert_eq!(
            UrlTemplate::parse("mysql://a@[::1]/d").unwrap().describe(),
            "MySQL a@[::1]:3306/d"
        );
    }

    #[test]
    fn missing_variables_are_named() {
        let e = target("postgres://shop:${NO_SUCH_VAR}@h/shop").unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::MissingEnv("NO_SUCH_VAR".into()));
        assert!(
            e.message.contains("${NO_SUCH_VAR}, which is not set"),
            "{}",
            e.message
        );
        let e = target("postgres://shop@h:${BADPORT}/shop").unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Unreachable);
        assert!(e.message.contains("from ${BADPORT}"), "{}", e.message);
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_them() {
        for (url, says) in [
            ("redis://u:secret@h/0", "scheme is \"redis\""),
            ("u:secret@h/db", "no scheme"),
            ("postgres://u:secret@h", "no database"),
            ("postgres://u:secret@h/", "no database"),
            ("postgres://u:secret@h/a/b", "no database"),
            ("postgres://h/db", "no user"),
            ("postgres://:secret@h/db", "no user"),
            ("postgres://u:secret@/db", "no host"),
            (
                "postgres://u:secret@h:99999/db",
                "not a number from 1 to 65535",
            ),
            ("postgres://u:secret@h:0/db", "not a number"),
            ("postgres://u:secret@h/db?sslmode=require", "options"),
            ("postgres://u:${secret@h/db", "without its `}`"),
            ("postgres://u:${1x}@h/db", "not a variable name"),
            ("postgres://u:secret@[::1/db", "without its `]`"),
        ] {
            let e = UrlTemplate::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[test]
    fn redact_hides_url_passwords_but_not_variable_references() {
        assert_eq!(
            redact("url = \"postgres://shop:hunter2@127.0.0.1:5432/shop\""),
            "url = \"postgres://shop:***@127.0.0.1:5432/shop\""
        );
        assert_eq!(
            redact("a mysql://u:p%40ss@h/d and redis://:pw@h:6379 end"),
            "a mysql://u:***@h/d and redis://:***@h:6379 end"
        );
        for same in [
            "postgres://shop:${PGPASSWORD}@h/shop",
            "postgres://shop:${A}${B}@h/shop",
            "postgres://shop@h/shop",
            "http://example.org/a:b@c",
            "no url here: a@b",
            "",
        ] {
            assert_eq!(redact(same), same);
        }
        assert_eq!(redact("x://u:${A}b@h"), "x://u:***@h");
        assert_eq!(redact("x://u:p@ss@h/d"), "x://u:***@h/d");
    }

    #[test]
    fn scrub_also_removes_the_expanded_password() {
        let t = target("postgres://shop:${PGPASSWORD}@h/shop").unwrap();
        assert_eq!(
            t.scrub("failed for p@ss:w/rd%41 (p%40ss%3Aw%2Frd%2541)"),
            "failed for *** (***)"
        );
    }
}
