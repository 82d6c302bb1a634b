use super::*;

// Fixtures written by the real tools (Debian 12: mosquitto 2.0.11, argon2 0~20190702):
//   mosquitto_passwd -c -b pw7 alice secret
//   mosquitto_passwd -b pw7 bob 'hunter2 with spaces'
//   mosquitto_passwd -H sha512 -c -b pw6 carol secret
//   mosquitto_passwd -I 210000 -c -b pwI dave secret        (Mosquitto 2.1's default count)
const ALICE_7: &str = "alice:$7$101$UV7zaRE+yBWG0jyB$iWAh7Q/Bbn2nekP9zodtStNpw0+L080GjdD+t+6iz9naNmEpweHts7++/1zPYCFHqF4rjspVaq1trRP3vNHtrA==";
const BOB_7: &str = "bob:$7$101$FRfbubYiBHMZwbe/$Iiw8nwNZExuwna7z/llMBHG09XXF0ACyYu6FXMlyzqbhcbg+U2BtZqLxAeo5ssAaWYxHjKNcIVMce1rlVYTp7w==";
const CAROL_6: &str = "carol:$6$0DPKm36CW55P2rQ/$wcE9A8qL/BPu3OxM3qJPI25kPKMllrRJBhpOdDY6im1BFC02GGJEAKVK1IwRwDPKEnPaXL7uJB4Z1xKZ6mz1cw==";
const DAVE_7_210K: &str = "dave:$7$210000$Eeafk2ziKNNHQu3S$7CsjQsnMMUdBRloMQEC8fL2w+od833mJxuSlKxHTNhXRiBQmaqN2WFY28vuRwfzRY1mnIhujl20KS8nv8pXFFw==";

//   printf secret | argon2 salt-for-erin-1 -id -t 2 -k 19456 -p 1 -e   (OWASP's minimum: 19 MiB, t=2)
const ERIN_ARGON2ID: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdC1mb3ItZXJpbi0x$xk8ICEXSKFxUx+0SsZ2Aj7XvCAk6XzMRacwHmlPWTLM";
//   printf secret | argon2 salt-small-0001 -id -t 1 -k 1024 -p 1 -e    (cheap, for most tests)
const SMALL_ARGON2ID: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg";
//   printf '\xff\xfe\x00bin' | argon2 salt-binary-001 -id -t 1 -k 1024 -p 1 -e
const BINARY_ARGON2ID: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdC1iaW5hcnktMDAx$jkR3MfDGnS/TqG2J6tYTxJwV5/BDxZyXk3Y5Q7xqhgI";
//   printf secret | argon2 salt-v16-000001 -id -t 1 -k 1024 -p 1 -v 10 -e
const V16_ARGON2ID: &str = "$argon2id$v=16$m=1024,t=1,p=1$c2FsdC12MTYtMDAwMDAx$a6WGUml7q8m79RIsRMI2yjVKPmA28WXJxlbONzN+dRI";
//   printf secret | argon2 salt-p4-0000001 -id -t 1 -k 1024 -p 4 -l 64 -e
const P4_ARGON2ID: &str = "$argon2id$v=19$m=1024,t=1,p=4$c2FsdC1wNC0wMDAwMDAx$ieY5H5ZFC/HZQfyKLuPRxW/oH4PCJUNqlNoZhUeKO6BKfmQcq/ZXbAsZOb9drEcZVpd5NNxPOc2K3X9UBspd+Q";
//   printf secret | argon2 salt-for-big-01 -id -t 1 -k 47104 -p 1 -e   (Mosquitto 2.1's default)
const BIG_ARGON2ID: &str = "$argon2id$v=19$m=47104,t=1,p=1$c2FsdC1mb3ItYmlnLTAx$b0C4MwMvz5CSjwPX95YJRT4wU3tlEiNxIWUrSHpgIoc";
//   printf secret | argon2 salt-for-max-01 -id -t 5 -k 24576 -p 1 -e   (the most work the bounds allow)
const MAX_ARGON2ID: &str = "$argon2id$v=19$m=24576,t=5,p=1$c2FsdC1mb3ItbWF4LTAx$MaYQmVZ+Rw5Xod9Zjw4Pv8c6NuztjG3eazG/V5r/waI";
//   printf secret | argon2 salt-for-ian-01 -i -t 2 -k 19456 -p 1 -e
const IAN_ARGON2I: &str = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdC1mb3ItaWFuLTAx$egSDr/EZ+02qs8A6OpZONdqhEp9IjsEyHmZ/rOOwVLY";

