//! The copy of a scenario a run folder keeps (`scenario.toml`): the text as written, comments
//! and all, without a secret in it. Credential headers' literal values become `***` (their
//! `{user.…}` placeholders say where the value comes from, and stay), and so do the passwords
//! of URLs ([`crate::evidence::sql::redact`]; a `${NAME}` password stays, naming the variable).

use toml_edit::{DocumentMut, Item, Value};

/// Headers whose value is a credential: a run folder never keeps one written literally.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
];

/// `text` (a scenario that was read without error) with its secrets replaced by `***`. Text
/// that is not TOML cannot be walked, so only URL passwords are taken out of it.
pub fn without_secrets(text: &str) -> String {
    let text = match text.parse::<DocumentMut>() {
        Ok(mut doc) => {
            walk(doc.as_item_mut(), false);
            doc.to_string()
        }
        Err(_) => text.to_string(),
    };
    crate::evidence::sql::redact(&text)
}

/// Redacts every credential header under `item`; `in_headers` says `item` is a `headers` table.
fn walk(item: &mut Item, in_headers: bool) {
    match item {
        Item::Table(t) => {
            for (key, child) in t.iter_mut() {
                visit(key.get(), child, in_headers);
            }
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (key, child) in t.iter_mut() {
                    visit(key.get(), child, false);
                }
            }
        }
        Item::Value(v) => walk_value(v, in_headers),
        Item::None => {}
    }
}

/// One entry `key = child` of a table that is a `headers` table when `in_headers`.
fn visit(key: &str, child: &mut Item, in_headers: bool) {
    if in_headers && is_secret(key) {
        if let Some(v) = child.as_value_mut() {
            hide(v);
        }
        return;
    }
    walk(child, key == "headers");
}

/// The same walk inside inline tables and arrays.
fn walk_value(v: &mut Value, in_headers: bool) {
    match v {
        Value::InlineTable(t) => {
            for (key, child) in t.iter_mut() {
                if in_headers && is_secret(key.get()) {
                    hide(child);
                } else {
                    walk_value(child, key.get() == "headers");
                }
            }
        }
        Value::Array(a) => {
            for child in a.iter_mut() {
                walk_value(child, false);
            }
        }
        _ => {}
    }
}

fn is_secret(header: &str) -> bool {
    SECRET_HEADERS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(header.trim()))
}

/// Replaces a header value by what is no secret in it: its placeholders, an auth scheme word
/// (`Bearer {user.token}` stays as it is) and cookie names; any other literal text is `***`.
fn hide(v: &mut Value) {
    let Some(s) = v.as_str() else {
        // A number or a table where a header value goes: the parser refused it already.
        return;
    };
    let shown = shown(s);
    if shown != s {
        let decor = v.decor().clone();
        *v = Value::from(shown);
        *v.decor_mut() = decor;
    }
}

/// The header value `s` with each literal run that may be a secret replaced by `***`.
fn shown(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        // `{{` is a literal brace; `{name}` a placeholder.
        let open = rest.find('{');
        match open {
            Some(0) if rest.starts_with("{{") => {
                out.push_str(&literal("{"));
                rest = &rest[2..];
            }
            Some(0) => {
                let end = rest.find('}').map_or(rest.len(), |e| e + 1);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            Some(i) => {
                out.push_str(&literal(&rest[..i]));
                rest = &rest[i..];
            }
            None => {
                out.push_str(&literal(rest));
                rest = "";
            }
        }
    }
    out
}

/// A literal run of a header value as kept: blank, an auth scheme word (`Bearer `) or cookie
/// names and separators (`sid=`, `; theme=`) as they are, anything else `***`.
fn literal(run: &str) -> String {
    let word = run.trim();
    let scheme = ["bearer", "basic", "token", "jwt", "digest"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(word));
    let cookie_name = word
        .trim_start_matches(';')
        .trim()
        .strip_suffix('=')
        .is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 32
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    if word.is_empty() || scheme || cookie_name {
        run.to_string()
    } else {
        "***".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_lose_their_literal_values_and_keep_placeholders() {
        let text = r#"# a comment stays
[system.buy]
method = "POST"
path = "/buy"
headers = { Authorization = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.x", content-type = "application/json" }

[[system.steps]]
name = "login"
[system.steps.headers]
"X-Api-Key" = "k-123456"
cookie = "sid={user.sid}; theme=dark"
Accept = "*/*"

[[system.steps]]
name = "path"
headers = { authorization = "Bearer {user.token}", Proxy-Authorization = "Basic dXNlcjpwYXNz" }

[system.sql]
url = "postgres://shop:hunter2@127.0.0.1/shop"
"#;
        let out = without_secrets(text);
        for secret in ["eyJhbGci", "k-123456", "dark", "dXNlcjpwYXNz", "hunter2"] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
        for kept in [
            "# a comment stays",
            "Authorization = \"***\"",
            "content-type = \"application/json\"",
            "\"X-Api-Key\" = \"***\"",
            "cookie = \"sid={user.sid}***\"",
            "Accept = \"*/*\"",
            "authorization = \"Bearer {user.token}\"",
            "Proxy-Authorization = \"***\"",
            "postgres://shop:***@127.0.0.1/shop",
        ] {
            assert!(out.contains(kept), "{kept:?} not in:\n{out}");
        }
        // What it writes is still a scenario of the same shape.
        assert!(out.parse::<DocumentMut>().is_ok());
    }

    #[test]
    fn only_header_tables_are_touched() {
        let text = "[system.buy]\nbody = \"authorization=abc\"\n[system.buy.form]\nauthorization = \"x\"\n";
        assert_eq!(without_secrets(text), text);
        assert_eq!(shown("Token {user.t}"), "Token {user.t}");
        assert_eq!(shown("{{literal}} abc"), "******");
    }
}
