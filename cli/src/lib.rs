//! The `mqtt-policy` command line as a library: the request file format and
//! its evaluation (`check`), and the long-running reloader (`watch`). The
//! binary in `main.rs` is argument parsing around these.

pub mod check;
pub mod watch;
