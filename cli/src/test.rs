//! `mqtt-policy test`: table-driven tests of a chain. A case file (TOML, or
//! JSON when its name ends in `.json`) lists requests and the decisions
//! expected for them; each runs through the host's session API exactly as
//! `check` runs a request file, and every difference is reported by field.
//!
//! ```toml
//! config = "policies.toml"           # the chain, relative to this file (--config overrides)
//!
//! [[case]]
//! name = "device certificate"
//! versions = [4, 5]                  # optional: run once per protocol level
//! connect = { client_id = "device-1", certificate_files = ["certs/device-1.pem"] }
//! expect = { verdict = "allow", decided_by = "certs", code = 0, roles = ["device"] }
//! topics = [
//!   { topic = "devices/device-2/telemetry", access = "publish", qos = 1,
//!     expect = { verdict = "deny", reply = { 4 = "ack", 5 = "code" }, code = { 5 = 0x87 } } },
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mqtt_policy_host::PolicyHost;
use serde::Deserialize;

use crate::check::{self, AccessInput, ConnectInput, RequestFile, TopicInput};

/// Largest case file read.
const MAX_CASE_FILE_BYTES: u64 = 4 << 20;

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The chain file, relative to the case file; `--config` overrides it.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// The cases, run in order.
    #[serde(rename = "case", alias = "cases", default)]
    pub cases: Vec<Case>,
}

/// One request and what the chain must decide.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The CONNECT, as in a request file (`certificate_files` relative to
    /// the case file).
    pub connect: ConnectInput,
    /// Protocol levels (3, 4, 5) to run the case at, replacing
    /// `connect.protocol_version`. Default: the levels of a per-version
    /// `expect.code` table, else the connect's own level.
    #[serde(default)]
    pub versions: Vec<u8>,
    pub expect: ConnectExpect,
    /// Topic requests made in the session, in order, each with its expectation.
    #[serde(default)]
    pub topics: Vec<TopicCase>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A deny reason as the contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    NotAuthorized,
    BadUsernameOrPassword,
    Banned,
    BadAuthenticationMethod,
    ClientIdentifierNotValid,
    ServerUnavailable,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::NotAuthorized => "not-authorized",
            Reason::BadUsernameOrPassword => "bad-username-or-password",
            Reason::Banned => "banned",
            Reason::BadAuthenticationMethod => "bad-authentication-method",
            Reason::ClientIdentifierNotValid => "client-identifier-not-valid",
            Reason::ServerUnavailable => "server-unavailable",
        }
    }
}

/// What a topic answer puts on the wire (see `check`'s `reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyKind {
    Code,
    Ack,
    None,
    Disconnect,
}

impl ReplyKind {
    fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Code => "code",
            ReplyKind::Ack => "ack",
            ReplyKind::None => "none",
            ReplyKind::Disconnect => "disconnect",
        }
    }
}

/// One value for every protocol version, or one per level (`{ 4 = 5, 5 = 0x87 }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a value, or a table of values by protocol level like { 4 = 5, 5 = 0x87 }"
)]
pub enum PerVersion<T> {
    One(T),
    ByLevel(BTreeMap<String, T>),
}

impl<T: Copy> PerVersion<T> {
    /// The value for `level`; `None` (not checked at that level) when a
    /// table has no entry for it.
    fn at(&self, level: u8) -> Option<T> {
        match self {
            PerVersion::One(v) => Some(*v),
            PerVersion::ByLevel(map) => map.get(&level.to_string()).copied(),
        }
    }

    fn levels(&self) -> Result<Vec<u8>, String> {
        match self {
            PerVersion::One(_) => Ok(Vec::new()),
            PerVersion::ByLevel(map) => map.keys().map(|k| level(k)).collect(),
        }
    }
}

fn level(key: &str) -> Result<u8, String> {
    match key {
        "3" => Ok(3),
        "4" => Ok(4),
        "5" => Ok(5),
        other => Err(format!(
            "\"{other}\" is not a protocol level (3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0)"
        )),
    }
}

