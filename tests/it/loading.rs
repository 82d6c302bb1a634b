use mqtt_policy_host::{Chain, Limits, LoadError, WasmPolicy};
use mqtt_policy_tests::{guests, toml_str, write_chain};

fn load_bytes(bytes: &[u8], config: &str) -> Result<WasmPolicy, LoadError> {
    WasmPolicy::from_bytes(
        crate::engine(),
        "p",
        "test-module",
        bytes,
        config,
        Limits::default(),
    )
}

#[test]
fn garbage_and_core_modules_are_not_components() {
    for bytes in [b"definitely not wasm".as_slice(), b"", b"\0asm\x01\0\0\0"] {
        let err = load_bytes(bytes, "{}").err();
        assert!(
            matches!(err, Some(LoadError::NotAComponent { .. })),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("policy \"p\"") && text.contains("test-module"),
            "{text}"
        );
    }
}

#[test]
fn truncated_component_is_rejected() -> anyhow::Result<()> {
    let bytes = std::fs::read(guests::TOPIC_LIST)?;
    let err = load_bytes(&bytes[..bytes.len() / 2], "{}").err();
    assert!(
        matches!(err, Some(LoadError::NotAComponent { .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_component_of_another_world_is_rejected() {
    // The smallest valid component: no exports at all.
    let empty_component = b"\0asm\x0d\0\x01\0";
    let err = load_bytes(empty_component, "{}").err();
    assert!(matches!(err, Some(LoadError::WrongWorld { .. })), "{err:?}");
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("mqtt:policy world (0.2.0 or 0.1.0)"),
        "{text}"
    );
}

#[test]
fn init_errors_fail_the_load_with_the_policys_message() -> anyhow::Result<()> {
    let engine = crate::engine();
    let err = WasmPolicy::from_file(
        engine,
        "certs",
        guests::THUMBPRINT.as_ref(),
        r#"{"thumbprints": ["nope"]}"#,
        Limits::default(),
    )
    .err();
    let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(err, Some(LoadError::Init { .. })), "{err:?}");
    assert!(
        text.contains("certs") && text.contains("\"nope\""),
        "{text}"
    );
    let err = WasmPolicy::from_file(
        engine,
        "m",
        guests::MISBEHAVE.as_ref(),
        r#"{"init":"error"}"#,
        Limits::default(),
    )
    .err();
    assert!(
        matches!(err, Some(LoadError::Init { ref message, .. }) if message.contains("requested")),
        "{err:?}"
    );
    let err = WasmPolicy::from_file(
        engine,
        "m",
        guests::MISBEHAVE.as_ref(),
        r#"{"init":"trap"}"#,
        Limits::default(),
    )
    .err();
    assert!(matches!(err, Some(LoadError::InitFailed { .. })), "{err:?}");
    let short = Limits {
        init_deadline: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    let err = WasmPolicy::from_file(
        engine,
        "m",
        guests::MISBEHAVE.as_ref(),
        r#"{"init":"loop"}"#,
        short,
    )
    .err();
    assert!(
        matches!(
            err,
            Some(LoadError::InitFailed {
                error: mqtt_policy_host::PolicyError::Timeout(_),
                ..
            })
        ),
        "{err:?}"
    );
    let err = WasmPolicy::from_file(
        engine,
        "m",
        guests::MISBEHAVE.as_ref(),
        "not json",
        Limits::default(),
    )
    .err();
    assert!(matches!(err, Some(LoadError::Init { .. })), "{err:?}");
    Ok(())
}

#[test]
fn chain_files_with_errors_name_the_file_and_the_problem() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("[[policy]\nname=", "invalid chain config"),
        (
            "[[policy]]\nname = \"x\"\nmodule = \"missing.wasm\"\n",
            "missing.wasm",
        ),
        (
            &format!(
                "[[policy]]\nname = \"t\"\nmodule = {}\n[policy.config]\nthumbprints = []\n",
                toml_str(guests::THUMBPRINT)
            ),
            "at least one",
        ),
        (
            &format!(
                "[[policy]]\nname = \"t\"\nmodule = {m}\n[[policy]]\nname = \"t\"\nmodule = {m}\n",
                m = toml_str(guests::MISBEHAVE)
            ),
            "duplicate policy name",
        ),
        (
            &format!(
                "[[policy]]\nname = \"t\"\nmodule = {}\nmemory_limit_mb = 4096\n",
                toml_str(guests::MISBEHAVE)
            ),
            "exceeds the engine's maximum",
        ),
    ];
    for (toml, needle) in cases {
        let path = write_chain(dir.path(), toml)?;
        let err = Chain::from_config_file(crate::engine(), &path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{toml:?}: {err}");
    }
    let err = Chain::from_config_file(crate::engine(), &dir.path().join("absent.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("absent.toml"), "{err}");
    Ok(())
}
