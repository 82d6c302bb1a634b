use std::path::Path;

use anyhow::Context as _;
use mqtt_policy_host::{CertError, Certificate, Chain, Outcome, cert};
use mqtt_policy_tests::{ca_signed, connect, openssl, self_signed};

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
    req.password = Some(vec![0u8, 159, 146, 150].into());
    req.protocol_version = mqtt_policy_host::ProtocolVersion::V5;
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

// ---------------------------------------------------------------------------
// Field-by-field agreement with openssl.
//
// Every certificate below is made by openssl, and each parsed field is
// compared with what openssl prints for it:
//   subject, issuer: `openssl x509 -noout -subject -issuer -nameopt RFC2253,-esc_msb`
//   serial:          `openssl x509 -noout -serial`
//   sans:            `openssl x509 -noout -ext subjectAltName`
// with only these normalisations (documented in host/src/cert.rs):
//   - a value that is exactly `#` is `\#` (RFC 4514; openssl leaves it bare);
//   - openssl's line continuations (`\` + newline) in long serials are joined;
//   - SANs: `IP Address:` is `IP:` with IPv6 in RFC 5952 form, `Registered ID:`
//     is `RID:`; openssl prints dirName in its own `/C=..` form, otherName
//     values, x400Address and ediPartyName without their DER, so those are
//     compared with openssl's RFC2253 print of the same name and with the DER
//     openssl encodes for (or was handed for) the value.
// ---------------------------------------------------------------------------

/// What openssl prints for a DER certificate file.
#[derive(Debug)]
struct Printed {
    subject: String,
    issuer: String,
    serial: String,
}

fn openssl_prints(dir: &Path, der_file: &str) -> anyhow::Result<Printed> {
    let out = openssl(
        dir,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            der_file,
            "-noout",
            "-subject",
            "-issuer",
            "-serial",
            "-nameopt",
            "RFC2253,-esc_msb",
        ],
    )?;
    // Names never contain a raw newline (control characters are escaped), so
    // each is one line; the serial is last and may continue over lines.
    let line = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(escape_lone_hash)
            .with_context(|| format!("no {key} in {out}"))
    };
    let serial_at = out.find("serial=").context("no serial")?;
    let serial = out
        .get(serial_at + "serial=".len()..)
        .unwrap_or_default()
        .replace("\\\n", "")
        .trim()
        .to_string();
    Ok(Printed {
        subject: line("subject=")?,
        issuer: line("issuer=")?,
        serial,
    })
}

/// openssl does not escape a value that is exactly `#` (its first-character
/// escape is lost when the first character is also the last); RFC 4514 does.
/// The corpus has no other `=#` followed by `,`, `+` or the end.
fn escape_lone_hash(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        if c == '='
            && chars.get(i + 1) == Some(&'#')
            && matches!(chars.get(i + 2), None | Some(',' | '+'))
        {
            out.push('\\');
        }
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parse `{name}.der` with the host and check subject, issuer and serial
/// against openssl's printout of the same file.
fn check_against_openssl(dir: &Path, name: &str) -> anyhow::Result<Certificate> {
    let der_file = format!("{name}.der");
    let der = std::fs::read(dir.join(&der_file))?;
    let printed = openssl_prints(dir, &der_file)?;
    let mut chain = cert::parse_chain(&der)?;
    anyhow::ensure!(chain.len() == 1, "{name}: one certificate");
    let c = chain.remove(0);
    assert_eq!(c.subject, printed.subject, "{name}: subject");
    assert_eq!(c.issuer, printed.issuer, "{name}: issuer");
    assert_eq!(c.serial, printed.serial, "{name}: serial");
    Ok(c)
}

/// One EC P-256 key for every certificate of a test.
fn test_key(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("key.pem").exists() {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "key.pem",
            ],
        )?;
    }
    Ok(())
}

/// `openssl req -x509` with `args` (`-subj`, `-set_serial`, `-config`, ...),
/// written to `{name}.der`.
fn req_cert(dir: &Path, name: &str, args: &[&str]) -> anyhow::Result<()> {
    test_key(dir)?;
    let der_file = format!("{name}.der");
    let mut all = vec![
        "req", "-x509", "-key", "key.pem", "-days", "1", "-outform", "DER", "-out", &der_file,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all)?;
    Ok(())
}

