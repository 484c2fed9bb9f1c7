//! What the connection parts' unit tests share: a thread's state for a plan, made without
//! starting the thread, and buyers of a one-request description built in memory.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Prepared, ThreadCtx};
use crate::describe::template::Template;
use crate::describe::users::Users;
use crate::describe::{Answers, Context, Protocol, ReqVar, Request, Scope};
use crate::engine::{BuyerPlan, EnginePlan, Live, Load, RequestTemplate, Shared, Source};

/// The test's target: nothing is sent to it.
pub(super) const TARGET: &str = "127.0.0.1:8080";

/// A closed loop of at most `requests` requests.
pub(super) fn closed(requests: u64) -> Load {
    Load::Closed {
        requests: Some(requests),
        duration: None,
    }
}

/// A GET of `path` as ab sends it.
pub(super) fn template(method: hyper::Method, path: &str, body: &'static [u8]) -> Source {
    Source::Template(RequestTemplate {
        method,
        path_and_query: path.into(),
        headers: vec![("x-test".into(), "1".into())],
        body: bytes::Bytes::from_static(body),
        answers: crate::describe::Answers::plain(),
    })
}

/// A described request: `method` to `path`, whose placeholders are the engine's own values.
pub(super) fn request(method: &str, path: &str) -> Request {
    let scope = Scope {
        columns: &[],
        pay: false,
        captured: &[],
    };
    let compile = |t: &str| {
        Template::compile_with(t, |n| ReqVar::lookup(n, scope), &ReqVar::known(scope))
            .expect("a valid template")
    };
    Request {
        method: method.into(),
        path: compile(path),
        headers: Vec::new(),
        body: None,
        answers: Answers::default(),
        captures: Vec::new(),
        reads: Vec::new(),
    }
}

/// `users` buyers (ids 1..) of a description whose one request is `buy`.
pub(super) fn buyers(users: u64, buy: Request) -> BuyerPlan {
    BuyerPlan::new(Arc::new(Protocol {
        name: "unit".into(),
        before: Vec::new(),
        buy,
        poll: None,
        pay: None,
        captures: 0,
        rules: Vec::new(),
        cookies: false,
        needs_head: false,
        ctx: Context::one(Arc::new(Users::generated(users, 1)), "item", "sale", "/"),
    }))
}

/// The state of one engine thread with one connection for `plan`, its bounds as
/// `run_with_live` sets them for a closed loop of `claim_limit` units.
pub(super) fn ctx(plan: EnginePlan, claim_limit: u64) -> ThreadCtx {
    gated(plan, claim_limit, None)
}

/// [`ctx`], with the first user tried alone behind `gate` when one is given.
pub(super) fn gated(
    plan: EnginePlan,
    claim_limit: u64,
    gate: Option<crate::engine::gate::Gate>,
) -> ThreadCtx {
    let template = match &plan.source {
        Source::Template(t) => Some(Prepared::new(t, &plan).expect("a valid template")),
        Source::Buyers(_) => None,
    };
    let shared = Arc::new(Shared {
        schedule: None,
        template,
        start: Instant::now(),
        stop_new_us: Duration::from_secs(3600).as_micros() as u64,
        claim_limit,
        request_cap: u64::MAX,
        next: AtomicU64::new(0),
        live: Arc::new(Live::default()),
        cancel: CancellationToken::new(),
        gate,
        plan,
    });
    ThreadCtx::new(shared, 1).expect("a thread's state")
}

/// A plan against [`TARGET`] for `source`.
pub(super) fn plan(source: Source, requests: u64) -> EnginePlan {
    EnginePlan::new(
        TARGET.parse().expect("an address"),
        closed(requests),
        source,
    )
}
