//! The queries a scenario gives for its SQL source: checked to be one SELECT that neither writes
//! nor locks, and made ready for one dialect (`{item}` and `{sale}` become bind parameters).
//!
//! The scan knows both dialects' quoting: '…' strings, "…" and `…` identifiers, `--` and
//! `/* */` comments. Where PostgreSQL and MySQL would read the same text differently, it
//! refuses rather than guesses: a backslash inside quotes (an escape in MySQL, a character in
//! PostgreSQL), `#` (a comment in MySQL), `--x` without a space (minus minus in MySQL), nested or
//! executable (`/*! … */`) comments, dollar quoting and `$1`/`?` parameters. This check is the
//! first guard; the read-only transaction each query runs in is the one that holds
//! (`src/evidence/sql/read.rs`).

use super::Dialect;

/// A variable a query may use, bound as a parameter when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    /// `{item}`: the item on sale.
    Item,
    /// `{sale}`: the sale's id.
    Sale,
}

impl Var {
    /// The placeholder's name, as written between braces.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Var::Item => "item",
            Var::Sale => "sale",
        }
    }
}

/// A checked query made ready for one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The SQL sent to the server: placeholders turned into bind parameters (`$1`, `$2` or
    /// `?`), braces unescaped, the trailing `;` and whatever followed it (comments) gone.
    pub sql: String,
    /// What each bind parameter holds, in order: `$1`, `$2`… (each variable once), or each `?`.
    pub params: Vec<Var>,
}

/// One token that matters to the check (whitespace, comments and quoted text are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A keyword or an identifier, upper-cased.
    Word(String),
    /// A `;`.
    Semicolon,
    /// A `(`.
    Open,
    /// A placeholder, a quoted string or identifier, a number or punctuation (as written,
    /// for messages).
    Other(String),
}

/// What the scan of a query found.
struct Scan {
    /// The tokens that matter, each with its byte offset.
    toks: Vec<(Tok, usize)>,
    /// The SQL to send, built while scanning.
    out: String,
    /// The length of `out` at the first `;` (the statement ends there).
    end: Option<usize>,
    /// The bind parameters, in order.
    params: Vec<Var>,
}

/// Checks that `sql` is exactly one SELECT statement that neither writes nor locks (see
/// [`super::check_select`]); the error completes "the query …".
pub(crate) fn prepare(sql: &str, dialect: Dialect) -> Result<Prepared, String> {
    let scan = scan(sql, dialect)?;
    check_tokens(sql, &scan.toks)?;
    let mut out = scan.out;
    if let Some(end) = scan.end {
        out.truncate(end);
    }
    let sql = out.trim().to_string();
    Ok(Prepared {
        sql,
        params: scan.params,
    })
}

/// The statement-level rules on the tokens: starts with SELECT, one statement, no INTO, no
/// locking clause.
fn check_tokens(sql: &str, toks: &[(Tok, usize)]) -> Result<(), String> {
    let single = "must be a single SELECT statement";
    let first = toks.iter().find(|(t, _)| *t != Tok::Open);
    match first {
        None | Some((Tok::Semicolon, _)) => return Err(format!("{single}; it is empty")),
        Some((Tok::Word(w), _)) if w == "SELECT" => {}
        Some((Tok::Word(w), _)) if w == "WITH" => {
            return Err(format!(
                "{single}; it starts with WITH (a common table expression may modify data: \
                 write it as a subquery in FROM instead)"
            ));
        }
        Some((t, _)) => return Err(format!("{single}; it starts with {}", shown(t))),
    }
    if let Some(semi) = toks.iter().position(|(t, _)| *t == Tok::Semicolon)
        && let Some((t, at)) = toks.get(semi + 1)
    {
        return Err(format!(
            "{single}; another statement follows the `;` ({} at {})",
            shown(t),
            place(sql, *at)
        ));
    }
    for (i, (tok, at)) in toks.iter().enumerate() {
        let Tok::Word(w) = tok else { continue };
        let next = match toks.get(i + 1) {
            Some((Tok::Word(n), _)) => n.as_str(),
            _ => "",
        };
        if w == "INTO" {
            return Err(format!(
                "must not use INTO (at {}): SELECT … INTO creates a table or writes a file",
                place(sql, *at)
            ));
        }
        let locks = (w == "FOR" && matches!(next, "UPDATE" | "SHARE" | "NO" | "KEY"))
            || (w == "LOCK" && next == "IN");
        if locks {
            return Err(format!(
                "must not lock rows ({w} {next} at {}): the audit only reads",
                place(sql, *at)
            ));
        }
    }
    Ok(())
}

