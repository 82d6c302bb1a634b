//! Sessions: the one thing a broker adapter holds per connection.
//!
//! An adapter hands [`PolicyHost::connect`] what the CONNECT packet and the
//! transport gave it (a [`ConnectRequest`], with the TLS client chain as raw
//! DER). The host parses the chain (a chain that does not parse is a host
//! deny), asks the live chain, checks the will's publish right, and on allow
//! returns a [`Session`] that keeps the grant and the generation that granted
//! it. The session then answers every topic question of that connection with
//! the decision and the exact [`Reply`] for the client's protocol version, so
//! no adapter maps codes or copies grants itself.
//!
//! Each check runs on the chain that is live when it starts: after a reload,
//! a session keeps its grant and its next check names the new generation.
//! Ending a session (disconnect, or dropping it) frees all it holds.

use crate::codes::{self, Reply};
use crate::decision::{ConnectDecision, Decision, Outcome, TopicDecision};
use crate::reload::PolicyHost;
use crate::request::{Access, ConnectRequest, ProtocolVersion, TopicRequest};
use crate::verdict::{Deny, DenyReason, Grant};
use crate::verdict_cache::SessionCache;
use std::sync::{Arc, Mutex};

/// A refused CONNECT: the decision and the CONNACK code to send before
/// closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub decision: ConnectDecision,
    /// CONNACK return code (3.1, 3.1.1) or reason code (5).
    pub connack: u8,
}

/// The answer to one topic question: the decision (verdict, decider,
/// generation, trace) and what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicAnswer {
    /// Shared with the session's verdict cache when it is kept there: a
    /// cached answer costs a reference count, not a copy of the trace.
    pub decision: Arc<TopicDecision>,
    /// The acknowledgement for this client's version and packet; see
    /// [`Reply`] for what the adapter must do with each.
    pub reply: Reply,
    /// Answered from the session's verdict cache (the decision, trace
    /// included, is the one the chain reached when it was kept).
    pub cached: bool,
}

impl TopicAnswer {
    /// May the broker go ahead (forward the publish, add the subscription,
    /// deliver the message, remove the subscription)?
    pub fn allowed(&self) -> bool {
        self.decision.is_allowed()
    }
}

/// An accepted connection's policy state. `Send + Sync`; one per connection.
pub struct Session {
    host: PolicyHost,
    client_id: String,
    username: Option<String>,
    version: ProtocolVersion,
    grant: Grant,
    connect: ConnectDecision,
    /// Topic decisions that still hold (see `verdict_cache.rs`).
    cache: Mutex<SessionCache>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("version", &self.version)
            .field("grant", &self.grant)
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

impl PolicyHost {
    /// Decide a CONNECT. `Ok` is an accepted session (send CONNACK 0);
    /// `Err` carries the CONNACK code to refuse with. A will message's topic
    /// must be publishable by the new session, or the CONNECT is refused as
    /// not authorized (as Mosquitto does), since the will is published on
    /// the client's behalf later.
    pub fn connect(&self, request: ConnectRequest) -> Result<Session, Refused> {
        let version = request.protocol_version;
        let decision = self.connect_check(&request);
        let grant = match &decision.outcome {
            Outcome::Allow(grant) => grant.clone(),
            Outcome::Deny(_) => {
                let connack = decision.connack_code(version);
                return Err(Refused { decision, connack });
            }
        };
        let session = Session {
            host: self.clone(),
            client_id: request.client_id,
            username: request.username,
            version,
            grant,
            connect: decision,
            cache: Mutex::new(SessionCache::new(self.verdict_cache_totals().clone())),
        };
        if let Some(will) = &request.will {
            let answer = session.check(Access::Publish, &will.topic, will.qos, will.retain);
            if let Outcome::Deny(d) = &answer.decision.outcome {
                let mut trace = session.connect.trace.clone();
                trace.extend(answer.decision.trace.iter().cloned());
                let decision = Decision {
                    outcome: Outcome::Deny(Deny::new(
                        DenyReason::NotAuthorized,
                        format!("will topic not allowed: {}", d.message),
                    )),
                    decided_by: answer.decision.decided_by.clone(),
                    generation: answer.decision.generation,
                    trace,
                };
                let connack = decision.connack_code(version);
                return Err(Refused { decision, connack });
            }
        }
        Ok(session)
    }

    /// The async face of [`PolicyHost::connect`]; runs inline (a check is a
    /// bounded computation of microseconds).
    pub async fn connect_async(&self, request: ConnectRequest) -> Result<Session, Refused> {
        self.connect(request)
    }
}

impl Session {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    /// The attributes and roles granted at CONNECT.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The chain generation that accepted the connection.
    pub fn granted_generation(&self) -> u64 {
        self.connect.generation
    }

    /// The accepting decision (decider, trace).
    pub fn connect_decision(&self) -> &ConnectDecision {
        &self.connect
    }

