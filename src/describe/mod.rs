//! The system under test, described: how to buy (the request, as templates), how to read its
//! answers (ordered rules), and where it keeps the truth about the sale (its Redis layout). A
//! scenario writes one in its `[system]` table, or starts from a built-in preset — the reference
//! server's protocol and the article's are presets written in this same language
//! (`presets/*.toml`) — and may override parts. `scenario::system` reads the TOML; this module
//! holds what it compiles to, which the engine (requests, answers) and the evidence readers
//! (the store) use.

pub mod answers;
pub mod json;
pub mod store;
pub mod template;
pub mod users;

use std::io::Write as _;

pub use answers::Answers;
pub use store::Layout;
pub use template::Template;
pub use users::Users;

/// The built-in presets: name, and the description as TOML (a `[system]` table's contents).
pub const PRESETS: [(&str, &str); 2] = [
    ("reference", include_str!("presets/reference.toml")),
    ("article", include_str!("presets/article.toml")),
];

/// A described system.
#[derive(Debug, Clone)]
pub struct Description {
    /// What it is called in reports: the preset's name, or `described`.
    pub name: String,
    /// The buy request and its answers.
    pub buy: Request,
    /// The payment of a hold (reservation mode), if the system has one.
    pub pay: Option<Request>,
    /// Where the truth is kept.
    pub store: Layout,
}

/// A description made ready for the engine: its requests with the run's values (users, item,
/// sale, target path).
#[derive(Debug, Clone)]
pub struct Protocol {
    /// The description's name (`reference`, `article`, `described`, `plain`).
    pub name: String,
    /// The buy request.
    pub buy: Request,
    /// The pay request, if the system has one.
    pub pay: Option<Request>,
    /// The run-wide values the requests use.
    pub ctx: Context,
}

impl Protocol {
    /// `description`'s requests for a run with `ctx`.
    pub fn new(description: &Description, ctx: Context) -> Protocol {
        Protocol {
            name: description.name.clone(),
            buy: description.buy.clone(),
            pay: description.pay.clone(),
            ctx,
        }
    }

    /// The built-in preset `name` for `users` buying at `target_path` (the built-in cluster,
    /// and tests). Panics only if a built-in preset does not compile, which a unit test rules
    /// out.
    pub fn preset(name: &str, users: Users, target_path: &str) -> Protocol {
        let d = crate::scenario::preset(name, &users.columns)
            .unwrap_or_else(|e| panic!("the built-in preset {name} does not compile: {e}"));
        Protocol::new(
            &d,
            Context {
                users: std::sync::Arc::new(users),
                item: "item".into(),
                sale: "sale".into(),
                target_path: target_path.to_string(),
            },
        )
    }
}

/// Placeholders of a request template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqVar {
    /// The user's id (`{user}` or `{user.id}`).
    User,
    /// A column of the users file (`{user.NAME}`), by number.
    Column(u16),
    /// The item on sale.
    Item,
    /// The sale id.
    Sale,
    /// The request id, `{user}-{attempt}`, unique per attempt.
    Request,
    /// The user's attempt number, from 1.
    Attempt,
    /// The order being paid (pay requests).
    Order,
    /// The path of the scenario's target URL.
    TargetPath,
}

impl ReqVar {
    /// The variable called `name` in a request, given the users file's columns.
    pub fn lookup(name: &str, columns: &[String], pay: bool) -> Result<ReqVar, String> {
        Ok(match name {
            "user" | "user.id" => ReqVar::User,
            "item" => ReqVar::Item,
            "sale" => ReqVar::Sale,
            "request" => ReqVar::Request,
            "attempt" => ReqVar::Attempt,
            "target.path" => ReqVar::TargetPath,
            "order" if pay => ReqVar::Order,
            "order" => return Err("only a pay request knows the order".into()),
            other => match other.strip_prefix("user.") {
                Some(col) => match columns.iter().position(|c| c == col) {
                    Some(i) => ReqVar::Column(i as u16),
                    None if columns.is_empty() => {
                        return Err(format!(
                            "{{user.{col}}} needs a users file with a column {col:?} ([users] csv)"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "the users file has no column {col:?} (it has: {})",
                            columns.join(", ")
                        ));
                    }
                },
                None => return Err("not a request placeholder".into()),
            },
        })
    }

    /// The names a request may use, for messages.
    pub fn known(columns: &[String], pay: bool) -> String {
        let mut names = vec!["user", "user.id"];
        names.extend(["item", "sale", "request", "attempt", "target.path"]);
        if pay {
            names.push("order");
        }
        let mut known = names.join(", ");
        for c in columns {
            known.push_str(&format!(", user.{c}"));
        }
        known
    }
}