/// What the CONNECT must get. Unset fields are not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectExpect {
    pub verdict: Verdict,
    /// A policy name, `(default)` or `(host)`.
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub reason: Option<Reason>,
    /// The CONNACK code.
    #[serde(default)]
    pub code: Option<PerVersion<u8>>,
    /// Text the deny message must contain.
    #[serde(default)]
    pub message_contains: Option<String>,
    /// Attributes the grant must hold with these values (others may exist).
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    /// The granted roles, exactly (in any order).
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// A topic request of a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicCase {
    pub topic: String,
    pub access: AccessInput,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub expect: TopicExpect,
}

/// What a topic request must get. Unset fields are not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicExpect {
    pub verdict: Verdict,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub reason: Option<Reason>,
    /// The code on the wire (SUBACK entry, MQTT 5 PUBACK/UNSUBACK code).
    #[serde(default)]
    pub code: Option<PerVersion<u8>>,
    #[serde(default)]
    pub reply: Option<PerVersion<ReplyKind>>,
    #[serde(default)]
    pub message_contains: Option<String>,
}

/// Parse a case file's text; JSON if `path` ends in `.json`, else TOML.
pub fn parse_cases(text: &str, path: &Path) -> anyhow::Result<CaseFile> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        Ok(serde_json::from_str(text)?)
    } else {
        Ok(toml::from_str(text)?)
    }
}

/// One run of a case at one protocol level, ready to evaluate.
struct Run<'a> {
    case: &'a Case,
    level: u8,
    /// Shown when the case runs at several levels.
    label: String,
    prepared: check::Prepared,
}

/// The result of a whole file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Options of a test run.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// The chain, overriding the case file's `config`.
    pub config: Option<&'a Path>,
    pub cache_dir: Option<&'a Path>,
    /// Colour the output (when stdout is a terminal).
    pub colour: bool,
}

/// Should output be coloured: stdout is a terminal and NO_COLOR is unset.
pub fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Read and check the case file, load the chain, run every case, print a
/// line per run (with the differences of failed ones) and the summary.
/// `Err` is bad input (exit 2); failed cases are counted in the summary.
pub fn run(
    cases_path: &Path,
    options: &Options<'_>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Summary> {
    let text = mqtt_policy_host::read_regular_text(cases_path, MAX_CASE_FILE_BYTES)
        .with_context(|| format!("cannot read case file {}", cases_path.display()))?;
    let file = parse_cases(&text, cases_path)
        .with_context(|| format!("invalid case file {}", cases_path.display()))?;
    let base = cases_path.parent().unwrap_or_else(|| Path::new("."));
    let config = match (options.config, &file.config) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) => base.join(path),
        (None, None) => bail!(
            "{}: no chain to test: give --config or set `config = \"policies.toml\"` in the file",
            cases_path.display()
        ),
    };
    if file.cases.is_empty() {
        bail!("{}: no [[case]] entries", cases_path.display());
    }
    let runs = plan(&file.cases, base)
        .with_context(|| format!("invalid case file {}", cases_path.display()))?;
    let mut builder = PolicyHost::builder(&config);
    if let Some(dir) = options.cache_dir {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build().context("cannot load the chain")?;
    let paint = Paint { on: options.colour };
    let mut summary = Summary::default();
    for run in &runs {
        let report = check::evaluate(&host, &run.prepared)
            .with_context(|| format!("case \"{}\"", run.case.name))?;
        let differences = compare(run, &report);
        if differences.is_empty() {
            summary.passed += 1;
            writeln!(
                out,
                "{} {}{}",
                paint.green("ok  "),
                run.case.name,
                run.label
            )?;
        } else {
            summary.failed += 1;
            writeln!(out, "{} {}{}", paint.red("FAIL"), run.case.name, run.label)?;
            for d in differences {
                writeln!(out, "       {d}")?;
            }
        }
    }
    let line = format!("{} passed, {} failed", summary.passed, summary.failed);
    let line = if summary.failed > 0 {
        paint.red(&line)
    } else {
        paint.green(&line)
    };
    writeln!(out, "{line}")?;
    Ok(summary)
}

