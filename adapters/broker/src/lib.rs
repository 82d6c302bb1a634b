//! `mqtt-policy broker`: an MQTT 3.1 / 3.1.1 / 5 broker (rmqtt 0.24,
//! embedded) whose CONNECT, SUBSCRIBE, PUBLISH and every delivery are
//! decided by the policy chain through the host's [`Session`] API.
//!
//! The pieces:
//! - [`config`]: the one TOML file (listeners, limits, chain, cache,
//!   metrics);
//! - [`front`]: our accept loops in front of rmqtt (TLS termination with the
//!   verified chain, connection limit, connect timeout);
//! - [`hooks`]: the rmqtt hooks answering through the policy session, the
//!   retain store and the shared-subscription chooser;
//! - `slow_checks`: which thread runs a connect check under `auto`;
//! - [`metrics`] serves `/metrics`.
//!
//! [`run`] is the command; [`Broker::start`] starts one inside a tokio
//! runtime and returns a handle (tests, embedding).
//!
//! [`Session`]: mqtt_policy_host::Session

pub mod config;
pub mod front;
pub mod hooks;
pub mod metrics;
mod slow_checks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use mqtt_policy_host::{PolicyHost, Watcher};
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{Message, Reason};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use config::{
    Config, ConnectChecks, SLOW_CONNECT_CHECK, SLOW_CONNECT_WAIT, SLOW_CONNECT_WINDOW,
};
use front::{Front, Registry};
use hooks::{Policy, PolicyHandler, RetainStore, SharedChooser};
use metrics::Metrics;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("policy chain: {0}")]
    Chain(#[from] mqtt_policy_host::LoadError),
    #[error("TLS material {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("rmqtt: {0}")]
    Rmqtt(String),
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A running broker. Dropping it does not stop it; call
/// [`Broker::shutdown`].
pub struct Broker {
    host: PolicyHost,
    scx: ServerContext,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    listeners: Vec<(String, SocketAddr)>,
    metrics_address: Option<SocketAddr>,
    fronts: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    _watcher: Option<Watcher>,
}

impl Broker {
    /// Load the chain, bind every listener and start serving. Must run
    /// inside a multi-threaded tokio runtime.
    pub async fn start(config: Config) -> Result<Broker, BrokerError> {
        let chain = config.chain.clone();
        let cache = config.cache_dir.clone();
        // Loading compiles modules: seconds of CPU, off the async workers.
        let host = tokio::task::spawn_blocking(move || {
            let mut builder = PolicyHost::builder(chain);
            if let Some(dir) = cache {
                builder = builder.disk_cache(dir);
            }
            builder.build()
        })
        .await
        .map_err(|e| BrokerError::Rmqtt(e.to_string()))??;
        Broker::start_with_host(config, host).await
    }

    /// Like [`Broker::start`], with a host already loaded.
    pub async fn start_with_host(config: Config, host: PolicyHost) -> Result<Broker, BrokerError> {
        let limits = config.limits.clone();
        // The busy check refuses CONNECTs when the machine is loaded: a
        // load test would see refusals that are no policy's decision.
        let scx = ServerContext::new()
            .node_id(1)
            .busy_check_enable(false)
            .build()
            .await;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::default());
        let policy = Arc::new(Policy::new(
            host.clone(),
            scx.clone(),
            registry.clone(),
            metrics.clone(),
            config.connect_checks,
        ));
        *scx.extends.retain_mut().await = Box::new(RetainStore(Arc::new(
            rmqtt::retain::DefaultRetainStorage::new(),
        )));
        *scx.extends.shared_subscription_mut().await = Box::new(SharedChooser {
            policy: Arc::downgrade(&policy),
            next: AtomicUsize::new(0),
        });
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientConnected,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::MessageExpiryCheck,
            Type::ClientUnsubscribe,
            Type::ClientDisconnected,
        ] {
            // Highest priority, so no other handler runs before ours.
            register
                .add_priority(typ, u32::MAX, Box::new(PolicyHandler(policy.clone())))
                .await;
        }
        register.start().await;

        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut server = MqttServer::new(scx.clone());
        let mut fronts_ready = Vec::new();
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let backend = Builder::new()
                .name(l.name.clone())
                .laddr(SocketAddr::from(([127, 0, 0, 1], 0)))
                .allow_anonymous(false)
                .message_expiry_interval(Duration::ZERO)
                .max_packet_size(limits.max_packet_size)
                .max_inflight(
                    std::num::NonZeroU16::new(limits.max_inflight)
                        .unwrap_or(std::num::NonZeroU16::MIN),
                )
                .handshake_timeout(limits.connect_timeout())
                .max_mqueue_len(limits.max_queued)
                .max_clientid_len(limits.max_client_id_len)
                .session_expiry_interval(Duration::from_secs(limits.session_expiry_s))
                .max_session_expiry_interval(Duration::from_secs(limits.session_expiry_s))
                .max_subscriptions(limits.max_subscriptions)
                .max_connections(limits.max_connections)
                .nodelay(true)
                .bind()
                .map_err(|e| BrokerError::Rmqtt(e.to_string()))?;
            let backend_addr = backend
                .local_addr()
                .map_err(|e| BrokerError::Rmqtt(e.to_string()))?;
            let backend = if l.transport.is_ws() {
                backend.ws()
            } else {
                backend.tcp()
            }
            .map_err(|e| BrokerError::Rmqtt(e.to_string()))?;
            let id = u16::try_from(i + 1)
                .map_err(|_| BrokerError::Rmqtt("too many listeners".into()))?;
            server = server.listener_by_id(backend, id);
            let tls = match &l.tls {
                Some(tls) if l.transport.is_tls() => Some(front::tls_acceptor(tls)?),
                _ => None,
            };
            let socket =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| BrokerError::Listen {
                        address: l.address,
                        source,
                    })?;
            let address = socket.local_addr().map_err(|source| BrokerError::Listen {
                address: l.address,
                source,
            })?;
            tracing::info!(listener = %l.name, transport = ?l.transport, %address, "listening");
            listeners.push((l.name.clone(), address));
            fronts_ready.push(Front {
                listener: socket,
                backend: backend_addr,
                tls,
                name: Arc::from(l.name.as_str()),
                registry: registry.clone(),
                slots: slots.clone(),
                connect_timeout: limits.connect_timeout(),
                metrics: metrics.clone(),
            });
        }
        let server = server.build();
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "rmqtt server stopped");
            }
        })];
        let fronts = fronts_ready
            .into_iter()
            .map(|f| tokio::spawn(f.serve()))
            .collect();

        // Handshakes that fail after the connect check leave their policy
        // session behind: drop them once they are certainly dead.
        let sweep_after = limits.connect_timeout() * 2 + Duration::from_secs(1);
        let sweeper = Arc::downgrade(&policy);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                match sweeper.upgrade() {
                    Some(p) => p.sweep(sweep_after),
                    None => return,
                }
            }
        }));

        let mut metrics_address = None;
        if let Some(addr) = config.metrics {
            let socket = TcpListener::bind(addr)
                .await
                .map_err(|source| BrokerError::Listen {
                    address: addr,
                    source,
                })?;
            metrics_address = socket.local_addr().ok();
            let (m, h, s) = (metrics.clone(), host.clone(), scx.clone());
            let render = Arc::new(move || {
                m.render(&h, s.sessions.count() as i64, s.connections.count() as i64)
            });
            tasks.push(tokio::spawn(metrics::serve(socket, render)));
        }

        let watcher = if config.watch {
            match host.watch(Duration::from_millis(200)) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the chain's files; SIGHUP still reloads");
                    None
                }
            }
        } else {
            None
        };
        Ok(Broker {
            host,
            scx,
            policy,
            metrics,
            registry,
            listeners,
            metrics_address,
            fronts,
            tasks,
            _watcher: watcher,
        })
    }

    /// The bound address of each listener, by name, in config order.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The address of listener `name`.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    pub fn host(&self) -> &PolicyHost {
        &self.host
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Reload the chain (what SIGHUP does); a failure keeps the old one.
    pub fn reload(&self) -> Result<u64, mqtt_policy_host::LoadError> {
        let outcome = self.host.reload();
        self.metrics.reloaded(outcome.is_ok());
        match &outcome {
            Ok(generation) => tracing::info!(generation, "chain reloaded"),
            Err(e) => tracing::warn!(error = %e, "reload failed; the previous chain keeps serving"),
        }
        outcome
    }

    /// What the broker holds, for leak checks: (TCP connections open,
    /// rmqtt sessions, front registry entries, pending policy sessions,
    /// online policy sessions).
    pub fn state(&self) -> State {
        State {
            connections: self.metrics.open_connections(),
            sessions: self.scx.sessions.count() as i64,
            mqtt_connections: self.scx.connections.count() as i64,
            front_entries: self.registry.len(),
            pending: self.policy.pending(),
            online: self.policy.online(),
        }
    }

    /// Stop accepting, close every session (MQTT 5 clients get DISCONNECT
    /// 0x8B), wait for them to go (up to `grace`), stop.
    pub async fn shutdown(self, grace: Duration) {
        for f in &self.fronts {
            f.abort();
        }
        for entry in self.scx.extends.shared().await.iter() {
            if let Some(tx) = entry.tx() {
                let _ = tx.unbounded_send(Message::Closed(Reason::ConnectRemoteClose));
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.metrics.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A snapshot of what the broker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub connections: i64,
    pub sessions: i64,
    pub mqtt_connections: i64,
    pub front_entries: usize,
    pub pending: usize,
    pub online: usize,
}

/// `mqtt-policy broker`: run until SIGTERM or SIGINT; SIGHUP reloads the
/// chain.
pub fn run(config: Config) -> Result<(), BrokerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BrokerError::Runtime)?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(BrokerError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(BrokerError::Runtime)?;
        let mut hup = signal(SignalKind::hangup()).map_err(BrokerError::Runtime)?;
        let broker = Broker::start(config).await?;
        for (name, address) in broker.listeners() {
            tracing::warn!(listener = %name, %address, "mqtt-policy broker listening");
        }
        if let Some(m) = broker.metrics_address() {
            tracing::warn!(address = %m, "metrics at http://{m}/metrics");
        }
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    let _ = broker.reload();
                }
            }
        }
        tracing::warn!("shutting down");
        broker.shutdown(Duration::from_secs(5)).await;
        Ok::<(), BrokerError>(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
