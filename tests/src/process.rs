//! Real clients and brokers run as child processes by the end-to-end tests:
//! output lines collected from stdout and stderr, every wait bounded, the
//! process killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A child process killed when dropped, its output lines collected.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, stdout and stderr interleaved.
    pub seen: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Start `cmd` with no standard input and its output piped to us.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {cmd:?} (scripts/test.sh installs it)"))?;
        let (tx, rx) = mpsc::channel();
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in streams.into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// Wait until a line satisfies `pred` (bounded); lines seen before count.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        self.wait_for_new(timeout, pred)
    }

    /// Wait until a line not seen yet satisfies `pred` (bounded).
    pub fn wait_for_new(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Wait for the process to end (bounded; killed after), collect output.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    break None;
                }
            }
        };
        // Drain what the reader threads still hold.
        let end = Instant::now() + Duration::from_millis(300);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        (code, std::mem::take(&mut self.seen))
    }
}

/// Run a command to completion (bounded) and return (exit code, lines).
pub fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(Option<i32>, Vec<String>)> {
    Ok(Proc::spawn(cmd)?.finish(timeout))
}