/// A value for `openssl asn1parse -genconf`: universal `tag` with exactly
/// `bytes` as content, so any string type can carry any bytes.
fn raw_value(tag: u8, bytes: &[u8]) -> String {
    format!(
        "IMPLICIT:{tag}U,FORMAT:HEX,OCTETSTRING:{}",
        hex_upper(bytes)
    )
}

/// One RDN for [`genconf_cert`]: (attribute type OID, genconf value) pairs.
type Rdn<'a> = Vec<(&'a str, String)>;

/// A certificate built field by field with `openssl asn1parse -genconf`,
/// written to `{name}.der`: `rdns` is the subject (and issuer) in DER order,
/// each RDN a list of (attribute type OID, genconf value); `extra` holds
/// sections values refer to. The signature is a placeholder: parsing never
/// checks it, and openssl prints such certificates as any other.
fn genconf_cert(
    dir: &Path,
    name: &str,
    rdns: &[Rdn<'_>],
    serial: &str,
    extra: &str,
) -> anyhow::Result<()> {
    test_key(dir)?;
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            "key.pem",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "key.pub.der",
        ],
    )?;
    let spki = std::fs::read(dir.join("key.pub.der"))?;
    // A P-256 SubjectPublicKeyInfo is 91 bytes ending in the 65-byte point.
    anyhow::ensure!(spki.len() == 91, "unexpected SPKI length {}", spki.len());
    let point = hex_upper(spki.get(26..).unwrap_or_default());
    let mut conf = format!(
        "asn1=SEQUENCE:cert\n\
         [cert]\ntbs=SEQUENCE:tbs\nalg=SEQUENCE:sig_alg\nsig=FORMAT:HEX,BITSTRING:00\n\
         [tbs]\nversion=EXPLICIT:0,INTEGER:2\nserial=INTEGER:{serial}\nsig_alg=SEQUENCE:sig_alg\n\
         issuer=SEQUENCE:name\nvalidity=SEQUENCE:validity\nsubject=SEQUENCE:name\n\
         spki=SEQUENCE:spki\n\
         [sig_alg]\noid=OID:ecdsa-with-SHA256\n\
         [validity]\nnot_before=UTCTIME:250101000000Z\nnot_after=GENTIME:20500101000000Z\n\
         [spki]\nalg=SEQUENCE:spki_alg\nkey=FORMAT:HEX,BITSTRING:{point}\n\
         [spki_alg]\ntype=OID:id-ecPublicKey\ncurve=OID:prime256v1\n\
         [name]\n"
    );
    for i in 0..rdns.len() {
        conf.push_str(&format!("rdn{i}=SET:rdn{i}\n"));
    }
    for (i, rdn) in rdns.iter().enumerate() {
        conf.push_str(&format!("[rdn{i}]\n"));
        for j in 0..rdn.len() {
            conf.push_str(&format!("atv{j}=SEQUENCE:atv{i}_{j}\n"));
        }
        for (j, (oid, value)) in rdn.iter().enumerate() {
            conf.push_str(&format!("[atv{i}_{j}]\ntype=OID:{oid}\nvalue={value}\n"));
        }
    }
    conf.push_str(extra);
    let conf_file = format!("{name}.cnf");
    std::fs::write(dir.join(&conf_file), conf)?;
    openssl(
        dir,
        &[
            "asn1parse",
            "-genconf",
            &conf_file,
            "-noout",
            "-out",
            &format!("{name}.der"),
        ],
    )?;
    Ok(())
}