fn hash_of(line: &str) -> &str {
    line.split_once(':').map_or("", |(_, h)| h)
}

fn connect(username: Option<&str>, password: Option<&[u8]>) -> ConnectRequest {
    ConnectRequest {
        client_id: "client-1".into(),
        username: username.map(Into::into),
        password: password.map(<[u8]>::to_vec),
        protocol_version: 5,
        clean_start: true,
        keep_alive: 60,
        peer_address: None,
        listener: None,
        user_properties: vec![],
        certificates: vec![],
    }
}

fn config(users: serde_json::Value, file: &str, unknown: &str) -> String {
    serde_json::json!({"users": users, "password_file": file, "unknown_user": unknown}).to_string()
}

fn is_bad_password(v: &ConnectVerdict) -> bool {
    matches!(v, ConnectVerdict::Deny(d) if d.reason == DenyReason::BadUsernameOrPassword)
}

fn attr<'a>(grant: &'a Grant, key: &str) -> Option<&'a str> {
    grant
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
}

#[test]
fn mosquitto_passwd_pbkdf2_lines_verify() -> Result<(), String> {
    let file = format!("{ALICE_7}\n{BOB_7}\n");
    let p = PasswordPolicy::new(&config(serde_json::json!([]), &file, "defer"))?;
    match p.connect_check(&connect(Some("alice"), Some(b"secret"))) {
        ConnectVerdict::Allow(g) => assert_eq!(attr(&g, "username"), Some("alice")),
        other => return Err(format!("expected allow, got {other:?}")),
    }
    assert!(matches!(
        p.connect_check(&connect(Some("bob"), Some(b"hunter2 with spaces"))),
        ConnectVerdict::Allow(_)
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("alice"), Some(b"Secret")))
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("bob"), Some(b"secret")))
    ));
    Ok(())
}

#[test]
fn mosquitto_passwd_sha512_lines_verify() -> Result<(), String> {
    // Accepted (with a warning logged at load) so old files keep working.
    let p = PasswordPolicy::new(&config(serde_json::json!([]), CAROL_6, "defer"))?;
    assert!(matches!(
        p.connect_check(&connect(Some("carol"), Some(b"secret"))),
        ConnectVerdict::Allow(_)
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("carol"), Some(b"secret ")))
    ));
    Ok(())
}

#[test]
fn argon2id_from_the_argon2_cli_verifies() -> Result<(), String> {
    let users = serde_json::json!([
        {"username": "erin", "hash": ERIN_ARGON2ID, "roles": ["operator"], "attributes": {"site": "plant-1"}},
        {"username": "v16", "hash": V16_ARGON2ID},
        {"username": "p4", "hash": P4_ARGON2ID},
    ]);
    let p = PasswordPolicy::new(&config(users, "", "defer"))?;
    match p.connect_check(&connect(Some("erin"), Some(b"secret"))) {
        ConnectVerdict::Allow(g) => {
            assert_eq!(g.roles, vec!["operator".to_string()]);
            assert_eq!(attr(&g, "site"), Some("plant-1"));
            assert_eq!(attr(&g, "username"), Some("erin"));
        }
        other => return Err(format!("expected allow, got {other:?}")),
    }
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("erin"), Some(b"secreT")))
    ));
    for user in ["v16", "p4"] {
        assert!(
            matches!(
                p.connect_check(&connect(Some(user), Some(b"secret"))),
                ConnectVerdict::Allow(_)
            ),
            "{user}"
        );
        assert!(
            is_bad_password(&p.connect_check(&connect(Some(user), Some(b"secret1")))),
            "{user}"
        );
    }
    Ok(())
}

