//! JSON Pointers (RFC 6901) looked up in a response body without parsing it into a tree: the
//! scanner walks the bytes along the pointer's path, skipping every other value, and returns the
//! bytes of the value found. Nothing is allocated per lookup; a body that is not JSON simply has
//! no value at any pointer.

/// A compiled JSON Pointer, e.g. `/data/orderId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// The reference tokens, unescaped (`~1` → `/`, `~0` → `~`).
    tokens: Vec<Box<[u8]>>,
    /// The pointer as written.
    source: String,
}

impl Pointer {
    /// Parses a pointer: `""` (the whole document) or `/token/token…`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                tokens: Vec::new(),
                source: String::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON Pointer: it must be empty or start with / (e.g. \"/data/orderId\")"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = Vec::with_capacity(raw.len());
            let mut chars = raw.bytes();
            while let Some(b) = chars.next() {
                if b != b'~' {
                    token.push(b);
                    continue;
                }
                match chars.next() {
                    Some(b'0') => token.push(b'~'),
                    Some(b'1') => token.push(b'/'),
                    _ => {
                        return Err(format!(
                            "{text:?} is not a JSON Pointer: ~ must be followed by 0 (for ~) or 1 (for /)"
                        ));
                    }
                }
            }
            tokens.push(token.into());
        }
        Ok(Pointer {
            tokens,
            source: text.to_string(),
        })
    }

    /// The pointer as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bytes of the value at this pointer in `doc`, if there is one.
    pub fn find<'a>(&self, doc: &'a [u8]) -> Option<&'a [u8]> {
        let mut i = ws(doc, 0);
        for token in &self.tokens {
            i = match doc.get(i)? {
                b'{' => member(doc, i, token)?,
                b'[' => element(doc, i, token)?,
                _ => return None,
            };
        }
        let end = skip_value(doc, i)?;
        Some(&doc[i..end])
    }
}

/// A value found in a document, seen as what it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A string: its contents between the quotes, still escaped; `escaped` says whether any
    /// escape is in it.
    Str {
        /// The raw contents.
        raw: &'a [u8],
        /// Whether `raw` holds a backslash escape.
        escaped: bool,
    },
    /// A number, as written.
    Num(&'a [u8]),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object or an array.
    Composite,
}

impl<'a> Value<'a> {
    /// Reads a value's bytes as returned by [`Pointer::find`].
    pub fn of(bytes: &'a [u8]) -> Value<'a> {
        match bytes.first() {
            Some(b'"') => {
                let raw = &bytes[1..bytes.len().saturating_sub(1).max(1)];
                Value::Str {
                    raw,
                    escaped: raw.contains(&b'\\'),
                }
            }
            Some(b't') => Value::Bool(true),
            Some(b'f') => Value::Bool(false),
            Some(b'n') => Value::Null,
            Some(b'{' | b'[') => Value::Composite,
            _ => Value::Num(bytes),
        }
    }

    /// The text of a string or a number (a string's escapes are left as written: ids seldom
    /// hold any).
    pub fn text(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Str { raw, .. } => Some(raw),
            Value::Num(n) => Some(n),
            _ => None,
        }
    }

    /// The value as a number, when it is one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Num(n) => small_integer(n).or_else(|| std::str::from_utf8(n).ok()?.parse().ok()),
            _ => None,
        }
    }
}

/// The value of `-?[0-9]{1,15}` without the float parser (answer codes such as `-1` are read
/// from every answer): below 2^53 an integer is exactly an `f64`, so this is what `parse`
/// gives; anything else (fractions, exponents, signs, more digits) is `None` and left to it.
fn small_integer(n: &[u8]) -> Option<f64> {
    let (negative, digits) = match n.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, n),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0')) as f64;
    Some(if negative { -v } else { v })
}

