//! `mqtt-policy check`: the request file format and the JSON report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use mqtt_policy_host::{
    Access, Attribute, ConnectDecision, ConnectRequest, DenyReason, PolicyHost, ProtocolVersion,
    Reply, StepResult, TopicAnswer, cert,
};
use serde::{Deserialize, Serialize};

/// Largest request file read.
const MAX_REQUEST_FILE_BYTES: u64 = 1 << 20;

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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
    /// The code on the wire: the SUBACK entry for a subscribe, the MQTT 5
    /// PUBACK/PUBREC or UNSUBACK reason code; null where `reply` is not
    /// `code`.
    pub code: Option<u8>,
    /// What the broker sends: `code` (an acknowledgement carrying `code`),
    /// `ack` (the normal acknowledgement of a version with no code for it),
    /// `none` (QoS 0 publish, delivery) or `disconnect` (MQTT 3.1 has no
    /// SUBACK refusal: the connection is closed).
    pub reply: &'static str,
    pub trace: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub policy: String,
    pub result: String,
}

fn reason_name(r: DenyReason) -> &'static str {
    r.as_str()
}

fn steps(trace: &[mqtt_policy_host::Step]) -> Vec<StepReport> {
    trace
        .iter()
        .map(|s| StepReport {
            policy: s.policy.to_string(),
            result: match &s.result {
                StepResult::Allow => "allow".into(),
                StepResult::Deny(r) => format!("deny ({})", reason_name(*r)),
                StepResult::Defer => "defer".into(),
                StepResult::NotAsked => "not asked".into(),
                StepResult::Failed(e @ mqtt_policy_host::PolicyError::Panicked { .. }) => {
                    e.to_string()
                }
                StepResult::Failed(e) => format!("failed: {e}"),
            },
        })
        .collect()
}

/// A validated request, ready to evaluate against any chain.
#[derive(Debug)]
pub struct Prepared {
    /// The CONNECT, its certificate chain parsed (or the parse error kept,
    /// for the host to deny as a broker would).
    pub connect: ConnectRequest,
    pub topics: Vec<TopicInput>,
}

/// Parse request JSON.
pub fn parse_request(text: &str) -> anyhow::Result<RequestFile> {
    Ok(serde_json::from_str(text)?)
}

/// Check a request for bad input (reported as errors, before any chain is
/// loaded) and read its certificate files, relative to `base_dir`.
pub fn prepare(file: RequestFile, base_dir: &Path) -> anyhow::Result<Prepared> {
    let connect = connect_request(&file.connect, base_dir)?;
    for (i, t) in file.topics.iter().enumerate() {
        if t.qos > 2 {
            bail!("topics[{i}]: qos must be 0, 1 or 2, got {}", t.qos);
        }
    }
    Ok(Prepared {
        connect,
        topics: file.topics,
    })
}

/// Load the chain, read the request, evaluate, and build the report.
pub fn run(config: &Path, request_path: &Path, cache_dir: Option<&Path>) -> anyhow::Result<Report> {
    let text = mqtt_policy_host::read_regular_text(request_path, MAX_REQUEST_FILE_BYTES)
        .context("request file")?;
    let file = parse_request(&text)
        .with_context(|| format!("invalid request file {}", request_path.display()))?;
    let prepared = prepare(
        file,
        request_path.parent().unwrap_or_else(|| Path::new(".")),
    )?;
    let mut builder = PolicyHost::builder(config);
    if let Some(dir) = cache_dir {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build().context("cannot load the chain")?;
    evaluate(&host, &prepared)
}

/// Where `check` keeps compiled modules unless told otherwise:
/// `$XDG_CACHE_HOME/mqtt-policy`, else `~/.cache/mqtt-policy`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mqtt-policy"))
}

