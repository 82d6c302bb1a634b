//! One policy component, run on warm instances under the limits.
//!
//! Instances are created from a `PolicyPre` (pre-linked, so instantiation is a
//! few allocations from the pool), initialised with the policy's config, and
//! kept idle for reuse: a check takes one, runs, and puts it back. The idle
//! instances are kept in shards, one per thread stripe (`striped.rs`), so
//! threads checking at once take and return instances without sharing a
//! lock; a thread whose shard is empty takes one from another shard before
//! making a new one.
//! An instance that failed in any way — trap, deadline, memory cap, or a
//! result the host refuses (an oversized grant) — is dropped, never reused.
//! This is the fail-closed boundary: every failure becomes a [`PolicyError`]
//! that the chain handles with the policy's failure mode.
//!
//! Replacing instances is kept off the hot path, so a policy whose checks
//! fail cannot make every check pay for its `init` (which may take up to the
//! 2 s init deadline): a background thread per policy keeps the pool at its
//! target size, running `init` under the init deadline. That thread exists
//! only while there is work: it starts when an instance must be replaced and
//! ends after [`WORKER_LINGER`] without any, so a host whose policies are
//! healthy adds no threads to its broker (see `epoch.rs` for why that
//! matters). A check that finds the pool empty runs `init` itself only when
//! the last `init` took no more CPU than one check deadline, and then under
//! the check deadline; otherwise it waits at most one check deadline for the
//! background thread and fails with [`PolicyError::NoInstance`]. A check
//! therefore costs at most about two deadlines, whatever `init` costs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
use crate::striped::{Padded, STRIPES, stripe};
use crate::verdict::{ConnectVerdict, Grant, TopicVerdict, VerdictLifetime};
use crate::wit::{PolicyInstance, PolicyPre};

/// Most attributes plus roles one grant may carry.
pub const MAX_GRANT_ENTRIES: usize = 256;
/// Most bytes (keys, values, roles) one grant may carry.
pub const MAX_GRANT_BYTES: usize = 64 * 1024;
/// Deny messages longer than this are cut (they go to logs and clients).
pub const MAX_MESSAGE_CHARS: usize = 256;

/// The background thread's first wait after a failed `init`; it doubles
/// while `init` keeps failing, so a broken `init` does not burn a core.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between background `init` attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long the background thread waits for more work before it ends.
const WORKER_LINGER: Duration = Duration::from_secs(1);

struct Warm {
    store: Store<StoreState>,
    policy: PolicyInstance,
}

/// The bookkeeping of one policy's instances (the idle ones are in the
/// shards). Touched when instances are made or dropped, not per check.
struct Pool {
    /// Live instances: idle in any shard, or taken by a running check.
    live: usize,
    /// Live instances the background thread keeps: 1, or what `prewarm`
    /// asked for.
    target: usize,
    /// A background thread is running (it clears this, under the lock, as
    /// it ends).
    worker: bool,
}

/// Idle instances of one thread stripe.
type Shard = Padded<Mutex<Vec<Warm>>>;

/// What the policy's checks and its background thread share.
struct Shared {
    /// Itself, for starting the background thread.
    me: std::sync::Weak<Shared>,
    name: Arc<str>,
    pre: PolicyPre,
    engine: PolicyEngine,
    config_json: String,
    limits: Limits,
    pool: Mutex<Pool>,
    /// Idle instances, one shard per thread stripe.
    shards: Box<[Shard]>,
    /// Checks waiting for the background thread (read by every release,
    /// written only by waiters).
    waiting: AtomicUsize,
    /// Where the background thread puts the next new instance.
    next_shard: AtomicUsize,
    /// Idle instances to keep, spread over the shards: each shard keeps at
    /// most its share (and at least 2), so the total may exceed it when
    /// many threads check at once.
    max_idle: AtomicUsize,
    /// The policy was dropped: the background thread exits, instances
    /// coming back are dropped.
    closed: AtomicBool,
    /// The background thread has work, or must stop.
    work: Condvar,
    /// An instance went into the idle pool.
    ready: Condvar,
    instances_created: AtomicU64,
    /// CPU time of the last successful `init`, in nanoseconds (`u64::MAX`
    /// after one ran out of a check's deadline).
    init_nanos: AtomicU64,
    log_gate: Arc<LogGate>,
}

