//! The HTTP server: listener, optional TLS (with client certificates),
//! per-connection limits, caller authentication, routing, and the
//! health and metrics endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mqtt_policy_host::PolicyHost;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::common::{self, Answer, Body, Request};
use crate::config::ServeConfig;
use crate::context::Context;
use crate::error::{RequestError, ServeError};
use crate::metrics::{Endpoint, Metrics};
use crate::ratelimit::RateLimiter;
use crate::sessions::SessionMap;
use crate::{amqtt, azure, emqx, rabbitmq};

#[derive(Debug, Clone, Copy)]
enum Route {
    Amqtt(amqtt::Kind),
    Azure,
    Emqx(emqx::Kind),
    Rabbit(rabbitmq::Kind),
    Metrics,
    Health,
}

impl Route {
    /// The caller-authentication group the route belongs to.
    fn group(self) -> Option<&'static str> {
        match self {
            Route::Amqtt(_) => Some("amqtt"),
            Route::Azure => Some("azure"),
            Route::Emqx(_) => Some("emqx"),
            Route::Rabbit(_) => Some("rabbitmq"),
            Route::Metrics => Some("metrics"),
            Route::Health => None,
        }
    }

    fn endpoint(self) -> Option<Endpoint> {
        Some(match self {
            Route::Amqtt(amqtt::Kind::User) => Endpoint::AmqttUser,
            Route::Amqtt(amqtt::Kind::Acl) => Endpoint::AmqttAcl,
            Route::Amqtt(amqtt::Kind::Superuser) => Endpoint::AmqttSuperuser,
            Route::Azure => Endpoint::AzureConnect,
            Route::Emqx(emqx::Kind::Authn) => Endpoint::EmqxAuthn,
            Route::Emqx(emqx::Kind::Authz) => Endpoint::EmqxAuthz,
            Route::Rabbit(rabbitmq::Kind::User) => Endpoint::RabbitUser,
            Route::Rabbit(rabbitmq::Kind::Vhost) => Endpoint::RabbitVhost,
            Route::Rabbit(rabbitmq::Kind::Resource) => Endpoint::RabbitResource,
            Route::Rabbit(rabbitmq::Kind::Topic) => Endpoint::RabbitTopic,
            Route::Metrics | Route::Health => return None,
        })
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Route::Amqtt(_) => &[Method::GET, Method::POST, Method::PUT],
            Route::Emqx(_) | Route::Rabbit(_) => &[Method::GET, Method::POST],
            Route::Azure => &[Method::POST, Method::OPTIONS],
            Route::Metrics | Route::Health => &[Method::GET],
        }
    }
}

/// The handlers' context, plus what only the server uses: routes, the
/// caller secret and the counters.
struct State {
    cx: Context,
    metrics: Metrics,
    /// SHA-256 of the shared secret, compared in constant time.
    secret: Option<[u8; 32]>,
    routes: HashMap<String, Route>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn read_secret(path: &std::path::Path) -> Result<String, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        ServeError::Config(crate::error::ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    })?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        return Err(ServeError::Config(crate::error::ConfigError::Invalid {
            path: path.to_owned(),
            message: "the secret file is empty".into(),
        }));
    }
    Ok(secret)
}

