//! miaosha: a flash sale shaped like the Spring Boot tutorial shops, for grab-bench to audit.
//!
//! A buyer logs in with a form (`POST /login`: the answer sets only a session cookie, its body is
//! empty), asks for a hidden buy path (`GET /path?item=…`, per user), asks for a captcha
//! (`GET /captcha?item=…`: the answer is kept in Redis under `miaosha:captcha:{user}:{item}`, the
//! client sees only an image token), and buys with `POST /{path}/buy` (form `item=…&captcha=…`).
//! Each user may make `--rate` buys a second (beyond: HTTP 429). The stock and the buyers are
//! Redis keys changed by one Lua script (`lua/buy.lua`).
//!
//! Where an order goes once a ticket is taken is one seam ([`store::Store::take`]): today the
//! Lua script is the order; a queue and a database consumer (issue 27) go behind it.
//!
//! Deliberate flaws (`--flaw`): `racy-duplicate-check` (the buyers set is read before the buy,
//! apart from it: a double click buys twice) and `shared-rate-limit` (one rate-limit key for all
//! users: buyers refused while tickets are left).

pub mod app;
pub mod args;
pub mod store;
