//! `topic-list`: per-client topic rules from config, a Mosquitto `acl_file`,
//! and the topics granted to the session at connect (so `jwt` + `topic-list`
//! reproduce the Auth0 device-profile flow).
//!
//! Config:
//! ```json
//! {
//!   "rules": [
//!     {"client_id": "sensor-*",                       // glob (* and ?); omit to match any
//!      "username": "plant-?",                         // glob; omit to match any
//!      "publish":   ["sensors/{client_id}/#"],        // {client_id}, {username}, {attr:KEY} placeholders
//!      "subscribe": ["commands/{client_id}/+"],
//!      "receive":   ["..."],                          // default: the subscribe list
//!      "unsubscribe": ["..."]}                        // default: the subscribe list
//!   ],
//!   "acl_file": "user alice\ntopic readwrite plant/#\n",  // the TEXT of a Mosquitto acl_file
//!   "acl_username": "{attr:username}",  // whose `user` section and %u: a session attribute (default)
//!                                       // or "{username}", the MQTT username as sent
//!   "session_topics": "topics",   // session attribute holding granted filters (JSON list); null to ignore
//!   "session_expiry": "exp",      // session attribute: Unix seconds after which session topics grant nothing; null to ignore
//!   "otherwise": "deny"           // or "defer" when nothing grants the request
//! }
//! ```
//! Semantics are MQTT's: `+` and `#` wildcards, `$` topics not matched by
//! leading wildcards, and a subscribe is allowed only when the requested
//! filter is covered by an allowed filter (not by string equality).
//! `{attr:KEY}` is the session attribute KEY granted at connect, e.g.
//! `{attr:cert_cn}` from `thumbprint`, which ties topics to the certificate
//! rather than to a client id the client chose. A placeholder whose value is
//! missing, empty, starts with `$`, or contains `/`, `+`, `#` or a control
//! character makes that filter grant nothing, so a client cannot widen its
//! own rule.
//!
//! `{attr:cert_cn}` is the leaf certificate's common name as `thumbprint`
//! grants it: the decoded, unescaped value of the subject's most specific CN
//! (the last CN in DER order, the first in the RFC 4514 subject), not the
//! escaped RFC 4514 form. Because it is the CN exactly as the certificate
//! holds it, it can contain any character; the rule above makes an unsafe CN
//! grant nothing, and CAs whose CNs end up in topics should still restrict
//! them to topic-safe characters.
//!
//! Session topics (`session_topics`) allow publish and receive on the topics
//! they match, and subscribe and unsubscribe with the filters they cover,
//! until the session attribute named by `session_expiry` (`exp`, which `jwt`
//! grants from the token's `exp` claim) says they expired; an expiry that
//! is not a number of seconds makes them grant nothing.
//!
//! # How long a verdict holds
//!
//! Every answer depends only on the request, the session's grant and the
//! configuration, so it holds for the session (the host caches it until the
//! client disconnects or the chain is reloaded), except an allow that came
//! from session topics with an expiry: that one holds until the expiry, and
//! the next check after it is asked again (and, with the topics expired,
//! refused unless a rule allows it).
//!
//! Note that `client_id` and `username` are chosen by the client: a rule
//! keyed on them trusts whatever authenticated the connection to have
//! checked them. Prefer `{attr:...}` values granted by an authenticating
//! policy (certificate CN, token subject, the `password` policy's
//! `username`). Shared subscriptions (`$share/group/filter`) are matched as
//! written by `rules` and session topics, so they are denied unless a rule
//! grants that `$share/...` filter explicitly.
//!
//! # `acl_file`
//!
//! `acl_file` is the content of a Mosquitto 2.0 acl_file (the host, or
//! whoever writes the chain config, reads the file; a policy has no
//! filesystem). It is read as Mosquitto reads it (`aclfile__parse` in
//! Mosquitto's `src/security_default.c`):
//!
//! - `user <name>` starts that user's section (the rest of the line, so a
//!   name may hold spaces); sections of the same name add up. `topic` lines
//!   before the first `user` line are the *anonymous* section, for clients
//!   that sent no username.
//! - `topic [read|write|readwrite|deny] <filter>`: no access word means
//!   readwrite; the filter is the rest of the line (it may hold spaces) and
//!   may use `+` and `#`.
//! - `pattern [read|write|readwrite|deny] <filter>`: applies to every client,
//!   whatever section it follows, with `%c` replaced by the client id and `%u`
//!   by the username wherever they appear (Mosquitto's man page asks for a
//!   whole level; its code, and this, substitute anywhere). A pattern naming
//!   `%u` is skipped for a client without one, so the anonymous get only `%c`
//!   patterns. A pattern with neither logs a warning at load, as Mosquitto's
//!   does.
//! - A `#` in the first column starts a comment; blank lines are skipped.
//!   Words are separated by spaces (not tabs), as Mosquitto's parser does.
//!
//! Any other line, an unknown access word, a `topic`/`pattern` with no
//! filter, an invalid filter, or a `user` with no name is a load error naming
//! the line number. One stricter case: Mosquitto reads `topic deny` (an
//! access word and no filter) as read/write on a topic named `deny`; here it
//! is an error.
//!
//! Checks follow Mosquitto's `mosquitto_acl_check_default`:
//!
//! - The session's own section is decided first, then the patterns. Within
//!   each, any matching `deny` line refuses (Mosquitto files denies at the
//!   front of each list), otherwise any line with the access grants. So a
//!   user's `topic` grant beats a `pattern deny`, but not a `topic deny` of
//!   its own section.
//! - Publish needs `write` (or `readwrite`); receive needs `read`.
//! - SUBSCRIBE is allowed only when the requested filter is *covered* by a
//!   `read` filter (`mqtt_policy_sdk::topic::covers`): `read a/+` allows
//!   subscribing to `a/+` or `a/b`, not to `a/#` or `#`. This is the one
//!   deliberate difference from Mosquitto, which grants every SUBSCRIBE and
//!   only filters messages at delivery (so a client there may subscribe to
//!   `#` and silently receive what it may read). A `deny` refuses a
//!   subscription only when it covers the whole filter; a partly denied
//!   subscription is allowed and its denied messages are refused on
//!   receive. `$share/GROUP/FILTER` needs read on `FILTER`.
//! - UNSUBSCRIBE is always allowed, as in Mosquitto (it only narrows what
//!   the client receives).
//! - As Mosquitto's `acl__check_dollar` does, the file grants no publish to
//!   `$SYS...` except `$SYS/broker/connection/+/state` (bridge state), and no
//!   publish or receive on `$share...` names. `$` topics are otherwise matched
//!   only by filters that start with the same `$` level.
//! - `%c`/`%u` follow the placeholder rule above: a value that is empty,
//!   starts with `$`, or contains `/`, `+` or `#` makes a grant pattern grant
//!   nothing, and makes a `deny` pattern refuse (fail closed). Mosquitto
//!   instead refuses whatever its own section did not grant to a client whose
//!   username or client id holds `+` or `#` when patterns exist, and
//!   substitutes other values as they are.
//! - A client whose section and patterns say nothing falls through to `rules`,
//!   session topics and `otherwise` (Mosquitto: denied). An explicit `deny`
//!   line refuses even what `rules` or session topics would grant.
//!
//! Which section, and which `%u`: in Mosquitto the username was checked
//! against its password_file. Here any policy may have let the client in, so
//! by default (`"acl_username": "{attr:username}"`) the section and `%u` come
//! from the session attribute `username` that the `password` policy sets to
//! the verified username. A client that sent no username gets the anonymous
//! section; one that sent a username no policy vouched for (a certificate or
//! JWT client) gets no section, only the `%c` patterns. Set
//! `"acl_username": "{username}"` only when every way in verifies the MQTT
//! username.

