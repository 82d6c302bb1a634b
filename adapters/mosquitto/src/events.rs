//! Mosquitto's plugin events mapped onto the host's session API.
//!
//! - `MOSQ_EVT_BASIC_AUTH` → [`PolicyHost::connect`] with what Mosquitto
//!   exposes about the client; an accepted session is kept (`sessions`).
//!   The event also comes again for every connected client after a reload
//!   (Mosquitto's `mosquitto_security_apply_default` re-runs
//!   `mosquitto_unpwd_check`): the CONNECT is decided again on the live
//!   chain, and a refusal disconnects the client.
//! - `MOSQ_EVT_ACL_CHECK` → `publish` (`MOSQ_ACL_WRITE`), `receive`
//!   (`MOSQ_ACL_READ`: live deliveries, retained messages on SUBSCRIBE, wills
//!   to their subscribers), `subscribe` / `unsubscribe` (one filter per
//!   event: Mosquitto asks per filter of a SUBSCRIBE).
//! - `MOSQ_EVT_RELOAD` → [`PolicyHost::reload`]; a failure keeps the chain.
//! - `MOSQ_EVT_DISCONNECT` → the session ends.
//!
//! Answers: allow → `MOSQ_ERR_SUCCESS`; deny → `MOSQ_ERR_AUTH` (CONNECT) or
//! `MOSQ_ERR_ACL_DENIED`; a decision by the chain's default (every policy
//! deferred) that denies → `MOSQ_ERR_PLUGIN_DEFER` unless
//! `plugin_opt_defer chain`.

use mqtt_policy_host::{
    ConnectRequest, DecidedBy, Decision, PolicyHost, ProtocolVersion, Refused, TopicAnswer,
};

use crate::ffi::{Client, Level, NotUtf8};
use crate::logging;
use crate::sessions::{Admission, Found};
use crate::{DeferMode, Plugin};

/// The plugin's answer to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Allow,
    Deny,
    Defer,
}

/// What an ACL check asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Publish,
    Receive,
    Subscribe,
    Unsubscribe,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Publish => "publish",
            Access::Receive => "receive",
            Access::Subscribe => "subscribe",
            Access::Unsubscribe => "unsubscribe",
        }
    }
}

/// Was this a deny by the chain's default, to be handed to Mosquitto? Never
/// for a SUBSCRIBE or UNSUBSCRIBE: Mosquitto's own check grants every one, so
/// deferring would lose the chain's per-filter refusal.
fn defers<A>(plugin: &Plugin, decision: &Decision<A>, access: Option<Access>) -> bool {
    plugin.defer == DeferMode::Mosquitto
        && decision.decided_by == DecidedBy::Default
        && !decision.is_allowed()
        && !matches!(access, Some(Access::Subscribe | Access::Unsubscribe))
}

