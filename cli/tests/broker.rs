//! `mqtt-policy broker` as an operator runs it: a process with a config file,
//! reloaded by SIGHUP (with the file watcher off, so only the signal can
//! reload), stopped cleanly by SIGTERM. Driven by `mosquitto_pub`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mqtt_policy_tests::process::Proc;
use mqtt_policy_tests::{guests, toml_str};

const T: Duration = Duration::from_secs(20);

fn chain(dir: &Path, publish: &str) -> anyhow::Result<()> {
    let text = format!(
        r#"
default = "allow"
[[policy]]
name = "topics"
module = {m}
[policy.config]
otherwise = "deny"
[[policy.config.rules]]
publish = [{p}]
"#,
        m = toml_str(guests::TOPIC_LIST),
        p = toml_str(publish),
    );
    std::fs::write(dir.join("chain.toml"), text)?;
    Ok(())
}

/// The broker process (killed on drop if a test fails before SIGTERM).
struct BrokerProc {
    proc: Proc,
}

impl BrokerProc {
    fn start(dir: &Path) -> anyhow::Result<BrokerProc> {
        let config = format!(
            r#"
chain = "chain.toml"
cache_dir = {cache}
watch = false
[[listener]]
name = "tcp"
transport = "tcp"
address = "127.0.0.1:0"
"#,
            cache = toml_str(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-broker-cache")),
        );
        std::fs::write(dir.join("broker.toml"), config)?;
        let proc = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_mqtt-policy"))
                .args(["broker", "--config"])
                .arg(dir.join("broker.toml"))
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1"),
        )?;
        Ok(BrokerProc { proc })
    }

    fn port(&mut self) -> anyhow::Result<u16> {
        let line = self
            .proc
            .wait_for(T, |l| l.contains("listening") && l.contains("address="))
            .with_context(|| format!("no listening line: {:#?}", self.proc.seen))?;
        let address = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .context("address field")?;
        let port = address
            .rsplit(':')
            .next()
            .context("port")?
            .trim_matches(|c: char| !c.is_ascii_digit());
        Ok(port.parse()?)
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.proc.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name}");
        Ok(())
    }
}

/// PUBACK reason code of one MQTT 5 QoS 1 publish (`None`: no PUBACK).
fn publish(port: u16, topic: &str) -> anyhow::Result<Option<u32>> {
    let out = Command::new("mosquitto_pub")
        .args(["-d", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-V", "mqttv5", "-q", "1", "-t", topic, "-m", "x"])
        .stdin(Stdio::null())
        .output()
        .context("mosquitto_pub (Debian mosquitto-clients)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().find_map(|l| {
        let rest = l.split_once("received PUBACK")?.1;
        let rc = rest.split_once("RC:")?.1;
        rc.trim_end_matches(')').parse().ok()
    }))
}

#[test]
fn sighup_reloads_the_chain_and_sigterm_stops_the_broker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    chain(dir.path(), "a/#")?;
    let mut broker = BrokerProc::start(dir.path())?;
    let port = broker.port()?;

    assert_eq!(publish(port, "a/x")?, Some(0), "{:#?}", broker.proc.seen);
    assert_eq!(publish(port, "b/x")?, Some(0x87));

    // The watcher is off: only SIGHUP makes the edit take effect.
    chain(dir.path(), "b/#")?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        publish(port, "b/x")?,
        Some(0x87),
        "no reload without SIGHUP"
    );
    broker.signal("HUP")?;
    let deadline = Instant::now() + T;
    while publish(port, "b/x")? != Some(0) {
        anyhow::ensure!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(publish(port, "a/x")?, Some(0x87));

    // A broken chain on SIGHUP keeps the one that runs.
    std::fs::write(dir.path().join("chain.toml"), "not toml [")?;
    broker.signal("HUP")?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(publish(port, "b/x")?, Some(0));

    broker.signal("TERM")?;
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = broker.proc.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "SIGTERM did not stop the broker");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}: {:#?}", broker.proc.seen);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after SIGTERM"
    );
    Ok(())
}
