use mqtt_policy_host::{CertError, Chain, Outcome, cert};
use mqtt_policy_tests::{ca_signed, connect, self_signed};

#[test]
fn parsed_fields_match_openssl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let made = self_signed(dir.path(), "device-7")?;
    for input in [made.pem.as_bytes(), made.der.as_slice()] {
        let chain = cert::parse_chain(input)?;
        assert_eq!(chain.len(), 1);
        let c = &chain[0];
        assert_eq!(c.sha1, made.sha1);
        assert_eq!(c.sha256, made.sha256);
        assert_eq!(c.serial, made.serial);
        assert_eq!(c.der, made.der);
        assert_eq!(c.common_name.as_deref(), Some("device-7"));
        assert!(c.subject.contains("CN=device-7"), "{}", c.subject);
        assert_eq!(c.subject, c.issuer, "self-signed");
        assert_eq!(
            c.sans,
            vec![
                "DNS:device-7.example".to_string(),
                "IP:127.0.0.1".to_string()
            ]
        );
        let year = 365 * 24 * 3600;
        assert!(
            (c.not_after - c.not_before - year).abs() <= 1,
            "{} .. {}",
            c.not_before,
            c.not_after
        );
    }
    Ok(())
}

#[test]
fn chains_keep_leaf_first_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (leaf, ca) = ca_signed(dir.path(), "leaf-1")?;
    let bundle = format!("{}{}", leaf.pem, ca.pem);
    let chain = cert::parse_chain(bundle.as_bytes())?;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].sha1, leaf.sha1);
    assert_eq!(chain[1].sha1, ca.sha1);
    assert!(chain[0].issuer.contains("CN=leaf-1-ca"));
    let ders = cert::parse_der_chain([leaf.der.as_slice(), ca.der.as_slice()])?;
    assert_eq!(ders, chain);
    Ok(())
}

#[test]
fn malformed_certificates_are_clear_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let made = self_signed(dir.path(), "device-8")?;
    let truncated = &made.der[..made.der.len() / 2];
    assert!(matches!(
        cert::parse_chain(truncated),
        Err(CertError::Der { index: 0, .. })
    ));
    let mut flipped = made.der.clone();
    flipped[4] ^= 0xFF;
    assert!(cert::parse_chain(&flipped).is_err());
    let mut trailing = made.der.clone();
    trailing.extend_from_slice(b"junk");
    let err = cert::parse_chain(&trailing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("trailing"), "{err}");
    let half_pem = &made.pem[..made.pem.len() / 2];
    assert!(cert::parse_chain(half_pem.as_bytes()).is_err());
    let second_bad = format!(
        "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        made.pem
    );
    let err = cert::parse_chain(second_bad.as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("certificate 1"), "{err}");
    Ok(())
}

/// The policy sees exactly what the host parsed: every field crosses the boundary.
#[test]
fn policies_receive_every_request_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (leaf, ca) = ca_signed(dir.path(), "device-9")?;
    let policy = crate::misbehave("echo", r#"{"mode": "echo"}"#, Default::default())?;
    let chain = Chain::builder().policy("echo", policy.clone()).build()?;
    let mut req = connect("client-é");
    req.username = Some("user".into());
    req.password = Some(vec![0, 159, 146, 150]);
    req.protocol_version = 5;
    req.keep_alive = 30;
    req.user_properties = vec![mqtt_policy_host::UserProperty {
        name: "region".into(),
        value: "eu".into(),
    }];
    req.certificates = cert::parse_chain(format!("{}{}", leaf.pem, ca.pem).as_bytes())?;
    let d = chain.connect_check(&req);
    let Outcome::Allow(grant) = d.outcome else {
        anyhow::bail!("expected allow, got {:?}", d.outcome)
    };
    let get = |k: &str| {
        grant
            .attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.as_str())
    };
    assert_eq!(get("client_id"), Some("client-é"));
    assert_eq!(get("username"), Some("user"));
    assert_eq!(get("password_len"), Some("4"));
    assert_eq!(get("protocol_version"), Some("5"));
    assert_eq!(get("keep_alive"), Some("30"));
    assert_eq!(get("peer_address"), Some("127.0.0.1:50000"));
    assert_eq!(get("listener"), Some("tcp"));
    assert_eq!(get("user_property:region"), Some("eu"));
    assert_eq!(get("certificates"), Some("2"));
    assert_eq!(get("leaf_sha1"), Some(leaf.sha1.as_str()));
    assert_eq!(get("leaf_sha256"), Some(leaf.sha256.as_str()));
    assert_eq!(get("leaf_cn"), Some("device-9"));
    assert_eq!(get("leaf_serial"), Some(leaf.serial.as_str()));
    assert_eq!(
        get("leaf_der_len"),
        Some(leaf.der.len().to_string().as_str())
    );
    let now_ms: u64 = get("now_ms").unwrap_or("0").parse()?;
    let host_now = u64::try_from(mqtt_policy_tests::now())? * 1000;
    assert!(
        now_ms.abs_diff(host_now) < 60_000,
        "guest clock {now_ms} vs host {host_now}"
    );
    Ok(())
}
