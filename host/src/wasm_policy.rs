//! One policy component, run on warm instances under the limits.
//!
//! Instances are created from a `PolicyPre` (pre-linked, so instantiation is a
//! few allocations from the pool), initialised with the policy's config, and
//! kept in a small idle list for reuse: a check takes one, runs, and puts it
//! back. An instance that failed in any way is dropped, never reused, so the
//! next check gets a fresh one. This is the fail-closed boundary: every failure
//! becomes a [`PolicyError`] that the chain turns into a deny.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::Component;

use crate::compile;
use crate::engine::PolicyEngine;
use crate::error::{LoadError, PolicyError};
use crate::limits::Limits;
use crate::policy::Policy;
use crate::request::{ConnectRequest, TopicRequest};
use crate::sandbox;
use crate::state::{self, StoreState};
use crate::stats::LogGate;
use crate::verdict::{ConnectVerdict, Grant, TopicVerdict};
use crate::wit::{PolicyInstance, PolicyPre};

/// Most attributes plus roles one grant may carry.
pub const MAX_GRANT_ENTRIES: usize = 256;
/// Most bytes (keys, values, roles) one grant may carry.
pub const MAX_GRANT_BYTES: usize = 64 * 1024;
/// Deny messages longer than this are cut (they go to logs and clients).
pub const MAX_MESSAGE_CHARS: usize = 256;

struct Warm {
    store: Store<StoreState>,
    policy: PolicyInstance,
}

/// A loaded policy component.
pub struct WasmPolicy {
    name: Arc<str>,
    pre: PolicyPre,
    engine: PolicyEngine,
    config_json: String,
    limits: Limits,
    idle: Mutex<Vec<Warm>>,
    max_idle: AtomicUsize,
    instances_created: AtomicU64,
    log_gate: Arc<LogGate>,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("name", &self.name)
            .field("api", &self.pre.version())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WasmPolicy {
    /// Load a policy from a module file. `config_json` is handed to `init`.
    pub fn from_file(
        engine: &PolicyEngine,
        name: &str,
        path: &Path,
        config_json: &str,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let bytes = compile::read_module(path)?;
        Self::from_bytes(
            engine,
            name,
            &path.display().to_string(),
            &bytes,
            config_json,
            limits,
        )
    }

    /// Load a policy from module bytes; `origin` names them in errors.
    pub fn from_bytes(
        engine: &PolicyEngine,
        name: &str,
        origin: &str,
        bytes: &[u8],
        config_json: &str,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        check_memory(engine, name, limits)?;
        let component = compile::compile_component(engine, name, origin, bytes)?;
        Self::from_component(engine, name, origin, &component, config_json, limits)
    }

    /// Load a policy from an already compiled component.
    pub(crate) fn from_component(
        engine: &PolicyEngine,
        name: &str,
        origin: &str,
        component: &Component,
        config_json: &str,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        check_memory(engine, name, limits)?;
        let pre = compile::pre_instantiate(engine, name, origin, component)?;
        let policy = Self {
            name: Arc::from(name),
            pre,
            engine: engine.clone(),
            config_json: config_json.to_owned(),
            limits,
            idle: Mutex::new(Vec::new()),
            max_idle: AtomicUsize::new(
                std::thread::available_parallelism().map_or(4, |n| n.get() * 2),
            ),
            instances_created: AtomicU64::new(0),
            log_gate: Arc::new(LogGate::new(crate::state::LOG_LINES_PER_SECOND)),
        };
        // Instantiate and init once now: a config the policy rejects fails
        // the load, not the first client.
        let warm = policy.instantiate().map_err(|e| match e {
            InstantiateError::Init(message) => LoadError::Init {
                policy: name.to_owned(),
                message,
            },
            InstantiateError::Failed(source) => LoadError::InitFailed {
                policy: name.to_owned(),
                source,
            },
        })?;
        policy.release(warm);
        Ok(policy)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The contract version (`mqtt:policy@…`) the policy was built against.
    pub fn api_version(&self) -> &'static str {
        self.pre.version()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many instances were created so far (the first at load, then one
    /// per concurrent worker and one after every failed call).
    pub fn instances_created(&self) -> u64 {
        self.instances_created.load(Ordering::Relaxed)
    }

    /// Keep `n` initialised instances ready, e.g. one per broker worker
    /// thread, so the first checks do not pay for instantiation.
    pub fn prewarm(&self, n: usize) -> Result<(), PolicyError> {
        self.max_idle.fetch_max(n, Ordering::Relaxed);
        let have = self.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
        for _ in have..n {
            let warm = self
                .instantiate()
                .map_err(InstantiateError::into_policy_error)?;
            self.release(warm);
        }
        Ok(())
    }

    fn new_store(&self) -> Store<StoreState> {
        let mut store = Store::new(
            self.engine.wasmtime(),
            StoreState::new(
                self.name.clone(),
                self.log_gate.clone(),
                self.limits.memory_bytes,
            ),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(state::on_deadline);
        // Host work the deadline and the memory cap do not see (see `sandbox.rs`).
        store.set_hostcall_fuel(sandbox::HOSTCALL_FUEL_BYTES);
        store.set_max_component_handles(sandbox::MAX_COMPONENT_HANDLES);
        store
    }

    fn arm(&self, store: &mut Store<StoreState>, deadline: Duration) {
        let ticks = self.engine.ticks(deadline);
        store.data_mut().begin_call(deadline, ticks);
        store.set_epoch_deadline(ticks);
    }

    /// Instantiate (and, with `init`, initialise) one instance and drop it:
    /// the cold path, for benchmarks.
    #[doc(hidden)]
    pub fn bench_instantiate(&self, init: bool) -> Result<(), PolicyError> {
        if init {
            return self
                .instantiate()
                .map(drop)
                .map_err(InstantiateError::into_policy_error);
        }
        let mut store = self.new_store();
        self.arm(&mut store, self.limits.init_deadline);
        self.pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| classify(&e, &store, self.limits.init_deadline))
    }

    fn instantiate(&self) -> Result<Warm, InstantiateError> {
        let mut store = self.new_store();
        self.arm(&mut store, self.limits.init_deadline);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|policy| Ok((policy.init(&mut store, &self.config_json)?, policy)));
        self.instances_created.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((Ok(()), policy)) => Ok(Warm { store, policy }),
            Ok((Err(message), _)) => Err(InstantiateError::Init(message)),
            Err(e) => Err(InstantiateError::Failed(classify(
                &e,
                &store,
                self.limits.init_deadline,
            ))),
        }
    }

    fn release(&self, warm: Warm) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle.load(Ordering::Relaxed) {
            idle.push(warm);
        }
    }

