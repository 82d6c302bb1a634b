//! Module bytes → a compiled component checked against a contract version.
//!
//! The bytes must be a component, its imports must be satisfiable by the
//! host (the `host` interface and the locked-down WASI) and its exports must
//! match the `policy` world of a version the host knows (`wit/`).

use std::path::Path;

use wasmtime::component::Component;

use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::wit::PolicyPre;

/// Largest module file accepted.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Read a module file (a regular file of at most [`MAX_MODULE_BYTES`]),
/// with errors naming the file.
pub fn read_module(path: &Path) -> Result<Vec<u8>, LoadError> {
    crate::files::read_regular(path, MAX_MODULE_BYTES as u64)
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
    engine
        .linker_for(component)
        .and_then(|linker| PolicyPre::new(&linker, component))
        .map_err(|e| LoadError::WrongWorld {
            policy: policy.to_owned(),
            module: origin.to_owned(),
            message: format!("{e:#}"),
        })
}
