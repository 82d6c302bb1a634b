//! Imports called the way no safe binding would: WASI functions Rust's std
//! does not expose, and the host's `log` with aliased arguments. Each is an
//! attack on a host bound (see the host's `sandbox.rs`).

/// `wasi:random` and `wasi:clocks` functions std never calls with a size or a
/// count of the caller's choosing, declared as in WASI 0.2 (the component
/// linker merges them with std's newer 0.2.x declarations).
mod wasi {
    wit_bindgen::generate!({
        inline: r#"
            package misbehave:raw;

            world raw {
                import wasi:random/random@0.2.3;
                import wasi:clocks/monotonic-clock@0.2.3;
            }

            package wasi:io@0.2.3 {
                interface poll {
                    resource pollable;
                }
            }

            package wasi:random@0.2.3 {
                interface random {
                    get-random-bytes: func(len: u64) -> list<u8>;
                }
            }

            package wasi:clocks@0.2.3 {
                interface monotonic-clock {
                    use wasi:io/poll@0.2.3.{pollable};
                    type duration = u64;
                    subscribe-duration: func(when: duration) -> pollable;
                }
            }
        "#,
        generate_all,
    });
}

/// Ask the host for `len` random bytes in one call.
pub fn random_bytes(len: u64) -> usize {
    wasi::wasi::random::random::get_random_bytes(len).len()
}

/// Create `count` pollables and keep them all: without a bound, each is an
/// entry in a host table that outlives the check.
pub fn leak_pollables(count: usize) -> usize {
    let held: Vec<_> = (0..count)
        .map(|_| wasi::wasi::clocks::monotonic_clock::subscribe_duration(1))
        .collect();
    let n = held.len();
    std::mem::forget(held);
    n
}

/// The raw canonical-ABI signature of `mqtt:policy/host.log`. Declaring it
/// again (the SDK's binding declares the same import) lets the fields list
/// point many times at the same bytes, which no safe binding can build.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod host {
    #[link(wasm_import_module = "mqtt:policy/host@0.2.0")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn log(
            level: i32,
            message: *const u8,
            message_len: usize,
            fields: *const u8,
            fields_len: usize,
        );
    }

    /// One log call whose `count` fields each point at all of `value`: a few
    /// MiB of guest memory that lift to `count` copies of it on the host.
    pub fn log_aliased(value: &str, count: usize) {
        // tuple<string, string> is (key ptr, key len, value ptr, value len).
        let ptr = value.as_ptr() as usize;
        let fields = vec![[ptr, value.len().min(1), ptr, value.len()]; count];
        let message = "aliased";
        // SAFETY: every pointer/length pair is within `value`, `message` or
        // `fields`, all alive for the call; the host only reads them.
        unsafe {
            log(
                2, // level::info
                message.as_ptr(),
                message.len(),
                fields.as_ptr().cast(),
                fields.len(),
            )
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub use host::log_aliased;

/// Natively (the workspace's own build of this crate) there is no host.
#[cfg(not(target_arch = "wasm32"))]
pub fn log_aliased(_value: &str, _count: usize) {}