/// A token as a message shows it.
fn shown(t: &Tok) -> String {
    match t {
        Tok::Word(w) => w.clone(),
        Tok::Semicolon => "`;`".into(),
        Tok::Open => "`(`".into(),
        Tok::Other(s) => format!("`{s}`"),
    }
}

/// "line L, column C" of byte offset `at` in `sql` (both from 1, columns in characters).
fn place(sql: &str, at: usize) -> String {
    let before = &sql[..at.min(sql.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}")
}

/// Whether `b` may be part of an unquoted identifier or keyword (non-ASCII letters too).
fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The scan itself: tokens for the checks, the SQL to send, the parameters.
fn scan(sql: &str, dialect: Dialect) -> Result<Scan, String> {
    let b = sql.as_bytes();
    let mut s = Scan {
        toks: Vec::new(),
        out: String::with_capacity(sql.len() + 8),
        end: None,
        params: Vec::new(),
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        i = match c {
            b'-' if next == Some(b'-') => {
                // Comments are kept as written (one may end the statement's last line).
                let end = line_comment(sql, i)?;
                s.out.push_str(&sql[i..end]);
                end
            }
            b'/' if next == Some(b'*') => {
                let end = block_comment(sql, i)?;
                s.out.push_str(&sql[i..end]);
                end
            }
            b'#' => {
                return Err(refusal(
                    sql,
                    i,
                    "`#`",
                    "a comment in MySQL; use -- comments",
                ));
            }
            b'\'' | b'"' | b'`' => {
                let end = quoted(sql, i, &mut s.out)?;
                s.toks.push((Tok::Other(sql[i..end].to_string()), i));
                i = end;
                continue;
            }
            b'{' | b'}' => {
                let (brace, end) = brace(sql, i)?;
                match brace {
                    Brace::Literal(ch) => s.out.push(ch),
                    Brace::Param(var) => s.param(var, dialect, b.get(end).copied()),
                }
                s.toks.push((Tok::Other(sql[i..end].to_string()), i));
                i = end;
                continue;
            }
            b'$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                let why = "a numbered parameter; use {item} and {sale}";
                return Err(refusal(sql, i, "`$`", why));
            }
            b'$' if dollar_quote(b, i) => {
                let why = "dollar quoting (PostgreSQL only); use '…' strings";
                return Err(refusal(sql, i, "`$…$`", why));
            }
            b'?' => {
                let why = "a parameter marker; use {item} and {sale}";
                return Err(refusal(sql, i, "`?`", why));
            }
            _ => {
                let end = plain(sql, i, &mut s);
                s.out.push_str(&sql[i..end]);
                end
            }
        };
    }
    Ok(s)
}

impl Scan {
    /// Writes a bind parameter for `var` (apart from an identifier on either side).
    fn param(&mut self, var: Var, dialect: Dialect, after: Option<u8>) {
        if self.out.bytes().last().is_some_and(ident_byte) {
            self.out.push(' ');
        }
        match dialect {
            Dialect::Postgres => {
                let n = match self.params.iter().position(|v| *v == var) {
                    Some(n) => n + 1,
                    None => {
                        self.params.push(var);
                        self.params.len()
                    }
                };
                self.out.push_str(&format!("${n}"));
            }
            Dialect::MySql => {
                self.params.push(var);
                self.out.push('?');
            }
        }
        if after.is_some_and(ident_byte) {
            self.out.push(' ');
        }
    }
}

/// A word, a number, whitespace or one punctuation byte at `i` (not quotes, comments or
/// braces): records its token and returns where it ends.
fn plain(sql: &str, i: usize, s: &mut Scan) -> usize {
    let b = sql.as_bytes();
    let c = b[i];
    if c.is_ascii_whitespace() {
        return i + 1;
    }
    if ident_byte(c) {
        let mut end = i;
        while end < b.len() && (ident_byte(b[end]) || (c.is_ascii_digit() && b[end] == b'.')) {
            end += 1;
        }
        let word = &sql[i..end];
        let tok = if c.is_ascii_digit() {
            Tok::Other(word.to_string())
        } else {
            Tok::Word(word.to_ascii_uppercase())
        };
        s.toks.push((tok, i));
        return end;
    }
    // One punctuation character (a whole UTF-8 sequence is an identifier byte run above).
    let tok = match c {
        b';' => {
            if s.end.is_none() {
                s.end = Some(s.out.len());
            }
            Tok::Semicolon
        }
        b'(' => Tok::Open,
        _ => Tok::Other((c as char).to_string()),
    };
    s.toks.push((tok, i));
    i + 1
}

