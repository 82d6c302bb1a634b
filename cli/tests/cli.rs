//! The `mqtt-policy` binary, run as a user would: chain files, request files,
//! JSON out, exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use mqtt_policy_tests::{guests, now, self_signed, sign_jwt, toml_str, write_chain};
use serde_json::{Value, json};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mqtt_policy(args: &[&str]) -> anyhow::Result<Run> {
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-policy"))
        .args(args)
        .output()?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn check(config: &Path, request: &Path) -> anyhow::Result<Value> {
    let run = mqtt_policy(&[
        "check",
        "--config",
        &config.to_string_lossy(),
        &request.to_string_lossy(),
    ])?;
    anyhow::ensure!(run.code == 0, "exit {}: {}", run.code, run.stderr);
    Ok(serde_json::from_str(&run.stdout)?)
}

fn write(dir: &Path, name: &str, value: &Value) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(path)
}

const SECRET: &str = "cli-test-secret";

fn setup() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let device = self_signed(dir.path(), "device-1")?;
    let config = format!(
        r#"
[[policy]]
name = "certs"
module = {t}
[policy.config]
thumbprints = [{sha1}]
missing_certificate = "defer"
[[policy]]
name = "jwt"
module = {j}
[policy.config]
keys = [{{ alg = "HS256", secret = {secret} }}]
[[policy]]
name = "topics"
module = {l}
[policy.config]
[[policy.config.rules]]
publish = ["devices/{{attr:cert_cn}}/telemetry"]
"#,
        t = toml_str(guests::THUMBPRINT),
        j = toml_str(guests::JWT),
        l = toml_str(guests::TOPIC_LIST),
        sha1 = toml_str(&device.sha1),
        secret = toml_str(SECRET),
    );
    let path = write_chain(dir.path(), &config)?;
    Ok((dir, path))
}

#[test]
fn certificate_client_is_allowed_and_its_topics_checked() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let req = write(
        dir.path(),
        "req.json",
        &json!({
            "connect": {"client_id": "device-1", "protocol_version": 5, "certificate_files": ["device-1.pem"]},
            "topics": [
                {"topic": "devices/device-1/telemetry", "access": "publish", "qos": 1},
                {"topic": "devices/device-2/telemetry", "access": "publish", "qos": 1},
                {"topic": "devices/#", "access": "subscribe", "qos": 1}
            ]
        }),
    )?;
    let r = check(&config, &req)?;
    assert_eq!(r["connect"]["verdict"], "allow");
    assert_eq!(r["connect"]["decided_by"], "certs");
    assert_eq!(r["connect"]["code"], 0);
    assert_eq!(r["connect"]["attributes"]["cert_cn"], "device-1");
    let verdicts: Vec<(&str, &Value)> = r["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| (t["verdict"].as_str().unwrap_or(""), &t["code"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        verdicts,
        vec![
            ("allow", &json!(0)),
            ("deny", &json!(0x87)),
            ("deny", &json!(0x87))
        ]
    );
    Ok(())
}

