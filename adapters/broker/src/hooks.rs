//! The policy chain inside rmqtt: one hook handler at the highest priority
//! that answers every decision hook through the host's [`Session`] API, a
//! retain store, and a shared-subscription chooser that skips members the
//! chain would not deliver to.
//!
//! Fail-closed rules (rmqtt fails open by default): every listener has
//! `allow_anonymous(false)` so clients without a username reach
//! `ClientAuthenticate`; `Allow` never carries `superuser = true` (superusers
//! skip the ACL hooks); decision hooks always answer with `proceed = false`
//! so no later handler can replace the answer; a session without a policy
//! session attached is denied everything and closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mqtt_policy_host::{
    ConnectRequest, DenyReason, PolicyHost, ProtocolVersion, Refused, Reply, Session as PSession,
    TopicAnswer,
};
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session as RSession;
use rmqtt::types::{
    AuthResult, ClientId, ConnectInfo, Id, LastWill, Message, Publish, PublishAclResult,
    PublishResult, Reason, Subscribe, SubscribeReturn, TopicFilter, TopicName,
};

use crate::config::ConnectChecks;
use crate::front::Registry;
use crate::metrics::{Check, Metrics};
use crate::slow_checks::{SlowChecks, Spent};

/// Key of our policy session in rmqtt's per-session `extra_attrs`.
const ATTR: &str = "mqtt_policy.session";