/// Expand cases into runs, one per protocol level, and check everything that
/// can be checked before the chain runs: levels, per-level tables, request
/// fields, certificate files.
fn plan<'a>(cases: &'a [Case], base: &Path) -> anyhow::Result<Vec<Run<'a>>> {
    let mut runs = Vec::new();
    let mut names = BTreeSet::new();
    for case in cases {
        let what = || format!("case \"{}\"", case.name);
        if case.name.trim().is_empty() {
            bail!("a case has an empty name");
        }
        if !names.insert(case.name.as_str()) {
            bail!("{}: two cases have this name", what());
        }
        let levels = levels(case).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
        check_tables(case).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
        for &level in &levels {
            let mut connect = case.connect.clone();
            connect.protocol_version = level;
            let file = RequestFile {
                connect,
                topics: case
                    .topics
                    .iter()
                    .map(|t| TopicInput {
                        topic: t.topic.clone(),
                        access: t.access,
                        qos: t.qos,
                        retain: t.retain,
                    })
                    .collect(),
            };
            let prepared = check::prepare(file, base).with_context(what)?;
            let label = if levels.len() > 1 {
                format!(" [MQTT {}]", version_name(level))
            } else {
                String::new()
            };
            runs.push(Run {
                case,
                level,
                label,
                prepared,
            });
        }
    }
    Ok(runs)
}

fn version_name(level: u8) -> &'static str {
    match level {
        3 => "3.1",
        4 => "3.1.1",
        _ => "5",
    }
}

/// The levels a case runs at.
fn levels(case: &Case) -> Result<Vec<u8>, String> {
    let mut levels: Vec<u8> = if !case.versions.is_empty() {
        case.versions.clone()
    } else {
        match case
            .expect
            .code
            .as_ref()
            .map(PerVersion::levels)
            .transpose()?
        {
            Some(levels) if !levels.is_empty() => levels,
            _ => vec![case.connect.protocol_version],
        }
    };
    for &l in &levels {
        level(&l.to_string()).map_err(|e| format!("versions: {e}"))?;
    }
    levels.sort_unstable();
    levels.dedup();
    Ok(levels)
}

/// Per-level tables name only protocol levels.
fn check_tables(case: &Case) -> Result<(), String> {
    fn table<T: Copy>(what: &str, v: Option<&PerVersion<T>>) -> Result<(), String> {
        v.map_or(Ok(Vec::new()), PerVersion::levels)
            .map(|_| ())
            .map_err(|e| format!("{what}: {e}"))
    }
    table("expect.code", case.expect.code.as_ref())?;
    for (i, t) in case.topics.iter().enumerate() {
        table(&format!("topics[{i}].expect.code"), t.expect.code.as_ref())?;
        table(
            &format!("topics[{i}].expect.reply"),
            t.expect.reply.as_ref(),
        )?;
    }
    Ok(())
}

fn code_text(code: u8) -> String {
    format!("{code} ({code:#04x})")
}

fn opt_text(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| format!("\"{v}\""))
}

/// What the verdict was, in words, for a mismatch line.
fn got_verdict(
    verdict: &str,
    reason: Option<&str>,
    decided_by: &str,
    message: Option<&str>,
) -> String {
    match (reason, message) {
        (Some(reason), Some(message)) => {
            format!("{verdict} ({reason}, by {decided_by}: {message})")
        }
        _ => format!("{verdict} (by {decided_by})"),
    }
}