#[test]
fn jwt_client_on_mqtt_311_gets_311_codes() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let good = sign_jwt(
        "HS256",
        SECRET,
        None,
        &json!({"sub": "t1", "exp": now() + 600, "topics": ["temperature"]}),
    )?;
    let expired = sign_jwt(
        "HS256",
        SECRET,
        None,
        &json!({"sub": "t1", "exp": now() - 600}),
    )?;
    let req = write(
        dir.path(),
        "ok.json",
        &json!({
            "connect": {"client_id": "t1", "username": "JWT", "password": good},
            "topics": [
                {"topic": "temperature", "access": "publish"},
                {"topic": "humidity", "access": "publish"},
                {"topic": "temperature", "access": "subscribe", "qos": 2},
                {"topic": "#", "access": "subscribe", "qos": 2}
            ]
        }),
    )?;
    let r = check(&config, &req)?;
    assert_eq!(r["connect"]["decided_by"], "jwt");
    assert_eq!(r["connect"]["attributes"]["topics"], r#"["temperature"]"#);
    let codes: Vec<&Value> = r["topics"]
        .as_array()
        .map(|a| a.iter().map(|t| &t["code"]).collect())
        .unwrap_or_default();
    // QoS 0 publishes have no acknowledgement, allowed or not.
    assert_eq!(
        codes,
        vec![&Value::Null, &Value::Null, &json!(2), &json!(0x80)]
    );
    let replies: Vec<&Value> = r["topics"]
        .as_array()
        .map(|a| a.iter().map(|t| &t["reply"]).collect())
        .unwrap_or_default();
    assert_eq!(
        replies,
        vec![
            &json!("none"),
            &json!("none"),
            &json!("code"),
            &json!("code")
        ]
    );
    let req = write(
        dir.path(),
        "expired.json",
        &json!({
            "connect": {"client_id": "t1", "username": "JWT", "password": expired, "protocol_version": 4},
            "topics": [{"topic": "temperature", "access": "publish"}]
        }),
    )?;
    let r = check(&config, &req)?;
    assert_eq!(r["connect"]["verdict"], "deny");
    assert_eq!(r["connect"]["reason"], "bad-username-or-password");
    assert_eq!(r["connect"]["code"], 4);
    assert_eq!(r["topics"], json!([]));
    assert_eq!(r["topics_skipped"], "the connection was refused");
    Ok(())
}

#[test]
fn a_malformed_certificate_is_denied_by_the_host() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let req = write(
        dir.path(),
        "req.json",
        &json!({
            "connect": {"client_id": "x", "protocol_version": 5,
                        "certificates": ["-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n"]}
        }),
    )?;
    let r = check(&config, &req)?;
    assert_eq!(r["connect"]["verdict"], "deny");
    assert_eq!(r["connect"]["decided_by"], "(host)");
    assert_eq!(r["connect"]["code"], 0x87);
    assert!(
        r["connect"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("bad client certificate")
    );
    Ok(())
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let d = dir.path();
    std::fs::write(d.join("broken.json"), "{ not json")?;
    std::fs::write(d.join("garbage.wasm"), "garbage")?;
    let bad_chain = d.join("bad-chain.toml");
    std::fs::write(
        &bad_chain,
        "[[policy]]\nname = \"g\"\nmodule = \"garbage.wasm\"\n",
    )?;
    let missing_chain = d.join("missing-chain.toml");
    std::fs::write(
        &missing_chain,
        "[[policy]]\nname = \"m\"\nmodule = \"missing.wasm\"\n",
    )?;
    let ok_req = write(d, "ok.json", &json!({"connect": {"client_id": "a"}}))?;
    let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
        (config.clone(), d.join("absent.json"), "absent.json"),
        (
            config.clone(),
            d.join("broken.json"),
            "invalid request file",
        ),
        (
            config.clone(),
            write(
                d,
                "v9.json",
                &json!({"connect": {"client_id": "a", "protocol_version": 9}}),
            )?,
            "protocol_version",
        ),
        (
            config.clone(),
            write(
                d,
                "unknown.json",
                &json!({"connect": {"client_id": "a", "colour": "red"}}),
            )?,
            "unknown field",
        ),
        (
            config.clone(),
            write(
                d,
                "qos.json",
                &json!({"connect": {"client_id": "a"}, "topics": [{"topic": "a", "access": "publish", "qos": 3}]}),
            )?,
            "qos",
        ),
        (
            config.clone(),
            write(
                d,
                "b64.json",
                &json!({"connect": {"client_id": "a", "password_base64": "***"}}),
            )?,
            "base64",
        ),
        (
            config.clone(),
            write(
                d,
                "access.json",
                &json!({"connect": {"client_id": "a"}, "topics": [{"topic": "a", "access": "steal"}]}),
            )?,
            "unknown variant",
        ),
        (
            config.clone(),
            write(
                d,
                "nocert.json",
                &json!({"connect": {"client_id": "a", "certificate_files": ["nope.pem"]}}),
            )?,
            "nope.pem",
        ),
        (d.join("absent.toml"), ok_req.clone(), "absent.toml"),
        (bad_chain, ok_req.clone(), "not a WebAssembly component"),
        (missing_chain, ok_req, "missing.wasm"),
    ];
    for (config, request, needle) in cases {
        let run = mqtt_policy(&[
            "check",
            "--config",
            &config.to_string_lossy(),
            &request.to_string_lossy(),
        ])?;
        assert_eq!(run.code, 2, "{needle}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        // One line, nothing said twice (no byte dumps, no repeated causes).
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
        if needle.contains('.') || needle.starts_with("not a") {
            // A file is named once.
            assert_eq!(run.stderr.matches(needle).count(), 1, "{}", run.stderr);
        }
        if needle == "missing.wasm" {
            assert_eq!(
                run.stderr.matches("(os error 2)").count(),
                1,
                "{}",
                run.stderr
            );
        }
        assert!(run.stdout.is_empty());
        assert!(!run.stderr.contains("panicked"));
    }
    Ok(())
}

