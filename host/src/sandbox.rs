//! The sandbox: the one list of what a policy may import, and the bounds on
//! everything a policy can make the host do.
//!
//! A policy may call exactly the functions in [`OFFERED`]:
//!
//! - `mqtt:policy/host`: `log` and `now-unix-ms` (linked by [`crate::wit`]);
//! - `wasi:random/random`, `wasi:random/insecure`: random `u64`s, and random
//!   bytes at most [`MAX_RANDOM_BYTES`] per call (more traps);
//! - `wasi:random/insecure-seed`: a seed for hash maps;
//! - `wasi:clocks/wall-clock`, `wasi:clocks/monotonic-clock`: `now` and
//!   `resolution` (no `subscribe-*`: nothing may wait);
//! - `wasi:cli/environment`: no variables, no arguments, no working directory;
//! - `wasi:cli/exit`: traps, reported as the policy having exited.
//!
//! These are the WASI functions Rust's `wasm32-wasip2` standard library needs
//! to run a policy; the host implements them itself, none of them blocks,
//! enters an async runtime or creates a resource. Every other `wasi:` function
//! a component imports (stdio, streams, poll, filesystem, sockets, name
//! lookup, terminals, HTTP, …) is linked, per component at load time, as a
//! function that traps naming the import and why, and every WASI resource as
//! a host resource that is never created. An import outside `wasi:` and the
//! `mqtt:policy` contract fails the load.
//!
//! Bounds on host work a policy can cause, besides the deadline and the
//! memory cap (`limits.rs`): [`HOSTCALL_FUEL_BYTES`] on the data lifted from
//! the policy in one host call or one returned verdict, [`MAX_RANDOM_BYTES`]
//! per random call, [`MAX_COMPONENT_HANDLES`] live resource handles per
//! instance, and the table-growth cap in `limits.rs`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentType, Linker, LinkerInstance, Lower, ResourceType};
use wasmtime::{Engine, StoreContextMut};

use crate::error::PolicyError;
use crate::state::StoreState;

/// Every function a policy may import, by interface (without version).
/// WASI interfaces are matched at any `0.2.x` version.
pub(crate) const OFFERED: &[(&str, &[&str])] = &[
    ("mqtt:policy/host", &["log", "now-unix-ms"]),
    (
        "wasi:random/random",
        &["get-random-bytes", "get-random-u64"],
    ),
    (
        "wasi:random/insecure",
        &["get-insecure-random-bytes", "get-insecure-random-u64"],
    ),
    ("wasi:random/insecure-seed", &["insecure-seed"]),
    ("wasi:clocks/wall-clock", &["now", "resolution"]),
    ("wasi:clocks/monotonic-clock", &["now", "resolution"]),
    (
        "wasi:cli/environment",
        &["get-environment", "get-arguments", "initial-cwd"],
    ),
    ("wasi:cli/exit", &["exit", "exit-with-code"]),
];

/// Most random bytes one call may ask for: far more than keys or nonces
/// need, small enough that filling it is negligible next to a deadline.
pub const MAX_RANDOM_BYTES: usize = 4096;

/// Most bytes (strings, lists) the host lifts from a policy in one host call
/// or one returned verdict. Above the largest legal result (a grant is at
/// most 64 KiB in 256 entries; deny messages and log lines are cut to a few
/// hundred characters) and far below wasmtime's default of 128 MiB, which a
/// policy reaches cheaply by aliasing one large string many times.
pub const HOSTCALL_FUEL_BYTES: usize = 1 << 20;

/// Most live component-model resource handles in one instance's store. The
/// host creates none; this bounds what a policy's own resources can pin.
pub const MAX_COMPONENT_HANDLES: usize = 1024;

/// Why the sandbox stopped a call: carried through wasmtime as the error of a
/// trapping host function, and turned into a [`PolicyError`] by `classify`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Stopped {
    #[error("policies may not call {import}: {reason}")]
    Forbidden {
        import: String,
        reason: &'static str,
    },
    #[error("the policy exited with status {0}")]
    Exit(i32),
    #[error(
        "the policy asked for {0} random bytes in one call, over the limit of {MAX_RANDOM_BYTES}"
    )]
    Random(u64),
    #[error("the policy verified more than {0} signatures in one check")]
    Signatures(u32),
}