#[test]
fn argon2id_made_by_the_argon2_crate_verifies() -> Result<(), String> {
    // The other direction: a PHC string this crate's own argon2 dependency
    // writes (as a tool built on it would) is read back.
    let params = Params::new(2048, 2, 1, Some(32)).map_err(|e| e.to_string())?;
    let salt = b"sixteen byte slt";
    let mut out = [0u8; 32];
    let blocks = vec![Block::default(); params.block_count()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(b"pa55", salt, &mut out, blocks)
        .map_err(|e| e.to_string())?;
    let phc = format!(
        "$argon2id$v=19$m=2048,t=2,p=1${}${}",
        PHC_B64.encode(salt),
        PHC_B64.encode(out)
    );
    let hash = StoredHash::parse(&phc)?;
    assert!(hash.verify(b"pa55"));
    assert!(!hash.verify(b"pa56"));
    Ok(())
}

#[test]
fn binary_and_missing_passwords_do_not_panic() -> Result<(), String> {
    let users = serde_json::json!([
        {"username": "bin", "hash": BINARY_ARGON2ID},
        {"username": "alice", "hash": hash_of(ALICE_7)},
        {"username": "carol", "hash": hash_of(CAROL_6)},
    ]);
    let p = PasswordPolicy::new(&config(users, "", "defer"))?;
    // Not UTF-8, with a NUL byte: the bytes are hashed as sent.
    assert!(matches!(
        p.connect_check(&connect(Some("bin"), Some(b"\xff\xfe\x00bin"))),
        ConnectVerdict::Allow(_)
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("bin"), Some(b"\xff\xfe")))
    ));
    for user in ["bin", "alice", "carol"] {
        assert!(is_bad_password(
            &p.connect_check(&connect(Some(user), None))
        ));
        assert!(is_bad_password(
            &p.connect_check(&connect(Some(user), Some(b"")))
        ));
        assert!(is_bad_password(
            &p.connect_check(&connect(Some(user), Some(b"\xc3\x28\x00\xff")))
        ));
    }
    Ok(())
}

#[test]
fn unknown_users_defer_or_deny() -> Result<(), String> {
    let p = PasswordPolicy::new(&config(serde_json::json!([]), ALICE_7, "defer"))?;
    assert_eq!(
        p.connect_check(&connect(Some("mallory"), Some(b"secret"))),
        ConnectVerdict::Defer
    );
    assert_eq!(
        p.connect_check(&connect(None, Some(b"secret"))),
        ConnectVerdict::Defer
    );
    // The default is defer, so `jwt` and `thumbprint` still decide their clients.
    let p = PasswordPolicy::new(&format!(r#"{{"password_file": "{ALICE_7}"}}"#))?;
    assert_eq!(
        p.connect_check(&connect(Some("JWT"), Some(b"eyJ..."))),
        ConnectVerdict::Defer
    );
    let p = PasswordPolicy::new(&config(serde_json::json!([]), ALICE_7, "deny"))?;
    // Even alice's password under another name is refused.
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("mallory"), Some(b"secret")))
    ));
    assert!(is_bad_password(&p.connect_check(&connect(None, None))));
    Ok(())
}

#[test]
fn password_file_text_is_parsed_like_mosquitto_does() -> Result<(), String> {
    let file = format!("# made by mosquitto_passwd\n\n  {ALICE_7}  \r\n{CAROL_6}\n");
    let p = PasswordPolicy::new(&config(serde_json::json!([]), &file, "defer"))?;
    assert!(matches!(
        p.connect_check(&connect(Some("alice"), Some(b"secret"))),
        ConnectVerdict::Allow(_)
    ));
    assert!(matches!(
        p.connect_check(&connect(Some("carol"), Some(b"secret"))),
        ConnectVerdict::Allow(_)
    ));
    // A line that is not user:hash names its line number.
    let err = PasswordPolicy::new(&config(
        serde_json::json!([]),
        &format!("{ALICE_7}\n\nnot a user line\n"),
        "defer",
    ))
    .err()
    .unwrap_or_default();
    assert!(err.contains("line 3"), "{err}");
    Ok(())
}

