//! Templates: text with `{placeholders}`, compiled once when the scenario is read and rendered
//! per request into a reused buffer (no allocation on the hot path).
//!
//! The syntax is that of Rust's and Python's format strings: `{name}` is a placeholder, `{{` and
//! `}}` are literal braces — so a Redis key with a hash tag is written `seckill:{{{item}}}:stock`.
//! Which names exist depends on where the template is used (a [`Vars`] set); an unknown name is
//! an error when the scenario is read, with its position.

use std::fmt;

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<V> {
    /// Text written as is.
    Text(Box<[u8]>),
    /// A value looked up when rendering; `raw` (`{name:raw}`) writes it unescaped.
    Var(V, bool),
}

/// How a value is written into the text around it: what its context needs, so that a password
/// with `+ & = %` in a form body, or a `"` in a JSON one, arrives as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escape {
    /// As it is (Redis keys, process arguments, headers).
    #[default]
    None,
    /// Percent-encoded but for RFC 3986's unreserved characters: a path segment, a query value,
    /// an `application/x-www-form-urlencoded` body.
    Url,
    /// JSON string escaping (`"`, `\`, control characters): a JSON body.
    Json,
}

impl Escape {
    /// Whether `b` must be written otherwise.
    fn needs(self, b: u8) -> bool {
        match self {
            Escape::None => false,
            Escape::Url => !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')),
            Escape::Json => b == b'"' || b == b'\\' || b < 0x20,
        }
    }

