//! Files → a loaded chain: read the chain file and each module, compile it
//! (or take the compiled component from the cache, `cache.rs`), check it
//! against a contract version (`compile.rs`), instantiate and `init` it
//! (`wasm_policy.rs`), and build the [`Chain`].
//!
//! Every check that can be done before the first client arrives is done
//! while loading: a chain that loads has policies that compiled, matched a
//! contract version and accepted their configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{CacheSource, ComponentCache, ModuleHash};
use crate::chain::Chain;
use crate::compile::read_module;
use crate::config::{ChainConfig, PolicyConfig};
use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::files::{MAX_DATA_FILE_BYTES, read_regular_text};
use crate::wasm_policy::{WasmPolicy, check_memory};

/// A chain just loaded, with where each of its modules came from.
pub(crate) struct LoadedChain {
    pub(crate) chain: Chain,
    pub(crate) modules: Vec<LoadedModule>,
    /// The policy data files read for this chain.
    pub(crate) data_files: Vec<PathBuf>,
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
        .verdict_cache(config.verdict_cache)
        .decision_log_every(config.decision_log_every.unwrap_or(100))
        .generation(generation);
    check_pool(engine, config.policies.len(), config_path)?;
    let mut modules = Vec::with_capacity(config.policies.len());
    let mut data_files = Vec::new();
    for p in &config.policies {
        let limits = config.policy_limits(p).map_err(bad)?;
        check_memory(engine, &p.name, limits)?;
        let path = ChainConfig::module_path(config_path, &p.module);
        let origin = path.display().to_string();
        let bytes = read_module(&path)?;
        let (component, hash, source) = cache.get_or_compile(engine, &p.name, &origin, &bytes)?;
        let config_json = config_with_files(p, config_path, &mut data_files)?;
        let policy =
            WasmPolicy::from_component(engine, &p.name, &origin, &component, &config_json, limits)?;
        builder =
            builder.policy_scoped(&p.name, Arc::new(policy), p.on_error, p.ask_connect.clone());
        modules.push(LoadedModule { path, hash, source });
    }
    Ok(LoadedChain {
        chain: builder.build()?,
        modules,
        data_files,
    })
}

/// Instances each policy needs at once while a reload runs: the live
/// chain's warm instance and the new chain's, plus one check in flight.
const INSTANCES_PER_POLICY_IN_RELOAD: u64 = 3;

/// A reload builds the new chain while the old one serves, so both must fit
/// the engine's instance pool: refuse a chain that could load once but never
/// reload, with the number to configure.
fn check_pool(engine: &PolicyEngine, policies: usize, config_path: &Path) -> Result<(), LoadError> {
    let Some(pool) = engine.max_instances() else {
        return Ok(());
    };
    let needed = (policies as u64).saturating_mul(INSTANCES_PER_POLICY_IN_RELOAD);
    if needed > u64::from(pool) {
        return Err(LoadError::Config {
            path: config_path.to_owned(),
            message: format!(
                "{policies} policies need room for {needed} instances during a reload, \
                 over the engine's pool of {pool}: build the engine with \
                 PolicyEngine::builder().max_instances({needed}) or more"
            ),
        });
    }
    Ok(())
}

/// The policy's config JSON with each `[policy.files]` entry's text under
/// its key. A file that cannot be read fails the load, naming it.
fn config_with_files(
    p: &PolicyConfig,
    config_path: &Path,
    read: &mut Vec<PathBuf>,
) -> Result<String, LoadError> {
    if p.files.is_empty() {
        return Ok(p.config_json());
    }
    let mut object = serde_json::Map::new();
    for (key, value) in &p.config {
        let value = serde_json::to_value(value).map_err(|e| LoadError::Config {
            path: config_path.to_owned(),
            message: format!("policy \"{}\": config key \"{key}\": {e}", p.name),
        })?;
        object.insert(key.clone(), value);
    }
    for (key, file) in &p.files {
        let path = ChainConfig::module_path(config_path, file);
        let text = read_regular_text(&path, MAX_DATA_FILE_BYTES)?;
        read.push(path);
        object.insert(key.clone(), serde_json::Value::String(text));
    }
    Ok(serde_json::Value::Object(object).to_string())
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