use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::topic;
use serde::Deserialize;

mod acl;
mod filter;

use filter::RuleFilter;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Otherwise {
    #[default]
    Deny,
    Defer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    receive: Option<Vec<String>>,
    #[serde(default)]
    unsubscribe: Option<Vec<String>>,
}

fn default_session_topics() -> Option<String> {
    Some("topics".into())
}

fn default_session_expiry() -> Option<String> {
    Some("exp".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default = "default_session_topics")]
    session_topics: Option<String>,
    #[serde(default = "default_session_expiry")]
    session_expiry: Option<String>,
    #[serde(default)]
    otherwise: Otherwise,
    #[serde(default)]
    acl_file: Option<String>,
    #[serde(default)]
    acl_username: Option<String>,
}

struct Rule {
    client_id: Option<Glob>,
    username: Option<Glob>,
    publish: Vec<RuleFilter>,
    subscribe: Vec<RuleFilter>,
    receive: Vec<RuleFilter>,
    unsubscribe: Vec<RuleFilter>,
}

pub struct TopicList {
    rules: Vec<Rule>,
    session_topics: Option<String>,
    session_expiry: Option<String>,
    otherwise: Otherwise,
    acl: Option<acl::AclFile>,
}

/// A rule's `client_id` or `username` pattern, sorted at `init` into the
/// shapes rules almost always have, so a check compares strings instead of
/// walking the pattern.
#[derive(Debug)]
enum Glob {
    /// No `*` or `?`: the text itself.
    Exact(String),
    /// Literal text then only `*`s, e.g. `sensor-*`.
    Prefix(String),
    /// Anything else.
    Pattern(String),
}

impl Glob {
    fn new(pattern: String) -> Glob {
        let literal = pattern.trim_end_matches('*');
        if literal.contains(['*', '?']) {
            Glob::Pattern(pattern)
        } else if literal.len() == pattern.len() {
            Glob::Exact(pattern)
        } else {
            Glob::Prefix(literal.to_owned())
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Exact(s) => filter::same(text.as_bytes(), s.as_bytes()),
            Glob::Prefix(s) => text
                .as_bytes()
                .get(..s.len())
                .is_some_and(|head| filter::same(head, s.as_bytes())),
            Glob::Pattern(p) => glob(p, text),
        }
    }
}

/// `*` matches any run of characters, `?` exactly one. Walks the bytes (no
/// allocation, no decoding: it runs for every rule on every check); a
/// literal compares byte for byte, which for UTF-8 is character for
/// character, and `?` or a `*` step takes one whole character of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // The length of the UTF-8 character starting with `b`.
    let char_len = |b: u8| match b {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    };
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text offset it now stands for.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&tb) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ti += char_len(tb);
            }
            Some(&pb) if pb == tb => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + t.get(st).map_or(1, |b| char_len(*b));
                    pi = sp + 1;
                    ti = next;
                    star = Some((sp, next));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