/// The examples the README walks through give the verdicts it documents.
#[test]
fn readme_examples_give_the_documented_verdicts() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("examples/policies.toml");
    let expect = [
        ("device-cert.json", "allow", "certs", 0),
        ("rogue-cert.json", "deny", "certs", 0x87),
        ("thermostat-jwt.json", "allow", "jwt", 0),
        ("expired-jwt.json", "deny", "jwt", 4),
        ("anonymous.json", "deny", "(default)", 0x87),
        ("password-user.json", "allow", "passwords", 0),
    ];
    for (file, verdict, decider, code) in expect {
        let r = check(&config, &root.join("examples/requests").join(file))?;
        assert_eq!(r["connect"]["verdict"], verdict, "{file}");
        assert_eq!(r["connect"]["decided_by"], decider, "{file}");
        assert_eq!(r["connect"]["code"], code, "{file}");
    }
    let r = check(&config, &root.join("examples/requests/device-cert.json"))?;
    let topics: Vec<&str> = r["topics"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["verdict"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(topics, vec!["allow", "deny", "allow", "deny"]);
    let r = check(&config, &root.join("examples/requests/password-user.json"))?;
    let codes: Vec<&Value> = r["topics"]
        .as_array()
        .map(|a| a.iter().map(|t| &t["code"]).collect())
        .unwrap_or_default();
    assert_eq!(
        codes,
        vec![&json!(0), &json!(1), &json!(0x87), &Value::Null]
    );
    Ok(())
}

/// `mqtt-policy watch` reloads on SIGHUP and on file changes, reports
/// failures without dropping the chain, and exits cleanly on SIGTERM.
#[test]
fn watch_reloads_on_sighup_and_file_changes() -> anyhow::Result<()> {
    use std::io::BufRead as _;
    use std::time::Duration;
    let (dir, config) = setup()?;
    let cache = dir.path().join("cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqtt-policy"))
        .args([
            "watch",
            "--config",
            &config.to_string_lossy(),
            "--cache-dir",
            &cache.to_string_lossy(),
            "--debounce-ms",
            "100",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = || -> anyhow::Result<Value> {
        let line = rx.recv_timeout(Duration::from_secs(30))?;
        Ok(serde_json::from_str(&line)?)
    };
    let pid = child.id().to_string();
    let signal = |sig: &str| Command::new("kill").args([sig, &pid]).status();
    let result = (|| -> anyhow::Result<()> {
        let first = next()?;
        assert_eq!(
            (first["event"].as_str(), first["generation"].as_u64()),
            (Some("loaded"), Some(0))
        );
        assert_eq!(first["compiled"], 3);
        signal("-HUP")?;
        let second = next()?;
        assert_eq!(
            (second["event"].as_str(), second["generation"].as_u64()),
            (Some("loaded"), Some(1))
        );
        assert_eq!(
            second["compiled"], 0,
            "unchanged modules are not recompiled"
        );
        std::fs::write(&config, "[[policy]\n")?;
        let failed = next()?;
        assert_eq!(failed["event"], "reload-failed");
        assert!(
            failed["error"]
                .as_str()
                .unwrap_or("")
                .contains("chain.toml"),
            "{failed}"
        );
        assert_eq!(failed["generation"], 1);
        Ok(())
    })();
    signal("-TERM")?;
    let status = child.wait()?;
    result?;
    assert!(status.success(), "{status}");
    Ok(())
}

fn passwd(args: &[&str], stdin: &str) -> anyhow::Result<Run> {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqtt-policy"))
        .arg("passwd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // The command may exit without reading (a refused username, no
        // terminal): a closed pipe is not the test's failure.
        match input.write_all(stdin.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    let out = child.wait_with_output()?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn passwd_writes_files_the_password_policy_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("passwd");
    let f = file.to_string_lossy().into_owned();
    let run = passwd(&["--create", "--stdin", &f, "alice"], "alice-secret\n")?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = passwd(
        &[
            "--stdin",
            "--format",
            "pbkdf2",
            "--iterations",
            "1000",
            &f,
            "bob",
        ],
        "bob-secret\n",
    )?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.contains("alice:$argon2id$v=19$m=19456,t=2,p=1$"),
        "{text}"
    );
    assert!(text.contains("bob:$7$1000$"), "{text}");
    assert!(!text.contains("secret"), "no plaintext in the file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o600
        );
    }
    // Updating a user replaces its line; the others stay.
    let run = passwd(&["--stdin", &f, "alice"], "alice-rotated\n")?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&file)?.lines().count(), 2);

    let chain = write_chain(
        dir.path(),
        &format!(
            "[[policy]]\nname = \"passwords\"\nmodule = {}\ndeadline_ms = 250\n[policy.files]\npassword_file = \"passwd\"\n",
            toml_str(guests::PASSWORD)
        ),
    )?;
    for (user, password, verdict, code) in [
        ("alice", "alice-rotated", "allow", 0),
        ("alice", "alice-secret", "deny", 4),
        ("bob", "bob-secret", "allow", 0),
    ] {
        let req = write(
            dir.path(),
            "req.json",
            &json!({"connect": {"client_id": "c", "username": user, "password": password}}),
        )?;
        let r = check(&chain, &req)?;
        assert_eq!(r["connect"]["verdict"], verdict, "{user}/{password}");
        assert_eq!(r["connect"]["code"], code, "{user}/{password}");
    }

    // Deleting, and what is refused.
    assert_eq!(passwd(&["-D", &f, "bob"], "")?.code, 0);
    assert_eq!(std::fs::read_to_string(&file)?.lines().count(), 1);
    let no_tty = passwd(&[&f, "carol"], "")?;
    assert_eq!(no_tty.code, 2);
    assert!(no_tty.stderr.contains("--stdin"), "{}", no_tty.stderr);
    let colon = passwd(&["--stdin", &f, "a:b"], "x\n")?;
    assert_eq!(colon.code, 2);
    assert!(colon.stderr.contains("':'"), "{}", colon.stderr);
    let missing = passwd(
        &["--stdin", &dir.path().join("nope").to_string_lossy(), "x"],
        "y\n",
    )?;
    assert!(missing.stderr.contains("--create"), "{}", missing.stderr);
    assert!(run.stdout.is_empty());
    Ok(())
}

