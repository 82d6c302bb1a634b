//! The thread that advances the engine's epoch, which is what turns a
//! policy's deadline into a trap.
//!
//! It runs for the engine's whole life, so it is kept from costing the
//! process that embeds us anything beyond its own wakeups. On Linux a
//! process whose threads share one descriptor table pays for a file
//! reference on every socket call (the kernel's `fdget` takes the cheap path
//! only when the table has one user), and a single-threaded broker such as
//! Mosquitto makes such calls for every packet. The ticker never touches a
//! descriptor, so it gives itself a private, empty table at start and the
//! broker's threads keep theirs to themselves (where the kernel lets it:
//! a seccomp profile may refuse `unshare`, which is then logged and
//! otherwise harmless).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running ticker; dropping it stops and joins the thread.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Start advancing `engine`'s epoch every `tick`.
    pub(crate) fn start(engine: wasmtime::Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mqtt-policy-epoch".into())
            .spawn(move || {
                if let Err(e) = leave_descriptor_table() {
                    // Seccomp profiles (Docker's default among them) refuse
                    // unshare without CAP_SYS_ADMIN: it still works, only
                    // the broker's socket calls cost a little more.
                    tracing::info!(
                        target: "mqtt_policy::engine",
                        "epoch thread keeps the shared descriptor table: {e}"
                    );
                }
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Give the calling thread a descriptor table of its own and empty it, so
/// the process's other threads stop sharing theirs with it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn leave_descriptor_table() -> std::io::Result<()> {
    use std::io::Error;
    // SAFETY: unshare(CLONE_FILES) replaces only this thread's descriptor
    // table, with a copy; no other thread's table or descriptors change.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(Error::last_os_error());
    }
    // The copy holds a reference to every file the process had open (client
    // sockets among them): they must all go, or a socket the broker closes
    // would stay open through this thread.
    // SAFETY: the table is this thread's alone now, and nothing on this
    // thread owns or uses a descriptor, so closing every entry affects no
    // `OwnedFd` anywhere.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    if closed != 0 {
        // Kernels before 5.9 have no close_range: close one by one.
        // SAFETY: as above; `sysconf` only reads a limit.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
        let max = i32::try_from(max).unwrap_or(i32::MAX).max(1024);
        for fd in 0..max {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn leave_descriptor_table() -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The ticker's thread has an empty descriptor table while the test's
    /// files stay open for everyone else.
    #[test]
    fn the_ticker_holds_no_descriptors() {
        let engine = wasmtime::Engine::default();
        let file = tempfile::tempfile().expect("temp file");
        let ticker = Ticker::start(engine.clone(), Duration::from_millis(1)).expect("start");
        // `comm` holds the first 15 bytes of the thread's name.
        let mut tid = None;
        for _ in 0..1000 {
            tid = std::fs::read_dir("/proc/self/task")
                .expect("tasks")
                .filter_map(Result::ok)
                .find(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "mqtt-policy-epo")
                })
                .map(|t| t.path());
            if tid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let tid = tid.expect("the epoch thread is running");
        let mut open = usize::MAX;
        for _ in 0..1000 {
            open = std::fs::read_dir(tid.join("fd")).map_or(usize::MAX, |d| d.count());
            if open == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(open, 0, "the epoch thread still holds descriptors");
        // Ours are untouched.
        assert!(file.metadata().is_ok());
        drop(ticker);
    }
}