/// May a client-chosen or session value be substituted into a filter? It may
/// not add levels or wildcards, nor start a `$` topic such as `$SYS`, nor
/// carry control characters (MQTT forbids U+0000 in topics, and a
/// certificate CN may hold any of them): the SDK's `topic::level` rule.
fn safe_value(v: &str) -> bool {
    topic::level(v).is_some()
}

/// Parse and check each of a rule's filters; an error names the rule, the
/// list and the filter.
fn rule_filters(filters: &[String], what: &str) -> Result<Vec<RuleFilter>, String> {
    filters
        .iter()
        .map(|f| RuleFilter::parse(f).map_err(|m| format!("{what} filter \"{f}\": {m}")))
        .collect()
}

impl Rule {
    fn applies(&self, client_id: &str, username: Option<&str>) -> bool {
        self.client_id.as_ref().is_none_or(|g| g.matches(client_id))
            && self
                .username
                .as_ref()
                .is_none_or(|g| username.is_some_and(|u| g.matches(u)))
    }

    fn filters(&self, access: Access) -> &[RuleFilter] {
        match access {
            Access::Publish => &self.publish,
            Access::Subscribe => &self.subscribe,
            Access::Receive => &self.receive,
            Access::Unsubscribe => &self.unsubscribe,
        }
    }
}

fn grants(filter: &str, access: Access, topic_or_filter: &str) -> bool {
    match access {
        Access::Publish | Access::Receive => topic::matches(filter, topic_or_filter),
        Access::Subscribe | Access::Unsubscribe => topic::covers(filter, topic_or_filter),
    }
}

impl Policy for TopicList {
    fn new(config: &str) -> Result<Self, String> {
        // Errors name the offending field by path.
        let config: Config = mqtt_policy_sdk::config(config)?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.into_iter().enumerate() {
            let what = format!("rule {}", i + 1);
            let receive = r.receive.as_ref().unwrap_or(&r.subscribe);
            let unsubscribe = r.unsubscribe.as_ref().unwrap_or(&r.subscribe);
            rules.push(Rule {
                client_id: r.client_id.map(Glob::new),
                username: r.username.map(Glob::new),
                publish: rule_filters(&r.publish, &format!("{what} publish"))?,
                subscribe: rule_filters(&r.subscribe, &format!("{what} subscribe"))?,
                receive: rule_filters(receive, &format!("{what} receive"))?,
                unsubscribe: rule_filters(unsubscribe, &format!("{what} unsubscribe"))?,
            });
        }
        let acl = match (config.acl_file, config.acl_username) {
            (Some(text), who) => Some(acl::AclFile::parse(&text, who.as_deref())?),
            (None, Some(_)) => return Err("acl_username is set but acl_file is not".into()),
            (None, None) => None,
        };
        if rules.is_empty() && config.session_topics.is_none() && acl.is_none() {
            return Err("nothing to grant: no rules, no session_topics and no acl_file".into());
        }
        Ok(TopicList {
            rules,
            session_topics: config.session_topics,
            session_expiry: config.session_expiry,
            otherwise: config.otherwise,
            acl,
        })
    }

    fn topic_check(&self, req: &TopicRequest) -> TopicAnswer {
        let valid = match req.access {
            Access::Publish | Access::Receive => topic::validate_name(&req.topic),
            Access::Subscribe | Access::Unsubscribe => topic::validate_filter(&req.topic),
        };
        if let Err(e) = valid {
            return deny_topic(DenyReason::NotAuthorized, format!("invalid topic: {e}"))
                .for_session();
        }
        // An explicit deny in the acl_file wins over every grant; see the module docs.
        match self.acl.as_ref().map(|acl| acl.check(req)) {
            Some(acl::Verdict::Allow) => return allow_topic().for_session(),
            Some(acl::Verdict::Deny(line)) => {
                return deny_topic(
                    DenyReason::NotAuthorized,
                    format!("denied by acl_file line {line}"),
                )
                .for_session();
            }
            Some(acl::Verdict::NoMatch) | None => {}
        }
        let username = req.username.as_deref();
        let from_rules = self
            .rules
            .iter()
            .filter(|r| r.applies(&req.client_id, username))
            .flat_map(|r| r.filters(req.access))
            .any(|f| f.grants(req));
        if from_rules {
            return allow_topic().for_session();
        }
        // Session topics grant unsubscribe of whatever they let the client
        // subscribe to (coverage), so a subscription can always be undone.
        let from_session = self
            .session_topics
            .as_deref()
            .and_then(|key| req.attribute_list(key))
            .is_some_and(|list| list.iter().any(|f| grants(f, req.access, &req.topic)));
        if from_session {
            match self.session_expiry(req) {
                Expiry::Never => return allow_topic().for_session(),
                Expiry::At(ms) if mqtt_policy_sdk::log::now_unix_ms() < ms => {
                    return allow_topic().until_unix_ms(ms);
                }
                // Expired, or an expiry we cannot read: the topics grant
                // nothing any more (and never will again in this session).
                Expiry::At(_) | Expiry::Unreadable => {}
            }
        }
        let answer = match self.otherwise {
            Otherwise::Deny => deny_topic(DenyReason::NotAuthorized, "topic not allowed"),
            Otherwise::Defer => TopicVerdict::Defer.into(),
        };
        answer.for_session()
    }
}