    /// Run `call` on a warm instance under the deadline; drop the instance if
    /// anything went wrong.
    fn run<R>(
        &self,
        call: impl FnOnce(&PolicyInstance, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut warm = match idle {
            Some(warm) => warm,
            None => self
                .instantiate()
                .map_err(InstantiateError::into_policy_error)?,
        };
        self.arm(&mut warm.store, self.limits.deadline);
        match call(&warm.policy, &mut warm.store) {
            Ok(r) => {
                self.release(warm);
                Ok(r)
            }
            Err(e) => Err(classify(&e, &warm.store, self.limits.deadline)),
        }
    }
}

/// A memory cap above the engine's pool slot size could never be honoured.
pub(crate) fn check_memory(
    engine: &PolicyEngine,
    name: &str,
    limits: Limits,
) -> Result<(), LoadError> {
    if limits.memory_bytes > engine.max_memory_bytes() {
        return Err(LoadError::Engine(format!(
            "policy \"{name}\": memory limit {} exceeds the engine's maximum {}",
            limits.memory_bytes,
            engine.max_memory_bytes()
        )));
    }
    Ok(())
}

enum InstantiateError {
    /// `init` returned an error message.
    Init(String),
    /// Instantiation or `init` failed (trap, timeout, out of memory).
    Failed(PolicyError),
}

impl InstantiateError {
    fn into_policy_error(self) -> PolicyError {
        match self {
            InstantiateError::Init(message) => {
                PolicyError::Instantiate(format!("init failed: {message}"))
            }
            InstantiateError::Failed(e) => e,
        }
    }
}

fn classify(e: &wasmtime::Error, store: &Store<StoreState>, deadline: Duration) -> PolicyError {
    let state = store.data();
    if state.limiter.hit {
        return PolicyError::OutOfMemory(state.limiter.memory_bytes);
    }
    if let Some(stopped) = e.downcast_ref::<sandbox::Stopped>() {
        return stopped.to_policy_error();
    }
    if sandbox::is_fuel_exhausted(e) {
        return PolicyError::TooMuchData(sandbox::HOSTCALL_FUEL_BYTES);
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => PolicyError::Timeout(deadline),
        Some(trap) => PolicyError::Trap(trap.to_string()),
        None => PolicyError::InvalidResult(format!("{e:#}")),
    }
}

fn check_grant(grant: &Grant) -> Result<(), PolicyError> {
    let entries = grant.attributes.len() + grant.roles.len();
    let bytes: usize = grant
        .attributes
        .iter()
        .map(|a| a.key.len() + a.value.len())
        .chain(grant.roles.iter().map(String::len))
        .sum();
    if entries > MAX_GRANT_ENTRIES || bytes > MAX_GRANT_BYTES {
        return Err(PolicyError::InvalidResult(format!(
            "grant of {entries} entries / {bytes} bytes exceeds {MAX_GRANT_ENTRIES} / {MAX_GRANT_BYTES}"
        )));
    }
    Ok(())
}

fn cut_message(message: &mut String) {
    if let Some((i, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(i);
    }
}

impl Policy for WasmPolicy {
    fn connect_check(&self, request: &ConnectRequest) -> Result<ConnectVerdict, PolicyError> {
        let mut verdict = self.run(|p, store| p.connect_check(store, request))?;
        match &mut verdict {
            ConnectVerdict::Allow(grant) => check_grant(grant)?,
            ConnectVerdict::Deny(deny) => cut_message(&mut deny.message),
            ConnectVerdict::Defer => {}
        }
        Ok(verdict)
    }

    fn topic_check(&self, request: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
        let mut verdict = self.run(|p, store| p.topic_check(store, request))?;
        if let TopicVerdict::Deny(deny) = &mut verdict {
            cut_message(&mut deny.message);
        }
        Ok(verdict)
    }
}
