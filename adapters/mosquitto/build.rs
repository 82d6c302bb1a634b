//! Link flags of the plugin.
//!
//! `-z nodelete`: Mosquitto `dlclose`s plugins at shutdown (`LIB_CLOSE` in
//! `security__module_cleanup_single`), but the policy host keeps threads
//! (instance replacement, the wasm engine's deadline ticker) whose code must
//! not be unmapped under them; a non-deletable object stays mapped until the
//! process exits.
//!
//! Undefined symbols (`mosquitto_*`, `i2d_X509`, `X509_free`) are left to the
//! dynamic loader: they resolve from the `mosquitto` process that loads the
//! plugin. GNU ld allows undefined symbols in shared objects unless told
//! otherwise (`-z defs`), and rustc does not tell it otherwise for a cdylib.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