/// One request of the system: method, path, headers and body as templates, and the rules that
/// read its answers.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Origin-form path and query.
    pub path: Template<ReqVar>,
    /// Headers (name, value); `Host` and `Connection` are the engine's.
    pub headers: Vec<(String, Template<ReqVar>)>,
    /// Body, if any.
    pub body: Option<Template<ReqVar>>,
    /// How its answers are read.
    pub answers: Answers,
}

/// What a request is rendered for: one attempt of one user.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The user's number in the users table.
    pub index: u64,
    /// The user's id.
    pub user: u64,
    /// The attempt number.
    pub attempt: u32,
    /// The order being paid, as the server named it.
    pub order: &'a [u8],
}

/// The run-wide values a request uses.
#[derive(Debug, Clone)]
pub struct Context {
    /// The users.
    pub users: std::sync::Arc<Users>,
    /// The item on sale.
    pub item: String,
    /// The sale id.
    pub sale: String,
    /// The target URL's path.
    pub target_path: String,
}

impl Request {
    /// Serialises the request into `out` (cleared first), using `scratch` for the body; `head`
    /// holds the engine's own header lines (`Host`, and `Connection: close` without keep-alive).
    /// Allocates nothing once the buffers have grown.
    pub fn write(
        &self,
        ctx: &Context,
        a: &Attempt<'_>,
        head: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        let value = |v: ReqVar, out: &mut Vec<u8>| ctx.value(v, a, out);
        out.clear();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        self.path.render(out, value);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(head);
        for (name, v) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            v.render(out, value);
            out.extend_from_slice(b"\r\n");
        }
        scratch.clear();
        if let Some(body) = &self.body {
            body.render(scratch, value);
        }
        if !scratch.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            let _ = write!(out, "content-length: {}\r\n", scratch.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(scratch);
    }
}

impl Context {
    /// Writes variable `v` of attempt `a`.
    fn value(&self, v: ReqVar, a: &Attempt<'_>, out: &mut Vec<u8>) {
        match v {
            ReqVar::User => {
                let _ = write!(out, "{}", a.user);
            }
            ReqVar::Column(c) => out.extend_from_slice(self.users.cell(a.index, c as usize)),
            ReqVar::Item => out.extend_from_slice(self.item.as_bytes()),
            ReqVar::Sale => out.extend_from_slice(self.sale.as_bytes()),
            ReqVar::Request => {
                let _ = write!(out, "{}-{}", a.user, a.attempt);
            }
            ReqVar::Attempt => {
                let _ = write!(out, "{}", a.attempt);
            }
            ReqVar::Order => out.extend_from_slice(a.order),
            ReqVar::TargetPath => out.extend_from_slice(self.target_path.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, cols: &[String], pay: bool) -> Template<ReqVar> {
        Template::compile_with(
            s,
            |n| ReqVar::lookup(n, cols, pay),
            &ReqVar::known(cols, pay),
        )
        .unwrap()
    }

    #[test]
    fn a_request_renders_with_the_users_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        std::fs::write(&path, "id,token\n7,tok7\n").unwrap();
        let users = std::sync::Arc::new(Users::from_csv(&path).unwrap());
        let cols = users.columns.clone();
        let req = Request {
            method: "POST".into(),
            path: t("/api/seckill/{item}", &cols, false),
            headers: vec![(
                "authorization".into(),
                t("Bearer {user.token}", &cols, false),
            )],
            body: Some(t("{{\"requestId\":\"{request}\"}}", &cols, false)),
            answers: Answers::default(),
        };
        let ctx = Context {
            users,
            item: "i1".into(),
            sale: "s".into(),
            target_path: "/".into(),
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let a = Attempt {
            index: 0,
            user: 7,
            attempt: 2,
            order: b"",
        };
        req.write(&ctx, &a, b"host: x\r\n", &mut out, &mut scratch);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /api/seckill/i1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok7\r\n\
             content-length: 19\r\n\r\n{\"requestId\":\"7-2\"}"
        );
    }

    #[test]
    fn placeholders_depend_on_the_users_file_and_the_request() {
        let cols = vec!["token".to_string()];
        let err = |s: &str, pay| {
            Template::compile_with(
                s,
                |n| ReqVar::lookup(n, &cols, pay),
                &ReqVar::known(&cols, pay),
            )
            .unwrap_err()
            .message
        };
        assert!(err("{user.tokn}", false).contains("no column \"tokn\""));
        assert!(err("/orders/{order}", false).contains("only a pay request"));
        assert!(
            Template::compile_with("/orders/{order}", |n| ReqVar::lookup(n, &cols, true), "")
                .is_ok()
        );
        let none: Vec<String> = Vec::new();
        let e = Template::compile_with("{user.token}", |n| ReqVar::lookup(n, &none, false), "")
            .unwrap_err();
        assert!(e.message.contains("needs a users file"));
    }
}
