//! amqtt 0.12.1's `UserAuthHttpPlugin` and `TopicAuthHttpPlugin`
//! (`amqtt/contrib/http.py`), as the code sends and reads them:
//!
//! - user: `username`, `password`, `client_id`; acl: `username`,
//!   `client_id`, `topic`, `acc` (1 receive, 2 publish, 4 subscribe).
//! - `params_mode` json: a JSON body on every method, GET included; form:
//!   a query string on GET, a urlencoded body on POST/PUT. Python's `None`
//!   is JSON `null`, but the text `None` in a form: both mean "no value".
//! - `response_mode` (must match the plugins'): status: 2xx grants, 4xx
//!   denies; json: 2xx `application/json` with `ok` true/false; text: 2xx
//!   with the body `ok` grants, anything else denies. This server never
//!   answers amqtt's "no-op" (5xx in status mode, no `ok` in json mode):
//!   amqtt defers on it for authentication but denies topics.
//! - amqtt sends no QoS or retain flag with a topic check: they are asked
//!   as QoS 0, not retained.
//!
//! Topic checks find the connect's grant in the session map, keyed by
//! (client id, username) from the last allowed user call; with no session
//! they are denied.

use hyper::StatusCode;
use mqtt_policy_host::{ConnectRequest, ProtocolVersion};
use serde_json::json;

use crate::common::{self, Answer, Request, TopicOp};
use crate::config::{AmqttConfig, AmqttResponseMode};
use crate::context::Context;
use crate::error::RequestError;
use crate::metrics::Verdict;
use crate::params::Params;

/// What Python's `None` becomes in amqtt's form encoding.
const NONE: Option<&str> = Some("None");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Acl,
    Superuser,
}

pub(crate) fn handle(cx: &Context, config: &AmqttConfig, kind: Kind, req: &Request) -> Answer {
    match evaluate(cx, kind, req) {
        Ok((allowed, policy, reason)) => answer(config.response_mode, allowed, policy, &reason),
        Err(e) => bad_request(&e),
    }
}

/// A 4xx with a JSON `ok: false`: a deny in every response mode (non-2xx
/// is never a grant, and never amqtt's no-op, which is 5xx or a missing
/// `ok`).
pub(crate) fn bad_request(error: &RequestError) -> Answer {
    Answer::new(
        common::json(
            error.status(),
            &json!({ "ok": false, "error": error.to_string() }),
        ),
        Verdict::BadRequest,
        "(bad-request)",
    )
}

fn answer(mode: AmqttResponseMode, allowed: bool, policy: String, reason: &str) -> Answer {
    let verdict = if allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let response = match (mode, allowed) {
        (AmqttResponseMode::Status, true) => common::empty(StatusCode::OK),
        (AmqttResponseMode::Status, false) => common::empty(StatusCode::FORBIDDEN),
        (AmqttResponseMode::Json, true) => common::json(StatusCode::OK, &json!({ "ok": true })),
        (AmqttResponseMode::Json, false) => {
            common::json(StatusCode::OK, &json!({ "ok": false, "error": reason }))
        }
        (AmqttResponseMode::Text, true) => common::text(StatusCode::OK, "ok"),
        (AmqttResponseMode::Text, false) => common::text(StatusCode::FORBIDDEN, "error"),
    };
    Answer::new(response, verdict, policy)
}

fn evaluate(
    cx: &Context,
    kind: Kind,
    req: &Request,
) -> Result<(bool, String, String), RequestError> {
    let params = Params::parse(req.query.as_deref(), &req.headers, &req.body)?;
    let client_id = params.str("client_id")?;
    common::client_id(client_id, "client_id")?;
    let username = params.opt_str("username", NONE)?;
    match kind {
        Kind::User => {
            let mut connect = ConnectRequest::new(client_id)
                // amqtt 0.12.1 speaks MQTT 3.1.1 only.
                .protocol_version(ProtocolVersion::V3_1_1)
                .listener("amqtt");
            if let Some(u) = username {
                connect = connect.username(u);
            }
            if let Some(p) = params.opt_str("password", NONE)? {
                connect = connect.password(p.as_bytes());
            }
            let result = common::connect(cx, connect, None, true);
            let reason = result
                .reason
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default();
            Ok((result.allowed(), result.decider, reason))
        }
        Kind::Acl => {
            let topic = params.str("topic")?;
            let acc = params
                .opt_uint("acc")?
                .ok_or_else(|| RequestError::Missing("acc".into()))?;
            let session = common::session(cx, client_id, username);
            let session = session.as_deref();
            let ops: &[TopicOp<'_>] = match acc {
                1 => &[TopicOp::Receive {
                    topic,
                    qos: 0,
                    retain: false,
                }],
                2 => &[TopicOp::Publish {
                    topic,
                    qos: 0,
                    retain: false,
                }],
                // amqtt's docs name 3 "receive & publish"; the code never
                // sends it. Both must be allowed.
                3 => &[
                    TopicOp::Receive {
                        topic,
                        qos: 0,
                        retain: false,
                    },
                    TopicOp::Publish {
                        topic,
                        qos: 0,
                        retain: false,
                    },
                ],
                4 => &[TopicOp::Subscribe {
                    filter: topic,
                    qos: 0,
                }],
                other => {
                    return Err(RequestError::field(
                        "acc",
                        format!("{other} is not 1 (receive), 2 (publish), 3 or 4 (subscribe)"),
                    ));
                }
            };
            let mut decider = String::new();
            for op in ops {
                let r = common::topic(session, *op);
                decider = r.decider;
                if !r.allowed {
                    return Ok((false, decider, "not-authorized".into()));
                }
            }
            Ok((true, decider, String::new()))
        }
        Kind::Superuser => {
            let session = common::session(cx, client_id, username);
            let Some(session) = session else {
                return Ok((false, common::NO_SESSION.into(), "no session".into()));
            };
            let is_super = cx
                .config
                .superuser_role
                .as_ref()
                .is_some_and(|role| session.grant().roles.iter().any(|r| r == role));
            Ok((
                is_super,
                "(superuser-role)".into(),
                "not a superuser".into(),
            ))
        }
    }
}