/// Skips white space from `i`.
fn ws(doc: &[u8], mut i: usize) -> usize {
    while matches!(doc.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `i` (which holds its opening quote).
fn skip_string(doc: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match doc.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `i`.
fn skip_value(doc: &[u8], i: usize) -> Option<usize> {
    match doc.get(i)? {
        b'"' => skip_string(doc, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match doc.get(j)? {
                    b'"' => {
                        j = skip_string(doc, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(&b) = doc.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// In the object at `i`, the start of the value of member `key`.
fn member(doc: &[u8], i: usize, key: &[u8]) -> Option<usize> {
    let mut j = ws(doc, i + 1);
    if doc.get(j) == Some(&b'}') {
        return None;
    }
    loop {
        if doc.get(j)? != &b'"' {
            return None;
        }
        let end = skip_string(doc, j)?;
        let name = &doc[j + 1..end - 1];
        j = ws(doc, end);
        if doc.get(j)? != &b':' {
            return None;
        }
        j = ws(doc, j + 1);
        if key_is(name, key) {
            return Some(j);
        }
        j = ws(doc, skip_value(doc, j)?);
        match doc.get(j)? {
            b',' => j = ws(doc, j + 1),
            _ => return None,
        }
    }
}

/// In the array at `i`, the start of element number `token` (decimal, no leading zero).
fn element(doc: &[u8], i: usize, token: &[u8]) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token[0] == b'0') {
        return None;
    }
    let index: usize = std::str::from_utf8(token).ok()?.parse().ok()?;
    let mut j = ws(doc, i + 1);
    for _ in 0..index {
        j = ws(doc, skip_value(doc, j)?);
        if doc.get(j)? != &b',' {
            return None;
        }
        j = ws(doc, j + 1);
    }
    matches!(doc.get(j), Some(b) if *b != b']').then_some(j)
}

/// Whether a member name as written (escapes and all) is `key`.
fn key_is(raw: &[u8], key: &[u8]) -> bool {
    if !raw.contains(&b'\\') {
        return raw == key;
    }
    unescape_eq(raw, key)
}

/// Whether the escaped string contents `raw` unescape to `want`.
pub fn unescape_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut out = [0u8; 4];
    let (mut i, mut k) = (0, 0);
    while i < raw.len() {
        let piece: &[u8] = if raw[i] == b'\\' {
            let (bytes, used) = match raw.get(i + 1) {
                Some(b'n') => (&b"\n"[..], 2),
                Some(b't') => (&b"\t"[..], 2),
                Some(b'r') => (&b"\r"[..], 2),
                Some(b'b') => (&b"\x08"[..], 2),
                Some(b'f') => (&b"\x0c"[..], 2),
                Some(b'u') => {
                    let Some(code) = raw
                        .get(i + 2..i + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                    else {
                        return false;
                    };
                    let n = code.encode_utf8(&mut out).len();
                    i += 6;
                    if want.get(k..k + n) != Some(&out[..n]) {
                        return false;
                    }
                    k += n;
                    continue;
                }
                Some(_) => (&raw[i + 1..i + 2], 2),
                None => return false,
            };
            i += used;
            bytes
        } else {
            i += 1;
            &raw[i - 1..i]
        };
        if want.get(k..k + piece.len()) != Some(piece) {
            return false;
        }
        k += piece.len();
    }
    k == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(doc: &'a str, p: &str) -> Option<&'a str> {
        Pointer::parse(p)
            .unwrap()
            .find(doc.as_bytes())
            .map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn finds_values_along_the_path() {
        let doc =
            r#" {"code":0, "msg":"ok", "data": {"orderId":"item1-42","n":[1, {"x":true}, 3]}} "#;
        assert_eq!(at(doc, "/code"), Some("0"));
        assert_eq!(at(doc, "/data/orderId"), Some(r#""item1-42""#));
        assert_eq!(at(doc, "/data/n/1/x"), Some("true"));
        assert_eq!(at(doc, "/data/n/2"), Some("3"));
        assert_eq!(at(doc, "/data/n/3"), None);
        assert_eq!(at(doc, "/data/missing"), None);
        assert_eq!(at(doc, "/msg/x"), None);
        assert!(at(doc, "").unwrap().starts_with('{'));
    }

    #[test]
    fn escapes_in_pointers_and_in_keys() {
        let doc = r#"{"a/b":1,"m~n":2,"\u0063ode":3,"q\"":4}"#;
        assert_eq!(at(doc, "/a~1b"), Some("1"));
        assert_eq!(at(doc, "/m~0n"), Some("2"));
        assert_eq!(at(doc, "/code"), Some("3"));
        assert_eq!(at(doc, "/q\""), Some("4"));
        assert!(Pointer::parse("code").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }

    #[test]
    fn not_json_has_no_values() {
        for doc in ["", "<html>", "{\"code\":", "{\"a\" 1}", "[1,2"] {
            assert_eq!(at(doc, "/code"), None, "{doc}");
        }
    }

    #[test]
    fn values_are_seen_as_what_they_are() {
        assert_eq!(
            Value::of(br#""x\"y""#),
            Value::Str {
                raw: br#"x\"y"#,
                escaped: true
            }
        );
        assert_eq!(Value::of(b"-12").number(), Some(-12.0));
        assert_eq!(Value::of(b"null"), Value::Null);
        assert_eq!(Value::of(b"[1]"), Value::Composite);
        assert!(unescape_eq(br"a\nb\u00e9", "a\nbé".as_bytes()));
        assert!(!unescape_eq(br"a\nb", b"anb"));
    }

    // The integer shortcut gives what the float parser gives, and leaves everything else to it.
    #[test]
    fn numbers_read_as_the_float_parser_reads_them() {
        for n in [
            "0",
            "-0",
            "1",
            "-1",
            "007",
            "500100",
            "999999999999999",
            "-999999999999999",
            "9999999999999999",
            "12345678901234567890",
            "1.5",
            "-2e3",
            "1E2",
            "+1",
            "-",
            "",
            "1-",
            "--1",
            "0x10",
            "inf",
            "NaN",
            " 1",
        ] {
            let parsed: Option<f64> = n.parse().ok();
            assert_eq!(
                Value::Num(n.as_bytes()).number().map(f64::to_bits),
                parsed.map(f64::to_bits),
                "{n:?}"
            );
        }
    }
}
