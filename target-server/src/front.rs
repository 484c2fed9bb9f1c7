//! The front door: the hyper service every request of a node meets first.
//!
//! Nearly every request of a flash sale is `GET /buy/ticket` after the node's pool has emptied,
//! and its answer does not depend on anything the router does: [`FrontDoor`] answers it at once
//! (through [`app::sold_out_shortcut`], which counts and logs it exactly as the router's handler
//! would) with a response built from static parts, and hands every other request to the
//! [`app`](app::app) router unchanged.
//!
//! What that saves, measured with callgrind on the sold-out path (user-space instructions per
//! request, wrk with 100 keep-alive connections, one worker thread): 16,600 through
//! `axum::serve` and the router, 7,900 through this door and hyper's HTTP/1 connection (see
//! [`serve`](crate::server::serve)); with a `?user_id=..&request_id=..` query, 19,500 and 8,900.
//! The difference was the router's work per request (route lookup; the request extensions it
//! inserts, `MatchedPath` and the body limit, in a `HashMap` allocated per request; the boxed
//! per-route service it clones; boxed request and response bodies; `IntoResponse` and the
//! future adapters around the handler), hyper-util's protocol-sniffing connection wrapper, and
//! for a query `serde_urlencoded` and two `String`s. In CPU time per request against a static
//! nginx answering the same body (`scripts/bench-node.sh`, quiet machine), nginx/node went from
//! about 0.81-0.87 to 0.93-1.00 with this and the cheaper stat line together.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, Method, Request, Response, header};
use axum::routing::future::RouteFuture;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::app::{self, Node, SOLD_OUT_BODY};

/// A response body: a static one from the front door, or whatever the router answered.
pub type FrontBody = Either<Full<Bytes>, axum::body::Body>;

/// The hyper service of a node's connections (cloned per connection: two `Arc`s).
#[derive(Clone)]
pub struct FrontDoor {
    node: Arc<Node>,
    router: Router,
}

impl FrontDoor {
    /// The front door of `node`, with its router behind it.
    pub fn new(node: Arc<Node>) -> Self {
        FrontDoor {
            router: app::app(node.clone()),
            node,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for FrontDoor {
    type Response = Response<FrontBody>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        if req.method() == Method::GET
            && req.uri().path() == crate::app::BUY_PATH
            && app::sold_out_shortcut(&self.node, req.uri().query())
        {
            return Answer::Now(Some(sold_out()));
        }
        let mut router = self.router.clone();
        // Boxed so that `Answer` is `Unpin`: one allocation, on the paths that are not the
        // sold-out one (those wait for Redis, or are rare).
        Answer::Routed(Box::pin(tower_service::Service::call(&mut router, req)))
    }
}

/// `content-length` of [`SOLD_OUT_BODY`], spelled out so that no answer formats it.
const SOLD_OUT_LENGTH: &str = "28";

/// The sold-out answer from static parts, byte for byte the router's: the same status, body and
/// headers in the same order (axum sets `content-length` itself, so it comes before a
/// `connection: close` that hyper adds; hyper adds `date`).
fn sold_out() -> Response<FrontBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(SOLD_OUT_BODY))));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_static(SOLD_OUT_LENGTH),
    );
    resp
}

/// The future of one answer: ready at once, or the router's.
pub enum Answer {
    /// Answered by the front door (`None` once taken).
    Now(Option<Response<FrontBody>>),
    /// Answered by the router.
    Routed(Pin<Box<RouteFuture<Infallible>>>),
}

impl Future for Answer {
    type Output = Result<Response<FrontBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Now(resp) => {
                Poll::Ready(Ok(resp.take().expect("Answer polled after it was ready")))
            }
            Answer::Routed(fut) => fut
                .as_mut()
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(Either::Right))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sold_out_length_is_the_bodys() {
        assert_eq!(SOLD_OUT_LENGTH, SOLD_OUT_BODY.len().to_string());
    }
}
