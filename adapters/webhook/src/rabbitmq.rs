//! RabbitMQ's `rabbitmq_auth_backend_http`, as RabbitMQ's MQTT plugin
//! drives it (seen from RabbitMQ 3.10's plugin; the backend's README and
//! source name the parameters). Each call is a GET with a query string or a
//! POST with a urlencoded body; every answer is 200 with the text `allow`
//! (for users, `allow` followed by tags) or `deny`. Any other status is an
//! error to RabbitMQ, which refuses the operation.
//!
//! - user: `username`, `password`, `vhost`, `client_id` → the CONNECT.
//! - vhost: `username`, `vhost`, `ip`, `client_id` → allowed for an
//!   accepted session in a configured virtual host.
//! - resource: `username`, `vhost`, `resource` (`exchange`, `queue`),
//!   `name`, `permission` (`configure`, `write`, `read`), `client_id` → the
//!   MQTT plugin's own plumbing: the MQTT exchange and the client's
//!   `mqtt-subscription-{client id}qos{0,1}` queues, for an accepted
//!   session. Anything else is denied.
//! - topic: `username`, `vhost`, `resource=topic`, `name` (the exchange),
//!   `permission` (`write` = PUBLISH, `read` = SUBSCRIBE), `routing_key`,
//!   and `variable_map.client_id` → the policy's topic check. The MQTT
//!   plugin turns a topic into a routing key by writing `/` as `.` and `+`
//!   as `*` (a `.` inside an MQTT topic also becomes a level separator, so
//!   `a/b.c` is delivered as `a/b/c`); this server turns it back, and asks
//!   about the topic RabbitMQ actually routes.
//!
//! Topic checks are asked as QoS 0, not retained: RabbitMQ does not send
//! them.

use hyper::StatusCode;
use mqtt_policy_host::{ConnectRequest, ProtocolVersion};

use crate::common::{self, Answer, Request, TopicOp};
use crate::config::RabbitConfig;
use crate::context::Context;
use crate::error::RequestError;
use crate::metrics::Verdict;
use crate::params::Params;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Vhost,
    Resource,
    Topic,
}

pub(crate) fn handle(cx: &Context, config: &RabbitConfig, kind: Kind, req: &Request) -> Answer {
    match evaluate(cx, config, kind, req) {
        Ok((allowed, body, policy)) => {
            let verdict = if allowed {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            Answer::new(common::text(StatusCode::OK, body), verdict, policy)
        }
        Err(e) => bad_request(&e),
    }
}

/// A 4xx: an error to RabbitMQ, which refuses the operation.
pub(crate) fn bad_request(error: &RequestError) -> Answer {
    Answer::new(
        common::text(error.status(), format!("bad request: {error}")),
        Verdict::BadRequest,
        "(bad-request)",
    )
}

fn deny(policy: impl Into<String>) -> (bool, String, String) {
    (false, "deny".into(), policy.into())
}

fn evaluate(
    cx: &Context,
    config: &RabbitConfig,
    kind: Kind,
    req: &Request,
) -> Result<(bool, String, String), RequestError> {
    let params = Params::parse(req.query.as_deref(), &req.headers, &req.body)?;
    let username = params.str("username")?;
    match kind {
        Kind::User => {
            let client_id = params.str("client_id")?;
            common::client_id(client_id, "client_id")?;
            let mut connect = ConnectRequest::new(client_id)
                .username(username)
                .protocol_version(ProtocolVersion::V3_1_1)
                .listener("rabbitmq");
            if let Some(p) = params.opt_str("password", None)? {
                connect = connect.password(p.as_bytes());
            }
            let vhost = params.opt_str("vhost", None)?;
            if vhost.is_some_and(|v| !config.vhosts.iter().any(|c| c == v)) {
                return Ok(deny("(vhost)"));
            }
            let result = common::connect(cx, connect, None, true);
            let Some(grant) = &result.grant else {
                return Ok(deny(result.decider));
            };
            let mut body = String::from("allow");
            for role in &grant.roles {
                if config.tag_roles.contains(role) {
                    body.push(' ');
                    body.push_str(role);
                }
            }
            Ok((true, body, result.decider))
        }
        Kind::Vhost => {
            let vhost = params.str("vhost")?;
            let Some(client_id) = params.opt_str("client_id", None)? else {
                return Ok(deny("(not-mqtt)"));
            };
            if !config.vhosts.iter().any(|c| c == vhost) {
                return Ok(deny("(vhost)"));
            }
            match common::session(cx, client_id, Some(username)) {
                Some(_) => Ok((true, "allow".into(), "(session)".into())),
                None => Ok(deny(common::NO_SESSION)),
            }
        }
        Kind::Resource => {
            let vhost = params.str("vhost")?;
            let resource = params.str("resource")?;
            let name = params.str("name")?;
            let permission = params.str("permission")?;
            if !matches!(permission, "configure" | "write" | "read") {
                return Err(RequestError::field(
                    "permission",
                    format!("\"{permission}\" is not configure, write or read"),
                ));
            }
            let Some(client_id) = params.opt_str("client_id", None)? else {
                return Ok(deny("(not-mqtt)"));
            };
            if !config.vhosts.iter().any(|c| c == vhost) {
                return Ok(deny("(vhost)"));
            }
            if common::session(cx, client_id, Some(username)).is_none() {
                return Ok(deny(common::NO_SESSION));
            }
            let plumbing = match resource {
                "exchange" => name == config.exchange && permission != "configure",
                "queue" => name
                    .strip_prefix("mqtt-subscription-")
                    .and_then(|rest| rest.strip_prefix(client_id))
                    .is_some_and(|qos| qos == "qos0" || qos == "qos1"),
                _ => false,
            };
            if plumbing {
                Ok((true, "allow".into(), "(mqtt-plumbing)".into()))
            } else {
                Ok(deny("(not-mqtt)"))
            }
        }
        Kind::Topic => {
            let vhost = params.str("vhost")?;
            let exchange = params.str("name")?;
            let permission = params.str("permission")?;
            let routing_key = params.str("routing_key")?;
            let client_id = params.str("variable_map.client_id")?;
            if !config.vhosts.iter().any(|c| c == vhost) {
                return Ok(deny("(vhost)"));
            }
            if exchange != config.exchange {
                return Ok(deny("(not-mqtt)"));
            }
            let topic = mqtt_topic(routing_key);
            let op = match permission {
                "write" => TopicOp::Publish {
                    topic: &topic,
                    qos: 0,
                    retain: false,
                },
                "read" => TopicOp::Subscribe {
                    filter: &topic,
                    qos: 0,
                },
                other => {
                    return Err(RequestError::field(
                        "permission",
                        format!("\"{other}\" is not write or read"),
                    ));
                }
            };
            let session = common::session(cx, client_id, Some(username));
            let result = common::topic(session.as_deref(), op);
            if result.allowed {
                Ok((true, "allow".into(), result.decider))
            } else {
                Ok(deny(result.decider))
            }
        }
    }
}

/// The MQTT topic (or filter) of a routing key the MQTT plugin made.
fn mqtt_topic(routing_key: &str) -> String {
    routing_key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '*' => '+',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn routing_keys_become_topics() {
        assert_eq!(super::mqtt_topic("a.b.#"), "a/b/#");
        assert_eq!(super::mqtt_topic("x.*.y"), "x/+/y");
        assert_eq!(super::mqtt_topic("devices"), "devices");
    }
}