#[test]
fn users_entries_without_hash_add_roles_to_file_users() -> Result<(), String> {
    let users = serde_json::json!([{"username": "alice", "roles": ["admin"], "attributes": {"site": "hq"}}]);
    let file = format!("{ALICE_7}\n{BOB_7}\n");
    let p = PasswordPolicy::new(&config(users, &file, "defer"))?;
    match p.connect_check(&connect(Some("alice"), Some(b"secret"))) {
        ConnectVerdict::Allow(g) => {
            assert_eq!(g.roles, vec!["admin".to_string()]);
            assert_eq!(attr(&g, "site"), Some("hq"));
            assert_eq!(attr(&g, "username"), Some("alice"));
        }
        other => return Err(format!("expected allow, got {other:?}")),
    }
    assert!(matches!(
        p.connect_check(&connect(Some("bob"), Some(b"hunter2 with spaces"))),
        ConnectVerdict::Allow(_)
    ));
    // A hash-less entry must name a file user.
    let err = PasswordPolicy::new(&config(
        serde_json::json!([{"username": "zed", "roles": ["x"]}]),
        ALICE_7,
        "defer",
    ))
    .err()
    .unwrap_or_default();
    assert!(
        err.contains("\"zed\"") && err.contains("missing \"hash\""),
        "{err}"
    );
    Ok(())
}

#[test]
fn bad_configs_name_the_user_and_never_quote_the_secret() {
    let cases: Vec<(String, &str)> = vec![
        (
            config(
                serde_json::json!([{"username": "alice", "password": "hunter2"}]),
                "",
                "defer",
            ),
            "users[0] \"alice\": plaintext",
        ),
        (
            config(
                serde_json::json!([{"username": "alice", "hash": "hunter2"}]),
                "",
                "defer",
            ),
            "users[0] \"alice\": hash is not a recognised format",
        ),
        (
            config(serde_json::json!([]), "alice:hunter2\n", "defer"),
            "line 1 (user \"alice\"): hash is not a recognised format",
        ),
        (
            config(
                serde_json::json!([{"username": "ian", "hash": IAN_ARGON2I}]),
                "",
                "defer",
            ),
            "only argon2id",
        ),
        (
            config(
                serde_json::json!([{"username": "b", "hash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"}]),
                "",
                "defer",
            ),
            "bcrypt",
        ),
        (
            config(
                serde_json::json!([]),
                "root:$6$rounds=5000$abcdefgh$xyz\n",
                "defer",
            ),
            "crypt(3)",
        ),
        (
            config(
                serde_json::json!([{"username": "alice", "hash": hash_of(ALICE_7)}]),
                ALICE_7,
                "defer",
            ),
            "user \"alice\" is listed twice",
        ),
        (
            config(
                serde_json::json!([]),
                &format!("{ALICE_7}\n{ALICE_7}\n"),
                "defer",
            ),
            "user \"alice\" is listed twice",
        ),
        (
            config(
                serde_json::json!([{"username": "a", "hash": SMALL_ARGON2ID, "attributes": {"username": "root"}}]),
                "",
                "defer",
            ),
            "attribute \"username\"",
        ),
        (
            config(
                serde_json::json!([{"username": "a", "hash": SMALL_ARGON2ID, "role": ["x"]}]),
                "",
                "defer",
            ),
            "unknown field",
        ),
        (
            r#"{"users": [], "pasword_file": ""}"#.into(),
            "unknown field",
        ),
        (config(serde_json::json!([]), "", "defer"), "no users"),
        (
            config(
                serde_json::json!([{"username": "alice", "roles": ["a"]}, {"username": "alice", "roles": ["b"]}]),
                ALICE_7,
                "defer",
            ),
            "user \"alice\" is listed twice",
        ),
        (
            config(serde_json::json!([]), ALICE_7, "allow"),
            "unknown variant",
        ),
    ];
    for (config, needle) in cases {
        let err = PasswordPolicy::new(&config).err().unwrap_or_default();
        assert!(err.contains(needle), "{config}: {err}");
        assert!(!err.contains("hunter2"), "secret in error: {err}");
    }
}

