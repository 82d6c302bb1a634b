//! Policy module bytes → a compiled, type-checked, pre-instantiated policy.
//!
//! Every check that can be done before the first client arrives is done here:
//! the bytes must be a component, its imports must be satisfiable by the host
//! (the `host` interface and the locked-down WASI), and its exports must match
//! the `policy` world.

use std::path::Path;

use wasmtime::component::Component;

use crate::bindings::PolicyPre;
use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::state::StoreState;

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
) -> Result<PolicyPre<StoreState>, LoadError> {
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        policy: policy.to_owned(),
        module: origin.to_owned(),
        message: format!("{e:#}"),
    };
    let instance_pre = engine
        .linker()
        .instantiate_pre(component)
        .map_err(wrong_world)?;
    PolicyPre::new(instance_pre).map_err(wrong_world)
}