#[test]
fn subjects_match_openssl_rfc2253() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    // openssl only takes unregistered attribute types from a config that
    // names them (and the openssl that prints does not know them).
    std::fs::write(
        dir.join("oids.cnf"),
        "oid_section=new_oids\n[new_oids]\nmyAttr=1.2.3.4\norgId=2.5.4.200\n\
         [req]\ndistinguished_name=dn\nprompt=no\n[dn]\nmyAttr=hello\norgId=x\nCN=known\n",
    )?;
    // (openssl req arguments, expected common name)
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["-subj", "/CN=dev, O=Acme"], Some("dev, O=Acme")),
        (&["-subj", r#"/L=a\\b"c<d>e;f\+g=h"#], None),
        (
            &["-subj", r"/CN=\#lead/OU= sp /O=#/OU=mid#dle"],
            Some("#lead"),
        ),
        (&["-subj", "/CN=#"], Some("#")),
        (
            &["-subj", "/C=DE/O=x+OU=y+CN=z", "-multivalue-rdn"],
            Some("z"),
        ),
        (&["-subj", "/CN=y+CN=x/O=o", "-multivalue-rdn"], Some("y")),
        (&["-subj", "/CN=first/O=Acme/CN=second"], Some("second")),
        (
            &[
                "-subj",
                "/DC=com/DC=example/C=DE/ST=Bavaria/L=Munich/street=Main St 1/O=Acme/OU=ops\
                 /title=Dr/SN=Doe/GN=Jo/serialNumber=42/UID=u1/emailAddress=jo@example.com\
                 /CN=dev",
            ],
            Some("dev"),
        ),
        (&["-subj", "/CN=é€😀/O=Ünïcödé", "-utf8"], Some("é€😀")),
        (&["-config", "oids.cnf"], Some("known")),
    ];
    for (i, (args, cn)) in cases.iter().enumerate() {
        let name = format!("subject-{i}");
        req_cert(dir, &name, args)?;
        let c = check_against_openssl(dir, &name)?;
        assert_eq!(c.common_name.as_deref(), *cn, "{args:?}");
    }
    // Pinned forms, so a change of openssl's output cannot hide a regression.
    let c = check_against_openssl(dir, "subject-2")?;
    assert_eq!(c.subject, r"OU=mid#dle,O=\#,OU=\ sp\ ,CN=\#lead");
    let c = check_against_openssl(dir, "subject-4")?;
    assert_eq!(c.subject, "OU=y+O=x+CN=z,C=DE");
    let c = check_against_openssl(dir, "subject-9")?;
    assert_eq!(
        c.subject,
        "CN=known,2.5.4.200=#0C0178,1.2.3.4=#0C0568656C6C6F"
    );

    // An issuer that needs escaping, through a real CA-signed chain.
    req_cert(
        dir,
        "odd-ca",
        &["-subj", r"/O=Acme, Inc/CN=CA\+1", "-set_serial", "0x80"],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "odd-ca.der",
            "-out",
            "odd-ca.pem",
        ],
    )?;
    openssl(
        dir,
        &[
            "req", "-new", "-key", "key.pem", "-subj", "/CN=leaf", "-out", "leaf.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "odd-ca.pem",
            "-CAkey",
            "key.pem",
            "-set_serial",
            "-5",
            "-days",
            "1",
            "-outform",
            "DER",
            "-out",
            "odd-leaf.der",
        ],
    )?;
    let leaf = check_against_openssl(dir, "odd-leaf")?;
    assert_eq!(leaf.issuer, r"CN=CA\+1,O=Acme\, Inc");
    assert_eq!(leaf.serial, "-05");
    Ok(())
}

#[test]
fn spoofed_subject_no_longer_prints_the_same() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    // Before, names were joined with ", " in DER order and not escaped, so a
    // CN of `dev, O=Acme` printed exactly like CN `dev` plus O `Acme`.
    req_cert(dir, "spoof", &["-subj", "/CN=dev, O=Acme"])?;
    req_cert(dir, "real", &["-subj", "/CN=dev/O=Acme"])?;
    // The same without the space, against the RFC 4514 order.
    req_cert(dir, "spoof-tight", &["-subj", "/CN=dev,O=Acme"])?;
    req_cert(dir, "real-tight", &["-subj", "/O=Acme/CN=dev"])?;
    let spoof = check_against_openssl(dir, "spoof")?;
    let real = check_against_openssl(dir, "real")?;
    let spoof_tight = check_against_openssl(dir, "spoof-tight")?;
    let real_tight = check_against_openssl(dir, "real-tight")?;
    assert_eq!(spoof.subject, r"CN=dev\, O=Acme");
    assert_eq!(real.subject, "O=Acme,CN=dev");
    assert_eq!(spoof_tight.subject, r"CN=dev\,O=Acme");
    assert_eq!(real_tight.subject, "CN=dev,O=Acme");
    assert_ne!(spoof.subject, real.subject);
    assert_ne!(spoof_tight.subject, real_tight.subject);
    assert_eq!(spoof.common_name.as_deref(), Some("dev, O=Acme"));
    assert_eq!(real.common_name.as_deref(), Some("dev"));
    Ok(())
}