/// The CONNECT as Mosquitto exposes it to a plugin: no certificate chain
/// beyond the leaf, no user properties, no will, no listener name, the peer
/// address without its port.
fn connect_request(
    client: Client<'_>,
    client_id: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Result<ConnectRequest, String> {
    let level = client.protocol_version();
    let version = u8::try_from(level)
        .ok()
        .and_then(|l| ProtocolVersion::try_from(l).ok())
        .ok_or_else(|| format!("unknown protocol version {level}"))?;
    let mut request = ConnectRequest::new(client_id)
        .protocol_version(version)
        .clean_start(client.clean_session())
        .keep_alive(u16::try_from(client.keepalive()).unwrap_or(0));
    if let Some(u) = username {
        request = request.username(u);
    }
    if let Some(p) = password {
        request = request.password(p);
    }
    match client.address() {
        Ok(Some(address)) => request = request.peer_address(address),
        Ok(None) => {}
        Err(NotUtf8) => return Err("peer address is not UTF-8".into()),
    }
    if let Some(der) = client.certificate_der() {
        request = request.certificate_chain_der([der]);
    }
    Ok(request)
}

/// Decide a CONNECT and keep what it granted for `client`.
fn connect(
    plugin: &Plugin,
    client: Client<'_>,
    client_id: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
    lazily: bool,
    keep: bool,
) -> (Answer, Option<Admission>) {
    let key = client.key();
    let request = match connect_request(client, client_id, username, password) {
        Ok(r) => r,
        Err(why) => {
            plugin.sessions.remove(key);
            logging::log(
                Level::Notice,
                &format!("mqtt-policy: connect of {client_id:?} denied: {why}"),
            );
            return (Answer::Deny, None);
        }
    };
    match plugin.host.connect(request) {
        Ok(session) => {
            let d = session.connect_decision();
            logging::log(
                Level::Debug,
                &format!(
                    "mqtt-policy: connect of {client_id:?} allowed by {} (generation {}){}",
                    d.decided_by.label(),
                    d.generation,
                    if lazily {
                        " at its first ACL check"
                    } else {
                        ""
                    }
                ),
            );
            let grant = Admission::Session(std::sync::Arc::new(session));
            if keep {
                plugin
                    .sessions
                    .insert(key, client_id, username, grant.clone());
            }
            (Answer::Allow, Some(grant))
        }
        Err(Refused { decision, connack }) => {
            let deferred = defers(plugin, &decision, None);
            let deny = decision.deny();
            logging::log(
                if deferred || lazily {
                    Level::Debug
                } else {
                    Level::Notice
                },
                &format!(
                    "mqtt-policy: connect of {client_id:?} (username {username:?}) {} by {} (generation {}): {} {}{}",
                    if deferred {
                        "deferred to mosquitto"
                    } else {
                        "denied"
                    },
                    decision.decided_by.label(),
                    decision.generation,
                    deny.map_or("", |d| d.reason.as_str()),
                    deny.map_or("", |d| d.message.as_str()),
                    if lazily {
                        " (at its first ACL check)".to_owned()
                    } else {
                        format!(" (policy CONNACK {connack:#04x}; mosquitto sends not-authorized)")
                    },
                ),
            );
            if deferred {
                if keep {
                    plugin
                        .sessions
                        .insert(key, client_id, username, Admission::Deferred);
                }
                (Answer::Defer, Some(Admission::Deferred))
            } else {
                plugin.sessions.remove(key);
                (Answer::Deny, None)
            }
        }
    }
}

/// `MOSQ_EVT_BASIC_AUTH`. `password` is the bytes before the first NUL
/// (Mosquitto hands plugins a C string).
pub(crate) fn basic_auth(
    plugin: &Plugin,
    client: Client<'_>,
    username: Result<Option<&str>, NotUtf8>,
    password: Option<&[u8]>,
) -> Answer {
    let key = client.key();
    let (Ok(Some(client_id)), Ok(username)) = (client.id(), username) else {
        plugin.sessions.remove(key);
        logging::log(
            Level::Notice,
            "mqtt-policy: connect denied: no client id, or a client id or username that is not UTF-8",
        );
        return Answer::Deny;
    };
    let keep = plugin.sessions.may_keep(key);
    connect(plugin, client, client_id, username, password, false, keep).0
}

/// `MOSQ_EVT_ACL_CHECK`.
pub(crate) fn acl_check(
    plugin: &Plugin,
    client: Client<'_>,
    topic: &str,
    access: Access,
    qos: u8,
    retain: bool,
) -> Answer {
    let (Ok(Some(client_id)), Ok(username)) = (client.id(), client.username()) else {
        logging::log(
            Level::Notice,
            &format!(
                "mqtt-policy: {} {topic:?} denied: no client id, or a client id or username that is not UTF-8",
                access.as_str()
            ),
        );
        return Answer::Deny;
    };
    let will_check = access == Access::Publish;
    let grant = match plugin
        .sessions
        .lookup(client.key(), client_id, username, will_check)
    {
        Found::Grant(g) => g,
        // No session for this context: its MOSQ_EVT_BASIC_AUTH never ran
        // (a listener with use_identity_as_username / use_subject_as_username,
        // MQTT 5 enhanced authentication by another plugin), or it was
        // refused, or it already disconnected. Decide its CONNECT now, with
        // what Mosquitto still exposes (no password); a refusal is not kept,
        // so a refused client is asked again at its next check. The result
        // is kept only for a context with a TLS certificate, which it has
        // while connected on such a listener: an offline persistent session
        // (delivery to it, its expiry will) is answered without an entry, as
        // Mosquitto frees it without a DISCONNECT event.
        Found::Missing => {
            let keep = client.certificate_der().is_some();
            match connect(plugin, client, client_id, username, None, true, keep) {
                (_, Some(g)) => g,
                (_, None) => return Answer::Deny,
            }
        }
    };
    let session = match grant {
        Admission::Session(s) => s,
        Admission::Deferred => return Answer::Defer,
    };
    let answer: Option<TopicAnswer> = match access {
        Access::Publish => Some(session.publish(topic, qos, retain)),
        Access::Receive => Some(session.receive(topic, qos, retain)),
        Access::Subscribe => session.subscribe([(topic, qos)]).into_iter().next(),
        Access::Unsubscribe => session.unsubscribe([topic]).into_iter().next(),
    };
    let Some(answer) = answer else {
        return Answer::Deny;
    };
    let d = &answer.decision;
    if answer.allowed() {
        return Answer::Allow;
    }
    let deferred = defers(plugin, d, Some(access));
    let deny = d.deny();
    logging::log(
        Level::Debug,
        &format!(
            "mqtt-policy: {} {topic:?} by {client_id:?} {} by {} (generation {}): {} {}",
            access.as_str(),
            if deferred {
                "deferred to mosquitto"
            } else {
                "denied"
            },
            d.decided_by.label(),
            d.generation,
            deny.map_or("", |x| x.reason.as_str()),
            deny.map_or("", |x| x.message.as_str()),
        ),
    );
    if deferred {
        Answer::Defer
    } else {
        Answer::Deny
    }
}

/// `MOSQ_EVT_RELOAD`: load the chain again; a failure keeps the running one.
pub(crate) fn reload(plugin: &Plugin) {
    plugin.sessions.begin_reauth();
    let host: &PolicyHost = &plugin.host;
    let sessions = plugin.sessions.len();
    match host.reload() {
        Ok(generation) => logging::log(
            Level::Notice,
            &format!(
                "mqtt-policy: reloaded the policy chain: generation {generation} is live; sessions: {sessions}"
            ),
        ),
        Err(e) => logging::log(
            Level::Error,
            &format!(
                "mqtt-policy: reload failed, generation {} keeps running: {e}; sessions: {sessions}",
                host.generation()
            ),
        ),
    }
}

/// `MOSQ_EVT_TICK`: the main loop's turn ended.
pub(crate) fn tick(plugin: &Plugin) {
    plugin.sessions.end_turn();
}

/// `MOSQ_EVT_DISCONNECT`: end the context's session.
pub(crate) fn disconnect(plugin: &Plugin, client: Client<'_>) {
    plugin.sessions.end(client.key());
}
