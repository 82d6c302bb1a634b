//! Shared set-up for the benchmarks: the same requests and policy configs for
//! the wasm path (through the host) and the native path (the policy crates
//! called directly), so the two are compared on identical work.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use mqtt_policy_host as host;
use mqtt_policy_sdk as sdk;
use mqtt_policy_tests::{ca_signed, guests, key_pair, now, sign_jwt};
use serde_json::json;

pub const TOPIC_CONFIG: &str = r##"{"rules": [
    {"client_id": "pump-*", "publish": ["pumps/{client_id}/#"], "subscribe": ["pumps/{client_id}/commands/+"]},
    {"client_id": "sensor-*", "publish": ["sensors/{client_id}/#", "alerts/{client_id}"], "subscribe": ["sensors/{client_id}/commands/+", "broadcast/#"]},
    {"username": "ops", "subscribe": ["#"]}
]}"##;
pub const HS_SECRET: &str = "benchmark-secret";

/// Everything a benchmark needs, made once.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: host::PolicyEngine,
    pub topic_wasm: host::Chain,
    pub cert_wasm: host::Chain,
    pub jwt_wasm: host::Chain,
    pub topic_native: topic_list::TopicList,
    pub cert_native: thumbprint::Thumbprint,
    pub jwt_native: jwt::Jwt,
    /// The jwt policy's config (an HS256 secret and an ES256 key).
    pub jwt_config: String,
    /// The client's chain (leaf + CA) as DER, about 1 KB.
    pub chain_der: Vec<Vec<u8>>,
    pub connect_cert: host::ConnectRequest,
    pub connect_hs256: host::ConnectRequest,
    pub connect_es256: host::ConnectRequest,
    pub publish: host::TopicRequest,
    pub subscribe: host::TopicRequest,
}

/// A chain of one policy (component at `module`) with `config`.
pub fn wasm_chain(
    engine: &host::PolicyEngine,
    name: &str,
    module: &str,
    config: &str,
) -> anyhow::Result<host::Chain> {
    let policy = host::WasmPolicy::from_file(
        engine,
        name,
        Path::new(module),
        config,
        host::Limits::default(),
    )?;
    Ok(host::Chain::builder()
        .policy(name, Arc::new(policy))
        .decision_log_every(0)
        .build()?)
}

impl Fixture {
    pub fn new(engine: host::PolicyEngine) -> anyhow::Result<Self> {
        use sdk::Policy as _;
        let dir = tempfile::tempdir()?;
        let (leaf, ca) = ca_signed(dir.path(), "sensor-17")?;
        let ec = key_pair(dir.path(), "ec")?;
        let cert_config =
            json!({"thumbprints": ["00".repeat(20), "11".repeat(32), leaf.sha256]}).to_string();
        // Every check verifies the signature: the remembered path is its
        // own row in the report.
        let jwt_config = json!({"keys": [
            {"alg": "HS256", "secret": HS_SECRET},
            {"alg": "ES256", "kid": "ec", "public_key_pem": ec.public_pem},
        ], "remember_verified": false})
        .to_string();
        let claims =
            json!({"sub": "sensor-17", "exp": now() + 86_400, "topics": ["sensors/sensor-17/#"]});
        let hs = sign_jwt("HS256", HS_SECRET, None, &claims)?;
        let es = sign_jwt("ES256", &ec.private_pem, Some("ec"), &claims)?;
        let chain_der = vec![leaf.der.clone(), ca.der.clone()];
        let mut connect_cert = mqtt_policy_tests::connect("sensor-17");
        connect_cert.certificates =
            host::cert::parse_der_chain(chain_der.iter().map(Vec::as_slice))?;
        let mut publish = mqtt_policy_tests::topic(
            "sensor-17",
            host::Access::Publish,
            "sensors/sensor-17/temperature",
            &[],
        );
        publish.qos = 1;
        let subscribe = mqtt_policy_tests::topic(
            "sensor-17",
            host::Access::Subscribe,
            "sensors/sensor-17/commands/+",
            &[],
        );
        Ok(Fixture {
            topic_wasm: wasm_chain(&engine, "topics", guests::TOPIC_LIST, TOPIC_CONFIG)?,
            cert_wasm: wasm_chain(&engine, "certs", guests::THUMBPRINT, &cert_config)?,
            jwt_wasm: wasm_chain(&engine, "jwt", guests::JWT, &jwt_config)?,
            topic_native: topic_list::TopicList::new(TOPIC_CONFIG).map_err(anyhow::Error::msg)?,
            cert_native: thumbprint::Thumbprint::new(&cert_config).map_err(anyhow::Error::msg)?,
            jwt_native: jwt::Jwt::new(&jwt_config).map_err(anyhow::Error::msg)?,
            jwt_config,
            connect_hs256: mqtt_policy_tests::connect_jwt("sensor-17", &hs, 5),
            connect_es256: mqtt_policy_tests::connect_jwt("sensor-17", &es, 5),
            chain_der,
            connect_cert,
            publish,
            subscribe,
            dir,
            engine,
        })
        .and_then(Fixture::verified)
    }