#[test]
fn fifos_and_devices_are_refused_not_read() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let fifo = dir.path().join("request.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    let started = std::time::Instant::now();
    let run = mqtt_policy(&[
        "check",
        "--config",
        &config.to_string_lossy(),
        &fifo.to_string_lossy(),
    ])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    let chain = write_chain(
        dir.path(),
        "[[policy]]\nname = \"zero\"\nmodule = \"/dev/zero\"\n",
    )?;
    let req = write(
        dir.path(),
        "r.json",
        &json!({"connect": {"client_id": "c"}}),
    )?;
    let run = mqtt_policy(&[
        "check",
        "--config",
        &chain.to_string_lossy(),
        &req.to_string_lossy(),
    ])?;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("/dev/zero") && run.stderr.contains("not a regular file"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "nothing blocked"
    );
    Ok(())
}

/// `mqtt-policy test` on the sample chain's case file: every case passes.
#[test]
fn example_cases_pass() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = mqtt_policy(&[
        "test",
        "--no-cache",
        &root.join("examples/tests.toml").to_string_lossy(),
    ])?;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.ends_with("16 passed, 0 failed\n"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour when not a terminal"
    );
    Ok(())
}

/// A failing case exits 1 and shows expected and got per field; bad case
/// files exit 2 with a message.
#[test]
fn failing_cases_show_what_differs() -> anyhow::Result<()> {
    let (dir, config) = setup()?;
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "certificate client"
connect = { client_id = "device-1", protocol_version = 5, certificate_files = ["device-1.pem"] }
expect = { verdict = "allow", decided_by = "jwt", attributes = { cert_cn = "device-2" } }
topics = [
  { topic = "devices/device-1/telemetry", access = "publish", qos = 1, expect = { verdict = "allow", code = 0 } },
  { topic = "devices/device-2/telemetry", access = "publish", qos = 1, expect = { verdict = "allow", code = 0 } },
]

[[case]]
name = "nobody"
connect = { client_id = "x" }
expect = { verdict = "deny", decided_by = "(default)", code = { 4 = 5, 5 = 0x87 } }
topics = [{ topic = "a", access = "publish", expect = { verdict = "deny" } }]
"#,
    )?;
    let run = mqtt_policy(&[
        "test",
        "--no-cache",
        "--config",
        &config.to_string_lossy(),
        &cases.to_string_lossy(),
    ])?;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let expected = [
        "FAIL certificate client",
        "       connect.decided_by: expected \"jwt\", got \"certs\"",
        "       connect.attributes.cert_cn: expected \"device-2\", got \"device-1\"",
        "       topics[1] (publish devices/device-2/telemetry).verdict: expected allow, got deny (not-authorized, by topics: ",
        "       topics[1] (publish devices/device-2/telemetry).code: expected 0 (0x00), got 135 (0x87)",
        "FAIL nobody [MQTT 3.1.1]",
        "       topics[0] (publish a): expected deny, got no answer: the connection was refused",
        "FAIL nobody [MQTT 5]",
        "0 passed, 3 failed",
    ];
    for line in expected {
        assert!(
            run.stdout.contains(line),
            "missing {line:?} in\n{}",
            run.stdout
        );
    }
    std::fs::write(
        &cases,
        "[[case]]\nname = \"x\"\nconnect = { client_id = \"c\" }\nexpect = { verdict = \"perhaps\" }\n",
    )?;
    let run = mqtt_policy(&[
        "test",
        "--config",
        &config.to_string_lossy(),
        &cases.to_string_lossy(),
    ])?;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown variant `perhaps`"),
        "{}",
        run.stderr
    );
    std::fs::write(
        &cases,
        "[[case]]\nname = \"x\"\nconnect = { client_id = \"c\" }\nexpect = { verdict = \"deny\" }\n",
    )?;
    let run = mqtt_policy(&["test", &cases.to_string_lossy()])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("give --config"), "{}", run.stderr);
    Ok(())
}

/// A panicking policy's message and location reach the operator (through
/// the SDK's panic hook and the host log), not a "may not call" stdio trap.
#[test]
fn a_panic_says_what_happened_and_where() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let chain = write_chain(
        dir.path(),
        &format!(
            "[[policy]]\nname = \"panicky\"\nmodule = {}\n[policy.config]\nmode = \"trap\"\n",
            toml_str(guests::MISBEHAVE)
        ),
    )?;
    let req = write(
        dir.path(),
        "r.json",
        &json!({"connect": {"client_id": "c"}}),
    )?;
    let run = mqtt_policy(&[
        "check",
        "--no-cache",
        "--log",
        "error",
        "--config",
        &chain.to_string_lossy(),
        &req.to_string_lossy(),
    ])?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("trap requested"), "{all}");
    assert!(all.contains("tests/guests/misbehave/src/lib.rs:"), "{all}");
    assert!(!all.contains("may not call"), "{all}");
    let r: Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(r["connect"]["verdict"], "deny");
    assert_eq!(r["connect"]["decided_by"], "panicky");
    Ok(())
}
