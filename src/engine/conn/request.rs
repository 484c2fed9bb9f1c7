//! What a request sends: the template serialised once (ab), a described request rendered per
//! attempt into a reused buffer (the raw client) or read back into hyper's types, and the
//! user's cookies added when the description keeps a jar.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Uri};

use super::{Job, ThreadCtx};
use crate::describe::Attempt;
use crate::engine::{EnginePlan, RequestTemplate, Source};
use crate::http::{RequestWriter, decimal, header_line};
use crate::protocol::Kind;

/// A template request with its parts parsed once, cloned cheaply per request.
pub(crate) struct Prepared {
    /// Method to send.
    pub(super) method: Method,
    /// Origin-form URI (cloning shares its bytes).
    uri: Uri,
    /// Host, Connection and the user's headers.
    headers: HeaderMap,
    /// Body (cloning shares its bytes).
    body: Bytes,
    /// The whole request serialised once, for the raw client.
    pub(super) raw: Vec<u8>,
}

impl Prepared {
    pub(crate) fn new(t: &RequestTemplate, plan: &EnginePlan) -> anyhow::Result<Prepared> {
        let mut headers = base_headers(plan)?;
        for (name, value) in &t.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("bad header name {name:?}"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("bad header value {value:?}"))?,
            );
        }
        let uri: Uri = t
            .path_and_query
            .parse()
            .with_context(|| format!("bad path {:?}", t.path_and_query))?;
        let mut raw = Vec::with_capacity(256 + t.body.len());
        write_head(&mut raw, &t.method, &t.path_and_query, &headers, &t.body);
        Ok(Prepared {
            method: t.method.clone(),
            uri,
            headers,
            body: t.body.clone(),
            raw,
        })
    }
}

/// Serialises an HTTP/1.1 request into `out` (which is cleared first).
fn write_head(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) {
    let mut w = RequestWriter::new(out, method.as_str().as_bytes(), target.as_bytes());
    for (name, value) in headers {
        w.header(name.as_str().as_bytes(), value.as_bytes());
    }
    w.body(body);
}

/// `Host` plus, without keep-alive, `Connection: close`.
pub(super) fn base_headers(plan: &EnginePlan) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        HOST,
        HeaderValue::from_str(&plan.host_header).context("bad Host header")?,
    );
    if !plan.keep_alive {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(headers)
}

impl ThreadCtx {
    /// The described request `job` sends (buyer sources only).
    pub(super) fn request_of<'p>(
        &self,
        p: &'p crate::describe::Protocol,
        job: &Job,
    ) -> &'p crate::describe::Request {
        if job.kind == Kind::Pay as u8
            && let Some(pay) = &p.pay
        {
            return pay;
        }
        let n = p.before.len();
        match job.step as usize {
            i if i < n => &p.before[i].request,
            i if i == n => &p.buy,
            _ => p.poll.as_ref().map_or(&p.buy, |poll| &poll.request),
        }
    }

    /// The per-step statistics slot of `job` (the protocol's [`step_names`] order).
    ///
    /// [`step_names`]: crate::describe::Protocol::step_names
    pub(super) fn step_slot(p: &crate::describe::Protocol, job: &Job) -> usize {
        if job.kind == Kind::Pay as u8 {
            p.before.len() + 1 + usize::from(p.poll.is_some())
        } else {
            job.step as usize
        }
    }

    /// Builds the HTTP request for `job`, for hyper: the template's, or the buyer request
    /// rendered and read back into hyper's types (hyper is the reference client, not the fast
    /// path, so this may allocate).
    pub(super) fn request(&self, job: &Job) -> Request<Full<Bytes>> {
        if let Some(p) = &self.shared.template {
            let mut req = Request::new(Full::new(p.body.clone()));
            *req.method_mut() = p.method.clone();
            *req.uri_mut() = p.uri.clone();
            *req.headers_mut() = p.headers.clone();
            return req;
        }
        let (mut raw, mut scratch) = (Vec::new(), Vec::new());
        self.serialize(job, &mut raw, &mut scratch);
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Request::new(&mut parsed);
        let len = match head.parse(&raw) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => 0,
        };
        let mut req = Request::new(Full::new(Bytes::copy_from_slice(&raw[len..])));
        *req.method_mut() =
            Method::from_bytes(head.method.unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
        *req.uri_mut() = Uri::try_from(head.path.unwrap_or("/")).unwrap_or_default();
        for h in head.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                req.headers_mut().append(name, value);
            }
        }
        req
    }

    /// Serialises the buyer request for `job` into `out` (its body through `scratch`), for the
    /// raw client: no allocation once the buffers have grown.
    pub(super) fn serialize(&self, job: &Job, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let Source::Buyers(b) = &self.shared.plan.source else {
            unreachable!("templates are serialised once")
        };
        let p = &b.protocol;
        let req = self.request_of(p, job);
        let order = if job.kind == Kind::Pay as u8 {
            job.order_id
        } else {
            0
        };
        let mut digits = [0u8; 20];
        let rec = self.rec.borrow();
        let order: &[u8] = match rec.order_name(order) {
            Some(name) => name,
            None => decimal(order, &mut digits),
        };
        let flows = self.flows.borrow();
        let captured: &[Box<[u8]>] = match flows.get(job.flow as usize) {
            Some(f) => &f.captured,
            None => &[],
        };
        let attempt = Attempt {
            index: job.index,
            user: job.user,
            attempt: job.attempt,
            order,
            captured,
            item: job.item,
        };
        req.write(&p.ctx, &attempt, &self.head, out, scratch);
        drop((flows, rec));
        if p.cookies {
            self.add_cookies(job.user, out);
        }
    }

    /// Adds the user's cookies for the request in `out` (a `Cookie` header after its request
    /// line), when its jar holds any for the request's path.
    pub(super) fn add_cookies(&self, user: u64, out: &mut Vec<u8>) {
        let mut jars = self.jars.borrow_mut();
        if jars.is_empty() {
            return;
        }
        let Some(jar) = jars.get_mut(&user) else {
            return;
        };
        let Some(line_end) = out.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &out[..line_end];
        let path = line.split(|&b| b == b' ').nth(1).unwrap_or(b"/");
        let mut value = Vec::new();
        jar.header(path, self.shared.now_us(), &mut value);
        if value.is_empty() {
            return;
        }
        let mut header = b"cookie: ".to_vec();
        header.extend_from_slice(&value);
        header.extend_from_slice(b"\r\n");
        let at = line_end + 2;
        out.splice(at..at, header);
    }
}

