//! The `mqtt-policy` command line as a library: the request file format and
//! its evaluation (`check`), the long-running reloader (`watch`), and the
//! password file tool (`passwd`). The binary in `main.rs` is argument
//! parsing around these.

pub mod check;
pub mod passwd;
pub mod watch;