impl State {
    fn new(config: ServeConfig, host: PolicyHost) -> Result<State, ServeError> {
        let secret = match (&config.auth.shared_secret, &config.auth.shared_secret_file) {
            (Some(s), _) if s.is_empty() => {
                return Err(ServeError::Runtime("[auth] shared_secret is empty".into()));
            }
            (Some(s), _) => Some(sha256(s.as_bytes())),
            (None, Some(path)) => Some(sha256(read_secret(path)?.as_bytes())),
            (None, None) => None,
        };
        let mut routes = HashMap::new();
        let mut azure_keys = Vec::new();
        routes.insert(config.metrics_path.clone(), Route::Metrics);
        routes.insert(config.health_path.clone(), Route::Health);
        if let Some(a) = &config.amqtt {
            routes.insert(a.user_path.clone(), Route::Amqtt(amqtt::Kind::User));
            routes.insert(a.acl_path.clone(), Route::Amqtt(amqtt::Kind::Acl));
            routes.insert(
                a.superuser_path.clone(),
                Route::Amqtt(amqtt::Kind::Superuser),
            );
        }
        if let Some(a) = &config.azure {
            routes.insert(a.path.clone(), Route::Azure);
            azure_keys.extend(a.access_keys.iter().map(|k| k.as_bytes().to_vec()));
            for f in &a.access_key_files {
                azure_keys.push(read_secret(f)?.into_bytes());
            }
            if azure_keys.iter().any(Vec::is_empty) {
                return Err(ServeError::Runtime("[azure] an access key is empty".into()));
            }
        }
        if let Some(e) = &config.emqx {
            routes.insert(e.authn_path.clone(), Route::Emqx(emqx::Kind::Authn));
            routes.insert(e.authz_path.clone(), Route::Emqx(emqx::Kind::Authz));
        }
        if let Some(r) = &config.rabbitmq {
            routes.insert(r.user_path.clone(), Route::Rabbit(rabbitmq::Kind::User));
            routes.insert(r.vhost_path.clone(), Route::Rabbit(rabbitmq::Kind::Vhost));
            routes.insert(
                r.resource_path.clone(),
                Route::Rabbit(rabbitmq::Kind::Resource),
            );
            routes.insert(r.topic_path.clone(), Route::Rabbit(rabbitmq::Kind::Topic));
        }
        let listen = config.listen;
        let has_client_ca = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !listen.ip().is_loopback()
            && secret.is_none()
            && !has_client_ca
            && !config.insecure_allow_remote
        {
            return Err(ServeError::Runtime(format!(
                "refusing to listen on {listen} without caller authentication: the server answers whether \
                 passwords and tokens are valid. Set [auth] shared_secret_file or [tls] client_ca, \
                 or insecure_allow_remote = true (see SECURITY.md)"
            )));
        }
        Ok(State {
            cx: Context {
                sessions: SessionMap::new(
                    config.sessions.max,
                    Duration::from_secs(config.sessions.ttl_secs),
                ),
                limiter: RateLimiter::new(&config.rate_limit),
                azure_keys,
                host,
                config,
            },
            metrics: Metrics::new(),
            secret,
            routes,
        })
    }

    fn caller_ok(&self, route: Route, headers: &hyper::HeaderMap) -> bool {
        let Some(expected) = &self.secret else {
            return true;
        };
        let protected = route
            .group()
            .is_some_and(|g| self.cx.config.auth.protect.iter().any(|p| p == g));
        if !protected {
            return true;
        }
        let given = headers
            .get(self.cx.config.auth.header.as_str())
            .map(|v| sha256(v.as_bytes()));
        use subtle::ConstantTimeEq as _;
        given.is_some_and(|g| bool::from(g.ct_eq(expected)))
    }
}

/// A running server. Dropping it does not stop it; call
/// [`Server::shutdown`].
pub struct Server {
    local_addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Server {
    /// Bind `config.listen` and serve `host`'s chain on the current tokio
    /// runtime (multi-threaded, so expensive connect checks do not stall
    /// other requests).
    pub async fn start(config: ServeConfig, host: PolicyHost) -> Result<Server, ServeError> {
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::acceptor(t)?),
            None => None,
        };
        let state = Arc::new(State::new(config, host)?);
        let listen = state.cx.config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                address: listen.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            address: listen.to_string(),
            source,
        })?;
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, tls, state.clone(), stop));
        tracing::info!(target: "mqtt_policy::webhook", address = %local_addr, "listening");
        Ok(Server {
            local_addr,
            state,
            shutdown,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The chain the server answers from.
    pub fn host(&self) -> &PolicyHost {
        &self.state.cx.host
    }

    /// Sessions kept for topic checks.
    pub fn sessions(&self) -> usize {
        self.state.cx.sessions.len()
    }

    /// Stop accepting, let requests in flight finish (up to 5 s), and return.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

const DRAIN: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let max = state.cx.config.limits.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    loop {
        // Wait for a free slot before accepting, so excess connections wait
        // in the kernel's backlog instead of costing memory here.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(target: "mqtt_policy::webhook", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, tls, state, stop).await;
            drop(permit);
        });
    }
    // Wait for connections to drain: every permit back, or the deadline.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, permits.acquire_many(all)).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        Some(acceptor) => {
            let handshake = state.cx.config.limits.handshake_timeout();
            match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve(TokioIo::new(tls_stream), peer, state, stop).await,
                Ok(Err(e)) => {
                    state.metrics.caller_rejected();
                    tracing::debug!(target: "mqtt_policy::webhook", %peer, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    tracing::debug!(target: "mqtt_policy::webhook", %peer, "TLS handshake timed out")
                }
            }
        }
        None => serve(TokioIo::new(stream), peer, state, stop).await,
    }
}

async fn serve<I>(io: I, peer: SocketAddr, state: Arc<State>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_state = state.clone();
    let service = service_fn(move |req| {
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.cx.config.limits.header_timeout())
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(target: "mqtt_policy::webhook", %peer, "connection ended: {e}");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
        }
    }
}