#[test]
fn string_types_match_openssl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    const UTF8: u8 = 12;
    const NUMERIC: u8 = 18;
    const PRINTABLE: u8 = 19;
    const T61: u8 = 20;
    const IA5: u8 = 22;
    const UNIVERSAL: u8 = 28;
    const BMP: u8 = 30;
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_be_bytes).collect() };
    let utf32 =
        |s: &str| -> Vec<u8> { s.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect() };
    let cn = "2.5.4.3";
    // (RDNs in DER order, extra genconf sections, expected common name)
    let cases: Vec<(Vec<Rdn<'_>>, &str, Option<&str>)> = vec![
        // UTF8String: control characters and NUL are escaped, the rest is UTF-8.
        (
            vec![vec![(
                cn,
                raw_value(UTF8, "a\0b\x01c\x1fd\x7fe\nf é😀".as_bytes()),
            )]],
            "",
            Some("a\0b\x01c\x1fd\x7fe\nf é😀"),
        ),
        // T61String is Latin-1 to openssl, also with bytes 0x80..=0xFF.
        (
            vec![vec![(cn, raw_value(T61, b"caf\xe9 \xa4\xff"))]],
            "",
            Some("café ¤ÿ"),
        ),
        // BMPString (UTF-16BE), with a leading `#` and a trailing space.
        (
            vec![
                vec![("2.5.4.10", raw_value(BMP, &utf16("#é€,x ")))],
                vec![(cn, raw_value(BMP, &utf16("Ωmega")))],
            ],
            "",
            Some("Ωmega"),
        ),
        // UniversalString (UTF-32BE), outside the BMP, with a leading space.
        (
            vec![vec![(cn, raw_value(UNIVERSAL, &utf32(" 😀x;")))]],
            "",
            Some(" 😀x;"),
        ),
        // IA5String, PrintableString, NumericString; Latin-1 bytes where the
        // charset forbids them are read as openssl reads them.
        (
            vec![
                vec![("1.2.840.113549.1.9.1", raw_value(IA5, b"jo@example.com"))],
                vec![("2.5.4.6", raw_value(PRINTABLE, b"DE"))],
                vec![("2.5.4.5", raw_value(NUMERIC, b"0123 456"))],
                vec![("2.5.4.7", raw_value(IA5, b"M\xfcnchen"))],
                vec![(cn, raw_value(PRINTABLE, b"A\xe9B"))],
            ],
            "",
            Some("AéB"),
        ),
        // Non-string values are `#` + DER, like unknown types; the CN is then
        // not a string, so there is no common name.
        (
            vec![
                vec![("2.5.4.10", "FORMAT:HEX,BITSTRING:AB".to_string())],
                vec![(cn, "SEQUENCE:seq".to_string())],
            ],
            "[seq]\na=BOOLEAN:TRUE\nb=UTF8String:in\n",
            None,
        ),
        // Unknown attribute types, also inside a multi-valued RDN, with each
        // string type: always `#` + DER.
        (
            vec![
                vec![
                    ("1.2.3.4", raw_value(UTF8, b"u")),
                    ("1.3.6.1.4.1.99999.1", raw_value(BMP, &utf16("b"))),
                    (cn, raw_value(T61, b"t\xe9")),
                ],
                vec![("2.999.7", raw_value(PRINTABLE, b"p"))],
            ],
            "",
            Some("té"),
        ),
        // Several CNs of different types: the last in DER order counts.
        (
            vec![
                vec![(cn, raw_value(UTF8, b"outer"))],
                vec![(cn, raw_value(BMP, &utf16("inner")))],
            ],
            "",
            Some("inner"),
        ),
    ];
    for (i, (rdns, extra, common_name)) in cases.iter().enumerate() {
        let name = format!("strings-{i}");
        genconf_cert(dir, &name, rdns, "7", extra)?;
        let c = check_against_openssl(dir, &name)?;
        assert_eq!(
            c.common_name.as_deref(),
            *common_name,
            "{name}: {}",
            c.subject
        );
    }
    let pinned = [
        (0, "CN=a\\00b\\01c\\1Fd\\7Fe\\0Af é😀"),
        (1, "CN=café ¤ÿ"),
        (2, "CN=Ωmega,O=\\#é€\\,x\\ "),
        (3, "CN=\\ 😀x\\;"),
        (5, "CN=#30070101FF0C02696E,O=#030200AB"),
        (
            6,
            "2.999.7=#130170,1.3.6.1.4.1.99999.1=#1E020062+CN=té+1.2.3.4=#0C0175",
        ),
    ];
    for (i, subject) in pinned {
        let c = check_against_openssl(dir, &format!("strings-{i}"))?;
        assert_eq!(c.subject, subject);
    }

    // The string types openssl itself picks with `string_mask = default`:
    // T61String for Latin-1 text, BMPString beyond it, IA5String for email.
    std::fs::write(
        dir.join("mask.cnf"),
        "[req]\ndistinguished_name=dn\nprompt=no\nutf8=yes\nstring_mask=default\n\
         [dn]\nC=DE\nL=Zürich\nO=Ωmega €\nemailAddress=a@example.com\nCN=façade\n",
    )?;
    req_cert(dir, "mask", &["-config", "mask.cnf"])?;
    let dump = openssl(dir, &["asn1parse", "-inform", "DER", "-in", "mask.der"])?;
    for tag in ["T61STRING", "BMPSTRING", "IA5STRING", "PRINTABLESTRING"] {
        assert!(dump.contains(tag), "openssl chose no {tag}: {dump}");
    }
    let c = check_against_openssl(dir, "mask")?;
    assert_eq!(
        c.subject,
        "CN=façade,emailAddress=a@example.com,O=Ωmega €,L=Zürich,C=DE"
    );
    assert_eq!(c.common_name.as_deref(), Some("façade"));
    Ok(())
}