/// The differences between what a run expected and what it got, one line each.
fn compare(run: &Run<'_>, report: &check::Report) -> Vec<String> {
    let mut out = Vec::new();
    let expect = &run.case.expect;
    let got = &report.connect;
    if got.verdict != expect.verdict.as_str() {
        out.push(format!(
            "connect.verdict: expected {}, got {}",
            expect.verdict.as_str(),
            got_verdict(
                got.verdict,
                got.reason.as_deref(),
                &got.decided_by,
                got.message.as_deref()
            )
        ));
    }
    if let Some(want) = &expect.decided_by
        && *want != got.decided_by
    {
        out.push(format!(
            "connect.decided_by: expected \"{want}\", got \"{}\"",
            got.decided_by
        ));
    }
    if let Some(want) = expect.reason
        && got.reason.as_deref() != Some(want.as_str())
    {
        out.push(format!(
            "connect.reason: expected \"{}\", got {}",
            want.as_str(),
            opt_text(got.reason.as_deref())
        ));
    }
    if let Some(want) = expect.code.as_ref().and_then(|c| c.at(run.level))
        && want != got.code
    {
        out.push(format!(
            "connect.code: expected {}, got {}",
            code_text(want),
            code_text(got.code)
        ));
    }
    if let Some(want) = &expect.message_contains
        && !got
            .message
            .as_deref()
            .is_some_and(|m| m.contains(want.as_str()))
    {
        out.push(format!(
            "connect.message: expected it to contain \"{want}\", got {}",
            opt_text(got.message.as_deref())
        ));
    }
    if let Some(want) = &expect.attributes {
        for (key, value) in want {
            let have = got.attributes.get(key);
            if have != Some(value) {
                out.push(format!(
                    "connect.attributes.{key}: expected \"{value}\", got {}",
                    opt_text(have.map(String::as_str))
                ));
            }
        }
    }
    if let Some(want) = &expect.roles {
        let want_set: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let got_set: BTreeSet<&str> = got.roles.iter().map(String::as_str).collect();
        if want_set != got_set {
            out.push(format!(
                "connect.roles: expected {want_set:?}, got {got_set:?}"
            ));
        }
    }
    for (i, t) in run.case.topics.iter().enumerate() {
        let label = format!("topics[{i}] ({} {})", access_name(t.access), t.topic);
        match report.topics.get(i) {
            Some(answer) => compare_topic(&label, &t.expect, run.level, answer, &mut out),
            None => out.push(format!(
                "{label}: expected {}, got no answer: {}",
                t.expect.verdict.as_str(),
                report
                    .topics_skipped
                    .as_deref()
                    .unwrap_or("the request was not evaluated")
            )),
        }
    }
    out
}

fn access_name(access: AccessInput) -> &'static str {
    match access {
        AccessInput::Publish => "publish",
        AccessInput::Subscribe => "subscribe",
        AccessInput::Receive => "receive",
        AccessInput::Unsubscribe => "unsubscribe",
    }
}

fn compare_topic(
    label: &str,
    expect: &TopicExpect,
    level: u8,
    got: &check::TopicReport,
    out: &mut Vec<String>,
) {
    if got.verdict != expect.verdict.as_str() {
        out.push(format!(
            "{label}.verdict: expected {}, got {}",
            expect.verdict.as_str(),
            got_verdict(
                got.verdict,
                got.reason.as_deref(),
                &got.decided_by,
                got.message.as_deref()
            )
        ));
    }
    if let Some(want) = &expect.decided_by
        && *want != got.decided_by
    {
        out.push(format!(
            "{label}.decided_by: expected \"{want}\", got \"{}\"",
            got.decided_by
        ));
    }
    if let Some(want) = expect.reason
        && got.reason.as_deref() != Some(want.as_str())
    {
        out.push(format!(
            "{label}.reason: expected \"{}\", got {}",
            want.as_str(),
            opt_text(got.reason.as_deref())
        ));
    }
    if let Some(want) = expect.code.as_ref().and_then(|c| c.at(level))
        && got.code != Some(want)
    {
        let have = got
            .code
            .map_or_else(|| format!("no code (reply \"{}\")", got.reply), code_text);
        out.push(format!(
            "{label}.code: expected {}, got {have}",
            code_text(want)
        ));
    }
    if let Some(want) = expect.reply.as_ref().and_then(|r| r.at(level))
        && got.reply != want.as_str()
    {
        out.push(format!(
            "{label}.reply: expected \"{}\", got \"{}\"",
            want.as_str(),
            got.reply
        ));
    }
    if let Some(want) = &expect.message_contains
        && !got
            .message
            .as_deref()
            .is_some_and(|m| m.contains(want.as_str()))
    {
        out.push(format!(
            "{label}.message: expected it to contain \"{want}\", got {}",
            opt_text(got.message.as_deref())
        ));
    }
}