/// What the hooks share.
pub struct Policy {
    pub host: PolicyHost,
    pub scx: ServerContext,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Sessions accepted by `ClientAuthenticate`, waiting for
    /// `ClientConnected` (keyed by rmqtt's per-connection `Id`).
    pending: Mutex<HashMap<Id, (Instant, Arc<PSession>)>>,
    /// Online policy sessions by client id, for the shared-subscription
    /// chooser (which cannot read rmqtt's session table: its caller holds
    /// that lock).
    online: Mutex<HashMap<ClientId, Weak<PSession>>>,
    connect_checks: ConnectChecks,
    slow_checks: SlowChecks,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are inserted or removed whole; a poisoned map is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Policy {
    pub fn new(
        host: PolicyHost,
        scx: ServerContext,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        connect_checks: ConnectChecks,
    ) -> Self {
        Policy {
            host,
            scx,
            registry,
            metrics,
            pending: Mutex::new(HashMap::new()),
            online: Mutex::new(HashMap::new()),
            connect_checks,
            slow_checks: SlowChecks::default(),
        }
    }

    /// Run this connect check on the async worker?
    fn connect_inline(&self) -> bool {
        match self.connect_checks {
            ConnectChecks::Inline => true,
            ConnectChecks::Pool => false,
            ConnectChecks::Auto => self.slow_checks.inline(),
        }
    }

    /// Policy sessions accepted but not yet attached (handshakes in flight).
    pub fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Online client ids known to the shared-subscription chooser.
    pub fn online(&self) -> usize {
        lock(&self.online).len()
    }

    /// Drop accepted sessions whose handshake never finished (the CONNACK
    /// write failed, a takeover failed, ...): `ClientConnected` will not run
    /// for them.
    pub fn sweep(&self, older_than: Duration) {
        let now = Instant::now();
        lock(&self.pending).retain(|_, (at, _)| now.duration_since(*at) < older_than);
        lock(&self.online).retain(|_, w| w.strong_count() > 0);
    }

    async fn authenticate(&self, ci: &ConnectInfo) -> AuthResult {
        let id = ci.id();
        let started = Instant::now();
        // Only connections made by our front are known; anything else
        // reaching the loopback backend is refused.
        let Some(front) = id.remote_addr.and_then(|a| self.registry.lookup(a)) else {
            tracing::warn!(client_id = %id.client_id, "connection not made by the front; refused");
            self.metrics
                .record(Check::Connect, false, started.elapsed());
            return AuthResult::NotAuthorized;
        };
        let Ok(version) = ProtocolVersion::try_from(ci.proto_ver()) else {
            self.metrics
                .record(Check::Connect, false, started.elapsed());
            return AuthResult::NotAuthorized;
        };
        let mut req = ConnectRequest::new(id.client_id.to_string())
            .protocol_version(version)
            .clean_start(ci.clean_start())
            .keep_alive(ci.keep_alive())
            .peer_address(front.peer.to_string())
            .listener(front.listener.to_string());
        if !front.chain.is_empty() {
            req = req.certificate_chain_der(front.chain.iter());
        }
        if let Some(u) = ci.username() {
            req = req.username(u.to_string());
        }
        if let Some(p) = ci.password() {
            req = req.password(&p[..]);
        }
        if let ConnectInfo::V5(_, c) = ci {
            for (k, v) in &c.user_properties {
                req = req.user_property(k.to_string(), v.to_string());
            }
        }
        if let Some(will) = ci.last_will() {
            let (topic, qos, retain) = match will {
                LastWill::V3(w) => (w.topic.to_string(), w.qos.value(), w.retain),
                LastWill::V5(w) => (w.topic.to_string(), w.qos.value(), w.retain),
            };
            req = req.will(topic, qos, retain);
        }
        // A connect check may run a slow password hash (tens of ms): see
        // `ConnectChecks` for which thread runs it.
        // Slowness is mostly the check's own CPU time on the thread that
        // ran it: wall time also counts the worker being preempted (two
        // loaded cores do that for milliseconds), which would send `auto`
        // to the pool for checks that cost microseconds. A long wall time
        // still counts: a check can wait (for an instance, up to its
        // deadline) without spending CPU.
        let check = |host: &PolicyHost, req| {
            let cpu = cpu_time::ThreadTime::try_now().ok();
            let wall = Instant::now();
            let outcome = host.connect(req);
            let wall = wall.elapsed();
            let cpu = cpu.and_then(|c| c.try_elapsed().ok()).unwrap_or(wall);
            (outcome, Spent { cpu, wall })
        };
        let inline = self.connect_inline();
        self.metrics.connect_ran(inline);
        // Either way a panic in the check is a refusal, not a dead task.
        let done = if inline {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&self.host, req)))
                .map_err(drop)
        } else {
            let host = self.host.clone();
            tokio::task::spawn_blocking(move || check(&host, req))
                .await
                .map_err(drop)
        };
        let Ok((outcome, checked_in)) = done else {
            self.metrics
                .record(Check::Connect, false, started.elapsed());
            return AuthResult::NotAuthorized;
        };
        self.slow_checks.record(checked_in);
        let took = started.elapsed();
        match outcome {
            Ok(session) => {
                self.metrics.record(Check::Connect, true, took);
                let d = session.connect_decision();
                tracing::info!(
                    target: "mqtt_policy_broker::decision",
                    check = "connect", verdict = "allow",
                    client_id = %id.client_id, username = ?session.username(),
                    listener = %front.listener, peer = %front.peer,
                    decided_by = d.decided_by.label(), generation = d.generation,
                    micros = took.as_micros() as u64,
                );
                lock(&self.pending).insert(id.clone(), (Instant::now(), Arc::new(session)));
                AuthResult::Allow(false, None)
            }
            Err(Refused { decision, connack }) => {
                self.metrics.record(Check::Connect, false, took);
                let reason = decision.deny().map(|d| d.reason);
                tracing::info!(
                    target: "mqtt_policy_broker::decision",
                    check = "connect", verdict = "deny",
                    client_id = %id.client_id, username = ?ci.username().map(|u| u.to_string()),
                    listener = %front.listener, peer = %front.peer,
                    decided_by = decision.decided_by.label(), generation = decision.generation,
                    reason = reason.map_or("", |r| r.as_str()),
                    message = decision.deny().map_or("", |d| d.message.as_str()),
                    wanted_connack = connack,
                    micros = took.as_micros() as u64,
                );
                // rmqtt can only send these two refusals; every other reason
                // (banned, server-unavailable, bad client id, bad auth
                // method) goes out as "not authorized" (docs/broker.md).
                match reason {
                    Some(DenyReason::BadUsernameOrPassword) => AuthResult::BadUsernameOrPassword,
                    _ => AuthResult::NotAuthorized,
                }
            }
        }
    }

    async fn attach(&self, s: &RSession) {
        let entry = lock(&self.pending).remove(&s.id);
        match entry {
            Some((_, ps)) => {
                lock(&self.online).insert(s.id.client_id.clone(), Arc::downgrade(&ps));
                s.extra_attrs.write().await.insert(ClientId::from(ATTR), ps);
            }
            None => {
                tracing::warn!(client_id = %s.id.client_id, "session without a policy session; closed");
                self.close(s, Reason::from_static("not authorized")).await;
            }
        }
    }

    async fn detach(&self, s: &RSession) {
        let ours = policy_session(s).await;
        let mut online = lock(&self.online);
        // A takeover's new session may already be registered: only remove
        // the entry if it is this session's.
        if let (Some(ours), Some(w)) = (ours, online.get(&s.id.client_id))
            && std::ptr::eq(w.as_ptr(), Arc::as_ptr(&ours))
        {
            online.remove(&s.id.client_id);
        }
    }

    async fn close(&self, s: &RSession, reason: Reason) {
        if let Some(tx) = self.scx.extends.shared().await.entry(s.id.clone()).tx() {
            let _ = tx.unbounded_send(Message::Closed(reason));
        }
    }

    async fn subscribe(&self, s: &RSession, sub: &Subscribe) -> SubscribeReturn {
        let started = Instant::now();
        // rmqtt strips `$share/group/` before the hook; the chain decides on
        // the filter the client sent.
        let filter = match sub.opts.shared_group() {
            Some(group) => format!("$share/{group}/{}", sub.topic_filter),
            None => sub.topic_filter.to_string(),
        };
        let qos = sub.opts.qos_value();
        let Some(ps) = policy_session(s).await else {
            self.metrics
                .record(Check::Subscribe, false, started.elapsed());
            return SubscribeReturn::new_failure(SubscribeAckReason::NotAuthorized);
        };
        let answer = ps.subscribe([(filter.as_str(), qos)]).into_iter().next();
        let Some(answer) = answer else {
            return SubscribeReturn::new_failure(SubscribeAckReason::UnspecifiedError);
        };
        self.log_topic(Check::Subscribe, s, &filter, &answer, started);
        match answer.reply {
            Reply::Code(code) if answer.allowed() => {
                let granted = QoS::try_from(code.min(2)).unwrap_or(QoS::AtMostOnce);
                SubscribeReturn::new_success(granted, None)
            }
            Reply::Code(code) => SubscribeReturn::new_failure(
                SubscribeAckReason::try_from(code).unwrap_or(SubscribeAckReason::NotAuthorized),
            ),
            Reply::Disconnect => {
                // MQTT 3.1 has no refusal code: rmqtt sends the SUBACK, then
                // the session closes.
                self.close(s, Reason::SubscribeRefused).await;
                SubscribeReturn::new_failure(SubscribeAckReason::NotAuthorized)
            }
            Reply::Ack | Reply::Nothing => {
                SubscribeReturn::new_failure(SubscribeAckReason::NotAuthorized)
            }
        }
    }

    async fn publish(&self, s: &RSession, p: &Publish) -> PublishAclResult {
        let started = Instant::now();
        let Some(ps) = policy_session(s).await else {
            self.metrics
                .record(Check::Publish, false, started.elapsed());
            return PublishAclResult::rejected(false, None);
        };
        let answer = ps.publish(&p.topic, p.qos.value(), p.retain);
        self.log_topic(Check::Publish, s, &p.topic, &answer, started);
        if answer.allowed() {
            return PublishAclResult::allow();
        }
        match answer.reply {
            // MQTT 5 QoS 1/2: the PUBACK/PUBREC carries the refusal.
            Reply::Code(code) => {
                let reason = PublishAckReason::try_from(code)
                    .ok()
                    .filter(|r| *r != PublishAckReason::Success)
                    .unwrap_or(PublishAckReason::NotAuthorized);
                PublishAclResult(PublishResult::reason_code(reason, None, false))
            }
            // Earlier versions and QoS 0: acknowledged as usual, not forwarded.
            _ => PublishAclResult::rejected(false, None),
        }
    }

    async fn receive(&self, s: &RSession, p: &Publish) -> bool {
        let started = Instant::now();
        let Some(ps) = policy_session(s).await else {
            self.metrics
                .record(Check::Receive, false, started.elapsed());
            return false;
        };
        let answer = ps.receive(&p.topic, p.qos.value(), p.retain);
        self.log_topic(Check::Receive, s, &p.topic, &answer, started);
        answer.allowed()
    }

    async fn unsubscribe(&self, s: &RSession, filter: &str) {
        // rmqtt cannot refuse an UNSUBSCRIBE (no hook result keeps the
        // subscription, the v5 UNSUBACK is always 0): removing access never
        // widens it, so the decision is only logged and counted.
        let started = Instant::now();
        if let Some(ps) = policy_session(s).await
            && let Some(answer) = ps.unsubscribe([filter]).into_iter().next()
        {
            self.log_topic(Check::Unsubscribe, s, filter, &answer, started);
        }
    }

    fn log_topic(
        &self,
        check: Check,
        s: &RSession,
        topic: &str,
        answer: &TopicAnswer,
        started: Instant,
    ) {
        let took = started.elapsed();
        let allowed = answer.allowed();
        self.metrics.record(check, allowed, took);
        let d = &answer.decision;
        if allowed {
            tracing::debug!(
                target: "mqtt_policy_broker::decision",
                check = check.as_str(), verdict = "allow", client_id = %s.id.client_id,
                topic, decided_by = d.decided_by.label(), generation = d.generation,
            );
        } else {
            tracing::info!(
                target: "mqtt_policy_broker::decision",
                check = check.as_str(), verdict = "deny", client_id = %s.id.client_id,
                topic, decided_by = d.decided_by.label(), generation = d.generation,
                reason = d.deny().map_or("", |x| x.reason.as_str()),
                message = d.deny().map_or("", |x| x.message.as_str()),
            );
        }
    }

    /// For the shared-subscription chooser: may this online client receive
    /// a message on `topic` at `qos`?
    fn may_receive(&self, client_id: &ClientId, topic: &TopicName, qos: u8) -> bool {
        let ps = lock(&self.online).get(client_id).and_then(Weak::upgrade);
        ps.is_some_and(|ps| ps.receive(topic, qos, false).allowed())
    }
}

