//! Fixtures for mqtt-policy's integration tests: the wasm guests built from
//! source by `build.rs`, real certificates made with `openssl`, real JWTs
//! signed with `jsonwebtoken`, and request builders.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use mqtt_policy_host::{Access, Attribute, ConnectRequest, ProtocolVersion, TopicRequest};

pub mod process;

/// Paths of the guest components, built from source for this test run.
pub mod guests {
    pub const THUMBPRINT: &str = env!("GUEST_THUMBPRINT");
    pub const JWT: &str = env!("GUEST_JWT");
    pub const TOPIC_LIST: &str = env!("GUEST_TOPIC_LIST");
    pub const PASSWORD: &str = env!("GUEST_PASSWORD");
    pub const MISBEHAVE: &str = env!("GUEST_MISBEHAVE");
    /// Built against `mqtt:policy@0.1.0` with the bindings alone.
    pub const LEGACY_V0_1: &str = env!("GUEST_LEGACY_V0_1");
}

/// Run `openssl` with `args` in `dir`; errors carry its stderr.
pub fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl (install it: apt-get install openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A certificate made by openssl, with the values openssl reports for it.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub pem_path: PathBuf,
    pub pem: String,
    pub der: Vec<u8>,
    /// Uppercase hex, no separators, as openssl prints them.
    pub sha1: String,
    pub sha256: String,
    pub serial: String,
}

fn fingerprint(dir: &Path, pem: &str, alg: &str) -> anyhow::Result<String> {
    let out = openssl(dir, &["x509", "-in", pem, "-noout", "-fingerprint", alg])?;
    let (_, value) = out
        .trim()
        .split_once('=')
        .context("unexpected openssl fingerprint output")?;
    Ok(value.replace(':', ""))
}

fn load_cert(dir: &Path, name: &str) -> anyhow::Result<TestCert> {
    let pem_file = format!("{name}.pem");
    let der_file = format!("{name}.der");
    openssl(
        dir,
        &[
            "x509", "-in", &pem_file, "-outform", "DER", "-out", &der_file,
        ],
    )?;
    let serial = openssl(dir, &["x509", "-in", &pem_file, "-noout", "-serial"])?;
    Ok(TestCert {
        pem_path: dir.join(&pem_file),
        pem: std::fs::read_to_string(dir.join(&pem_file))?,
        der: std::fs::read(dir.join(&der_file))?,
        sha1: fingerprint(dir, &pem_file, "-sha1")?,
        sha256: fingerprint(dir, &pem_file, "-sha256")?,
        serial: serial
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_uppercase(),
    })
}

/// A self-signed EC P-256 certificate with CN `cn` and two SANs, valid for a
/// year, written to `dir/{cn}.pem`.
pub fn self_signed(dir: &Path, cn: &str) -> anyhow::Result<TestCert> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{cn}.key"),
            "-out",
            &format!("{cn}.pem"),
            "-days",
            "365",
            "-subj",
            &format!("/CN={cn}/O=mqtt-policy tests"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}.example,IP:127.0.0.1"),
        ],
    )?;
    load_cert(dir, cn)
}

/// A CA and a leaf `cn` signed by it. Returns (leaf, ca). The leaf has no
/// extensions (openssl writes X.509 v1); see [`client_cert`] for TLS clients.
pub fn ca_signed(dir: &Path, cn: &str) -> anyhow::Result<(TestCert, TestCert)> {
    let ca = self_signed(dir, &format!("{cn}-ca"))?;
    let leaf = signed_leaf(dir, cn, &format!("{cn}-ca"), None)?;
    Ok((leaf, ca))
}