#[test]
fn costs_over_the_bounds_are_load_errors() -> Result<(), String> {
    // Mosquitto 2.1's default iteration count is within the bound.
    let p = PasswordPolicy::new(&config(serde_json::json!([]), DAVE_7_210K, "defer"))?;
    assert!(p.by_name.contains_key("dave"));
    // So is the most argon2id work they allow.
    assert!(StoredHash::parse(MAX_ARGON2ID).is_ok());
    let over = format!(
        "$7${}$UV7zaRE+yBWG0jyB$iWAh7Q/Bbn2nekP9zodtStNpw0+L080GjdD+t+6iz9naNmEpweHts7++/1zPYCFHqF4rjspVaq1trRP3vNHtrA==",
        MAX_PBKDF2_ITERATIONS + 1
    );
    let err = StoredHash::parse(&over).err().unwrap_or_default();
    assert!(err.contains(&MAX_PBKDF2_ITERATIONS.to_string()), "{err}");
    // Mosquitto 2.1's argon2id default needs more memory than the bound.
    let err = PasswordPolicy::new(&config(
        serde_json::json!([{"username": "big", "hash": BIG_ARGON2ID}]),
        "",
        "defer",
    ))
    .err()
    .unwrap_or_default();
    assert!(
        err.contains("\"big\"") && err.contains(&MAX_ARGON2_MEMORY_KIB.to_string()),
        "{err}"
    );
    for (phc, needle) in [
        (
            "$argon2id$v=19$m=24576,t=6,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "m×t = 147456 KiB",
        ),
        (
            "$argon2id$v=19$m=24577,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "m=24577",
        ),
        (
            "$argon2id$v=19$m=1024,t=1,p=9$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "p=9",
        ),
        (
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "salt is 4 bytes",
        ),
        (
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw",
            "hash is 9 bytes",
        ),
        (
            "$argon2id$v=19$m=1024,t=1,p=1,keyid=abc$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "keyid",
        ),
        (
            "$argon2id$v=18$m=1024,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "version",
        ),
        (
            "$argon2id$v=19$m=1024,t=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "required",
        ),
        (
            "$argon2id$v=19$m=7,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg",
            "invalid argon2id parameters",
        ),
        (
            "$7$0$UV7zaRE+yBWG0jyB$iWAh7Q/Bbn2nekP9zodtStNpw0+L080GjdD+t+6iz9naNmEpweHts7++/1zPYCFHqF4rjspVaq1trRP3vNHtrA==",
            "0 iterations",
        ),
        ("$7$101$UV7zaRE+yBWG0jyB$iWAh7Q==", "hash is 4 bytes"),
        ("$7$many$UV7zaRE+yBWG0jyB$iWAh7Q==", "not a number"),
        ("$6$!!$iWAh7Q==", "not valid base64"),
    ] {
        let err = StoredHash::parse(phc).err().unwrap_or_default();
        assert!(err.contains(needle), "{phc}: {err}");
    }
    Ok(())
}

/// CPU time this thread has run, from Linux's schedstat (nanoseconds), so the
/// numbers hold on a busy machine; wall time elsewhere.
fn cpu_ns(start: std::time::Instant) -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// The CPU cost of one connect check per format, natively. Run with
/// `cargo test --release -p password-policy -- --ignored --nocapture hash_cost`.
#[test]
#[ignore]
fn hash_cost() -> Result<(), String> {
    let cases = [
        (
            "$7$ 101 iterations (mosquitto_passwd 2.0 default)",
            hash_of(ALICE_7).to_string(),
        ),
        (
            "$7$ 210000 iterations (Mosquitto 2.1 default)",
            hash_of(DAVE_7_210K).to_string(),
        ),
        ("$6$ single SHA-512", hash_of(CAROL_6).to_string()),
        (
            "argon2id m=19456 t=2 p=1 (OWASP minimum; recommended)",
            ERIN_ARGON2ID.to_string(),
        ),
        ("argon2id m=1024 t=1 p=1", SMALL_ARGON2ID.to_string()),
        (
            "argon2id m=24576 t=5 p=1 (the most the bounds allow)",
            MAX_ARGON2ID.to_string(),
        ),
    ];
    for (name, text) in cases {
        let hash = StoredHash::parse(&text)?;
        let wall = std::time::Instant::now();
        let start = cpu_ns(wall);
        let mut runs = 0u32;
        while runs < 5 || (wall.elapsed().as_millis() < 2000 && runs < 100_000) {
            assert!(hash.verify(b"secret"));
            runs += 1;
        }
        let each = cpu_ns(wall).saturating_sub(start) as f64 / 1e9 / f64::from(runs);
        println!(
            "{name}: {:.3} ms CPU per check, {:.0} checks/s per core ({runs} runs)",
            each * 1e3,
            1.0 / each
        );
    }
    Ok(())
}

