//! The users file: bearer token → user id, loaded once at start. A real service asks its session
//! store; a fixed map keeps this example self-contained and the hot path to one hash lookup.

use std::collections::HashMap;
use std::path::Path;

use crate::error::Error;

/// Who a bearer token belongs to. Read-only after start, shared by every request.
#[derive(Debug, Default)]
pub struct Users {
    /// Token → user id. Looked up with the `&str` borrowed from the header: no allocation.
    by_token: HashMap<String, i64>,
}

impl Users {
    /// Reads a CSV file whose first row is `id,token`.
    pub fn load(path: &Path) -> Result<Users, Error> {
        let fail = |reason: String| Error::Users {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Users::parse(&text).map_err(fail)
    }

    /// Parses the CSV text: a header row `id,token`, then one `ID,TOKEN` row per token. Blank
    /// lines are skipped; a token must be unique (one token, one user), while one user may have
    /// several tokens (several sessions).
    pub fn parse(text: &str) -> Result<Users, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, header)) if header.replace(' ', "") == "id,token" => {}
            Some((n, header)) => {
                return Err(format!(
                    "line {n}: expected the header row `id,token`, found {header:?}"
                ));
            }
            None => return Err("empty file: expected the header row `id,token`".into()),
        }
        let mut by_token = HashMap::new();
        for (n, line) in lines {
            let Some((id, token)) = line.split_once(',') else {
                return Err(format!("line {n}: expected `ID,TOKEN`"));
            };
            let (id, token) = (id.trim(), token.trim());
            // Stored as a `bigint`: 0 ..= 2^63 - 1.
            let id: i64 =
                id.parse().ok().filter(|&id: &i64| id >= 0).ok_or_else(|| {
                    format!("line {n}: user id {id:?} is not a whole number >= 0")
                })?;
            if token.is_empty() || token.contains(',') || token.bytes().any(|b| b <= b' ') {
                return Err(format!(
                    "line {n}: the token must be one field without spaces"
                ));
            }
            if by_token.insert(token.to_owned(), id).is_some() {
                return Err(format!("line {n}: token {token:?} appears twice"));
            }
        }
        if by_token.is_empty() {
            return Err("no users after the header row: every buy would be unauthorized".into());
        }
        Ok(Users { by_token })
    }

    /// The user id of `token`, if it is known.
    pub fn user(&self, token: &str) -> Option<i64> {
        self.by_token.get(token).copied()
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when no token is known (every buy is then unauthorized).
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_rows() {
        let u = Users::parse("\u{feff}id,token\r\n1,aaa\r\n\n2 , bbb\n1,ccc\n").unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u.user("aaa"), Some(1));
        assert_eq!(u.user("bbb"), Some(2));
        assert_eq!(u.user("ccc"), Some(1));
        assert_eq!(u.user("zzz"), None);
    }

    #[test]
    fn refuses_malformed_files() {
        for (text, needle) in [
            ("", "empty"),
            ("id,token\n", "no users"),
            ("token,id\n1,a\n", "header"),
            ("id,token\n1\n", "line 2"),
            ("id,token\nx,a\n", "whole number"),
            ("id,token\n-1,a\n", "whole number"),
            ("id,token\n9223372036854775808,a\n", "whole number"),
            ("id,token\n1,\n", "one field"),
            ("id,token\n1,a,b\n", "one field"),
            ("id,token\n1,a\n2,a\n", "twice"),
        ] {
            let err = Users::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_users_file_has_3000_users() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("users.csv");
        let users = Users::load(&path).unwrap();
        assert_eq!(users.len(), 3000);
        let mut ids: Vec<i64> = users.by_token.values().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=3000).collect::<Vec<_>>());
        assert!(
            users
                .by_token
                .keys()
                .all(|t| t.len() == 24 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