/// A loaded policy component.
pub struct WasmPolicy {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("name", &self.shared.name)
            .field("api", &self.shared.pre.version())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for WasmPolicy {
    fn drop(&mut self) {
        // Not joined: the thread may be inside an `init` (up to the init
        // deadline), and a policy is dropped wherever the last chain holding
        // it is — possibly on a broker worker. It exits when that ends.
        {
            let _pool = self.shared.lock_pool();
            self.shared.closed.store(true, Ordering::SeqCst);
        }
        for shard in self.shared.shards.iter() {
            let idle = std::mem::take(&mut *lock(&shard.0));
            drop(idle);
        }
        self.shared.work.notify_all();
        self.shared.ready.notify_all();
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
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            name: Arc::from(name),
            pre,
            engine: engine.clone(),
            config_json: config_json.to_owned(),
            limits,
            pool: Mutex::new(Pool {
                live: 0,
                target: 1,
                worker: false,
            }),
            max_idle: AtomicUsize::new(
                std::thread::available_parallelism().map_or(4, |n| n.get() * 2),
            ),
            closed: AtomicBool::new(false),
            shards: (0..STRIPES)
                .map(|_| Padded(Mutex::new(Vec::new())))
                .collect(),
            waiting: AtomicUsize::new(0),
            next_shard: AtomicUsize::new(0),
            work: Condvar::new(),
            ready: Condvar::new(),
            instances_created: AtomicU64::new(0),
            init_nanos: AtomicU64::new(u64::MAX),
            log_gate: Arc::new(LogGate::new(crate::state::LOG_LINES_PER_SECOND)),
        });
        // Instantiate and init once now: a config the policy rejects fails
        // the load, not the first client.
        let warm = shared
            .instantiate(limits.init_deadline)
            .map_err(|e| match e {
                InstantiateError::Init(message) => LoadError::Init {
                    policy: name.to_owned(),
                    message,
                },
                InstantiateError::Failed(error) => LoadError::InitFailed {
                    policy: name.to_owned(),
                    error,
                },
            })?;
        shared.lock_pool().live += 1;
        shared.put_idle(warm);
        Ok(Self { shared })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The contract version (`mqtt:policy@…`) the policy was built against.
    pub fn api_version(&self) -> &'static str {
        self.shared.pre.version()
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// How many instances were created so far: the first at load, then
    /// replacements for failed ones (in the background) and one per extra
    /// concurrent check.
    pub fn instances_created(&self) -> u64 {
        self.shared.instances_created.load(Ordering::Relaxed)
    }

    /// Initialised instances waiting in the pool right now.
    pub fn idle_instances(&self) -> usize {
        self.shared.idle_count()
    }

    /// Keep `n` initialised instances ready, e.g. one per broker worker
    /// thread, so the first checks do not pay for instantiation. The
    /// background thread keeps `n` alive from then on, replacing failed
    /// ones.
    pub fn prewarm(&self, n: usize) -> Result<(), PolicyError> {
        let shared = &self.shared;
        {
            let mut pool = shared.lock_pool();
            shared.max_idle.fetch_max(n, Ordering::Relaxed);
            pool.target = pool.target.max(n);
        }
        while shared.idle_count() < n {
            shared.lock_pool().live += 1;
            let warm = shared
                .instantiate(shared.limits.init_deadline)
                .map_err(|e| {
                    shared.forget_one();
                    e.into_policy_error()
                })?;
            shared.put_idle(warm);
        }
        Ok(())
    }

    /// Instantiate (and, with `init`, initialise) one instance and drop it:
    /// the cold path, for benchmarks.
    #[doc(hidden)]
    pub fn bench_instantiate(&self, init: bool) -> Result<(), PolicyError> {
        let shared = &self.shared;
        if init {
            return shared
                .instantiate(shared.limits.init_deadline)
                .map(drop)
                .map_err(InstantiateError::into_policy_error);
        }
        let mut store = shared.new_store();
        shared.arm(&mut store, shared.limits.init_deadline);
        shared
            .pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| classify(&e, &store, shared.limits.init_deadline))
    }

    /// Run `call` on a warm instance under the deadline, then `check` its
    /// result; drop the instance if either failed, so an instance that
    /// produced a malformed result is never asked again.
    fn run<R>(
        &self,
        call: impl FnOnce(&PolicyInstance, &mut Store<StoreState>) -> wasmtime::Result<R>,
        check: impl FnOnce(&mut R) -> Result<(), PolicyError>,
    ) -> Result<R, PolicyError> {
        let shared = &self.shared;
        let mut warm = shared.take()?;
        shared.arm(&mut warm.store, shared.limits.deadline);
        let result = call(&warm.policy, &mut warm.store)
            .map_err(|e| classify(&e, &warm.store, shared.limits.deadline))
            .and_then(|mut r| check(&mut r).map(|()| r));
        match result {
            Ok(r) => {
                shared.release(warm);
                Ok(r)
            }
            Err(e) => {
                shared.discard(warm);
                Err(e)
            }
        }
    }
}

/// Clears [`Pool::worker`] if the background thread unwinds, so the next
/// need starts another (a normal end clears it itself, under the lock).
struct WorkerGone<'a>(&'a Shared);

impl Drop for WorkerGone<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock_pool().worker = false;
        }
    }
}

