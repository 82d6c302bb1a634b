//! EMQX 5's HTTP authenticator and authorizer.
//!
//! The operator writes EMQX's request template; this server reads the
//! fields named after EMQX's placeholders, from a JSON or urlencoded body or
//! the query string (GET):
//!
//! - authn: `clientid` (required), `username`, `password`, `peerhost`
//!   (and `peerport`), `proto_ver` (3, 4 or 5; default 4),
//!   `cert_common_name` and `cert_subject` (accepted; policies see
//!   certificates only where the protocol hands over the whole chain).
//! - authz: `clientid` (required), `username`, `topic` (required), `action`
//!   (`publish` or `subscribe`, required), `qos`, `retain`.
//!
//! Answers are always 200 with JSON: authn `{"result": "allow" | "deny",
//! "is_superuser": bool, "client_attrs": {...}}` (the grant's attributes;
//! `is_superuser` when the grant holds `superuser_role`), authz
//! `{"result": "allow" | "deny"}`. "ignore" is never answered: the chain's
//! default already decided. A request that cannot be evaluated gets a 4xx,
//! which EMQX treats as "ignore": set `authorization.no_match = deny` and
//! end the authentication chain with this server (see SECURITY.md).

use hyper::StatusCode;
use mqtt_policy_host::{ConnectRequest, ProtocolVersion};
use serde_json::{Map, Value, json};

use crate::common::{self, Answer, Request, TopicOp};
use crate::context::Context;
use crate::error::RequestError;
use crate::metrics::Verdict;
use crate::params::Params;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Authn,
    Authz,
}

pub(crate) fn handle(cx: &Context, kind: Kind, req: &Request) -> Answer {
    let result = match kind {
        Kind::Authn => authn(cx, req),
        Kind::Authz => authz(cx, req),
    };
    result.unwrap_or_else(|e| common::bad_request(&e))
}

fn authn(cx: &Context, req: &Request) -> Result<Answer, RequestError> {
    let params = Params::parse(req.query.as_deref(), &req.headers, &req.body)?;
    let client_id = params.str("clientid")?;
    common::client_id(client_id, "clientid")?;
    let version = match params.opt_uint("proto_ver")? {
        None => ProtocolVersion::V3_1_1,
        Some(v) => u8::try_from(v)
            .ok()
            .and_then(|v| ProtocolVersion::try_from(v).ok())
            .ok_or_else(|| RequestError::ProtocolVersion(v.to_string()))?,
    };
    let mut connect = ConnectRequest::new(client_id)
        .protocol_version(version)
        .listener("emqx");
    if let Some(u) = params.opt_str("username", None)? {
        connect = connect.username(u);
    }
    if let Some(p) = params.opt_str("password", None)? {
        connect = connect.password(p.as_bytes());
    }
    let peer = match (
        params.opt_str("peerhost", None)?,
        params.opt_uint("peerport")?,
    ) {
        (Some(host), Some(port)) => Some(match host.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, u16::try_from(port).unwrap_or(0)).to_string(),
            Err(_) => format!("{host}:{port}"),
        }),
        (Some(host), None) => Some(host.to_owned()),
        (None, _) => None,
    };
    if let Some(p) = &peer {
        connect = connect.peer_address(p.clone());
    }
    // Accepted so templates that send them are not refused.
    let _ = params.opt_str("cert_common_name", None)?;
    let _ = params.opt_str("cert_subject", None)?;
    let result = common::connect(cx, connect, peer.as_deref(), true);
    let body = match &result.grant {
        Some(grant) => {
            let attrs: Map<String, Value> = grant
                .attributes
                .iter()
                .map(|a| (a.key.clone(), Value::String(a.value.clone())))
                .collect();
            let is_superuser = cx
                .config
                .superuser_role
                .as_ref()
                .is_some_and(|role| grant.roles.iter().any(|r| r == role));
            json!({ "result": "allow", "is_superuser": is_superuser, "client_attrs": attrs })
        }
        None => json!({ "result": "deny" }),
    };
    let verdict = if result.allowed() {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    Ok(Answer::new(
        common::json(StatusCode::OK, &body),
        verdict,
        result.decider,
    ))
}

fn authz(cx: &Context, req: &Request) -> Result<Answer, RequestError> {
    let params = Params::parse(req.query.as_deref(), &req.headers, &req.body)?;
    let client_id = params.str("clientid")?;
    let username = params.opt_str("username", None)?;
    let topic = params.str("topic")?;
    let action = params.str("action")?;
    let qos = common::qos(params.opt_uint("qos")?, "qos")?;
    let retain = params.opt_bool("retain")?.unwrap_or(false);
    let op = match action {
        "publish" => TopicOp::Publish { topic, qos, retain },
        "subscribe" => TopicOp::Subscribe { filter: topic, qos },
        other => {
            return Err(RequestError::field(
                "action",
                format!("\"{other}\" is not publish or subscribe"),
            ));
        }
    };
    let session = common::session(cx, client_id, username);
    let result = common::topic(session.as_deref(), op);
    let (verdict, word) = if result.allowed {
        (Verdict::Allow, "allow")
    } else {
        (Verdict::Deny, "deny")
    };
    Ok(Answer::new(
        common::json(StatusCode::OK, &json!({ "result": word })),
        verdict,
        result.decider,
    ))
}