    /// Refuse to benchmark anything that does not decide as intended.
    fn verified(self) -> anyhow::Result<Self> {
        use sdk::Policy as _;
        anyhow::ensure!(
            self.topic_wasm.topic_check(&self.publish).is_allowed(),
            "publish should be allowed"
        );
        anyhow::ensure!(
            self.topic_wasm.topic_check(&self.subscribe).is_allowed(),
            "subscribe should be allowed"
        );
        anyhow::ensure!(
            self.cert_wasm
                .connect_check(&self.connect_cert)
                .is_allowed(),
            "certificate should be allowed"
        );
        anyhow::ensure!(
            self.jwt_wasm
                .connect_check(&self.connect_hs256)
                .is_allowed(),
            "HS256 should be allowed"
        );
        anyhow::ensure!(
            self.jwt_wasm
                .connect_check(&self.connect_es256)
                .is_allowed(),
            "ES256 should be allowed"
        );
        let native_ok = matches!(
            self.topic_native
                .topic_check(&sdk_topic(&self.publish))
                .verdict,
            sdk::TopicVerdict::Allow
        ) && matches!(
            self.cert_native
                .connect_check(&sdk_connect(&self.connect_cert)),
            sdk::ConnectVerdict::Allow(_)
        ) && matches!(
            self.jwt_native
                .connect_check(&sdk_connect(&self.connect_es256)),
            sdk::ConnectVerdict::Allow(_)
        );
        anyhow::ensure!(native_ok, "native policies should allow the same requests");
        Ok(self)
    }

    pub fn chain_bytes(&self) -> usize {
        self.chain_der.iter().map(Vec::len).sum()
    }
}

/// The same request in the SDK's types (generated from the same WIT).
pub fn sdk_connect(r: &host::ConnectRequest) -> sdk::ConnectRequest {
    sdk::ConnectRequest {
        client_id: r.client_id.clone(),
        username: r.username.clone(),
        password: r.password.as_ref().map(|p| p.as_bytes().to_vec()),
        protocol_version: r.protocol_version.level(),
        clean_start: r.clean_start,
        keep_alive: r.keep_alive,
        peer_address: r.peer_address.clone(),
        listener: r.listener.clone(),
        user_properties: r
            .user_properties
            .iter()
            .map(|p| sdk::UserProperty {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect(),
        certificates: r
            .certificates
            .iter()
            .map(|c| sdk::Certificate {
                der: c.der.clone(),
                sha1: c.sha1.clone(),
                sha256: c.sha256.clone(),
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                common_name: c.common_name.clone(),
                sans: c.sans.clone(),
                serial: c.serial.clone(),
                not_before: c.not_before,
                not_after: c.not_after,
            })
            .collect(),
    }
}

pub fn sdk_topic(r: &host::TopicRequest) -> sdk::TopicRequest {
    sdk::TopicRequest {
        client_id: r.client_id.clone(),
        username: r.username.clone(),
        topic: r.topic.clone(),
        access: match r.access {
            host::Access::Publish => sdk::Access::Publish,
            host::Access::Subscribe => sdk::Access::Subscribe,
            host::Access::Receive => sdk::Access::Receive,
            host::Access::Unsubscribe => sdk::Access::Unsubscribe,
        },
        qos: r.qos,
        retain: r.retain,
        attributes: r
            .attributes
            .iter()
            .map(|a| sdk::Attribute {
                key: a.key.clone(),
                value: a.value.clone(),
            })
            .collect(),
        roles: r.roles.clone(),
    }
}

/// The sample chain file with all three policies, for cold-start and reload timings.
pub fn write_sample_chain(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let toml = format!(
        "[[policy]]\nname = \"certs\"\nmodule = {}\n[policy.config]\nthumbprints = [\"{}\"]\nmissing_certificate = \"defer\"\n\
         [[policy]]\nname = \"jwt\"\nmodule = {}\n[policy.config]\nkeys = [{{ alg = \"HS256\", secret = \"{HS_SECRET}\" }}]\n\
         [[policy]]\nname = \"topics\"\nmodule = {}\n[policy.config]\nsession_topics = \"topics\"\n",
        mqtt_policy_tests::toml_str(guests::THUMBPRINT),
        "AB".repeat(20),
        mqtt_policy_tests::toml_str(guests::JWT),
        mqtt_policy_tests::toml_str(guests::TOPIC_LIST),
    );
    mqtt_policy_tests::write_chain(dir, &toml).context("writing the sample chain")
}
