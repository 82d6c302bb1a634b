//! `mqtt-policy check`: the request file format and the JSON report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use mqtt_policy_host::{
    Access, Attribute, Chain, ConnectDecision, ConnectRequest, DenyReason, Outcome, PolicyEngine,
    StepResult, TopicDecision, TopicRequest, UserProperty, cert,
};
use serde::{Deserialize, Serialize};

fn default_protocol() -> u8 {
    4
}
fn default_true() -> bool {
    true
}
fn default_keep_alive() -> u16 {
    60
}

/// A request file: one CONNECT and the topic requests of its session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    pub connect: ConnectInput,
    #[serde(default)]
    pub topics: Vec<TopicInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectInput {
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    /// The password as text.
    #[serde(default)]
    pub password: Option<String>,
    /// The password as base64, for binary passwords.
    #[serde(default)]
    pub password_base64: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol_version: u8,
    #[serde(default = "default_true")]
    pub clean_start: bool,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: u16,
    #[serde(default)]
    pub peer_address: Option<String>,
    #[serde(default)]
    pub listener: Option<String>,
    #[serde(default)]
    pub user_properties: Vec<NameValue>,
    /// PEM text of the client's chain, leaf first.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Files (PEM or DER) of the client's chain, leaf first; relative to the request file.
    #[serde(default)]
    pub certificate_files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicInput {
    pub topic: String,
    pub access: AccessInput,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessInput {
    Publish,
    Subscribe,
    Receive,
    Unsubscribe,
}

impl From<AccessInput> for Access {
    fn from(a: AccessInput) -> Self {
        match a {
            AccessInput::Publish => Access::Publish,
            AccessInput::Subscribe => Access::Subscribe,
            AccessInput::Receive => Access::Receive,
            AccessInput::Unsubscribe => Access::Unsubscribe,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub generation: u64,
    pub connect: ConnectReport,
    pub topics: Vec<TopicReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics_skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConnectReport {
    pub verdict: &'static str,
    pub decided_by: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// CONNACK return code (3.1/3.1.1) or reason code (5).
    pub code: u8,
    pub attributes: BTreeMap<String, String>,
    pub roles: Vec<String>,
    pub trace: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct TopicReport {
    pub topic: String,
    pub access: AccessInput,
    pub verdict: &'static str,
    pub decided_by: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// SUBACK code for subscribe, PUBACK code for publish (null where the
    /// protocol has none), null for receive and unsubscribe.
    pub code: Option<u8>,
    pub trace: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub policy: String,
    pub result: String,
}

fn reason_name(r: DenyReason) -> &'static str {
    match r {
        DenyReason::NotAuthorized => "not-authorized",
        DenyReason::BadUsernameOrPassword => "bad-username-or-password",
        DenyReason::Banned => "banned",
        DenyReason::BadAuthenticationMethod => "bad-authentication-method",
        DenyReason::ClientIdentifierNotValid => "client-identifier-not-valid",
        DenyReason::ServerUnavailable => "server-unavailable",
    }
}

fn steps(trace: &[mqtt_policy_host::Step]) -> Vec<StepReport> {
    trace
        .iter()
        .map(|s| StepReport {
            policy: s.policy.clone(),
            result: match &s.result {
                StepResult::Allow => "allow".into(),
                StepResult::Deny(r) => format!("deny ({})", reason_name(*r)),
                StepResult::Defer => "defer".into(),
                StepResult::Failed(e) => format!("failed: {e}"),
            },
        })
        .collect()
}

/// A validated request, ready to evaluate against any chain.
#[derive(Debug)]
pub struct Prepared {
    pub connect: ConnectRequest,
    /// The parsed client chain, or why the host could not parse it.
    pub certificates: Certs,
    pub topics: Vec<TopicInput>,
}

/// Parse request JSON.
pub fn parse_request(text: &str) -> anyhow::Result<RequestFile> {
    Ok(serde_json::from_str(text)?)
}

/// Check a request for bad input (reported as errors, before any chain is
/// loaded) and read its certificate files, relative to `base_dir`.
pub fn prepare(file: RequestFile, base_dir: &Path) -> anyhow::Result<Prepared> {
    let (connect, certificates) = connect_request(&file.connect, base_dir)?;
    for (i, t) in file.topics.iter().enumerate() {
        if t.qos > 2 {
            bail!("topics[{i}]: qos must be 0, 1 or 2, got {}", t.qos);
        }
    }
    Ok(Prepared {
        connect,
        certificates,
        topics: file.topics,
    })
}

/// Load the chain, read the request, evaluate, and build the report.
pub fn run(config: &Path, request_path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(request_path)
        .with_context(|| format!("cannot read request file {}", request_path.display()))?;
    let file = parse_request(&text)
        .with_context(|| format!("invalid request file {}", request_path.display()))?;
    let prepared = prepare(
        file,
        request_path.parent().unwrap_or_else(|| Path::new(".")),
    )?;
    let engine = PolicyEngine::new().context("cannot start the policy engine")?;
    let chain = Chain::from_config_file(&engine, config)
        .with_context(|| format!("cannot load chain {}", config.display()))?;
    evaluate(&chain, &prepared)
}

/// Evaluate a prepared request: the connect, then (if accepted) each topic
/// request in the same session.
pub fn evaluate(chain: &Chain, prepared: &Prepared) -> anyhow::Result<Report> {
    let decision = match &prepared.certificates {
        Ok(certs) => {
            let mut request = prepared.connect.clone();
            request.certificates = certs.clone();
            chain.connect_check(&request)
        }
        // A certificate the host cannot parse is refused before any policy runs,
        // as a broker would refuse it.
        Err(e) => ConnectDecision::host_deny(
            DenyReason::NotAuthorized,
            format!("bad client certificate: {e}"),
            chain.generation(),
        ),
    };
    let request = &prepared.connect;
    let version = request.protocol_version;
    let connect = connect_report(&decision, version)?;
    let (topic_reports, skipped) = match &decision.outcome {
        Outcome::Allow(grant) => {
            let mut reports = Vec::with_capacity(prepared.topics.len());
            for t in &prepared.topics {
                let req = TopicRequest {
                    client_id: request.client_id.clone(),
                    username: request.username.clone(),
                    topic: t.topic.clone(),
                    access: t.access.into(),
                    qos: t.qos,
                    retain: t.retain,
                    attributes: grant.attributes.clone(),
                    roles: grant.roles.clone(),
                };
                let d = chain.topic_check(&req);
                reports.push(topic_report(t, &d, version)?);
            }
            (reports, None)
        }
        Outcome::Deny(_) if !prepared.topics.is_empty() => {
            (Vec::new(), Some("the connection was refused".to_string()))
        }
        Outcome::Deny(_) => (Vec::new(), None),
    };
    Ok(Report {
        generation: chain.generation(),
        connect,
        topics: topic_reports,
        topics_skipped: skipped,
    })
}

/// The client's certificates as parsed, or the parse error.
pub type Certs = Result<Vec<mqtt_policy_host::Certificate>, String>;

fn connect_request(c: &ConnectInput, base: &Path) -> anyhow::Result<(ConnectRequest, Certs)> {
    if !(3..=5).contains(&c.protocol_version) {
        bail!(
            "connect.protocol_version must be 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0), got {}",
            c.protocol_version
        );
    }
    let password = match (&c.password, &c.password_base64) {
        (Some(_), Some(_)) => bail!("connect: give password or password_base64, not both"),
        (Some(p), None) => Some(p.as_bytes().to_vec()),
        (None, Some(b)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .context("connect.password_base64 is not valid base64")?,
        ),
        (None, None) => None,
    };
    // Certificate files must exist (bad input); their content is judged like
    // a broker would: unparsable means the host denies.
    let mut blobs: Vec<Vec<u8>> = c
        .certificates
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    for f in &c.certificate_files {
        let path = base.join(f);
        blobs.push(
            std::fs::read(&path)
                .with_context(|| format!("cannot read certificate file {}", path.display()))?,
        );
    }
    let mut certs = Ok(Vec::new());
    for blob in &blobs {
        match (cert::parse_chain(blob), &mut certs) {
            (Ok(mut parsed), Ok(all)) => all.append(&mut parsed),
            (Err(e), Ok(_)) => certs = Err(e.to_string()),
            (_, Err(_)) => {}
        }
    }
    let request = ConnectRequest {
        client_id: c.client_id.clone(),
        username: c.username.clone(),
        password,
        protocol_version: c.protocol_version,
        clean_start: c.clean_start,
        keep_alive: c.keep_alive,
        peer_address: c.peer_address.clone(),
        listener: c.listener.clone(),
        user_properties: c
            .user_properties
            .iter()
            .map(|p| UserProperty {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect(),
        certificates: Vec::new(),
    };
    Ok((request, certs))
}

fn connect_report(d: &ConnectDecision, version: u8) -> anyhow::Result<ConnectReport> {
    let (attributes, roles) = match &d.outcome {
        Outcome::Allow(g) => (
            g.attributes
                .iter()
                .map(|Attribute { key, value }| (key.clone(), value.clone()))
                .collect(),
            g.roles.clone(),
        ),
        Outcome::Deny(_) => (BTreeMap::new(), Vec::new()),
    };
    Ok(ConnectReport {
        verdict: if d.is_allowed() { "allow" } else { "deny" },
        decided_by: d.decided_by.label().to_owned(),
        reason: d.deny().map(|x| reason_name(x.reason).to_owned()),
        message: d.deny().map(|x| x.message.clone()),
        code: d.connack_code(version)?,
        attributes,
        roles,
        trace: steps(&d.trace),
    })
}

fn topic_report(t: &TopicInput, d: &TopicDecision, version: u8) -> anyhow::Result<TopicReport> {
    let code = match t.access {
        AccessInput::Subscribe => Some(d.suback_code(version, t.qos)?),
        AccessInput::Publish => d.puback_code(version)?,
        AccessInput::Receive | AccessInput::Unsubscribe => None,
    };
    Ok(TopicReport {
        topic: t.topic.clone(),
        access: t.access,
        verdict: if d.is_allowed() { "allow" } else { "deny" },
        decided_by: d.decided_by.label().to_owned(),
        reason: d.deny().map(|x| reason_name(x.reason).to_owned()),
        message: d.deny().map(|x| x.message.clone()),
        code,
        trace: steps(&d.trace),
    })
}