/// The end of the `--` comment at `i` (its newline stays outside). MySQL only reads `--` as a
/// comment when whitespace follows it, so `--x` is refused.
fn line_comment(sql: &str, i: usize) -> Result<usize, String> {
    let b = sql.as_bytes();
    if b.get(i + 2).is_some_and(|c| !c.is_ascii_whitespace()) {
        let why = "MySQL reads `--` as a comment only with a space after it: write `-- `";
        return Err(refusal(sql, i, "`--`", why));
    }
    Ok(sql[i..].find('\n').map_or(b.len(), |n| i + n))
}

/// The end of the `/* */` comment at `i`. Refused: MySQL's executable comments (`/*! … */`,
/// `/*M! … */`, which MySQL runs) and nested comments (PostgreSQL nests them, MySQL does not).
fn block_comment(sql: &str, i: usize) -> Result<usize, String> {
    let rest = &sql[i + 2..];
    if rest.starts_with('!') || rest.starts_with("M!") {
        let why = "an executable comment: MySQL runs what is inside";
        return Err(refusal(sql, i, "`/*!`", why));
    }
    let Some(close) = rest.find("*/") else {
        return Err(refusal(sql, i, "`/*`", "a comment that is never closed"));
    };
    if let Some(inner) = rest[..close].find("/*") {
        let why = "a comment inside a comment (PostgreSQL and MySQL read it differently)";
        return Err(refusal(sql, i + 2 + inner, "`/*`", why));
    }
    Ok(i + 2 + close + 2)
}

/// Copies the quoted string or identifier at `i` ('…', "…" or `…`, the quote doubled inside
/// to escape it) to `out`, braces unescaped, and returns where it ends.
fn quoted(sql: &str, i: usize, out: &mut String) -> Result<usize, String> {
    let b = sql.as_bytes();
    let q = b[i];
    out.push(q as char);
    let mut j = i + 1;
    let mut copied = j;
    loop {
        let Some(&c) = b.get(j) else {
            let why = "quotes that are never closed";
            return Err(refusal(sql, i, &format!("`{}`", q as char), why));
        };
        if c == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            out.push_str(&sql[copied..=j]);
            return Ok(j + 1);
        }
        if c == b'\\' && q != b'`' {
            let why = "a backslash inside quotes (an escape in MySQL, a character in \
                       PostgreSQL); write the text without it";
            return Err(refusal(sql, j, "`\\`", why));
        }
        if c == b'{' || c == b'}' {
            let (brace, end) = brace(sql, j)?;
            let Brace::Literal(ch) = brace else {
                let why = "a placeholder inside quotes: write it bare (item_id = {item}); it \
                           is passed as a bind parameter";
                return Err(refusal(sql, j, &format!("`{}`", &sql[j..end]), why));
            };
            out.push_str(&sql[copied..j]);
            out.push(ch);
            j = end;
            copied = j;
            continue;
        }
        j += 1;
    }
}

/// What a brace at a position is.
enum Brace {
    /// `{{` or `}}`: one literal brace.
    Literal(char),
    /// `{item}` or `{sale}`.
    Param(Var),
}

/// Reads the brace at `i`: `{{`, `}}`, `{item}` or `{sale}`; anything else is refused.
fn brace(sql: &str, i: usize) -> Result<(Brace, usize), String> {
    let b = sql.as_bytes();
    let c = b[i];
    if b.get(i + 1) == Some(&c) {
        return Ok((Brace::Literal(c as char), i + 2));
    }
    if c == b'{' {
        let name_len = b[i + 1..]
            .iter()
            .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
            .count();
        let close = i + 1 + name_len;
        if b.get(close) == Some(&b'}') {
            let name = &sql[i + 1..close];
            return match name {
                "item" => Ok((Brace::Param(Var::Item), close + 1)),
                "sale" => Ok((Brace::Param(Var::Sale), close + 1)),
                _ => Err(format!(
                    "uses the unknown placeholder {{{name}}} (at {}); the queries may use \
                     {{item}} and {{sale}}, and {{{{ }}}} for literal braces",
                    place(sql, i)
                )),
            };
        }
    }
    let why = "a lone brace: write {{ or }} for a literal one, {item} or {sale} for a parameter";
    Err(refusal(sql, i, &format!("`{}`", c as char), why))
}

