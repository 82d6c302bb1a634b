//! Files → a loaded chain: read the chain file and each module, compile
//! (or take the compiled component from the cache), check it against a
//! contract version, pre-link it, instantiate and `init` it.
//!
//! Every check that can be done before the first client arrives is done here:
//! the bytes must be a component, its imports must be satisfiable by the host
//! (the `host` interface and the locked-down WASI), its exports must match
//! the `policy` world of a version the host knows, and its `init` must accept
//! its configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use crate::cache::{CacheSource, ComponentCache, ModuleHash};
use crate::chain::Chain;
use crate::config::ChainConfig;
use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::wasm_policy::{WasmPolicy, check_memory};
use crate::wit::PolicyPre;

/// Largest module file accepted.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Read a module file, with errors naming the file.
pub fn read_module(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_MODULE_BYTES as u64 {
        return Err(read_err(std::io::Error::other(format!(
            "module is {len} bytes, over the {MAX_MODULE_BYTES} byte limit"
        ))));
    }
    std::fs::read(path).map_err(read_err)
}

/// Compile `bytes` to a component (the world is checked separately).
pub(crate) fn compile_component(
    engine: &PolicyEngine,
    policy: &str,
    origin: &str,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    Component::new(engine.wasmtime(), bytes).map_err(|e| LoadError::NotAComponent {
        policy: policy.to_owned(),
        module: origin.to_owned(),
        message: format!("{e:#}"),
    })
}

/// Check a compiled component against the `policy` world and pre-link it.
pub(crate) fn pre_instantiate(
    engine: &PolicyEngine,
    policy: &str,
    origin: &str,
    component: &Component,
) -> Result<PolicyPre, LoadError> {
    PolicyPre::new(engine.linker(), component).map_err(|e| LoadError::WrongWorld {
        policy: policy.to_owned(),
        module: origin.to_owned(),
        message: format!("{e:#}"),
    })
}

/// A chain just loaded, with where each of its modules came from.
pub(crate) struct LoadedChain {
    pub(crate) chain: Chain,
    pub(crate) modules: Vec<LoadedModule>,
}

pub(crate) struct LoadedModule {
    pub(crate) path: PathBuf,
    pub(crate) hash: ModuleHash,
    pub(crate) source: CacheSource,
}

/// Load a chain, taking compiled components from `cache` where the module
/// bytes are unchanged.
pub(crate) fn load_chain(
    engine: &PolicyEngine,
    config: &ChainConfig,
    config_path: &Path,
    cache: &ComponentCache,
    generation: u64,
) -> Result<LoadedChain, LoadError> {
    let bad = |message: String| LoadError::Config {
        path: config_path.to_owned(),
        message,
    };
    let mut builder = Chain::builder()
        .default_verdict(config.default)
        .request_bounds(config.requests)
        .breaker(config.breaker)
        .decision_log_every(config.decision_log_every.unwrap_or(100))
        .generation(generation);
    let mut modules = Vec::with_capacity(config.policies.len());
    for p in &config.policies {
        let limits = config.policy_limits(p).map_err(bad)?;
        check_memory(engine, &p.name, limits)?;
        let path = ChainConfig::module_path(config_path, &p.module);
        let origin = path.display().to_string();
        let bytes = read_module(&path)?;
        let (component, hash, source) = cache.get_or_compile(engine, &p.name, &origin, &bytes)?;
        let policy = WasmPolicy::from_component(
            engine,
            &p.name,
            &origin,
            &component,
            &p.config_json(),
            limits,
        )?;
        builder = builder.policy_with(&p.name, Arc::new(policy), p.on_error);
        modules.push(LoadedModule { path, hash, source });
    }
    Ok(LoadedChain {
        chain: builder.build()?,
        modules,
    })
}

impl Chain {
    /// Load every policy named in a chain file. Fails, naming the policy and
    /// the file, if any module does not load or any `init` rejects its config.
    pub fn from_config_file(engine: &PolicyEngine, path: &Path) -> Result<Self, LoadError> {
        let config = ChainConfig::from_file(path)?;
        Self::from_config(engine, &config, path)
    }

    /// Load a parsed chain file; `config_path` anchors relative module paths.
    pub fn from_config(
        engine: &PolicyEngine,
        config: &ChainConfig,
        config_path: &Path,
    ) -> Result<Self, LoadError> {
        load_chain(engine, config, config_path, &ComponentCache::new(), 0).map(|l| l.chain)
    }
}