/// A poisoned lock still guards consistent data here (nothing panics while
/// holding one), so take it anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait on `cv` for at most `timeout`, taking the lock back even if
/// poisoned (as [`lock`]).
fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, timeout)
        .unwrap_or_else(|p| p.into_inner())
        .0
}

/// The calling thread's CPU clock, where the platform has one.
fn cpu_now() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

impl Shared {
    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        lock(&self.pool)
    }

    /// Idle instances over all shards.
    fn idle_count(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).len()).sum()
    }

    /// An idle instance: from this thread's shard, else from any other.
    fn take_idle(&self) -> Option<Warm> {
        let own = stripe() % self.shards.len();
        if let Some(warm) = lock(&self.shards[own].0).pop() {
            return Some(warm);
        }
        self.shards
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own)
            .find_map(|(_, s)| lock(&s.0).pop())
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

    /// Instantiate and `init` one instance under `deadline`, recording the
    /// CPU time `init` took.
    fn instantiate(&self, deadline: Duration) -> Result<Warm, InstantiateError> {
        let (cpu, wall) = (cpu_now(), Instant::now());
        let mut store = self.new_store();
        self.arm(&mut store, deadline);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|policy| Ok((policy.init(&mut store, &self.config_json)?, policy)));
        self.instances_created.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((Ok(()), policy)) => {
                let spent = match (cpu, cpu_now()) {
                    (Some(before), Some(after)) => after.saturating_sub(before),
                    _ => wall.elapsed(),
                };
                let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
                self.init_nanos.store(nanos, Ordering::Relaxed);
                Ok(Warm { store, policy })
            }
            Ok((Err(message), _)) => Err(InstantiateError::Init(message)),
            Err(e) => Err(InstantiateError::Failed(classify(&e, &store, deadline))),
        }
    }

    /// Does `init` fit in one check deadline, by its last run?
    fn init_fits_a_check(&self) -> bool {
        let deadline = u64::try_from(self.limits.deadline.as_nanos()).unwrap_or(u64::MAX);
        self.init_nanos.load(Ordering::Relaxed) <= deadline
    }

    /// An instance for a check: an idle one; or one made here under the
    /// check deadline, if `init` is cheap enough; or one the background
    /// thread makes within a check deadline. Never `init` under the init
    /// deadline on the caller's thread.
    fn take(&self) -> Result<Warm, PolicyError> {
        if let Some(warm) = self.take_idle() {
            return Ok(warm);
        }
        let deadline = self.limits.deadline;
        let mut pool = self.lock_pool();
        if self.init_fits_a_check() {
            // Counted as live now, so the background thread does not make
            // a second one for the same need.
            pool.live += 1;
            drop(pool);
            return self.instantiate(deadline).map_err(|e| {
                if matches!(e, InstantiateError::Failed(PolicyError::Timeout(_))) {
                    // Too slow for a check after all: later checks wait for
                    // the background thread instead of paying for it again.
                    self.init_nanos.store(u64::MAX, Ordering::Relaxed);
                }
                self.forget_one();
                e.into_policy_error()
            });
        }
        // Announced before looking again, so a release that misses the
        // look sees the waiter and wakes it (under the pool lock).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wake_worker(&mut pool);
        let started = Instant::now();
        let mut found = None;
        while !self.closed.load(Ordering::SeqCst) {
            if let Some(warm) = self.take_idle() {
                found = Some(warm);
                break;
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            pool = wait(&self.ready, pool, left);
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        found.ok_or(PolicyError::NoInstance(deadline))
    }

    /// A new instance (already counted live) into a shard, if the pool has
    /// room.
    fn put_idle(&self, warm: Warm) {
        let i = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.store_idle(i, warm);
    }

    /// A check is done with its instance and it is fine: back to this
    /// thread's shard.
    fn release(&self, warm: Warm) {
        self.store_idle(stripe() % self.shards.len(), warm);
    }

    fn store_idle(&self, shard: usize, warm: Warm) {
        // Each shard keeps its share of `max_idle`; the rest are dropped
        // (the pool is sized for the threads that check at once).
        let Some(share) = self.shard_share() else {
            drop(warm);
            self.forget_one();
            return;
        };
        {
            let mut idle = lock(&self.shards[shard].0);
            if idle.len() >= share {
                drop(idle);
                drop(warm);
                self.forget_one();
                return;
            }
            idle.push(warm);
        }
        // Waking is a system call: only when a check is waiting.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _pool = self.lock_pool();
            self.ready.notify_all();
        }
    }

    /// Each shard's share of `max_idle`, or `None` once the policy is
    /// dropped. Read without the pool lock on the hot path: both change
    /// rarely and a stale read only keeps one instance more or less.
    fn shard_share(&self) -> Option<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let max_idle = self.max_idle.load(Ordering::Relaxed);
        Some(max_idle.div_ceil(self.shards.len()).max(2))
    }

    /// A check's instance failed: drop it and have it replaced.
    fn discard(&self, warm: Warm) {
        drop(warm);
        self.forget_one();
    }

    /// One live instance is gone; wake the background thread if the pool
    /// is now below its target.
    fn forget_one(&self) {
        let mut pool = self.lock_pool();
        pool.live = pool.live.saturating_sub(1);
        if self.wants_more(&pool) {
            self.wake_worker(&mut pool);
        }
    }

    /// Wake the background thread, starting one if none is running.
    fn wake_worker(&self, pool: &mut Pool) {
        if pool.worker {
            self.work.notify_one();
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        match std::thread::Builder::new()
            .name("mqtt-policy-pool".into())
            .spawn(move || {
                let _unwinding = WorkerGone(&me);
                me.replenish();
            }) {
            Ok(_) => pool.worker = true,
            // Checks waiting for it are denied at their deadline (fail
            // closed); the next need tries again.
            Err(e) => tracing::error!(
                target: "mqtt_policy::pool",
                policy = %self.name,
                "cannot start the instance thread: {e}"
            ),
        }
    }

    /// Should the background thread make another instance now?
    fn wants_more(&self, pool: &Pool) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let idle = self.idle_count();
        idle < self.max_idle.load(Ordering::Relaxed)
            && (pool.live < pool.target || idle < self.waiting.load(Ordering::SeqCst))
    }

    /// The background thread: keep the pool at its target, `init` under the
    /// init deadline, back off while `init` fails; end after
    /// [`WORKER_LINGER`] with nothing to do.
    fn replenish(&self) {
        let mut retry = RETRY_MIN;
        loop {
            {
                let mut pool = self.lock_pool();
                let idle_since = Instant::now();
                while !self.closed.load(Ordering::SeqCst) && !self.wants_more(&pool) {
                    let left = WORKER_LINGER.saturating_sub(idle_since.elapsed());
                    if left.is_zero() {
                        // Under the lock, so a need noticed from here on
                        // starts a new thread.
                        pool.worker = false;
                        return;
                    }
                    pool = wait(&self.work, pool, left);
                }
                if self.closed.load(Ordering::SeqCst) {
                    pool.worker = false;
                    return;
                }
                pool.live += 1;
            }
            match self.instantiate(self.limits.init_deadline) {
                Ok(warm) => {
                    retry = RETRY_MIN;
                    self.put_idle(warm);
                }
                Err(e) => {
                    self.lock_pool().live -= 1;
                    tracing::warn!(
                        target: "mqtt_policy::pool",
                        policy = %self.name,
                        "replacing an instance failed: {e}; retrying in {retry:?}"
                    );
                    let pool = self.lock_pool();
                    drop(
                        self.work
                            .wait_timeout_while(pool, retry, |_| {
                                !self.closed.load(Ordering::SeqCst)
                            })
                            .unwrap_or_else(|p| p.into_inner()),
                    );
                    retry = retry.saturating_mul(2).min(RETRY_MAX);
                }
            }
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

impl std::fmt::Display for InstantiateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstantiateError::Init(message) => write!(f, "init returned an error: {message}"),
            InstantiateError::Failed(e) => write!(f, "init {e}"),
        }
    }
}