/// ANSI colours, or none.
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        let mut s = String::new();
        if self.on {
            let _ = write!(s, "\x1b[{code}m{text}\x1b[0m");
        } else {
            s.push_str(text);
        }
        s
    }

    fn green(&self, text: &str) -> String {
        self.wrap("32", text)
    }

    fn red(&self, text: &str) -> String {
        self.wrap("1;31", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
config = "chain.toml"

[[case]]
name = "two levels"
connect = { client_id = "c", username = "u" }
expect = { verdict = "deny", reason = "bad-username-or-password", code = { 4 = 4, 5 = 0x86 } }

[[case]]
name = "one level"
versions = [5]
connect = { client_id = "c" }
expect = { verdict = "allow", attributes = { a = "b" }, roles = ["r"] }
topics = [
  { topic = "t", access = "subscribe", qos = 1, expect = { verdict = "deny", code = 0x87, reply = "code" } },
]
"#;

    #[test]
    fn case_files_expand_into_runs_per_level() -> anyhow::Result<()> {
        let file = parse_cases(FILE, Path::new("tests.toml"))?;
        let runs = plan(&file.cases, Path::new("."))?;
        let labels: Vec<(String, u8)> = runs
            .iter()
            .map(|r| (format!("{}{}", r.case.name, r.label), r.level))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("two levels [MQTT 3.1.1]".into(), 4),
                ("two levels [MQTT 5]".into(), 5),
                ("one level".into(), 5),
            ]
        );
        Ok(())
    }

    #[test]
    fn bad_case_files_say_what_is_wrong() -> anyhow::Result<()> {
        let bad = |text: &str| -> String {
            match parse_cases(text, Path::new("t.toml"))
                .and_then(|f| plan(&f.cases, Path::new(".")).map(|_| ()))
            {
                Ok(()) => String::new(),
                Err(e) => format!("{e:#}"),
            }
        };
        let case = |extra: &str| {
            format!("[[case]]\nname = \"x\"\nconnect = {{ client_id = \"c\" }}\n{extra}\n")
        };
        for (text, needle) in [
            (
                case("expect = { verdict = \"maybe\" }"),
                "unknown variant `maybe`",
            ),
            (
                case("expect = { verdict = \"deny\", reason = \"nope\" }"),
                "unknown variant `nope`",
            ),
            (
                case("expect = { verdict = \"deny\", colour = 1 }"),
                "unknown field `colour`",
            ),
            (
                case("expect = { verdict = \"deny\", code = { 6 = 1 } }"),
                "\"6\" is not a protocol level",
            ),
            (
                case(
                    "expect = { verdict = \"deny\" }\ntopics = [{ topic = \"t\", access = \"publish\", expect = { verdict = \"deny\", reply = { v5 = \"ack\" } } }]",
                ),
                "topics[0].expect.reply: \"v5\" is not a protocol level",
            ),
            (
                case("versions = [2]\nexpect = { verdict = \"deny\" }"),
                "versions: \"2\"",
            ),
            (
                case("expect = { verdict = \"deny\", code = \"x\" }"),
                "a value, or a table of values by protocol level",
            ),
            (case(""), "missing field `expect`"),
            (
                format!(
                    "{}{}",
                    case("expect = { verdict = \"deny\" }"),
                    case("expect = { verdict = \"deny\" }")
                ),
                "two cases have this name",
            ),
        ] {
            let err = bad(&text);
            assert!(err.contains(needle), "{needle}: {err}");
        }
        Ok(())
    }

    #[test]
    fn json_case_files_are_read_too() -> anyhow::Result<()> {
        let json = r#"{"config": "c.toml", "case": [{"name": "a", "connect": {"client_id": "c", "protocol_version": 5},
            "expect": {"verdict": "deny", "code": 135}}]}"#;
        let file = parse_cases(json, Path::new("tests.json"))?;
        let runs = plan(&file.cases, Path::new("."))?;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].level, 5);
        Ok(())
    }
}