/// Every attribute type openssl 3.0 names in the arcs names use, and
/// unnamed OIDs around them, print as openssl prints them.
#[test]
fn attribute_type_names_match_openssl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let mut oids = Vec::new();
    for (arc, last) in [
        ("2.5.4", 101),
        ("0.9.2342.19200300.100.1", 60),
        ("1.2.840.113549.1.9", 25),
        ("1.3.6.1.4.1.311.60.2.1", 4),
        ("1.2.643.100", 115),
        ("1.2.643.3.131.1", 2),
    ] {
        for n in 0..=last {
            oids.push(format!("{arc}.{n}"));
        }
    }
    let rdns: Vec<Rdn<'_>> = oids
        .iter()
        .enumerate()
        .map(|(i, oid)| vec![(oid.as_str(), format!("UTF8String:v{i}"))])
        .collect();
    genconf_cert(dir, "names", &rdns, "1", "")?;
    let c = check_against_openssl(dir, "names")?;
    for expected in [
        "CN=v",
        "SN=v",
        "serialNumber=v",
        "C=v",
        "L=v",
        "ST=v",
        "street=v",
        "O=v",
        "OU=v",
        "title=v",
        "GN=v",
        "DC=v",
        "UID=v",
        "emailAddress=v",
        "organizationIdentifier=v",
        "jurisdictionC=v",
        "2.5.4.101=#0C",
    ] {
        assert!(c.subject.contains(expected), "{expected} in {}", c.subject);
    }
    Ok(())
}