/// Evaluate a prepared request as a broker would through the session API:
/// the connect, then (if accepted) each topic request in the same session.
pub fn evaluate(host: &PolicyHost, prepared: &Prepared) -> anyhow::Result<Report> {
    let version = prepared.connect.protocol_version;
    let (connect, topic_reports, skipped) = match host.connect(prepared.connect.clone()) {
        Ok(session) => {
            let connect = connect_report(session.connect_decision(), version);
            let reports = prepared
                .topics
                .iter()
                .map(|t| {
                    let answer = match t.access {
                        AccessInput::Publish => session.publish(&t.topic, t.qos, t.retain),
                        AccessInput::Subscribe => {
                            first(session.subscribe([(t.topic.as_str(), t.qos)]))?
                        }
                        AccessInput::Receive => session.receive(&t.topic, t.qos, t.retain),
                        AccessInput::Unsubscribe => first(session.unsubscribe([t.topic.as_str()]))?,
                    };
                    Ok(topic_report(t, &answer))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (connect, reports, None)
        }
        Err(refused) => {
            let skipped =
                (!prepared.topics.is_empty()).then(|| "the connection was refused".to_string());
            (
                connect_report(&refused.decision, version),
                Vec::new(),
                skipped,
            )
        }
    };
    Ok(Report {
        generation: connect.generation,
        connect: connect.report,
        topics: topic_reports,
        topics_skipped: skipped,
    })
}

fn first(answers: Vec<TopicAnswer>) -> anyhow::Result<TopicAnswer> {
    answers
        .into_iter()
        .next()
        .context("the session gave no answer for a filter")
}

fn connect_request(c: &ConnectInput, base: &Path) -> anyhow::Result<ConnectRequest> {
    let version = ProtocolVersion::try_from(c.protocol_version).map_err(|_| {
        anyhow::anyhow!(
            "connect.protocol_version must be 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0), got {}",
            c.protocol_version
        )
    })?;
    let mut request = ConnectRequest::new(c.client_id.clone())
        .protocol_version(version)
        .clean_start(c.clean_start)
        .keep_alive(c.keep_alive);
    request.username = c.username.clone();
    request.peer_address = c.peer_address.clone();
    request.listener = c.listener.clone();
    match (&c.password, &c.password_base64) {
        (Some(_), Some(_)) => bail!("connect: give password or password_base64, not both"),
        (Some(p), None) => request = request.password(p.as_str()),
        (None, Some(b)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .context("connect.password_base64 is not valid base64")?;
            request = request.password(bytes);
        }
        (None, None) => {}
    }
    for p in &c.user_properties {
        request = request.user_property(p.name.clone(), p.value.clone());
    }
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
            mqtt_policy_host::read_regular(&path, cert::MAX_INPUT_BYTES as u64)
                .context("certificate file")?,
        );
    }
    let mut ders = Vec::new();
    for blob in &blobs {
        match cert::parse_chain(blob) {
            Ok(chain) => ders.extend(chain.into_iter().map(|c| c.der)),
            // Hand the unparsable blob over so the host records why.
            Err(_) => return Ok(request.certificate_chain_pem(blob)),
        }
    }
    if !ders.is_empty() {
        request = request.certificate_chain_der(&ders);
    }
    Ok(request)
}

struct ConnectReportWithGeneration {
    generation: u64,
    report: ConnectReport,
}

fn connect_report(d: &ConnectDecision, version: ProtocolVersion) -> ConnectReportWithGeneration {
    let (attributes, roles) = match &d.outcome {
        mqtt_policy_host::Outcome::Allow(g) => (
            g.attributes
                .iter()
                .map(|Attribute { key, value }| (key.clone(), value.clone()))
                .collect(),
            g.roles.clone(),
        ),
        mqtt_policy_host::Outcome::Deny(_) => (BTreeMap::new(), Vec::new()),
    };
    ConnectReportWithGeneration {
        generation: d.generation,
        report: ConnectReport {
            verdict: if d.is_allowed() { "allow" } else { "deny" },
            decided_by: d.decided_by.label().to_owned(),
            reason: d.deny().map(|x| reason_name(x.reason).to_owned()),
            message: d.deny().map(|x| x.message.clone()),
            code: d.connack_code(version),
            attributes,
            roles,
            trace: steps(&d.trace),
        },
    }
}

fn topic_report(t: &TopicInput, answer: &TopicAnswer) -> TopicReport {
    let d = &answer.decision;
    let (code, reply) = match answer.reply {
        Reply::Code(c) => (Some(c), "code"),
        Reply::Ack => (None, "ack"),
        Reply::Nothing => (None, "none"),
        Reply::Disconnect => (None, "disconnect"),
    };
    TopicReport {
        topic: t.topic.clone(),
        access: t.access,
        verdict: if d.is_allowed() { "allow" } else { "deny" },
        decided_by: d.decided_by.label().to_owned(),
        reason: d.deny().map(|x| reason_name(x.reason).to_owned()),
        message: d.deny().map(|x| x.message.clone()),
        code,
        reply,
        trace: steps(&d.trace),
    }
}