    /// The CONNACK code of the accepted connection.
    pub fn connack(&self) -> u8 {
        codes::CONNACK_ACCEPTED
    }

    /// May this client PUBLISH to `topic`? The reply is the PUBACK (QoS 1)
    /// or PUBREC (QoS 2) to send; a refused message is not forwarded.
    pub fn publish(&self, topic: &str, qos: u8, retain: bool) -> TopicAnswer {
        let mut answer = self.check(Access::Publish, topic, qos, retain);
        answer.reply = answer.decision.puback(self.version, qos);
        answer
    }

    /// The verdict per filter of one SUBSCRIBE, in order. If any reply is
    /// [`Reply::Disconnect`] (MQTT 3.1, which has no refusal code), close
    /// the connection instead of sending the SUBACK.
    pub fn subscribe<'a>(
        &self,
        filters: impl IntoIterator<Item = (&'a str, u8)>,
    ) -> Vec<TopicAnswer> {
        filters
            .into_iter()
            .map(|(filter, qos)| {
                let mut answer = self.check(Access::Subscribe, filter, qos, false);
                answer.reply = answer.decision.suback(self.version, qos);
                answer
            })
            .collect()
    }

    /// May a message on `topic` be delivered to this client? Ask for every
    /// delivery, retained messages sent on SUBSCRIBE and will messages
    /// included; a refused delivery is dropped for this client only (nothing
    /// goes on the wire, no packet id is used).
    pub fn receive(&self, topic: &str, qos: u8, retain: bool) -> TopicAnswer {
        self.check(Access::Receive, topic, qos, retain)
    }

    /// The verdict per filter of one UNSUBSCRIBE, in order. A refused filter
    /// stays subscribed; MQTT 5 says so with reason 0x87 in the UNSUBACK,
    /// earlier versions have no way to (their UNSUBACK is sent as usual).
    pub fn unsubscribe<'a>(&self, filters: impl IntoIterator<Item = &'a str>) -> Vec<TopicAnswer> {
        filters
            .into_iter()
            .map(|filter| {
                let mut answer = self.check(Access::Unsubscribe, filter, 0, false);
                answer.reply = answer.decision.unsuback(self.version);
                answer
            })
            .collect()
    }

    /// The async face of [`Session::publish`]; runs inline.
    pub async fn publish_async(&self, topic: &str, qos: u8, retain: bool) -> TopicAnswer {
        self.publish(topic, qos, retain)
    }

    /// The async face of [`Session::subscribe`]; runs inline.
    pub async fn subscribe_async<'a>(
        &self,
        filters: impl IntoIterator<Item = (&'a str, u8)>,
    ) -> Vec<TopicAnswer> {
        self.subscribe(filters)
    }

    /// The async face of [`Session::receive`]; runs inline.
    pub async fn receive_async(&self, topic: &str, qos: u8, retain: bool) -> TopicAnswer {
        self.receive(topic, qos, retain)
    }

    /// The async face of [`Session::unsubscribe`]; runs inline.
    pub async fn unsubscribe_async<'a>(
        &self,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> Vec<TopicAnswer> {
        self.unsubscribe(filters)
    }

    /// End the session (the client disconnected or was taken over). Frees
    /// everything kept for it; dropping the session does the same.
    pub fn disconnect(self) {}

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, SessionCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer from the cache if a kept decision of the live chain still
    /// holds; otherwise ask the live chain and keep what may be kept.
    fn check(&self, access: Access, topic: &str, qos: u8, retain: bool) -> TopicAnswer {
        let chain = self.host.live();
        let config = chain.verdict_cache();
        if config.enabled {
            let kept = self.lock_cache().get(
                chain.generation(),
                access,
                topic,
                qos,
                retain,
                crate::state::now_unix_ms,
            );
            if let Some(decision) = kept {
                return TopicAnswer {
                    decision,
                    reply: Reply::Nothing,
                    cached: true,
                };
            }
            self.host.verdict_cache_totals().miss();
        } else {
            // Turned off by a reload: what was kept is given back.
            self.lock_cache().clear();
        }
        let request = TopicRequest {
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            topic: topic.to_owned(),
            access,
            qos,
            retain,
            attributes: self.grant.attributes.clone(),
            roles: self.grant.roles.clone(),
        };
        let (decision, lifetime) = chain.topic_check_lasting(&request);
        let decision = Arc::new(decision);
        if config.enabled && lifetime.is_cacheable() {
            self.lock_cache().put(
                config,
                chain.generation(),
                access,
                topic,
                qos,
                retain,
                &decision,
                lifetime,
            );
        }
        TopicAnswer {
            decision,
            reply: Reply::Nothing,
            cached: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn sessions_and_hosts_cross_threads() {
        // Adapters keep a session per connection and call it from whichever
        // task or thread handles the packet; the host is shared by all.
        send_sync::<Session>();
        send_sync::<PolicyHost>();
        send_sync::<TopicAnswer>();
        send_sync::<Refused>();
    }
}