impl InstantiateError {
    /// The error of a check (or `prewarm`) that had to make an instance.
    fn into_policy_error(self) -> PolicyError {
        PolicyError::Instantiate(self.to_string())
    }
}

fn classify(e: &wasmtime::Error, store: &Store<StoreState>, deadline: Duration) -> PolicyError {
    let state = store.data();
    if state.limiter.hit {
        return PolicyError::OutOfMemory(state.limiter.memory_bytes);
    }
    // A reported panic explains whatever trap followed it (the abort, or a
    // forbidden import the panic runtime touched).
    if let Some((message, location)) = &state.panic {
        return PolicyError::Panicked {
            message: message.clone(),
            location: location.clone(),
        };
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
        self.run(
            |p, store| p.connect_check(store, request),
            |verdict| {
                match verdict {
                    ConnectVerdict::Allow(grant) => check_grant(grant)?,
                    ConnectVerdict::Deny(deny) => cut_message(&mut deny.message),
                    ConnectVerdict::Defer => {}
                }
                Ok(())
            },
        )
    }

    fn topic_check(&self, request: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
        self.topic_check_lasting(request)
            .map(|(verdict, _)| verdict)
    }

    fn topic_check_lasting(
        &self,
        request: &TopicRequest,
    ) -> Result<(TopicVerdict, VerdictLifetime), PolicyError> {
        self.run(
            |p, store| p.topic_check(store, request),
            |(verdict, _)| {
                if let TopicVerdict::Deny(deny) = verdict {
                    cut_message(&mut deny.message);
                }
                Ok(())
            },
        )
    }
}
