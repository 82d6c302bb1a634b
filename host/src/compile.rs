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
    // Compiled on a pool of our own, whose threads end shortly after this
    // call: wasmtime would use rayon's global pool, whose threads live as
    // long as the process and would make a single-threaded broker pay for
    // sharing its descriptor table (see `epoch.rs`).
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("mqtt-policy-compile-{i}"))
        .build()
        .map_err(|e| {
            LoadError::Engine(format!(
                "policy \"{policy}\": cannot start threads to compile {origin}: {e}"
            ))
        })?;
    pool.install(|| Component::new(engine.wasmtime(), bytes))
        .map_err(|e| LoadError::NotAComponent {
            policy: policy.to_owned(),
            module: origin.to_owned(),
            message: not_a_component(bytes, &e),
        })
}

/// Why `bytes` did not compile, in one line: what the file is, or the
/// compiler's first line (wasmparser's messages can carry multi-line byte
/// dumps).
fn not_a_component(bytes: &[u8], e: &wasmtime::Error) -> String {
    const MAGIC: &[u8] = b"\0asm";
    if !bytes.starts_with(MAGIC) {
        return format!(
            "no WebAssembly header (a {} byte file that does not start with \"\\0asm\")",
            bytes.len()
        );
    }
    // Bytes 4..8: version 1, layer 0 is a core module; a component has layer 1.
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return "a core WebAssembly module, not a component: build the policy for wasm32-wasip2 \
                (cargo build --target wasm32-wasip2)"
            .to_owned();
    }
    let text = format!("{e:#}");
    let first = text.lines().next().unwrap_or_default();
    first.trim_end_matches([' ', '=', '[', ':']).to_owned()
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