#[test]
fn serials_match_openssl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let long = format!("0x{}", "AB".repeat(40));
    let long_negative = format!("-0x80{}", "00".repeat(39));
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("0", Some("00")),
        ("1", Some("01")),
        ("0x7F", Some("7F")),
        ("0x80", Some("80")),
        ("0xFF", Some("FF")),
        ("0x0100", Some("0100")),
        (
            "0x8000000000000000000000000000000000000001",
            Some("8000000000000000000000000000000000000001"),
        ),
        ("-1", Some("-01")),
        ("-5", Some("-05")),
        ("-128", Some("-80")),
        ("-129", Some("-81")),
        ("-256", Some("-0100")),
        ("-0x8000", Some("-8000")),
        (&long, None),
        (&long_negative, None),
    ];
    for (i, (serial, expected)) in cases.iter().enumerate() {
        let name = format!("serial-{i}");
        req_cert(dir, &name, &["-subj", "/CN=serial", "-set_serial", serial])?;
        let c = check_against_openssl(dir, &name)?;
        if let Some(expected) = expected {
            assert_eq!(c.serial, *expected, "{serial}");
        }
    }
    // The high-bit serials really carry DER's leading 00 byte.
    let der = std::fs::read(dir.join("serial-3.der"))?;
    assert!(
        der.windows(4).any(|w| w == [0x02, 0x02, 0x00, 0x80]),
        "INTEGER 00 80"
    );
    // Long serials do not wrap as openssl's printout does.
    let c = check_against_openssl(dir, "serial-13")?;
    assert_eq!(c.serial, "AB".repeat(40));
    Ok(())
}

/// openssl's `-ext subjectAltName` entries, one per name.
fn openssl_sans(dir: &Path, der_file: &str) -> anyhow::Result<Vec<String>> {
    let out = openssl(
        dir,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            der_file,
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    )?;
    let line = out.lines().nth(1).context("no subjectAltName")?;
    Ok(line.trim().split(", ").map(str::to_owned).collect())
}

/// The DER openssl encodes for a genconf value.
fn openssl_der(dir: &Path, value: &str, extra: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::write(dir.join("value.cnf"), format!("asn1={value}\n{extra}"))?;
    openssl(
        dir,
        &[
            "asn1parse",
            "-genconf",
            "value.cnf",
            "-noout",
            "-out",
            "value.der",
        ],
    )?;
    Ok(std::fs::read(dir.join("value.der"))?)
}

