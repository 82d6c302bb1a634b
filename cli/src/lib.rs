//! The `mqtt-policy` command line as a library: the request file format and
//! its evaluation (`check`), table-driven chain tests (`test`), the policy
//! crate scaffold (`new`), the long-running reloader (`watch`), and the
//! password file tool (`passwd`). The binary in `main.rs` is argument
//! parsing around these.

pub mod check;
pub mod new;
pub mod passwd;
pub mod test;
pub mod watch;