impl Stopped {
    pub(crate) fn to_policy_error(&self) -> PolicyError {
        match self {
            Stopped::Forbidden { import, reason } => PolicyError::Forbidden {
                import: import.clone(),
                reason: (*reason).to_owned(),
            },
            Stopped::Exit(status) => PolicyError::Exited(*status),
            Stopped::Random(requested) => PolicyError::RandomTooLarge {
                requested: *requested,
                limit: MAX_RANDOM_BYTES,
            },
            Stopped::Signatures(limit) => PolicyError::TooManySignatures(*limit),
        }
    }
}

/// wasmtime's error when hostcall fuel runs out has no public type; its
/// message is the only way to recognise it.
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Whether `e` is wasmtime running out of hostcall fuel.
pub(crate) fn is_fuel_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| c.to_string().contains(FUEL_EXHAUSTED))
}

/// The base linker with every component's WASI imports added: offered
/// functions implemented, everything else trapping. Loading is not the hot
/// path, so each component gets its own copy.
pub(crate) fn linker_for(
    base: &Linker<StoreState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = base.clone();
    for (name, import) in component.component_type().imports(engine) {
        // Only WASI is stubbed: anything else the host does not provide must
        // fail the load (instantiate_pre names it), not trap later.
        if !name.starts_with("wasi:") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let interface = unversioned(name);
        let stable = version(name).is_some_and(|v| v.starts_with("0.2."));
        let mut target = linker.instance(name)?;
        for (item, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let offered = stable && offers(interface, item);
                    if !(offered && define(&mut target, interface, item)?) {
                        forbid(&mut target, name, item)?;
                    }
                }
                ComponentItem::Resource(_) => {
                    target.resource(item, ResourceType::host::<NeverCreated>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(linker)
}

/// The type of every WASI resource a policy can name: the host never creates
/// one, so no handle of it ever exists.
enum NeverCreated {}

fn unversioned(name: &str) -> &str {
    name.split_once('@')
        .map_or(name, |(interface, _)| interface)
}

fn version(name: &str) -> Option<&str> {
    name.split_once('@').map(|(_, version)| version)
}

fn offers(interface: &str, function: &str) -> bool {
    OFFERED
        .iter()
        .any(|(i, functions)| *i == interface && functions.contains(&function))
}

/// Why a policy may not use an interface, for the trap message.
fn reason(interface: &str) -> &'static str {
    let family = interface
        .split_once('/')
        .map_or(interface, |(package, _)| package);
    match family {
        "wasi:sockets" | "wasi:http" => "no network",
        "wasi:filesystem" => "no filesystem",
        "wasi:clocks" | "wasi:io" => {
            "no waiting or streams (the deadline cannot interrupt the host)"
        }
        "wasi:cli" if interface.ends_with("/environment") || interface.ends_with("/exit") => {
            "not offered to policies"
        }
        "wasi:cli" => "no stdio (a print or a panic message; log through mqtt:policy/host)",
        _ => "not offered to policies",
    }
}

fn forbid(
    instance: &mut LinkerInstance<'_, StoreState>,
    import: &str,
    function: &str,
) -> wasmtime::Result<()> {
    let reason = reason(unversioned(import));
    let import = format!("{import}#{function}");
    instance.func_new(function, move |_, _, _, _| {
        Err(Stopped::Forbidden {
            import: import.clone(),
            reason,
        }
        .into())
    })
}

/// `wasi:clocks/wall-clock`'s `datetime`.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

type Ctx<'a> = StoreContextMut<'a, StoreState>;

/// Define an offered WASI function; false if `OFFERED` names one this does
/// not implement (a unit test keeps the two in step).
fn define(
    instance: &mut LinkerInstance<'_, StoreState>,
    interface: &str,
    function: &str,
) -> wasmtime::Result<bool> {
    match (interface, function) {
        ("wasi:random/random", "get-random-bytes")
        | ("wasi:random/insecure", "get-insecure-random-bytes") => instance
            .func_wrap(function, |_: Ctx<'_>, (len,): (u64,)| {
                Ok((random_bytes(len)?,))
            })?,
        ("wasi:random/random", "get-random-u64")
        | ("wasi:random/insecure", "get-insecure-random-u64") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| Ok((random_u64()?,)))?
        }
        ("wasi:random/insecure-seed", "insecure-seed") => instance
            .func_wrap(function, |_: Ctx<'_>, (): ()| {
                Ok(((random_u64()?, random_u64()?),))
            })?,
        ("wasi:clocks/wall-clock", "now") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Ok((Datetime {
                    seconds: now.as_secs(),
                    nanoseconds: now.subsec_nanos(),
                },))
            })?
        }
        ("wasi:clocks/wall-clock", "resolution") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| {
                Ok((Datetime {
                    seconds: 0,
                    nanoseconds: 1,
                },))
            })?
        }
        ("wasi:clocks/monotonic-clock", "now") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| Ok((monotonic_ns(),)))?
        }
        ("wasi:clocks/monotonic-clock", "resolution") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| Ok((1u64,)))?
        }
        ("wasi:cli/environment", "get-environment") => instance
            .func_wrap(function, |_: Ctx<'_>, (): ()| {
                Ok((Vec::<(String, String)>::new(),))
            })?,
        ("wasi:cli/environment", "get-arguments") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| Ok((Vec::<String>::new(),)))?
        }
        ("wasi:cli/environment", "initial-cwd") => {
            instance.func_wrap(function, |_: Ctx<'_>, (): ()| Ok((None::<String>,)))?
        }
        ("wasi:cli/exit", "exit") => instance.func_wrap(
            function,
            |_: Ctx<'_>, (status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
                Err(Stopped::Exit(if status.is_ok() { 0 } else { 1 }).into())
            },
        )?,
        ("wasi:cli/exit", "exit-with-code") => instance.func_wrap(
            function,
            |_: Ctx<'_>, (code,): (u8,)| -> wasmtime::Result<()> {
                Err(Stopped::Exit(i32::from(code)).into())
            },
        )?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn random_bytes(len: u64) -> wasmtime::Result<Vec<u8>> {
    let n = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_RANDOM_BYTES)
        .ok_or(Stopped::Random(len))?;
    let mut bytes = vec![0; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| wasmtime::format_err!("the host's random source failed: {e}"))?;
    Ok(bytes)
}