/// A TLS client certificate `cn` (EC P-256) signed by the CA whose files
/// are `dir/{ca}.pem` and `dir/{ca}.key` (e.g. from [`self_signed`]). It is
/// X.509 v3 with `clientAuth`: rustls (webpki) and OpenSSL's client
/// verification refuse the v1 certificates `openssl x509 -req` writes when
/// given no extensions.
pub fn client_cert(dir: &Path, cn: &str, ca: &str) -> anyhow::Result<TestCert> {
    signed_leaf(
        dir,
        cn,
        ca,
        Some("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
    )
}

/// A new EC P-256 key and certificate `cn` signed by the CA `ca` (files in
/// `dir`), with `extensions` (an openssl extfile's text) if given.
fn signed_leaf(
    dir: &Path,
    cn: &str,
    ca: &str,
    extensions: Option<&str>,
) -> anyhow::Result<TestCert> {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{cn}.key"),
            "-out",
            &format!("{cn}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    )?;
    let (pem, csr, ca_pem, ca_key, ext) = (
        format!("{cn}.pem"),
        format!("{cn}.csr"),
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{cn}.ext"),
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "30",
    ];
    if let Some(text) = extensions {
        std::fs::write(dir.join(&ext), text)?;
        args.extend(["-extfile", &ext]);
    }
    openssl(dir, &args)?;
    load_cert(dir, cn)
}

/// The sample chain (examples/policies.toml: the same order and connect
/// scopes) for the adapters' end-to-end tests, with the guests built for
/// this run: `device_sha256` on the certificate allow-list, `jwt_secret` as
/// the JWT policy's HS256 key, `before` (chain-level keys) before the first
/// policy and `rules_extra` (more `[[policy.config.rules]]`) after the topic
/// rules. The password and ACL files are `passwd` and `acl` beside the chain
/// file.
pub fn sample_chain_toml(
    device_sha256: &str,
    jwt_secret: &str,
    before: &str,
    rules_extra: &str,
) -> String {
    format!(
        r#"
default = "deny"
deadline_ms = 50
memory_limit_mb = 32
{before}
[[policy]]
name = "certs"
module = {thumbprint}
[policy.config]
thumbprints = [{leaf}]
missing_certificate = "defer"
not_listed = "deny"
roles = ["device"]
[policy.ask_connect]
certificate = true

[[policy]]
name = "jwt"
module = {jwt}
[policy.ask_connect]
usernames = ["JWT"]
[policy.config]
username = "JWT"
issuer = ["https://idp.example/"]
audience = ["mqtt"]
keys = [{{ alg = "HS256", secret = {secret} }}]

[[policy]]
name = "passwords"
module = {password}
deadline_ms = 1000
[policy.files]
password_file = "passwd"
[policy.config]
unknown_user = "defer"

[[policy]]
name = "topics"
module = {topics}
[policy.files]
acl_file = "acl"
[policy.config]
session_topics = "topics"
otherwise = "deny"
[[policy.config.rules]]
publish = ["devices/{{attr:cert_cn}}/telemetry"]
subscribe = ["devices/{{attr:cert_cn}}/commands/+"]
{rules_extra}
"#,
        thumbprint = toml_str(guests::THUMBPRINT),
        password = toml_str(guests::PASSWORD),
        jwt = toml_str(guests::JWT),
        topics = toml_str(guests::TOPIC_LIST),
        leaf = toml_str(device_sha256),
        secret = toml_str(jwt_secret),
    )
}

/// Key pairs for signing test tokens, made by openssl.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

/// An RSA-2048 (`"rsa"`) or EC P-256 (`"ec"`) key pair, PKCS#8.
pub fn key_pair(dir: &Path, kind: &str) -> anyhow::Result<KeyPair> {
    let name = format!("{kind}-key");
    let keygen: &[&str] = match kind {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "ec" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "ec384" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "ed25519" => &["-algorithm", "ED25519"],
        other => bail!("unknown key kind {other}"),
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(keygen);
    let private_file = format!("{name}.pem");
    let public_file = format!("{name}.pub.pem");
    args.extend_from_slice(&["-out", &private_file]);
    openssl(dir, &args)?;
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            &private_file,
            "-pubout",
            "-out",
            &public_file,
        ],
    )?;
    Ok(KeyPair {
        private_pem: std::fs::read_to_string(dir.join(&private_file))?,
        public_pem: std::fs::read_to_string(dir.join(&public_file))?,
    })
}

/// Sign `claims` as a JWT with `alg` (HS*, RS*, PS*, ES*, EdDSA) and `key` (a secret for
/// HS*, a private PEM otherwise); `kid` goes in the header if given.
pub fn sign_jwt(
    alg: &str,
    key: &str,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> anyhow::Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let algorithm: Algorithm = alg.parse().with_context(|| format!("algorithm {alg}"))?;
    let encoding = match alg {
        a if a.starts_with("HS") => EncodingKey::from_secret(key.as_bytes()),
        a if a.starts_with("RS") || a.starts_with("PS") => {
            EncodingKey::from_rsa_pem(key.as_bytes())?
        }
        "EdDSA" => EncodingKey::from_ed_pem(key.as_bytes())?,
        a if a.starts_with("ES") => EncodingKey::from_ec_pem(key.as_bytes())?,
        other => bail!("unsupported test algorithm {other}"),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(&header, claims, &encoding)?)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The protocol version of a level byte the tests know to be valid (3, 4, 5).
pub fn version(level: u8) -> ProtocolVersion {
    ProtocolVersion::try_from(level).expect("tests use levels 3, 4 and 5")
}

/// A CONNECT with defaults: MQTT 3.1.1, clean start, no credentials.
pub fn connect(client_id: &str) -> ConnectRequest {
    ConnectRequest::new(client_id)
        .peer_address("127.0.0.1:50000")
        .listener("tcp")
}

/// A CONNECT with username `JWT` and `token` as password.
pub fn connect_jwt(client_id: &str, token: &str, protocol_version: u8) -> ConnectRequest {
    connect(client_id)
        .username("JWT")
        .password(token)
        .protocol_version(version(protocol_version))
}

/// A topic request with the given session attributes.
pub fn topic(
    client_id: &str,
    access: Access,
    topic: &str,
    attributes: &[Attribute],
) -> TopicRequest {
    TopicRequest {
        client_id: client_id.into(),
        username: None,
        topic: topic.into(),
        access,
        qos: 0,
        retain: false,
        attributes: attributes.to_vec(),
        roles: Vec::new(),
    }
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Write a chain file into `dir` and return its path.
pub fn write_chain(dir: &Path, toml: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("chain.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Resident set size of this process in KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
