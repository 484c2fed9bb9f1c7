//! Where Redis and the database are: the `--redis` and `--db` URLs, parsed once, with the
//! password kept apart so that no message can print it. Every message names a server as
//! `HOST:PORT` and the user, never the URL it came from.

use std::fmt;

/// A password. Its `Debug` and `Display` print `***`; only the drivers read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every occurrence of `secret` (as given and percent-encoded) in `text` with `***`: a
/// last guard on driver messages, which should not contain a password in the first place.
pub fn redact(text: &str, secret: Option<&Secret>) -> String {
    let Some(secret) = secret.filter(|s| !s.0.is_empty()) else {
        return text.to_owned();
    };
    let encoded =
        percent_encoding::utf8_percent_encode(&secret.0, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    text.replace(&secret.0, "***").replace(&encoded, "***")
}

/// Which SQL database a `--db` URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://` (MySQL or MariaDB).
    MySql,
}

impl Backend {
    /// The product name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MySQL/MariaDB",
        }
    }

    /// The environment variable a password may come from when the URL has none (the clients'
    /// own convention: `psql` reads PGPASSWORD, `mysql` reads MYSQL_PWD).
    pub fn password_var(self) -> &'static str {
        match self {
            Backend::Postgres => "PGPASSWORD",
            Backend::MySql => "MYSQL_PWD",
        }
    }
}

/// A parsed `--db` URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` or the same with
/// `mysql://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// Which driver.
    pub backend: Backend,
    /// Host name or address.
    pub host: String,
    /// TCP port (5432 or 3306 when the URL has none).
    pub port: u16,
    /// The login.
    pub user: String,
    /// From the URL, else from the backend's password variable, else none.
    pub password: Option<Secret>,
    /// The database (schema, in MySQL's words) holding the shop's tables.
    pub database: String,
}

impl DbTarget {
    /// Parses `url`; a password missing from it is read from `env` (PGPASSWORD / MYSQL_PWD). The
    /// error never quotes the URL (it may hold a password).
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<DbTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "--db: not a URL ({e}); expected postgres://USER@HOST[:PORT]/DATABASE or mysql://…"
            )
        })?;
        let backend = match parsed.scheme() {
            "postgres" | "postgresql" => Backend::Postgres,
            "mysql" | "mariadb" => Backend::MySql,
            other => {
                return Err(format!(
                    "--db: scheme {other:?}: expected postgres:// or mysql://"
                ));
            }
        };
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err("--db: the URL names no host".into()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(parsed.username());
        if user.is_empty() {
            return Err("--db: the URL names no user (USER@HOST)".into());
        }
        let database = decode(parsed.path().trim_start_matches('/'));
        if database.is_empty() || database.contains('/') {
            return Err("--db: the URL names no database (…/DATABASE)".into());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("--db: query options (?…) are not supported".into());
        }
        let password = match parsed.password() {
            Some(p) => Some(Secret(decode(p))),
            None => env(backend.password_var()).map(Secret),
        };
        Ok(DbTarget {
            backend,
            host: host.to_owned(),
            port: parsed.port().unwrap_or(match backend {
                Backend::Postgres => 5432,
                Backend::MySql => 3306,
            }),
            user,
            password,
            database,
        })
    }
}

impl fmt::Display for DbTarget {
    /// `PostgreSQL at 127.0.0.1:5432 as grab (database grab)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{} as {} (database {})",
            self.backend.name(),
            self.host,
            self.port,
            self.user,
            self.database
        )
    }
}

/// A parsed `--redis` URL. The URL itself goes to the driver; messages use [`fmt::Display`].
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// The URL as given (it may hold a password: never printed).
    url: Secret,
    /// `HOST:PORT` or the socket path.
    at: String,
    /// The ACL user, if the URL names one.
    user: Option<String>,
    /// The password, for redacting driver messages.
    password: Option<Secret>,
}

impl RedisTarget {
    /// Parses a `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]` or `unix://PATH` URL.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("--redis: not a URL ({e}); expected redis://HOST:PORT/DB"))?;
        let at = match parsed.scheme() {
            "redis" => format!(
                "{}:{}",
                parsed.host_str().unwrap_or("127.0.0.1"),
                parsed.port().unwrap_or(6379)
            ),
            "unix" => parsed.path().to_owned(),
            other => {
                return Err(format!(
                    "--redis: scheme {other:?}: expected redis:// or unix://"
                ));
            }
        };
        Ok(RedisTarget {
            url: Secret(url.to_owned()),
            at,
            user: Some(parsed.username())
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            password: parsed.password().map(|p| {
                Secret(
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            }),
        })
    }

    /// The URL, for the driver only.
    pub fn url(&self) -> &str {
        self.url.expose()
    }

    /// The password, if any (for [`redact`]).
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }
}

impl fmt::Display for RedisTarget {
    /// `Redis at 127.0.0.1:6379` (`as USER` when the URL names one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redis at {}", self.at)?;
        if let Some(user) = &self.user {
            write!(f, " as {user}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn database_urls() {
        let t = DbTarget::parse("postgres://grab:s%40cret@127.0.0.1:5433/shop", no_env).unwrap();
        assert_eq!(t.backend, Backend::Postgres);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5433));
        assert_eq!((t.user.as_str(), t.database.as_str()), ("grab", "shop"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(
            t.to_string(),
            "PostgreSQL at 127.0.0.1:5433 as grab (database shop)"
        );
        assert!(!format!("{t:?}").contains("s@cret"));

        let env = |var: &str| (var == "MYSQL_PWD").then(|| "fromenv".to_owned());
        let t = DbTarget::parse("mysql://root@localhost/grab", env).unwrap();
        assert_eq!((t.backend, t.port), (Backend::MySql, 3306));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("fromenv"));
        // The URL's password wins over the variable.
        let t = DbTarget::parse("mysql://root:url@localhost/grab", env).unwrap();
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("url"));
    }

    #[test]
    fn database_url_refusals_never_quote_the_url() {
        for (url, needle) in [
            ("http://u:hunter2@h/db", "scheme"),
            ("postgres://h/db", "no user"),
            ("postgres://u:hunter2@h", "no database"),
            ("postgres://u:hunter2@h/db?sslmode=require", "query"),
            ("hunter2", "not a URL"),
        ] {
            let err = DbTarget::parse(url, no_env).expect_err(url);
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn redis_urls() {
        let t = RedisTarget::parse("redis://app:hunter2@127.0.0.1:6380/0").unwrap();
        assert_eq!(t.to_string(), "Redis at 127.0.0.1:6380 as app");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(t.url(), "redis://app:hunter2@127.0.0.1:6380/0");
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1/0")
                .unwrap()
                .to_string(),
            "Redis at 127.0.0.1:6379"
        );
        assert!(RedisTarget::parse("http://x").is_err());
    }

    #[test]
    fn redaction() {
        let s = Secret("p@ss w".into());
        assert_eq!(
            redact("bad p@ss w and p%40ss%20w", Some(&s)),
            "bad *** and ***"
        );
        assert_eq!(redact("text", None), "text");
        assert_eq!(redact("text", Some(&Secret(String::new()))), "text");
    }
}