/// When a session's topics stop granting.
enum Expiry {
    Never,
    /// Milliseconds since the Unix epoch.
    At(u64),
    Unreadable,
}

impl TopicList {
    fn session_expiry(&self, req: &TopicRequest) -> Expiry {
        let Some(value) = self
            .session_expiry
            .as_deref()
            .and_then(|k| req.attribute(k))
        else {
            return Expiry::Never;
        };
        match value.trim().parse::<u64>() {
            Ok(secs) => Expiry::At(secs.saturating_mul(1000)),
            Err(_) => Expiry::Unreadable,
        }
    }
}

export_policy!(TopicList);

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        client: &str,
        user: Option<&str>,
        access: Access,
        topic: &str,
        attrs: &[(&str, &str)],
    ) -> TopicRequest {
        TopicRequest {
            client_id: client.into(),
            username: user.map(Into::into),
            topic: topic.into(),
            access,
            qos: 0,
            retain: false,
            attributes: attrs
                .iter()
                .map(|(k, v)| Attribute {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            roles: vec![],
        }
    }

    fn allowed(p: &TopicList, r: &TopicRequest) -> bool {
        p.topic_check(r).verdict == TopicVerdict::Allow
    }

    const CONFIG: &str = r##"{"rules": [
        {"client_id": "sensor-*", "publish": ["sensors/{client_id}/#"], "subscribe": ["commands/{client_id}/+"]},
        {"username": "admin", "publish": ["#"], "subscribe": ["#", "$SYS/#"]}
    ]}"##;

    #[test]
    fn placeholders_and_globs() -> Result<(), String> {
        let p = TopicList::new(CONFIG)?;
        assert!(allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Publish,
                "sensors/sensor-1/temp",
                &[]
            )
        ));
        assert!(allowed(
            &p,
            &req("sensor-1", None, Access::Publish, "sensors/sensor-1", &[])
        ));
        assert!(!allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Publish,
                "sensors/sensor-2/temp",
                &[]
            )
        ));
        assert!(!allowed(
            &p,
            &req("pump-1", None, Access::Publish, "sensors/pump-1/temp", &[])
        ));
        // A client id with wildcards must not widen its rule.
        assert!(!allowed(
            &p,
            &req("sensor-#", None, Access::Subscribe, "commands/#", &[])
        ));
        assert!(!allowed(
            &p,
            &req("sensor-+", None, Access::Publish, "sensors/sensor-+/x", &[])
        ));
        Ok(())
    }

    #[test]
    fn attribute_placeholders_bind_topics_to_the_certificate() -> Result<(), String> {
        let p =
            TopicList::new(r#"{"rules": [{"publish": ["devices/{attr:cert_cn}/telemetry"]}]}"#)?;
        let cn = [("cert_cn", "device-1")];
        assert!(allowed(
            &p,
            &req(
                "any",
                None,
                Access::Publish,
                "devices/device-1/telemetry",
                &cn
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "any",
                None,
                Access::Publish,
                "devices/device-2/telemetry",
                &cn
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "any",
                None,
                Access::Publish,
                "devices/device-1/telemetry",
                &[]
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "any",
                None,
                Access::Publish,
                "devices/#/telemetry",
                &[("cert_cn", "#")]
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "any",
                None,
                Access::Publish,
                "devices/a\u{0}b/telemetry",
                &[("cert_cn", "a\u{0}b")]
            )
        ));
        assert!(
            TopicList::new(r#"{"rules": [{"publish": ["a/{nope}"]}]}"#)
                .is_err_and(|e| e.contains("unknown placeholder"))
        );
        assert!(TopicList::new(r#"{"rules": [{"publish": ["a/{attr:x"]}]}"#).is_err());
        Ok(())
    }

    #[test]
    fn subscribe_is_authorized_by_coverage() -> Result<(), String> {
        let p = TopicList::new(CONFIG)?;
        assert!(allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Subscribe,
                "commands/sensor-1/+",
                &[]
            )
        ));
        assert!(allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Subscribe,
                "commands/sensor-1/reboot",
                &[]
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Subscribe,
                "commands/sensor-1/#",
                &[]
            )
        ));
        assert!(!allowed(
            &p,
            &req("sensor-1", None, Access::Subscribe, "commands/#", &[])
        ));
        // receive defaults to the subscribe list
        assert!(allowed(
            &p,
            &req(
                "sensor-1",
                None,
                Access::Receive,
                "commands/sensor-1/reboot",
                &[]
            )
        ));
        Ok(())
    }

    #[test]
    fn dollar_topics_need_an_explicit_grant() -> Result<(), String> {
        let p = TopicList::new(CONFIG)?;
        assert!(!allowed(
            &p,
            &req("x", Some("admin"), Access::Publish, "$SYS/x", &[])
        ));
        assert!(allowed(
            &p,
            &req("x", Some("admin"), Access::Subscribe, "$SYS/broker/#", &[])
        ));
        assert!(allowed(
            &p,
            &req("x", Some("admin"), Access::Subscribe, "a/#", &[])
        ));
        Ok(())
    }

    #[test]
    fn answers_hold_for_the_session_and_session_topics_until_their_expiry() -> Result<(), String> {
        let p = TopicList::new(CONFIG)?;
        // Rules, acl and denials depend on nothing but the session.
        let rule = p.topic_check(&req(
            "sensor-1",
            None,
            Access::Publish,
            "sensors/sensor-1/t",
            &[],
        ));
        assert_eq!((rule.is_allow(), rule.lifetime), (true, Lifetime::Session));
        let denied = p.topic_check(&req("sensor-1", None, Access::Publish, "elsewhere", &[]));
        assert_eq!(
            (denied.is_allow(), denied.lifetime),
            (false, Lifetime::Session)
        );
        // Session topics with an expiry hold until it, then grant nothing.
        let p = TopicList::new("{}")?;
        let later = mqtt_policy_sdk::log::now_unix_secs() + 60;
        let exp = later.to_string();
        let attrs = [("topics", r#"["t/#"]"#), ("exp", exp.as_str())];
        let live = p.topic_check(&req("c", None, Access::Publish, "t/1", &attrs));
        assert_eq!(
            (live.is_allow(), live.lifetime),
            (true, Lifetime::Until(later * 1000))
        );
        let attrs = [("topics", r#"["t/#"]"#), ("exp", "1000")];
        let expired = p.topic_check(&req("c", None, Access::Publish, "t/1", &attrs));
        assert!(!expired.is_allow());
        let attrs = [("topics", r#"["t/#"]"#), ("exp", "soon")];
        assert!(
            !p.topic_check(&req("c", None, Access::Publish, "t/1", &attrs))
                .is_allow()
        );
        // Without an expiry they hold for the session.
        let attrs = [("topics", r#"["t/#"]"#)];
        let kept = p.topic_check(&req("c", None, Access::Publish, "t/1", &attrs));
        assert_eq!(kept.lifetime, Lifetime::Session);
        Ok(())
    }

    #[test]
    fn sorted_globs_match_as_the_pattern_does() {
        let patterns = [
            "",
            "*",
            "**",
            "sensor-*",
            "sensor-**",
            "sensor-",
            "s?nsor-*",
            "*-1",
            "a*b",
            "?",
            "ü*",
        ];
        let texts = [
            "", "x", "sensor-", "sensor-1", "sensor", "pump-1", "a-1", "ab", "aXb", "ü1",
        ];
        for p in patterns {
            for t in texts {
                assert_eq!(
                    Glob::new(p.to_owned()).matches(t),
                    glob(p, t),
                    "{p:?} {t:?}"
                );
            }
        }
        assert!(matches!(Glob::new("sensor-**".into()), Glob::Prefix(s) if s == "sensor-"));
        assert!(matches!(Glob::new("ops".into()), Glob::Exact(_)));
        assert!(matches!(Glob::new("a*b".into()), Glob::Pattern(_)));
    }

    #[test]
    fn globs_match_characters_not_bytes() {
        assert!(glob("sensor-*", "sensor-ü1"));
        assert!(glob("s?nsor", "sénsor"));
        assert!(!glob("s?nsor", "sensorx"));
        assert!(glob("*-*-*", "a-b-c"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("*", ""));
        assert!(glob("**", "x"));
        assert!(!glob("?", ""));
    }

    #[test]
    fn session_topics_from_the_connect_grant() -> Result<(), String> {
        let p = TopicList::new(r#"{}"#)?;
        let attrs = [("topics", r#"["temperature","devices/1a/#"]"#)];
        assert!(allowed(
            &p,
            &req("t", None, Access::Publish, "temperature", &attrs)
        ));
        assert!(allowed(
            &p,
            &req("t", None, Access::Subscribe, "devices/1a/+", &attrs)
        ));
        assert!(!allowed(
            &p,
            &req("t", None, Access::Publish, "humidity", &attrs)
        ));
        assert!(!allowed(
            &p,
            &req("t", None, Access::Publish, "temperature", &[])
        ));
        assert!(!allowed(
            &p,
            &req(
                "t",
                None,
                Access::Publish,
                "temperature",
                &[("topics", "not json")]
            )
        ));
        Ok(())
    }

    #[test]
    fn invalid_topics_are_denied_and_defer_is_configurable() -> Result<(), String> {
        let p = TopicList::new(CONFIG)?;
        assert!(matches!(
            p.topic_check(&req("x", Some("admin"), Access::Publish, "a/+", &[]))
                .verdict,
            TopicVerdict::Deny(_)
        ));
        let p = TopicList::new(r#"{"otherwise": "defer"}"#)?;
        assert_eq!(
            p.topic_check(&req("x", None, Access::Publish, "a", &[]))
                .verdict,
            TopicVerdict::Defer
        );
        Ok(())
    }

    #[test]
    fn bad_configs_fail() {
        assert!(
            TopicList::new(r#"{"rules": [{"publish": ["a/#/b"]}]}"#)
                .is_err_and(|e| e.contains("rule 1 publish"))
        );
        assert!(TopicList::new(r#"{"session_topics": null}"#).is_err());
        assert!(TopicList::new(r#"{"rules": [{"pub": ["a"]}]}"#).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("sensor-*", "sensor-12"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*-*-x", "a-b-c-x"));
        assert!(!glob("sensor-*", "pump-1"));
    }

    #[test]
    fn session_topics_allow_unsubscribing_what_they_allow_subscribing() -> Result<(), String> {
        // The JWT grants `devices/1a/#`: a client that subscribed to
        // `devices/1a/+` must be able to unsubscribe from it again.
        let p = TopicList::new(r#"{}"#)?;
        let attrs = [("topics", r#"["temperature","devices/1a/#"]"#)];
        for filter in ["devices/1a/+", "devices/1a/#", "temperature"] {
            assert!(allowed(
                &p,
                &req("t", None, Access::Subscribe, filter, &attrs)
            ));
            assert!(
                allowed(&p, &req("t", None, Access::Unsubscribe, filter, &attrs)),
                "{filter}"
            );
        }
        // Nothing wider than what could be subscribed.
        assert!(!allowed(
            &p,
            &req("t", None, Access::Unsubscribe, "devices/#", &attrs)
        ));
        Ok(())
    }

    fn acl(text: &str) -> Result<TopicList, String> {
        TopicList::new(&serde_json::json!({ "acl_file": text }).to_string())
    }

    /// A session the `password` policy verified as `name`.
    fn verified(name: &str) -> [(&str, &str); 1] {
        [("username", name)]
    }

    const ACL: &str = "\
# Mosquitto acl_file: anonymous section first
topic read public/#
topic anon/%c

user alice
topic readwrite plant/#
topic deny plant/secret
topic read users/alice/private/shared

user bob smith
topic write bob/out

# a second alice section adds to the first
user alice
topic read extra/#

pattern write sensors/%c/data
pattern read users/%u/#
pattern deny users/%u/private/#
";

    #[test]
    fn acl_user_sections() -> Result<(), String> {
        let p = acl(ACL)?;
        let alice = verified("alice");
        // Mosquitto (acl__find_acls): a client's list is the `user` section
        // whose name equals its username; `topic` lines grant as written.
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Publish, "plant/line-1", &alice)
        ));
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Subscribe, "plant/#", &alice)
        ));
        // Mosquitto (add__acl): a second `user alice` appends to the same list.
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Receive, "extra/x", &alice)
        ));
        // Mosquitto: the anonymous section is for clients without a username
        // only; alice does not get `public/#`.
        assert!(!allowed(
            &p,
            &req("c", Some("alice"), Access::Receive, "public/x", &alice)
        ));
        // Mosquitto: `user` takes the rest of the line, spaces included.
        let bob = verified("bob smith");
        assert!(allowed(
            &p,
            &req("c", Some("bob smith"), Access::Publish, "bob/out", &bob)
        ));
        // Here, not in Mosquitto: a username no policy verified selects no
        // section (only %c patterns apply)...
        assert!(!allowed(
            &p,
            &req("c", Some("alice"), Access::Publish, "plant/line-1", &[])
        ));
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Publish, "sensors/c/data", &[])
        ));
        // ...unless the operator says the MQTT username is always verified.
        let p = TopicList::new(
            &serde_json::json!({"acl_file": ACL, "acl_username": "{username}"}).to_string(),
        )?;
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Publish, "plant/line-1", &[])
        ));
        Ok(())
    }

    #[test]
    fn acl_anonymous_section() -> Result<(), String> {
        let p = acl(ACL)?;
        // Mosquitto: "The first set of topics are applied to anonymous clients".
        assert!(allowed(
            &p,
            &req("dev", None, Access::Receive, "public/news", &[])
        ));
        assert!(allowed(
            &p,
            &req("dev", None, Access::Subscribe, "public/+", &[])
        ));
        // `read` is read only.
        assert!(!allowed(
            &p,
            &req("dev", None, Access::Publish, "public/news", &[])
        ));
        // Mosquitto: `topic` lines are not patterns; `%c` there is literal text.
        assert!(allowed(
            &p,
            &req("dev", None, Access::Publish, "anon/%c", &[])
        ));
        assert!(!allowed(
            &p,
            &req("dev", None, Access::Publish, "anon/dev", &[])
        ));
        // Mosquitto: patterns apply to all clients, anonymous ones included,
        // but one naming %u is skipped without a username.
        assert!(allowed(
            &p,
            &req("dev", None, Access::Publish, "sensors/dev/data", &[])
        ));
        assert!(!allowed(
            &p,
            &req("dev", None, Access::Receive, "users//x", &[])
        ));
        Ok(())
    }

    #[test]
    fn acl_patterns_substitute_client_id_and_username() -> Result<(), String> {
        let p = acl(ACL)?;
        let alice = verified("alice");
        // Mosquitto: "%c to match the client id of the client".
        assert!(allowed(
            &p,
            &req(
                "dev-1",
                Some("alice"),
                Access::Publish,
                "sensors/dev-1/data",
                &alice
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "dev-1",
                Some("alice"),
                Access::Publish,
                "sensors/dev-2/data",
                &alice
            )
        ));
        // Mosquitto: "%u to match the username of the client".
        assert!(allowed(
            &p,
            &req(
                "dev-1",
                Some("alice"),
                Access::Receive,
                "users/alice/inbox",
                &alice
            )
        ));
        assert!(!allowed(
            &p,
            &req(
                "dev-1",
                Some("alice"),
                Access::Receive,
                "users/bob/inbox",
                &alice
            )
        ));
        // Mosquitto: deny patterns are checked before grant patterns...
        assert!(matches!(
            p.topic_check(&req("dev-1", Some("alice"), Access::Receive, "users/alice/private/x", &alice)).verdict,
            TopicVerdict::Deny(d) if d.message == "denied by acl_file line 19"
        ));
        // ...but only after the user's own lines, which grant first.
        assert!(allowed(
            &p,
            &req(
                "dev-1",
                Some("alice"),
                Access::Receive,
                "users/alice/private/shared",
                &alice
            )
        ));
        Ok(())
    }

    #[test]
    fn acl_deny_beats_grants() -> Result<(), String> {
        let p = acl(ACL)?;
        let alice = verified("alice");
        // Mosquitto: "Any "deny" topics are handled before topics that grant
        // read/write access", even when the grant comes first in the file.
        assert!(matches!(
            p.topic_check(&req("c", Some("alice"), Access::Publish, "plant/secret", &alice)).verdict,
            TopicVerdict::Deny(d) if d.message == "denied by acl_file line 7"
        ));
        // A subscription the deny covers entirely is refused; one it covers
        // in part is allowed, and the denied messages are refused on receive
        // (Mosquitto refuses them at delivery).
        assert!(!allowed(
            &p,
            &req(
                "c",
                Some("alice"),
                Access::Subscribe,
                "plant/secret",
                &alice
            )
        ));
        assert!(allowed(
            &p,
            &req("c", Some("alice"), Access::Subscribe, "plant/+", &alice)
        ));
        assert!(!allowed(
            &p,
            &req("c", Some("alice"), Access::Receive, "plant/secret", &alice)
        ));
        // An acl_file deny also beats `rules` and session topics here.
        let p = TopicList::new(
            &serde_json::json!({
                "acl_file": "topic deny private/#\n",
                "rules": [{"publish": ["#"]}],
            })
            .to_string(),
        )?;
        assert!(!allowed(
            &p,
            &req(
                "c",
                None,
                Access::Publish,
                "private/x",
                &[("topics", r#"["private/x"]"#)]
            )
        ));
        assert!(allowed(&p, &req("c", None, Access::Publish, "open/x", &[])));
        Ok(())
    }

    #[test]
    fn acl_access_words() -> Result<(), String> {
        let p = acl("topic write w/#\ntopic read r/#\ntopic readwrite rw/#\ntopic both/#\n")?;
        let can = |access, topic: &str| allowed(&p, &req("c", None, access, topic, &[]));
        // Mosquitto: write grants publish only; read grants delivery only.
        assert!(can(Access::Publish, "w/x"));
        assert!(!can(Access::Receive, "w/x"));
        assert!(!can(Access::Subscribe, "w/#"));
        assert!(!can(Access::Publish, "r/x"));
        assert!(can(Access::Receive, "r/x"));
        assert!(can(Access::Subscribe, "r/#"));
        // Mosquitto: readwrite, or no access word at all, grants both.
        for topic in ["rw/x", "both/x"] {
            assert!(can(Access::Publish, topic));
            assert!(can(Access::Receive, topic));
        }
        Ok(())
    }

    #[test]
    fn acl_wider_subscriptions_are_refused() -> Result<(), String> {
        // Mosquitto grants every SUBSCRIBE and filters at delivery; here a
        // subscription must be covered by a read filter.
        let p = acl("topic read a/+\ntopic read #\n")?;
        let sub = |topic: &str| allowed(&p, &req("c", None, Access::Subscribe, topic, &[]));
        assert!(sub("a/+"));
        assert!(sub("a/b"));
        assert!(sub("x/#"));
        // `#` does not cover `$` topics (MQTT 4.7.2; Mosquitto's matching too).
        assert!(!sub("$SYS/#"));
        let p = acl("topic read a/+\n")?;
        let sub = |topic: &str| allowed(&p, &req("c", None, Access::Subscribe, topic, &[]));
        assert!(!sub("a/#"));
        assert!(!sub("#"));
        assert!(!sub("+/b"));
        // Mosquitto: UNSUBSCRIBE is never refused.
        assert!(allowed(&p, &req("c", None, Access::Unsubscribe, "#", &[])));
        // A shared subscription needs read on the filter it shares.
        assert!(sub("$share/g/a/b"));
        assert!(!sub("$share/g/b/c"));
        Ok(())
    }

    #[test]
    fn acl_dollar_topics() -> Result<(), String> {
        let p = acl("topic readwrite $SYS/#\ntopic readwrite #\n")?;
        let can = |access, topic: &str| allowed(&p, &req("c", None, access, topic, &[]));
        // Mosquitto (acl__check_dollar): $SYS may be read but not written...
        assert!(can(Access::Receive, "$SYS/broker/uptime"));
        assert!(!can(Access::Publish, "$SYS/broker/uptime"));
        // ...and `$share` names can be neither published nor delivered.
        assert!(!can(Access::Publish, "$share/g/x"));
        assert!(!can(Access::Receive, "$share/g/x"));
        // ...except a bridge's connection state, which the file may grant.
        let p = acl("pattern write $SYS/broker/connection/%c/state\n")?;
        let can = |client: &str, topic: &str| {
            allowed(&p, &req(client, None, Access::Publish, topic, &[]))
        };
        assert!(can("br1", "$SYS/broker/connection/br1/state"));
        assert!(!can("br1", "$SYS/broker/connection/br2/state"));
        // Mosquitto: a `$` topic is matched only by a filter starting with `$`.
        let p = acl("topic readwrite #\n")?;
        assert!(!allowed(
            &p,
            &req("c", None, Access::Receive, "$SYS/broker/uptime", &[])
        ));
        Ok(())
    }

    #[test]
    fn acl_unsafe_placeholder_values_grant_nothing() -> Result<(), String> {
        let p = acl("pattern readwrite devices/%c/#\npattern readwrite %u/#\n")?;
        let can = |client: &str, user: Option<&str>, access, topic: &str| {
            let attrs: Vec<(&str, &str)> = user.map(|u| ("username", u)).into_iter().collect();
            allowed(&p, &req(client, user, access, topic, &attrs))
        };
        assert!(can("d1", None, Access::Publish, "devices/d1/x"));
        // Mosquitto would substitute `a/b` and grant `devices/a/b/#`; a value
        // may not add levels here.
        assert!(!can("a/b", None, Access::Publish, "devices/a/b/x"));
        // Mosquitto refuses a client id or username holding + or #; so do we.
        assert!(!can("+", None, Access::Subscribe, "devices/+/#"));
        assert!(!can("#", None, Access::Subscribe, "devices/#"));
        // A value may not start a `$` topic.
        assert!(!can("c", Some("$SYS"), Access::Receive, "$SYS/x"));
        assert!(!can("c", Some(""), Access::Receive, "/x"));
        assert!(can("c", Some("alice"), Access::Receive, "alice/x"));
        // A deny pattern with an unsafe value refuses (fail closed).
        let p = TopicList::new(
            &serde_json::json!({
                "acl_file": "pattern deny secret/%c/#\n",
                "rules": [{"publish": ["open/#"]}],
            })
            .to_string(),
        )?;
        assert!(allowed(
            &p,
            &req("ok", None, Access::Publish, "open/x", &[])
        ));
        assert!(!allowed(
            &p,
            &req("a+b", None, Access::Publish, "open/x", &[])
        ));
        Ok(())
    }

    #[test]
    fn acl_file_syntax() -> Result<(), String> {
        // Mosquitto: a `#` in the first column is a comment, blank lines are
        // skipped, trailing blanks (and CR) are trimmed, and the filter is
        // the rest of the line, spaces included.
        let p = acl("# comment\r\n\r\n   \ntopic read my topic/#  \r\n")?;
        assert!(allowed(
            &p,
            &req("c", None, Access::Receive, "my topic/x", &[])
        ));
        for (text, line, needle) in [
            (
                "topic read a\ntopic sometimes a/b\n",
                2,
                "access \"sometimes\"",
            ),
            // Mosquitto: only column 0 starts a comment ("Invalid line").
            ("  # indented\n", 1, "expected \"topic\""),
            // Mosquitto: words split on spaces, not tabs ("Invalid line").
            ("topic\tread\ta\n", 1, "expected \"topic\""),
            ("\n\ntopic deny\n", 3, "has no topic filter"),
            ("topic\n", 1, "no topic filter"),
            ("user\n", 1, "user with no name"),
            ("topic read a/#/b\n", 1, "topic filter \"a/#/b\""),
            ("pattern read a/%c#\n", 1, "topic filter \"a/%c#\""),
            ("users alice\n", 1, "expected \"topic\""),
        ] {
            let err = acl(text).err().unwrap_or_default();
            assert!(
                err.starts_with(&format!("acl_file line {line}:")) && err.contains(needle),
                "{text:?}: {err}"
            );
        }
        assert!(
            TopicList::new(r#"{"acl_file": "", "acl_username": "alice"}"#)
                .is_err_and(|e| e.contains("acl_username"))
        );
        assert!(
            TopicList::new(r#"{"acl_username": "{username}"}"#)
                .is_err_and(|e| e.contains("acl_file is not"))
        );
        // acl_file alone is something to grant.
        assert!(TopicList::new(r#"{"acl_file": "", "session_topics": null}"#).is_ok());
        Ok(())
    }

    #[test]
    fn acl_nothing_said_falls_through_to_rules_and_otherwise() -> Result<(), String> {
        let p = TopicList::new(
            &serde_json::json!({
                "acl_file": "topic read a/#\n",
                "rules": [{"publish": ["b/#"]}],
                "otherwise": "defer",
            })
            .to_string(),
        )?;
        assert!(allowed(&p, &req("c", None, Access::Publish, "b/x", &[])));
        assert_eq!(
            p.topic_check(&req("c", None, Access::Publish, "c/x", &[]))
                .verdict,
            TopicVerdict::Defer
        );
        Ok(())
    }
}