fn random_u64() -> wasmtime::Result<u64> {
    getrandom::u64().map_err(|e| wasmtime::format_err!("the host's random source failed: {e}"))
}

/// Nanoseconds on a monotonic clock whose origin is the first reading.
fn monotonic_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = ORIGIN.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_wasi_function_is_implemented() -> wasmtime::Result<()> {
        let engine = Engine::default();
        let mut linker = Linker::<StoreState>::new(&engine);
        for (interface, functions) in OFFERED {
            if !interface.starts_with("wasi:") {
                continue;
            }
            let mut instance = linker.instance(&format!("{interface}@0.2.0"))?;
            for function in *functions {
                assert!(
                    define(&mut instance, interface, function)?,
                    "{interface}#{function} is offered but not implemented"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn random_requests_are_bounded() {
        assert!(matches!(random_bytes(0), Ok(b) if b.is_empty()));
        assert!(
            matches!(random_bytes(MAX_RANDOM_BYTES as u64), Ok(b) if b.len() == MAX_RANDOM_BYTES)
        );
        let err = random_bytes(64 << 20).err();
        assert!(
            err.as_ref()
                .and_then(|e| e.downcast_ref::<Stopped>())
                .is_some_and(|s| matches!(s, Stopped::Random(n) if *n == 64 << 20)),
            "{err:?}"
        );
    }

    #[test]
    fn reasons_name_the_missing_capability() {
        assert_eq!(reason("wasi:sockets/udp"), "no network");
        assert_eq!(reason("wasi:filesystem/preopens"), "no filesystem");
        assert!(reason("wasi:cli/stdout").starts_with("no stdio"));
        assert!(reason("wasi:io/poll").starts_with("no waiting"));
        assert_eq!(unversioned("wasi:io/poll@0.2.6"), "wasi:io/poll");
        assert_eq!(version("wasi:io/poll@0.2.6"), Some("0.2.6"));
    }
}