#[test]
fn sans_match_openssl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let other_names = [
        ("1.3.6.1.4.1.311.20.2.3", "UTF8:upn@example.com"),
        ("1.2.3.4", "IA5STRING:hello"),
        ("1.2.3.5", "SEQUENCE:other_seq"),
    ];
    let other_seq = "[other_seq]\nn=INTEGER:5\ns=UTF8String:x\n";
    let mut conf = String::from(
        "[req]\ndistinguished_name=dir_sect\nprompt=no\nutf8=yes\nx509_extensions=ext\n\
         [dir_sect]\nC=DE\nO=Acme+Sons\nOU=a;b<c>\nCN=dir name\n\
         [ext]\nsubjectAltName=@alt\n\
         [alt]\nDNS.1=a.example\nDNS.2=*.wild.example\nIP.1=10.0.0.1\nIP.2=2001:db8:0:0:1:0:0:1\n\
         IP.3=::ffff:1.2.3.4\nIP.4=fe80::\nURI.1=https://x.example/p?q=1\n\
         email.1=jo@example.com\nRID.1=1.2.3.4.5\ndirName.1=dir_sect\n",
    );
    for (i, (oid, value)) in other_names.iter().enumerate() {
        conf.push_str(&format!("otherName.{i}={oid};{value}\n"));
    }
    conf.push_str(other_seq);
    std::fs::write(dir.join("san.cnf"), conf)?;
    req_cert(dir, "san", &["-config", "san.cnf"])?;
    let c = check_against_openssl(dir, "san")?;
    let mut others = other_names.iter();
    let mut expected = Vec::new();
    for entry in openssl_sans(dir, "san.der")? {
        let mapped = if let Some(ip) = entry.strip_prefix("IP Address:") {
            format!("IP:{}", ip.parse::<std::net::IpAddr>()?)
        } else if let Some(oid) = entry.strip_prefix("Registered ID:") {
            format!("RID:{oid}")
        } else if entry.starts_with("DirName:") {
            // The certificate's subject is the same section.
            format!("dirName:{}", c.subject)
        } else if entry.starts_with("othername:") {
            let (oid, value) = others.next().context("more othernames than configured")?;
            let der = openssl_der(dir, value, other_seq)?;
            format!("otherName:{oid};{}", hex_upper(&der))
        } else {
            entry
        };
        expected.push(mapped);
    }
    assert_eq!(c.sans, expected);
    assert_eq!(
        c.sans,
        [
            "DNS:a.example",
            "DNS:*.wild.example",
            "IP:10.0.0.1",
            "IP:2001:db8::1:0:0:1",
            "IP:::ffff:1.2.3.4",
            "IP:fe80::",
            "URI:https://x.example/p?q=1",
            "email:jo@example.com",
            "RID:1.2.3.4.5",
            r"dirName:CN=dir name,OU=a\;b\<c\>,O=Acme\+Sons,C=DE",
            "otherName:1.3.6.1.4.1.311.20.2.3;0C0F75706E406578616D706C652E636F6D",
            "otherName:1.2.3.4;160568656C6C6F",
            "otherName:1.2.3.5;30060201050C0178",
        ]
    );

    // Names openssl cannot make from a config: handed over as DER.
    let names = [
        // x400Address [3] ORAddress (built-in-standard-attributes, country "US")
        (
            "A3083006610413025553",
            "X400Name:",
            "x400Address:A3083006610413025553",
        ),
        // ediPartyName [5] { partyName [1] PrintableString "hello" }
        (
            "A509A107130568656C6C6F",
            "EdiPartyName:",
            "ediPartyName:A509A107130568656C6C6F",
        ),
        // an IP address of 5 bytes
        ("87050A00000105", "IP Address:", "IP:#0A00000105"),
        // a DNS name that is not UTF-8 (openssl prints the raw bytes)
        ("8203E9E9E9", "DNS:", "invalid:2;E9E9E9"),
        ("8209622E6578616D706C65", "DNS:", "DNS:b.example"),
    ];
    let body: String = names.iter().map(|(der, _, _)| *der).collect();
    let ext = format!("subjectAltName=DER:30{:02X}{body}", body.len() / 2);
    req_cert(dir, "san-der", &["-subj", "/CN=san-der", "-addext", &ext])?;
    let c = check_against_openssl(dir, "san-der")?;
    let printed = openssl_sans(dir, "san-der.der")?;
    assert_eq!(printed.len(), names.len(), "{printed:?}");
    for ((_, openssl_kind, _), entry) in names.iter().zip(&printed) {
        assert!(entry.starts_with(openssl_kind), "{entry}");
    }
    let expected: Vec<&str> = names.iter().map(|(_, _, ours)| *ours).collect();
    assert_eq!(c.sans, expected);
    Ok(())
}

#[test]
fn pem_after_openssl_text_is_accepted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (leaf, ca) = ca_signed(dir.path(), "texty")?;
    let leaf_text = openssl(dir.path(), &["x509", "-in", "texty.pem", "-text"])?;
    let ca_text = openssl(dir.path(), &["x509", "-in", "texty-ca.pem", "-text"])?;
    assert!(leaf_text.starts_with("Certificate:"), "{leaf_text}");
    let plain = cert::parse_chain(format!("{}{}", leaf.pem, ca.pem).as_bytes())?;
    assert_eq!(cert::parse_chain(leaf_text.as_bytes())?, plain[..1]);
    assert_eq!(
        cert::parse_chain(format!("{leaf_text}{ca_text}").as_bytes())?,
        plain
    );
    let commented = format!("# client chain\n\n{}trailing words\n", leaf.pem);
    assert_eq!(cert::parse_chain(commented.as_bytes())?, plain[..1]);
    // A DER certificate is still DER, whatever its bytes contain.
    assert_eq!(cert::parse_chain(&leaf.der)?, plain[..1]);
    Ok(())
}