#[test]
fn new_hashes_print_as_the_lines_they_parse_from() -> Result<(), String> {
    let salt = [7u8; 16];
    for made in [
        StoredHash::new_argon2id(b"s3cret", &salt)?,
        StoredHash::new_pbkdf2(b"s3cret", &salt, 101)?,
    ] {
        let text = made.to_string();
        let parsed = StoredHash::parse(&text)?;
        assert_eq!(parsed, made, "{text}");
        assert!(parsed.verify(b"s3cret") && !parsed.verify(b"s3cre"));
    }
    // Mosquitto's own line prints back exactly.
    let line = hash_of(ALICE_7);
    assert_eq!(StoredHash::parse(line)?.to_string(), line);
    assert!(StoredHash::new_pbkdf2(b"x", &salt, 0).is_err());
    assert!(
        StoredHash::new_argon2id(b"x", &[1, 2]).is_err(),
        "short salt"
    );
    Ok(())
}

#[test]
fn remembered_passwords_let_the_same_password_in_and_nothing_else() -> Result<(), String> {
    let file = format!("{ALICE_7}\n{BOB_7}\n");
    let p = PasswordPolicy::new(&config(serde_json::json!([]), &file, "deny"))?;
    let r = p
        .remembered
        .as_ref()
        .ok_or("remembering is on by default")?;
    let (alice, bob) = (p.by_name["alice"], p.by_name["bob"]);
    assert!(!r.knows(alice, b"secret"), "nothing before a connect");

    // A wrong password is not remembered.
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("alice"), Some(b"nope")))
    ));
    assert!(!r.knows(alice, b"nope"));

    // The right one is, for that user only.
    let ok = p.connect_check(&connect(Some("alice"), Some(b"secret")));
    assert!(matches!(ok, ConnectVerdict::Allow(_)));
    assert!(r.knows(alice, b"secret"));
    assert!(!r.knows(bob, b"secret"));
    assert!(!r.knows(alice, b"secret "));

    // Remembered: the next connect is allowed with the same grant; other
    // passwords and other users are checked as before.
    let again = p.connect_check(&connect(Some("alice"), Some(b"secret")));
    assert_eq!(again, ok);
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("alice"), Some(b"secreT")))
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("alice"), None))
    ));
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("bob"), Some(b"secret")))
    ));
    assert!(matches!(
        p.connect_check(&connect(Some("bob"), Some(b"hunter2 with spaces"))),
        ConnectVerdict::Allow(_)
    ));

    // Two instances have different keys (here: two policies in one process,
    // whose hash seeds differ by std's per-`RandomState` step).
    let q = PasswordPolicy::new(&config(serde_json::json!([]), &file, "deny"))?;
    let s = q.remembered.as_ref().ok_or("on")?;
    assert_ne!(r.key, s.key);
    assert_ne!(r.tag(alice, b"secret"), s.tag(alice, b"secret"));
    Ok(())
}

#[test]
fn remembering_can_be_turned_off() -> Result<(), String> {
    let cfg = serde_json::json!({"password_file": ALICE_7, "remember_verified": false}).to_string();
    let p = PasswordPolicy::new(&cfg)?;
    assert!(p.remembered.is_none());
    for _ in 0..2 {
        assert!(matches!(
            p.connect_check(&connect(Some("alice"), Some(b"secret"))),
            ConnectVerdict::Allow(_)
        ));
    }
    assert!(is_bad_password(
        &p.connect_check(&connect(Some("alice"), Some(b"x")))
    ));
    Ok(())
}
