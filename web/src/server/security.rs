//! What every connection and every response goes through before any handler: the connection
//! limits of [`serve`] (how long a client may take to send its headers, how many connections are
//! open at once), the deadline on a request's body, the security headers, and which peer's
//! `X-Forwarded-For` is believed ([`TrustedProxies`]).
//!
//! Why here and not in each handler: a slow or hostile client costs the server before any handler
//! runs (600 connections sending a header a byte at a time stayed open for ever), and a header
//! forgotten on one page is the page that gets framed. One place, one rule for all.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::error::ApiError;
use super::state::App;

/// The policy the existing pages satisfy: scripts and styles only from our own `/static/`
/// files (no inline script, style or `javascript:` URL anywhere), SVG diagrams inline, forms
/// posting back to us, and no page inside a frame (clickjacking an approval button).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Per-request settings of the middleware ([`guard`]), kept on the [`App`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Peers whose `X-Forwarded-For` is believed.
    pub proxies: TrustedProxies,
    /// A request's body must have arrived this long after its headers, plus a second for each
    /// `body_min_rate` bytes it carried (see [`BodyDeadline`]).
    pub body_timeout: Duration,
    /// The slowest a long body may arrive, in bytes a second, averaged from its start
    /// (`serve --body-min-kib`): a 50 MB file may take minutes on a slow line, but a client
    /// trickling a byte now and then is cut off.
    pub body_min_rate: u64,
    /// The largest material file taken (`serve --max-file-mb`), in bytes.
    pub max_file_bytes: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            proxies: TrustedProxies::default(),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 32 << 10,
            max_file_bytes: 50 << 20,
        }
    }
}

/// Limits of a connection, before any request on it is read.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this; then the connection is closed.
    pub header_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(15),
            max_connections: 512,
        }
    }
}

/// The peers (addresses or CIDR ranges, such as the load balancer's) whose `X-Forwarded-For`
/// is believed. Empty by default: then the header is ignored, since anyone can send it.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in items {
            let item = item.as_ref().trim();
            if item.is_empty() {
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => item
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("`{item}` is neither an IP address nor a CIDR range"))?,
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The address a request is believed to come from: the peer of the connection, unless the
    /// peer is a trusted proxy; then the nearest address in `X-Forwarded-For` (read from the
    /// right, the end our proxies appended to) that is not itself a trusted proxy. An entry
    /// that is not an address stops the walk: what lies left of it was never vouched for.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut believed = peer?.to_canonical();
        if !self.trusts(believed) {
            return Some(believed);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            believed = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(believed)
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The believed remote address of a request, as the audit trail records it.
pub fn remote_of(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    app: &App,
) -> Option<String> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    app.security
        .proxies
        .client(peer, headers)
        .map(|ip| ip.to_string())
}

/// The middleware on every route: the body deadline, then the security headers on whatever
/// the handler answered.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let cacheable = req.uri().path().starts_with("/static/");
    let limit = BodyDeadline {
        grace: app.security.body_timeout,
        min_rate: app.security.body_min_rate.max(1),
    };
    let late = Arc::new(AtomicBool::new(false));
    let req = if req.body().is_end_stream() {
        req
    } else {
        let late = late.clone();
        let start = tokio::time::Instant::now();
        req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                start,
                received: 0,
                deadline: Box::pin(tokio::time::sleep_until(start + limit.after(0))),
                limit,
                late,
            })
        })
    };
    let mut resp = next.run(req).await;
    if late.load(Ordering::Relaxed) {
        resp = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "请求内容传送太慢：未在{}秒内传完，且此后平均每秒不到 {} KB，请检查网络后重试",
                limit.grace.as_secs(),
                limit.min_rate.div_ceil(1024)
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    security_headers(resp.headers_mut(), cacheable, app.secure_cookies);
    resp
}

/// Sets the headers every response carries, unless the handler chose its own.
fn security_headers(h: &mut HeaderMap, cacheable: bool, https: bool) {
    let mut set = |name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "same-origin");
    // Pages and API answers carry one person's tasks and the session's CSRF token: no shared
    // cache and no back-button copy after logout may keep them. Only the static files may.
    if !cacheable {
        set(header::CACHE_CONTROL, "no-store");
    }
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
}

/// When a request's body must have arrived: `grace` after its headers, plus a second for each
/// `min_rate` bytes received so far. A short body has the grace; a long one as long as it keeps
/// coming at the rate on average (a 50 MB file at 32 KiB/s: 30 s + 26 min); a client trickling
/// a byte now and then is cut off once the grace is spent.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub grace: Duration,
    pub min_rate: u64,
}

impl BodyDeadline {
    /// How long after its start a body that has carried `received` bytes may still run.
    pub fn after(self, received: u64) -> Duration {
        self.grace + Duration::from_secs_f64(received as f64 / self.min_rate as f64)
    }
}

/// A request body that fails once its deadline has passed, so that a client sending its body a
/// byte at a time cannot hold a handler (and its connection) for ever.
struct DeadlineBody {
    inner: Body,
    start: tokio::time::Instant,
    received: u64,
    limit: BodyDeadline,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Tells [`guard`] to answer 408 whatever the handler made of the failed read.
    late: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(f)) = &frame
                && let Some(data) = f.data_ref()
            {
                this.received += data.len() as u64;
                let until = this.start + this.limit.after(this.received);
                this.deadline.as_mut().reset(until);
            }
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new("request body deadline passed"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` (HTTP/1.1) within `limits` until `shutdown` completes; then
/// stops accepting, lets every open connection finish its request in flight, and returns.
/// Each request carries its peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut open = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        while open.try_join_next().is_some() {}
        // A slot first, then accept: past the cap, connections wait in the kernel's backlog
        // instead of costing us a task and buffers each.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        open.spawn(connection(
            stream,
            peer,
            router.clone(),
            limits.header_timeout,
            stop_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while open.join_next().await.is_some() {}
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut conn = pin!(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("203.0.113.9"), &xff("1.2.3.4")),
            ip("203.0.113.9")
        );
        let lb = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.1"]).expect("parses");
        assert_eq!(lb.client(ip("10.1.2.3"), &xff("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(
            lb.client(ip("192.168.1.1"), &xff("1.2.3.4:5555")),
            ip("1.2.3.4")
        );
        // A client's own forged entry lies left of the address our proxy saw: not believed.
        assert_eq!(
            lb.client(ip("10.1.2.3"), &xff("6.6.6.6, 1.2.3.4, 10.9.9.9")),
            ip("1.2.3.4")
        );
        assert_eq!(
            lb.client(ip("10.1.2.3"), &xff("junk, 10.9.9.9")),
            ip("10.9.9.9")
        );
        assert_eq!(lb.client(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        assert_eq!(lb.client(ip("8.8.8.8"), &xff("1.2.3.4")), ip("8.8.8.8"));
        assert_eq!(
            lb.client(ip("::ffff:8.8.8.8"), &HeaderMap::new()),
            ip("8.8.8.8")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
    }
}