    /// Escapes `out[start..]` in place (a copy only when something needs escaping).
    fn apply(self, out: &mut Vec<u8>, start: usize) {
        if !out[start..].iter().any(|&b| self.needs(b)) {
            return;
        }
        let value = out.split_off(start);
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in value {
            if !self.needs(b) {
                out.push(b);
                continue;
            }
            match (self, b) {
                (Escape::Json, b'"') => out.extend_from_slice(b"\\\""),
                (Escape::Json, b'\\') => out.extend_from_slice(b"\\\\"),
                (Escape::Json, b'\n') => out.extend_from_slice(b"\\n"),
                (Escape::Json, b'\r') => out.extend_from_slice(b"\\r"),
                (Escape::Json, b'\t') => out.extend_from_slice(b"\\t"),
                (Escape::Json, c) => {
                    out.extend_from_slice(b"\\u00");
                    out.extend([HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                }
                (_, c) => out.extend([b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]),
            }
        }
    }
}

/// A compiled template over the variables `V`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<V> {
    pieces: Vec<Piece<V>>,
    /// The template as written, for messages.
    source: String,
    /// How its values are escaped ([`Template::escaped`]; none unless told).
    escape: Escape,
}

/// Why a template does not compile: what is wrong and the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the problem in the template text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The placeholder names a kind of template knows.
pub trait Vars: Sized + Copy {
    /// The variable called `name`, if this kind of template has it.
    fn lookup(name: &str) -> Result<Self, String>;
    /// The names there are, for messages.
    fn known() -> String;
}

impl<V: Vars> Template<V> {
    /// Compiles `text`.
    pub fn compile(text: &str) -> Result<Template<V>, TemplateError> {
        Template::compile_with(text, V::lookup, &V::known())
    }
}

impl<V: Copy> Template<V> {
    /// Compiles `text`, finding placeholder names with `lookup` (when the names depend on the
    /// scenario, e.g. the columns of its users file); `known` lists them for messages.
    pub fn compile_with(
        text: &str,
        lookup: impl Fn(&str) -> Result<V, String>,
        known: &str,
    ) -> Result<Template<V>, TemplateError> {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'{' => {
                    let end = text[i + 1..].find('}').ok_or_else(|| TemplateError {
                        offset: i,
                        message: format!(
                            "unclosed {{ in {text:?} (write {{{{ for a literal brace)"
                        ),
                    })?;
                    let name = &text[i + 1..i + 1 + end];
                    // `{name:raw}`: written as it is, whatever the template's escaping.
                    let (looked_up, raw) = match name.trim().strip_suffix(":raw") {
                        Some(n) => (n.trim(), true),
                        None => (name.trim(), false),
                    };
                    let var = lookup(looked_up).map_err(|why| TemplateError {
                        offset: i,
                        message: format!(
                            "unknown placeholder {{{name}}} in {text:?}: {why}; known: {known}"
                        ),
                    })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
                    }
                    pieces.push(Piece::Var(var, raw));
                    i += end + 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: format!("a lone }} in {text:?} (write }}}} for a literal brace)"),
                    });
                }
                b => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal.into()));
        }
        Ok(Template {
            pieces,
            source: text.to_string(),
            escape: Escape::None,
        })
    }

    /// The template with its values escaped as `escape` says (`{name:raw}` ones excepted).
    pub fn escaped(mut self, escape: Escape) -> Template<V> {
        self.escape = escape;
        self
    }

    /// The template with the values of the variables `keep` picks written raw: values that
    /// are text of the same kind already (a URL path where a path goes).
    pub fn raw_where(mut self, keep: impl Fn(V) -> bool) -> Template<V> {
        for p in &mut self.pieces {
            if let Piece::Var(v, raw) = p
                && keep(*v)
            {
                *raw = true;
            }
        }
        self
    }

    /// How its values are escaped.
    pub fn escape(&self) -> Escape {
        self.escape
    }

    /// Appends the rendering to `out`; `value` writes a variable's value, which is then
    /// escaped for the template's context (nothing is copied when nothing needs it).
    pub fn render(&self, out: &mut Vec<u8>, mut value: impl FnMut(V, &mut Vec<u8>)) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Var(v, true) => value(*v, out),
                Piece::Var(v, false) => {
                    let start = out.len();
                    value(*v, out);
                    self.escape.apply(out, start);
                }
            }
        }
    }

    /// The rendering as a string (set-up, not the hot path).
    pub fn to_string_with(&self, value: impl FnMut(V, &mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        self.render(&mut out, value);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Whether the template uses variable `v`.
    pub fn uses(&self, v: V) -> bool
    where
        V: PartialEq,
    {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Var(x, _) if *x == v))
    }

    /// The variables it uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = V> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v, _) => Some(*v),
            Piece::Text(_) => None,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it is only text (no placeholder).
    pub fn is_constant(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum V {
        Item,
        Col(u8),
    }

    impl Vars for V {
        fn lookup(name: &str) -> Result<V, String> {
            match name {
                "item" => Ok(V::Item),
                "user.token" => Ok(V::Col(0)),
                _ => Err("not a placeholder of this test".into()),
            }
        }
        fn known() -> String {
            "item, user.token".into()
        }
    }

    fn render(t: &Template<V>) -> String {
        t.to_string_with(|v, out| match v {
            V::Item => out.extend_from_slice(b"i1"),
            V::Col(_) => out.extend_from_slice(b"tok"),
        })
    }

    #[test]
    fn placeholders_and_escaped_braces() {
        let t = Template::<V>::compile("seckill:{{{item}}}:stock").unwrap();
        assert_eq!(render(&t), "seckill:{i1}:stock");
        let t = Template::<V>::compile("Bearer {user.token}").unwrap();
        assert_eq!(render(&t), "Bearer tok");
        assert!(t.uses(V::Col(0)) && !t.uses(V::Item));
        assert!(Template::<V>::compile("plain").unwrap().is_constant());
    }

    #[test]
    fn values_are_escaped_for_their_context_unless_raw() {
        let tok = |text: &str, esc: Escape, value: &[u8]| {
            let t = Template::<V>::compile(text).unwrap().escaped(esc);
            let mut out = Vec::new();
            t.render(&mut out, |v, out| match v {
                V::Item => out.extend_from_slice(b"i 1"),
                V::Col(_) => out.extend_from_slice(value),
            });
            String::from_utf8(out).unwrap()
        };
        let pw = b"p+w&d=1 %\"x\\";
        assert_eq!(
            tok("user={item}&password={user.token}", Escape::Url, pw),
            "user=i%201&password=p%2Bw%26d%3D1%20%25%22x%5C"
        );
        assert_eq!(
            tok(
                "{{\"pw\":\"{user.token}\"}}",
                Escape::Json,
                b"a\"b\\c\nd\x01"
            ),
            "{\"pw\":\"a\\\"b\\\\c\\nd\\u0001\"}"
        );
        // Raw: the rare literal a server wants as it is.
        assert_eq!(tok("q={user.token:raw}", Escape::Url, b"a+b"), "q=a+b");
        // Nothing to escape, nothing copied; no escaping unless told.
        assert_eq!(
            tok("{user.token}", Escape::Url, b"abc-1.2_3~"),
            "abc-1.2_3~"
        );
        assert_eq!(tok("{user.token}", Escape::None, b"a b"), "a b");
        let t = Template::<V>::compile("{item}/{user.token}")
            .unwrap()
            .escaped(Escape::Url)
            .raw_where(|v| v == V::Item);
        assert_eq!(render(&t), "i1/tok");
    }

    #[test]
    fn unknown_names_and_stray_braces_are_errors_with_an_offset() {
        let e = Template::<V>::compile("/api/{itme}").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(
            e.message.contains("unknown placeholder {itme}") && e.message.contains("known: item")
        );
        assert!(Template::<V>::compile("a{item").is_err());
        assert_eq!(Template::<V>::compile("a}b").unwrap_err().offset, 1);
    }
}
