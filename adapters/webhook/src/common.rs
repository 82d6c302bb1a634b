//! What every protocol shares: running a connect or a topic check through
//! the host's session API (with the session map and the rate limiter), and
//! building responses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Response, StatusCode};
use mqtt_policy_host::{ConnectRequest, DenyReason, Grant, Session};

use crate::context::Context;
use crate::error::RequestError;
use crate::metrics::Verdict;
use crate::ratelimit;

pub(crate) type Body = Full<Bytes>;

/// A request as the protocol handlers see it: complete, body read.
pub(crate) struct Request {
    pub method: Method,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

/// A handler's answer and what to count it as.
pub(crate) struct Answer {
    pub response: Response<Body>,
    pub verdict: Verdict,
    /// The deciding policy, `(default)`, `(host)`, or the webhook's own
    /// reason in parentheses.
    pub policy: String,
}

impl Answer {
    pub(crate) fn new(
        response: Response<Body>,
        verdict: Verdict,
        policy: impl Into<String>,
    ) -> Self {
        Answer {
            response,
            verdict,
            policy: policy.into(),
        }
    }
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    response(status, "application/json", value.to_string())
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// The generic answer to a request that could not be evaluated.
pub(crate) fn bad_request(error: &RequestError) -> Answer {
    Answer::new(
        json(
            error.status(),
            &serde_json::json!({ "error": error.to_string() }),
        ),
        Verdict::BadRequest,
        "(bad-request)",
    )
}

/// How a connect check came out.
pub(crate) struct ConnectResult {
    pub grant: Option<Grant>,
    /// Why it was refused, when it was.
    pub reason: Option<DenyReason>,
    pub message: String,
    pub decider: String,
}

impl ConnectResult {
    pub(crate) fn allowed(&self) -> bool {
        self.grant.is_some()
    }

    fn refused(reason: DenyReason, message: &str, decider: &str) -> Self {
        ConnectResult {
            grant: None,
            reason: Some(reason),
            message: message.to_owned(),
            decider: decider.to_owned(),
        }
    }
}

/// Run a CONNECT through the host. `keep`: remember the accepted session
/// for later topic checks. `address`: the MQTT client's address, when the
/// protocol says it, for the rate limiter.
pub(crate) fn connect(
    cx: &Context,
    request: ConnectRequest,
    address: Option<&str>,
    keep: bool,
) -> ConnectResult {
    let keys = ratelimit::keys(request.username.as_deref(), address);
    let client_id = request.client_id.clone();
    let username = request.username.clone();
    if cx.limiter.blocked(&keys) {
        if keep {
            cx.sessions.remove(&client_id, username.as_deref());
        }
        return ConnectResult::refused(
            DenyReason::Banned,
            "too many failed connects; try again later",
            "(rate-limited)",
        );
    }
    // Inline by default: a check is microseconds, cheaper than handing the
    // worker off. Chains with expensive policies (password hashes cost
    // milliseconds) can offload connects so topic checks keep flowing.
    let offload = cx.config.limits.offload_connects
        && matches!(
            tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
            Ok(tokio::runtime::RuntimeFlavor::MultiThread)
        );
    let outcome = if offload {
        tokio::task::block_in_place(|| cx.host.connect(request))
    } else {
        cx.host.connect(request)
    };
    match outcome {
        Ok(session) => {
            let decider = session.connect_decision().decided_by.label().to_owned();
            let grant = session.grant().clone();
            if keep {
                cx.sessions.insert(session);
            }
            ConnectResult {
                grant: Some(grant),
                reason: None,
                message: String::new(),
                decider,
            }
        }
        Err(refused) => {
            cx.limiter.charge(&keys);
            if keep {
                cx.sessions.remove(&client_id, username.as_deref());
            }
            let (reason, message) = match refused.decision.deny() {
                Some(d) => (d.reason, d.message.clone()),
                None => (DenyReason::NotAuthorized, String::new()),
            };
            ConnectResult {
                grant: None,
                reason: Some(reason),
                message,
                decider: refused.decision.decided_by.label().to_owned(),
            }
        }
    }
}

/// A topic question about an accepted session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TopicOp<'a> {
    Publish {
        topic: &'a str,
        qos: u8,
        retain: bool,
    },
    Subscribe {
        filter: &'a str,
        qos: u8,
    },
    Receive {
        topic: &'a str,
        qos: u8,
        retain: bool,
    },
}

/// How a topic check came out.
pub(crate) struct TopicResult {
    pub allowed: bool,
    pub decider: String,
}

/// The session of (client id, username), or `None`: then every topic check
/// is a deny (fail closed).
pub(crate) fn session(
    cx: &Context,
    client_id: &str,
    username: Option<&str>,
) -> Option<Arc<Session>> {
    cx.sessions.get(client_id, username)
}

pub(crate) const NO_SESSION: &str = "(no-session)";

/// Ask the session about one topic.
pub(crate) fn topic(session: Option<&Session>, op: TopicOp<'_>) -> TopicResult {
    let Some(session) = session else {
        return TopicResult {
            allowed: false,
            decider: NO_SESSION.into(),
        };
    };
    let answer = match op {
        TopicOp::Publish { topic, qos, retain } => session.publish(topic, qos, retain),
        TopicOp::Receive { topic, qos, retain } => session.receive(topic, qos, retain),
        TopicOp::Subscribe { filter, qos } => {
            match session.subscribe([(filter, qos)]).into_iter().next() {
                Some(a) => a,
                None => {
                    return TopicResult {
                        allowed: false,
                        decider: "(host)".into(),
                    };
                }
            }
        }
    };
    TopicResult {
        allowed: answer.allowed(),
        decider: answer.decision.decided_by.label().to_owned(),
    }
}

/// A QoS parameter: 0, 1 or 2 (absent is 0).
pub(crate) fn qos(value: Option<u64>, field: &str) -> Result<u8, RequestError> {
    match value {
        None => Ok(0),
        Some(q @ 0..=2) => Ok(q as u8),
        Some(_) => Err(RequestError::field(field, "QoS must be 0, 1 or 2")),
    }
}

/// Decline a client id no MQTT server would accept as a session key.
pub(crate) fn client_id(value: &str, field: &str) -> Result<(), RequestError> {
    if value.contains('\0') {
        return Err(RequestError::field(field, "contains NUL"));
    }
    Ok(())
}