/// The header lines of `headers`, serialised once.
pub(super) fn head_lines(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        header_line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{buyers, ctx, plan, request, template};
    use super::*;

    /// The template of a template plan.
    fn tpl(plan: &EnginePlan) -> &RequestTemplate {
        match &plan.source {
            Source::Template(t) => t,
            Source::Buyers(_) => panic!("a template plan"),
        }
    }

    // ab's request is serialised once: the request line, Host (and `Connection: close` without
    // keep-alive), the user's headers, a length for a body or a method that has one.
    #[test]
    fn a_template_is_serialised_once_as_sent() {
        let get = plan(template(Method::GET, "/x?a=1", b""), 1);
        let p = Prepared::new(tpl(&get), &get).expect("valid");
        assert_eq!(
            String::from_utf8_lossy(&p.raw),
            "GET /x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-test: 1\r\n\r\n"
        );
        let mut post = plan(template(Method::POST, "/buy", b"{}"), 1);
        post.keep_alive = false;
        let p = Prepared::new(tpl(&post), &post).expect("valid");
        assert_eq!(
            String::from_utf8_lossy(&p.raw),
            "POST /buy HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: close\r\nx-test: 1\r\n\
             content-length: 2\r\n\r\n{}"
        );
        let empty_post = plan(template(Method::POST, "/buy", b""), 1);
        let p = Prepared::new(tpl(&empty_post), &empty_post).expect("valid");
        assert!(p.raw.ends_with(b"content-length: 0\r\n\r\n"));
    }

    #[test]
    fn a_template_with_a_bad_header_or_path_is_refused() {
        let mut bad = plan(template(Method::GET, "/", b""), 1);
        if let Source::Template(t) = &mut bad.source {
            t.headers.push(("bad name".into(), "v".into()));
        }
        let err = Prepared::new(tpl(&bad), &bad).err().expect("refused");
        assert!(err.to_string().contains("bad header name"), "{err}");
        let bad = plan(template(Method::GET, "no path", b""), 1);
        assert!(Prepared::new(tpl(&bad), &bad).is_err());
    }

    // A buyer's request is rendered per attempt after the engine's own header lines; hyper
    // gets the same request read back into its types.
    #[test]
    fn a_buyers_request_is_rendered_per_attempt_for_either_client() {
        let b = buyers(3, request("GET", "/buy?u={user}&r={request}"));
        let ctx = ctx(plan(Source::Buyers(b), 10), 3);
        let job = match ctx.next() {
            super::super::Next::Run(job, _) => job,
            _ => panic!("a job"),
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        ctx.serialize(&job, &mut out, &mut scratch);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET /buy?u=1&r=1-1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n"
        );
        let req = ctx.request(&job);
        assert_eq!(
            (req.method(), req.uri().to_string()),
            (&Method::GET, "/buy?u=1&r=1-1".into())
        );
        assert_eq!(req.headers()[HOST], "127.0.0.1:8080");
    }

    #[test]
    fn decimals_and_header_lines() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
        let mut plan = plan(template(Method::GET, "/", b""), 1);
        plan.keep_alive = false;
        let lines = head_lines(&base_headers(&plan).expect("valid"));
        assert_eq!(lines, b"host: 127.0.0.1:8080\r\nconnection: close\r\n");
    }
}