/// Whether a PostgreSQL dollar quote (`$$` or `$tag$`) starts at `i`.
fn dollar_quote(b: &[u8], i: usize) -> bool {
    if i > 0 && ident_byte(b[i - 1]) {
        return false; // inside an identifier such as a$b
    }
    let tag = b[i + 1..]
        .iter()
        .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
        .count();
    b.get(i + 1 + tag) == Some(&b'$') && !b.get(i + 1).is_some_and(u8::is_ascii_digit)
}

/// "must not contain WHAT (at line L, column C): WHY".
fn refusal(sql: &str, at: usize, what: &str, why: &str) -> String {
    format!("must not contain {what} (at {}): {why}", place(sql, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> Result<Prepared, String> {
        prepare(sql, Dialect::Postgres)
    }

    fn my(sql: &str) -> Result<Prepared, String> {
        prepare(sql, Dialect::MySql)
    }

    fn refused(sql: &str) -> String {
        let pg = pg(sql).expect_err(sql);
        assert_eq!(Err(pg.clone()), my(sql).map(|_| ()), "{sql}");
        pg
    }

    #[test]
    fn one_select_is_accepted_with_comments_case_and_a_trailing_semicolon() {
        for sql in [
            "SELECT 1",
            "select 1",
            "  \n\tSeLeCt 1 ;  ",
            "-- the stock\nSELECT stock FROM items -- left\n",
            "/* a */ SELECT /* b */ 1 /* c */; -- d",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT ';', \";\", `;`, 'it''s', \"a\"\"b\" FROM t",
            "SELECT 'for update', 'into' AS \"into\", `lock` FROM t",
            "SELECT substring(x FROM 1 FOR 2) FROM t",
            "SELECT a$b FROM t WHERE x::text = 'é' -- \u{e9}",
            "SELECT 1;\n-- nothing after but a comment\n",
        ] {
            assert!(pg(sql).is_ok(), "{sql}: {:?}", pg(sql));
            assert!(my(sql).is_ok(), "{sql}: {:?}", my(sql));
        }
    }

    #[test]
    fn other_statements_are_refused_by_their_first_word() {
        for (sql, first) in [
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("update t set a = 1", "UPDATE"),
            ("DELETE FROM orders", "DELETE"),
            ("CREATE TABLE x (a int)", "CREATE"),
            ("DROP TABLE orders", "DROP"),
            ("CALL refund()", "CALL"),
            ("SET search_path = x", "SET"),
            ("TABLE orders", "TABLE"),
            ("VALUES (1)", "VALUES"),
            ("  -- hi\n  /* x */ ( delete from t )", "DELETE"),
        ] {
            let e = refused(sql);
            assert_eq!(
                e,
                format!("must be a single SELECT statement; it starts with {first}"),
                "{sql}"
            );
        }
        assert!(refused("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x").contains("WITH"));
        for empty in ["", "  ", "-- only a comment", ";"] {
            assert_eq!(
                refused(empty),
                "must be a single SELECT statement; it is empty"
            );
        }
        assert!(refused("'x'").contains("it starts with `'x'`"));
    }

    #[test]
    fn a_second_statement_is_refused_wherever_the_semicolon_is() {
        let e = refused("SELECT 1; DELETE FROM orders");
        assert_eq!(
            e,
            "must be a single SELECT statement; another statement follows the `;` \
             (DELETE at line 1, column 11)"
        );
        assert!(refused("SELECT 1;;").contains("another statement"));
        assert!(refused("SELECT 1;\nSELECT 2").contains("line 2, column 1"));
        assert!(refused("SELECT 'a'';' ; DROP TABLE t").contains("DROP"));
        assert!(refused("SELECT \"a;\" /* ; */ ; x").contains("X at"));
    }

    #[test]
    fn into_and_locking_clauses_are_refused() {
        for sql in [
            "SELECT * INTO new_table FROM orders",
            "SELECT * FROM orders INTO OUTFILE '/tmp/x'",
            "select 1 into @v",
        ] {
            assert!(refused(sql).starts_with("must not use INTO"), "{sql}");
        }
        for (sql, words) in [
            ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
            ("SELECT * FROM t for share", "FOR SHARE"),
            ("SELECT * FROM t FOR NO KEY UPDATE", "FOR NO"),
            ("SELECT * FROM t FOR KEY SHARE", "FOR KEY"),
            ("SELECT * FROM t FOR /* x */\n UPDATE NOWAIT", "FOR UPDATE"),
            ("SELECT * FROM t LOCK IN SHARE MODE", "LOCK IN"),
        ] {
            let e = refused(sql);
            assert!(
                e.starts_with(&format!("must not lock rows ({words} at")),
                "{e}"
            );
        }
    }

    #[test]
    fn text_the_dialects_read_differently_is_refused() {
        for (sql, what) in [
            ("SELECT 1 # comment", "`#`"),
            ("SELECT 1 --comment", "`--`"),
            ("SELECT 1 /*! INTO OUTFILE 'x' */", "`/*!`"),
            ("SELECT 1 /*M! , 2 */", "`/*!`"),
            ("SELECT 1 /* a /* b */ c */", "`/*`"),
            ("SELECT 1 /* never closed", "`/*`"),
            ("SELECT 'a\\'; DELETE FROM t; --'", "`\\`"),
            ("SELECT \"a\\\" FROM t", "`\\`"),
            ("SELECT 'never closed", "`'`"),
            ("SELECT $$x$$", "`$…$`"),
            ("SELECT $tag$x$tag$", "`$…$`"),
            ("SELECT * FROM t WHERE id = $1", "`$`"),
            ("SELECT * FROM t WHERE id = ?", "`?`"),
        ] {
            let e = refused(sql);
            assert!(
                e.starts_with(&format!("must not contain {what} (at")),
                "{sql}: {e}"
            );
        }
        // A backtick identifier may hold a backslash (MySQL reads it as a character).
        assert!(my("SELECT `a\\b` FROM t").is_ok());
        assert_eq!(
            refused("SELECT\n  1 # x"),
            "must not contain `#` (at line 2, column 5): a comment in MySQL; use -- comments"
        );
    }

    #[test]
    fn placeholders_become_bind_parameters_never_text() {
        let sql = "SELECT stock FROM items WHERE id = {item} AND sale = {sale} OR alt = {item}";
        assert_eq!(
            pg(sql).unwrap(),
            Prepared {
                sql: "SELECT stock FROM items WHERE id = $1 AND sale = $2 OR alt = $1".into(),
                params: vec![Var::Item, Var::Sale],
            }
        );
        assert_eq!(
            my(sql).unwrap(),
            Prepared {
                sql: "SELECT stock FROM items WHERE id = ? AND sale = ? OR alt = ?".into(),
                params: vec![Var::Item, Var::Sale, Var::Item],
            }
        );
        // Numbered by first use; kept apart from identifiers; casts still attach.
        let p = pg("SELECT x FROM t WHERE s={sale} AND i=a{item}b AND {item}::int > 0").unwrap();
        assert_eq!(
            p.sql,
            "SELECT x FROM t WHERE s=$1 AND i=a $2 b AND $2::int > 0"
        );
        assert_eq!(p.params, vec![Var::Sale, Var::Item]);
        assert!(pg("SELECT 1").unwrap().params.is_empty());
    }

    #[test]
    fn braces_escape_by_doubling_and_unknown_placeholders_are_refused() {
        let p = pg("SELECT '{{\"a\": 1}}' AS j, `{{x}}`, {{ FROM t; -- {nothing}").unwrap();
        assert_eq!(p.sql, "SELECT '{\"a\": 1}' AS j, `{x}`, { FROM t");
        assert!(p.params.is_empty());
        assert_eq!(
            refused("SELECT * FROM t WHERE id = {user}"),
            "uses the unknown placeholder {user} (at line 1, column 28); the queries may use \
             {item} and {sale}, and {{ }} for literal braces"
        );
        assert!(refused("SELECT '{x}'").contains("unknown placeholder {x}"));
        for lone in [
            "SELECT { FROM t",
            "SELECT 1 }",
            "SELECT '{'",
            "SELECT {item",
        ] {
            assert!(refused(lone).contains("a lone brace"), "{lone}");
        }
        let quoted = refused("SELECT * FROM t WHERE id = '{item}'");
        assert!(
            quoted.contains("`{item}`") && quoted.contains("write it bare"),
            "{quoted}"
        );
        // Comments are left as they are, braces and all.
        assert_eq!(
            pg("SELECT 1 /* {x} } */").unwrap().sql,
            "SELECT 1 /* {x} } */"
        );
    }

    #[test]
    fn the_statement_ends_at_its_semicolon_and_keeps_its_last_comment() {
        assert_eq!(pg("SELECT 1 ;  -- done").unwrap().sql, "SELECT 1");
        // A trailing comment without `;` stays: wrapping must end it with a newline.
        assert_eq!(
            pg("SELECT id FROM t -- all\n").unwrap().sql,
            "SELECT id FROM t -- all"
        );
    }
}
