//! Usernames and passwords with files written by the real tools: a
//! `password_file` made by Debian's `mosquitto_passwd` and an `acl_file` in
//! Mosquitto's syntax, both named in the chain file (`[policy.files]`) and
//! read by the host, through the session API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mqtt_policy_host::ProtocolVersion::{V3_1_1, V5};
use mqtt_policy_host::{ConnectRequest, PolicyHost, ProtocolVersion, Session};
use mqtt_policy_tests::{guests, toml_str, write_chain};

fn mosquitto_passwd(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("mosquitto_passwd")
        .args(args)
        .status()
        .context("cannot run mosquitto_passwd (apt-get install mosquitto)")?;
    if !status.success() {
        bail!("mosquitto_passwd {args:?} failed: {status}");
    }
    Ok(())
}

const ACL: &str = "\
# Mosquitto acl_file syntax, unchanged.
# (topic lines before any user line are for clients without a username)
topic read public/#

user alice
topic readwrite alice/#
topic read shared/+/status
topic deny shared/secret/status

user bob
topic write bob/out

pattern write devices/%u/telemetry
pattern read clients/%c/inbox
";

fn chain_toml() -> String {
    format!(
        r#"
[[policy]]
name = "passwords"
module = {password}
deadline_ms = 250
[policy.files]
password_file = "passwd"

[[policy]]
name = "topics"
module = {topics}
[policy.files]
acl_file = "acl"
"#,
        password = toml_str(guests::PASSWORD),
        topics = toml_str(guests::TOPIC_LIST),
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    passwd: std::path::PathBuf,
    host: PolicyHost,
}

fn fixture() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let passwd = dir.path().join("passwd");
    let file = passwd.to_string_lossy().into_owned();
    mosquitto_passwd(&["-c", "-b", &file, "alice", "alice-secret"])?;
    mosquitto_passwd(&["-b", &file, "bob", "bob secret with spaces"])?;
    std::fs::write(dir.path().join("acl"), ACL)?;
    let chain = write_chain(dir.path(), &chain_toml())?;
    let host = PolicyHost::builder(&chain)
        .engine(crate::engine().clone())
        .build()?;
    Ok(Fixture {
        _dir: dir,
        passwd,
        host,
    })
}

fn login(
    host: &PolicyHost,
    user: &str,
    password: &str,
    version: ProtocolVersion,
) -> Result<Session, u8> {
    host.connect(
        ConnectRequest::new(format!("{user}-client"))
            .username(user)
            .password(password)
            .protocol_version(version),
    )
    .map_err(|refused| refused.connack)
}

#[test]
fn a_mosquitto_passwd_file_verifies_with_the_right_codes() -> anyhow::Result<()> {
    let f = fixture()?;
    for (v, bad_password, unknown) in [(V3_1_1, 4, 5), (V5, 0x86, 0x87)] {
        let alice = login(&f.host, "alice", "alice-secret", v);
        let session = alice.map_err(|code| anyhow::anyhow!("{v}: alice refused with {code}"))?;
        assert_eq!(session.connect_decision().decider(), Some("passwords"));
        assert_eq!(session.grant().attribute("username"), Some("alice"));
        assert!(login(&f.host, "bob", "bob secret with spaces", v).is_ok());
        assert_eq!(
            login(&f.host, "alice", "wrong", v).err(),
            Some(bad_password),
            "{v}: wrong password"
        );
        // Unknown users defer; nothing else in this chain allows them.
        assert_eq!(
            login(&f.host, "mallory", "x", v).err(),
            Some(unknown),
            "{v}"
        );
    }
    Ok(())
}