async fn read_body(
    body: Incoming,
    headers: &hyper::HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, RequestError> {
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(RequestError::TooLarge(max));
    }
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(RequestError::BodyTimeout(timeout)),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(RequestError::TooLarge(max))
            } else {
                Err(RequestError::Body(e.to_string()))
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

async fn handle(state: &State, peer: SocketAddr, req: hyper::Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Some(route) = state.routes.get(parts.uri.path()).copied() else {
        return common::json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no endpoint at {}", parts.uri.path()) }),
        );
    };
    if !state.caller_ok(route, &parts.headers) {
        state.metrics.caller_rejected();
        return common::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "caller not authenticated: missing or wrong shared secret" }),
        );
    }
    if !route.methods().contains(&parts.method) {
        let e = RequestError::Method(parts.method.to_string());
        let mut answer = bad_request(route, &e);
        if let Some(endpoint) = route.endpoint() {
            state
                .metrics
                .record(endpoint, answer.verdict, &answer.policy, Duration::ZERO);
        }
        let allow = route
            .methods()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = allow.parse() {
            answer.response.headers_mut().insert("allow", v);
        }
        return answer.response;
    }
    match route {
        Route::Health => {
            return common::json(
                StatusCode::OK,
                &json!({ "status": "ok", "generation": state.cx.host.generation() }),
            );
        }
        Route::Metrics => return metrics(state),
        _ => {}
    }
    let limits = &state.cx.config.limits;
    let body = match read_body(
        body,
        &parts.headers,
        limits.max_body_bytes,
        limits.body_timeout(),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let answer = bad_request(route, &e);
            if let Some(endpoint) = route.endpoint() {
                state
                    .metrics
                    .record(endpoint, answer.verdict, &answer.policy, Duration::ZERO);
            }
            return answer.response;
        }
    };
    let started = Instant::now();
    let request = Request {
        method: parts.method,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        peer,
    };
    let (answer, endpoint): (Answer, Endpoint) = match route {
        Route::Amqtt(kind) => {
            let Some(config) = &state.cx.config.amqtt else {
                return common::empty(StatusCode::NOT_FOUND);
            };
            (
                amqtt::handle(&state.cx, config, kind, &request),
                route.endpoint().unwrap_or(Endpoint::AmqttUser),
            )
        }
        Route::Emqx(kind) => (
            emqx::handle(&state.cx, kind, &request),
            route.endpoint().unwrap_or(Endpoint::EmqxAuthn),
        ),
        Route::Rabbit(kind) => {
            let Some(config) = &state.cx.config.rabbitmq else {
                return common::empty(StatusCode::NOT_FOUND);
            };
            (
                rabbitmq::handle(&state.cx, config, kind, &request),
                route.endpoint().unwrap_or(Endpoint::RabbitUser),
            )
        }
        Route::Azure => {
            let Some(config) = &state.cx.config.azure else {
                return common::empty(StatusCode::NOT_FOUND);
            };
            let is_connect = request.method == Method::POST
                && request
                    .headers
                    .get("ce-type")
                    .is_some_and(|t| t.as_bytes() == b"azure.webpubsub.sys.connect");
            let endpoint = if is_connect {
                Endpoint::AzureConnect
            } else {
                Endpoint::AzureEvent
            };
            (azure::handle(&state.cx, config, &request), endpoint)
        }
        Route::Metrics | Route::Health => return common::empty(StatusCode::NOT_FOUND),
    };
    state
        .metrics
        .record(endpoint, answer.verdict, &answer.policy, started.elapsed());
    tracing::debug!(
        target: "mqtt_policy::webhook",
        endpoint = endpoint.label(),
        peer = %request.peer,
        verdict = ?answer.verdict,
        policy = %answer.policy,
        "answered"
    );
    answer.response
}

/// Each protocol's own 4xx: a deny in that protocol's terms.
fn bad_request(route: Route, error: &RequestError) -> Answer {
    match route {
        Route::Amqtt(_) => amqtt::bad_request(error),
        Route::Azure => azure::bad_request(error, None),
        Route::Rabbit(_) => rabbitmq::bad_request(error),
        Route::Emqx(_) | Route::Metrics | Route::Health => common::bad_request(error),
    }
}

fn metrics(state: &State) -> Response<Body> {
    let status = state.cx.host.status();
    let gauges = [
        (
            "mqtt_policy_webhook_sessions",
            "Sessions kept for topic checks.",
            state.cx.sessions.len() as f64,
        ),
        (
            "mqtt_policy_webhook_rate_limited_keys",
            "Usernames and addresses with a failed-connect bucket.",
            state.cx.limiter.len() as f64,
        ),
        (
            "mqtt_policy_webhook_chain_generation",
            "Generation of the live chain.",
            status.generation as f64,
        ),
        (
            "mqtt_policy_webhook_reload_failures",
            "Failed chain reloads since start.",
            status.failures as f64,
        ),
    ];
    common::response(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(&gauges),
    )
}
