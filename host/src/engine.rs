//! The one wasmtime engine a host shares across all policies and chains:
//! component model on, epoch interruption for deadlines, the pooling instance
//! allocator for fast instantiation, and a background thread that advances the
//! epoch (`epoch.rs`). Its linker holds only the contract's imports; what else
//! a policy may import is `sandbox.rs`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::epoch::Ticker;
use crate::error::LoadError;
use crate::limits::deadline_ticks;
use crate::state::StoreState;

/// Default ceiling on any one policy's memory cap.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 256 << 20;

/// Builder for a [`PolicyEngine`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    pooling: bool,
    max_instances: u32,
    max_memory_bytes: usize,
    epoch_tick: Duration,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

impl EngineBuilder {
    /// Use the pooling instance allocator (default on). Off allocates each
    /// instance on demand, which reserves no address space up front.
    pub fn pooling(mut self, on: bool) -> Self {
        self.pooling = on;
        self
    }

    /// Most policy instances alive at once across all chains (pool size).
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n.max(1);
        self
    }

    /// Largest memory cap any policy may be given (the pool's slot size).
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// How often the epoch advances: the granularity of deadlines.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }

    pub fn build(self) -> Result<PolicyEngine, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        // `perf` can name policy functions when this is set (it writes
        // /tmp/perf-PID.map); for profiling only.
        if std::env::var_os("MQTT_POLICY_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        config.wasm_component_model(true);
        if self.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = self.max_instances;
            // A Rust wasip2 component is a handful of core modules with one
            // memory and a few tables; these bounds leave headroom for that.
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(8))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(4))
                .max_core_instances_per_component(32)
                .max_memories_per_component(4)
                .max_tables_per_component(16)
                .max_memory_size(self.max_memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wasmtime::Engine::new(&config).map_err(engine_err)?;

        // Only the contract's own imports here; each component's WASI imports
        // are added per component at load (`sandbox.rs`).
        let mut linker = Linker::<StoreState>::new(&engine);
        crate::wit::add_to_linker(&mut linker).map_err(engine_err)?;

        let ticker = Ticker::start(engine.clone(), self.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("cannot start epoch thread: {e}")))?;
        Ok(PolicyEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                epoch_tick: self.epoch_tick,
                max_memory_bytes: self.max_memory_bytes,
                max_instances: self.max_instances,
                pooling: self.pooling,
                _ticker: ticker,
            }),
        })
    }
}

/// A compiled-code cache, linker and epoch clock shared by every policy loaded
/// with it. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<StoreState>,
    epoch_tick: Duration,
    max_memory_bytes: usize,
    max_instances: u32,
    pooling: bool,
    /// Stops when the last clone of the engine goes.
    _ticker: Ticker,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("pooling", &self.inner.pooling)
            .field("epoch_tick", &self.inner.epoch_tick)
            .field("max_memory_bytes", &self.inner.max_memory_bytes)
            .finish()
    }
}

impl PolicyEngine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine with default settings.
    pub fn new() -> Result<Self, LoadError> {
        EngineBuilder::default().build()
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// The linker for one component: the contract's imports plus the
    /// sandbox's WASI (see `sandbox.rs`).
    pub(crate) fn linker_for(&self, component: &Component) -> wasmtime::Result<Linker<StoreState>> {
        crate::sandbox::linker_for(&self.inner.linker, &self.inner.engine, component)
    }

    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        deadline_ticks(deadline, self.inner.epoch_tick)
    }

    /// Most policy instances alive at once (the pool's size), or `None`
    /// without the pooling allocator.
    pub fn max_instances(&self) -> Option<u32> {
        self.inner.pooling.then_some(self.inner.max_instances)
    }

    /// The largest memory cap a policy may be given on this engine.
    pub fn max_memory_bytes(&self) -> usize {
        self.inner.max_memory_bytes
    }
}
