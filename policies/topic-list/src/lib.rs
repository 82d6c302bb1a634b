//! `topic-list`: per-client topic rules from config, plus the topics granted
//! to the session at connect (so `jwt` + `topic-list` reproduce the Auth0
//! device-profile flow).
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
//!   "session_topics": "topics",   // session attribute holding granted filters (JSON list); null to ignore
//!   "otherwise": "deny"           // or "defer" when nothing grants the request
//! }
//! ```
//! Semantics are MQTT's: `+` and `#` wildcards, `$` topics not matched by
//! leading wildcards, and a subscribe is allowed only when the requested
//! filter is covered by an allowed filter (not by string equality).
//! `{attr:KEY}` is the session attribute KEY granted at connect, e.g.
//! `{attr:cert_cn}` from `thumbprint`, which ties topics to the certificate
//! rather than to a client id the client chose. A placeholder whose value is
//! missing, empty, starts with `$`, or contains `/`, `+` or `#` makes that
//! filter grant nothing, so a client cannot widen its own rule.
//!
//! Note that `client_id` and `username` are chosen by the client: a rule
//! keyed on them trusts whatever authenticated the connection to have
//! checked them. Prefer `{attr:...}` values granted by an authenticating
//! policy (certificate CN, token subject). Shared subscriptions
//! (`$share/group/filter`) are matched as written, so they are denied unless
//! a rule grants that `$share/...` filter explicitly.

use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::topic;
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default = "default_session_topics")]
    session_topics: Option<String>,
    #[serde(default)]
    otherwise: Otherwise,
}

struct Rule {
    client_id: Option<String>,
    username: Option<String>,
    publish: Vec<String>,
    subscribe: Vec<String>,
    receive: Vec<String>,
    unsubscribe: Vec<String>,
}

pub struct TopicList {
    rules: Vec<Rule>,
    session_topics: Option<String>,
    otherwise: Otherwise,
}

/// `*` matches any run of characters, `?` exactly one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Substitute placeholders; `None` if a value is unsafe or missing.
fn expand(filter: &str, req: &TopicRequest) -> Option<String> {
    if !filter.contains('{') {
        return Some(filter.to_owned());
    }
    // A value may not add levels or wildcards, nor start a `$` topic such as
    // `$SYS` (client id `$SYS` in `{client_id}/#` must not grant `$SYS/#`).
    let safe = |v: &str| !v.is_empty() && !v.starts_with('$') && !v.contains(['/', '+', '#']);
    let mut out = String::with_capacity(filter.len() + 16);
    let mut rest = filter;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}')?;
        let name = &rest[open + 1..close];
        let value = match name {
            "client_id" => Some(req.client_id.as_str()),
            "username" => req.username.as_deref(),
            _ => name
                .strip_prefix("attr:")
                .and_then(|key| req.attribute(key)),
        };
        out.push_str(value.filter(|v| safe(v))?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn check_filters(filters: &[String], what: &str) -> Result<(), String> {
    // Expand against a probe request so placeholders are checked too.
    let probe = TopicRequest {
        client_id: "x".into(),
        username: Some("x".into()),
        topic: String::new(),
        access: Access::Publish,
        qos: 0,
        retain: false,
        attributes: Vec::new(),
        roles: Vec::new(),
    };
    for f in filters {
        let bad = |m: &str| format!("{what} filter \"{f}\": {m}");
        let mut expanded = f.clone();
        for (i, _) in f.match_indices("{attr:") {
            let end = f[i..]
                .find('}')
                .ok_or_else(|| bad("unclosed placeholder"))?;
            expanded = expanded.replace(&f[i..i + end + 1], "x");
        }
        let expanded = expand(&expanded, &probe).ok_or_else(|| {
            bad("unknown placeholder (use {client_id}, {username} or {attr:KEY})")
        })?;
        topic::validate_filter(&expanded).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(())
}

impl Rule {
    fn applies(&self, client_id: &str, username: Option<&str>) -> bool {
        self.client_id.as_deref().is_none_or(|g| glob(g, client_id))
            && self
                .username
                .as_deref()
                .is_none_or(|g| username.is_some_and(|u| glob(g, u)))
    }

    fn filters(&self, access: Access) -> &[String] {
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
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.into_iter().enumerate() {
            let what = format!("rule {}", i + 1);
            check_filters(&r.publish, &format!("{what} publish"))?;
            check_filters(&r.subscribe, &format!("{what} subscribe"))?;
            let receive = r.receive.unwrap_or_else(|| r.subscribe.clone());
            let unsubscribe = r.unsubscribe.unwrap_or_else(|| r.subscribe.clone());
            check_filters(&receive, &format!("{what} receive"))?;
            check_filters(&unsubscribe, &format!("{what} unsubscribe"))?;
            rules.push(Rule {
                client_id: r.client_id,
                username: r.username,
                publish: r.publish,
                subscribe: r.subscribe,
                receive,
                unsubscribe,
            });
        }
        if rules.is_empty() && config.session_topics.is_none() {
            return Err("nothing to grant: no rules and no session_topics".into());
        }
        Ok(TopicList {
            rules,
            session_topics: config.session_topics,
            otherwise: config.otherwise,
        })
    }

    fn topic_check(&self, req: &TopicRequest) -> TopicVerdict {
        let valid = match req.access {
            Access::Publish | Access::Receive => topic::validate_name(&req.topic),
            Access::Subscribe | Access::Unsubscribe => topic::validate_filter(&req.topic),
        };
        if let Err(e) = valid {
            return deny_topic(DenyReason::NotAuthorized, format!("invalid topic: {e}"));
        }
        let username = req.username.as_deref();
        let from_rules = self
            .rules
            .iter()
            .filter(|r| r.applies(&req.client_id, username))
            .flat_map(|r| r.filters(req.access))
            .filter_map(|f| expand(f, req))
            .any(|f| grants(&f, req.access, &req.topic));
        let from_session = || {
            req.access != Access::Unsubscribe
                && self
                    .session_topics
                    .as_deref()
                    .and_then(|key| req.attribute_list(key))
                    .is_some_and(|list| list.iter().any(|f| grants(f, req.access, &req.topic)))
        };
        if from_rules || from_session() {
            TopicVerdict::Allow
        } else {
            match self.otherwise {
                Otherwise::Deny => deny_topic(DenyReason::NotAuthorized, "topic not allowed"),
                Otherwise::Defer => TopicVerdict::Defer,
            }
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
        p.topic_check(r) == TopicVerdict::Allow
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
            p.topic_check(&req("x", Some("admin"), Access::Publish, "a/+", &[])),
            TopicVerdict::Deny(_)
        ));
        let p = TopicList::new(r#"{"otherwise": "defer"}"#)?;
        assert_eq!(
            p.topic_check(&req("x", None, Access::Publish, "a", &[])),
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
}