async fn policy_session(s: &RSession) -> Option<Arc<PSession>> {
    s.extra_attrs
        .read()
        .await
        .get::<Arc<PSession>>(ATTR)
        .cloned()
}

/// The hook handler registered for every decision hook.
pub struct PolicyHandler(pub Arc<Policy>);

#[async_trait::async_trait]
impl Handler for PolicyHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let p = &self.0;
        match param {
            Parameter::ClientAuthenticate(ci) => (
                false,
                Some(HookResult::AuthResult(p.authenticate(ci).await)),
            ),
            Parameter::ClientConnected(s) => {
                p.attach(s).await;
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => (
                false,
                Some(HookResult::SubscribeAclResult(p.subscribe(s, sub).await)),
            ),
            Parameter::MessagePublishCheckAcl(s, publish) => (
                false,
                Some(HookResult::PublishAclResult(p.publish(s, publish).await)),
            ),
            Parameter::MessageExpiryCheck(s, _from, publish) => {
                if p.receive(s, publish).await {
                    // Not refused: rmqtt's own expiry computation goes on.
                    (true, acc)
                } else {
                    (false, Some(HookResult::MessageExpiry))
                }
            }
            Parameter::ClientUnsubscribe(s, unsub) => {
                let filter = match &unsub.shared_group {
                    Some(group) => format!("$share/{group}/{}", unsub.topic_filter),
                    None => unsub.topic_filter.to_string(),
                };
                p.unsubscribe(s, &filter).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(s, _) => {
                p.detach(s).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// Retained messages in memory: rmqtt's own trie, enabled (its default
/// store keeps nothing).
pub struct RetainStore(pub Arc<rmqtt::retain::DefaultRetainStorage>);

#[async_trait::async_trait]
impl rmqtt::retain::RetainStorage for RetainStore {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: rmqtt::types::Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        // A zero interval means "no expiry" here (listeners set
        // message_expiry_interval to zero), not "expire now".
        self.0
            .set_with_timeout(topic, retain, expiry.filter(|d| !d.is_zero()))
            .await
    }

    async fn get(
        &self,
        filter: &TopicFilter,
    ) -> rmqtt::Result<Vec<(TopicName, rmqtt::types::Retain)>> {
        self.0.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}

/// Shared subscriptions: round robin over the group's online members the
/// chain lets receive the message (a refused member must not swallow the
/// message for the whole group).
pub struct SharedChooser {
    pub policy: Weak<Policy>,
    pub next: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl rmqtt::subscribe::SharedSubscription for SharedChooser {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &rmqtt::types::SharedGroup,
        _publisher: &Id,
        topic: &TopicName,
        ncs: &[(
            rmqtt::types::NodeId,
            ClientId,
            rmqtt::types::SubscriptionOptions,
            Option<Vec<rmqtt::types::SubscriptionIdentifier>>,
            Option<rmqtt::types::IsOnline>,
        )],
    ) -> Option<(usize, rmqtt::types::IsOnline)> {
        let policy = self.policy.upgrade()?;
        if ncs.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (0..ncs.len())
            .map(|i| (start.wrapping_add(i)) % ncs.len())
            .find(|&i| {
                let (_, client_id, opts, _, online) = &ncs[i];
                online.unwrap_or(true) && policy.may_receive(client_id, topic, opts.qos_value())
            })
            .map(|i| (i, true))
    }
}