#[test]
fn an_acl_file_gives_mosquittos_verdicts_and_refuses_wide_subscriptions() -> anyhow::Result<()> {
    let f = fixture()?;
    let alice = login(&f.host, "alice", "alice-secret", V5)
        .map_err(|code| anyhow::anyhow!("refused with {code}"))?;
    // Publish needs write (readwrite counts).
    assert!(alice.publish("alice/notes", 1, false).allowed());
    assert!(!alice.publish("bob/out", 1, false).allowed());
    // `pattern write devices/%u/telemetry`, %u the verified username.
    assert!(alice.publish("devices/alice/telemetry", 0, false).allowed());
    assert!(!alice.publish("devices/bob/telemetry", 0, false).allowed());
    // Receive needs read; an explicit deny wins over a wider read.
    assert!(alice.receive("shared/kitchen/status", 0, false).allowed());
    assert!(!alice.receive("shared/secret/status", 0, false).allowed());
    // `pattern read clients/%c/inbox`, %c the client id.
    assert!(
        alice
            .receive("clients/alice-client/inbox", 1, true)
            .allowed()
    );
    assert!(!alice.receive("clients/bob-client/inbox", 1, true).allowed());
    // The anonymous section is not alice's.
    assert!(!alice.receive("public/news", 0, false).allowed());
    // SUBSCRIBE: Mosquitto grants every filter and filters at delivery; here
    // a filter wider than what `read` allows is refused at SUBACK, per filter.
    let sub = alice.subscribe([
        ("shared/+/status", 1),
        ("shared/#", 1),
        ("alice/#", 2),
        ("#", 0),
    ]);
    let codes: Vec<_> = sub.iter().map(|a| a.reply).collect();
    use mqtt_policy_host::Reply::Code;
    assert_eq!(codes, [Code(1), Code(0x87), Code(2), Code(0x87)]);
    let bob = login(&f.host, "bob", "bob secret with spaces", V3_1_1)
        .map_err(|code| anyhow::anyhow!("refused with {code}"))?;
    assert!(bob.publish("bob/out", 0, false).allowed());
    assert!(
        !bob.receive("bob/out", 0, false).allowed(),
        "write is not read"
    );
    assert_eq!(bob.subscribe([("bob/out", 0)])[0].reply, Code(0x80));
    Ok(())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..200 {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("timed out waiting for {what}")
}

#[test]
fn a_password_file_edited_on_disk_changes_the_next_connect() -> anyhow::Result<()> {
    let f = fixture()?;
    let _watcher = f.host.watch(Duration::from_millis(50))?;
    assert!(login(&f.host, "alice", "alice-secret", V5).is_ok());
    // The operator changes alice's password with the real tool.
    let file = f.passwd.to_string_lossy().into_owned();
    mosquitto_passwd(&["-b", &file, "alice", "rotated-secret"])?;
    wait_for("the new password file to load", || {
        login(&f.host, "alice", "rotated-secret", V5).is_ok()
    })?;
    assert_eq!(
        login(&f.host, "alice", "alice-secret", V5).err(),
        Some(0x86),
        "the old password is refused once the file changed"
    );
    assert!(f.host.generation() >= 1);

    // A broken file fails the reload and keeps the running chain.
    let generation = f.host.generation();
    std::fs::write(&f.passwd, "alice:not-a-hash\n")?;
    wait_for("the failed reload", || f.host.status().failures > 0)?;
    assert_eq!(f.host.generation(), generation);
    let error = f.host.status().last_error.unwrap_or_default();
    assert!(error.contains("passwords"), "{error}");
    assert!(
        !error.contains("not-a-hash"),
        "errors never quote a hash: {error}"
    );
    assert!(login(&f.host, "alice", "rotated-secret", V5).is_ok());
    Ok(())
}

#[test]
fn data_files_must_be_regular_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let chain = write_chain(
        dir.path(),
        &format!(
            "[[policy]]\nname = \"p\"\nmodule = {}\n[policy.files]\npassword_file = \"/dev/zero\"\n",
            toml_str(guests::PASSWORD)
        ),
    )?;
    let err = PolicyHost::builder(&chain)
        .engine(crate::engine().clone())
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file"),
        "{err}"
    );
    let both = write_chain(
        dir.path(),
        &format!(
            "[[policy]]\nname = \"p\"\nmodule = {}\n[policy.files]\npassword_file = \"x\"\n[policy.config]\npassword_file = \"y\"\n",
            toml_str(guests::PASSWORD)
        ),
    )?;
    let err = PolicyHost::builder(&both)
        .engine(crate::engine().clone())
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("both"), "{err}");
    assert!(Path::new(&dir.path().join("chain.toml")).exists());
    Ok(())
}
