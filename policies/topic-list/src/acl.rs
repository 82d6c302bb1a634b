//! Mosquitto's `acl_file`, read from its text and checked the way Mosquitto
//! 2.0 does (`aclfile__parse`, `mosquitto_acl_check_default` and
//! `acl__find_acls` in `src/security_default.c`, `acl__check_dollar` in
//! `src/security.c`), mapped onto this policy's four kinds of check. The
//! mapping is documented at the top of `lib.rs`.

use std::collections::HashMap;

use mqtt_policy_sdk::log;
use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::topic;

use crate::safe_value;

/// The access word of a `topic` or `pattern` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grants {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grants {
    fn parse(word: &str) -> Option<Grants> {
        match word {
            "read" => Some(Grants::Read),
            "write" => Some(Grants::Write),
            "readwrite" => Some(Grants::ReadWrite),
            "deny" => Some(Grants::Deny),
            _ => None,
        }
    }
}

/// A piece of a `pattern` filter: text, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    ClientId,
    Username,
}

/// Split a pattern at `%c` and `%u`, left to right as Mosquitto substitutes
/// (any other `%` is text).
fn pieces(filter: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        let placeholder = match (c, chars.peek()) {
            ('%', Some('c')) => Some(Piece::ClientId),
            ('%', Some('u')) => Some(Piece::Username),
            _ => None,
        };
        match placeholder {
            Some(p) => {
                chars.next();
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(p);
            }
            None => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

#[derive(Debug)]
struct Entry {
    line: usize,
    grants: Grants,
    /// A `topic` line's filter, used as written.
    filter: String,
    /// A `pattern` line's filter, split at its placeholders.
    pattern: Vec<Piece>,
}

/// What a substituted pattern gives for one session.
enum Expanded {
    /// It names `%u` and the session has no username: Mosquitto skips it.
    Skipped,
    /// A substituted value is unsafe (see `safe_value`).
    Unsafe,
    Filter(String),
}

impl Entry {
    fn expand(&self, client_id: &str, username: Option<&str>) -> Expanded {
        let mut out = String::with_capacity(self.filter.len() + 16);
        for piece in &self.pattern {
            let value = match piece {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::ClientId => client_id,
                Piece::Username => match username {
                    Some(u) => u,
                    None => return Expanded::Skipped,
                },
            };
            if !safe_value(value) {
                return Expanded::Unsafe;
            }
            out.push_str(value);
        }
        Expanded::Filter(out)
    }
}

/// Where a session's `user` section and `%u` value come from.
#[derive(Debug)]
enum Identity {
    /// A session attribute granted at connect (default `username`, set by
    /// the `password` policy to the verified username).
    Attribute(String),
    /// The MQTT username as the client sent it.
    Username,
}

/// The acl_file's answer to one topic check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// An explicit `deny` line (its number) matched.
    Deny(usize),
    NoMatch,
}

/// What a request asks of the ACL.
enum Target<'a> {
    /// Publish (`write`) or receive (read) on a topic name.
    Name { topic: &'a str, write: bool },
    /// Subscribe with a filter: needs read on everything it matches.
    Filter(&'a str),
}

impl Target<'_> {
    fn wants(&self, grants: Grants) -> bool {
        match self {
            Target::Name { write: true, .. } => {
                matches!(grants, Grants::Write | Grants::ReadWrite)
            }
            Target::Name { write: false, .. } | Target::Filter(_) => {
                matches!(grants, Grants::Read | Grants::ReadWrite)
            }
        }
    }

    /// Does an entry's filter reach this request? A deny stops a
    /// subscription only when it covers all of it; a partly denied
    /// subscription is allowed and its denied messages are refused on receive.
    fn reached_by(&self, filter: &str) -> bool {
        match self {
            Target::Name { topic, .. } => topic::matches(filter, topic),
            Target::Filter(requested) => topic::covers(filter, requested),
        }
    }
}

/// Decide among one list's entries as Mosquitto does: every deny first (it
/// files them at the front of the list), then any grant with the right
/// access. `None` is a pattern whose substituted value was unsafe: as a deny
/// it denies (fail closed), as a grant it grants nothing.
fn decide<'e>(
    entries: impl Iterator<Item = (&'e Entry, Option<&'e str>)> + Clone,
    target: &Target<'_>,
    grantable: bool,
) -> Verdict {
    for (entry, filter) in entries.clone() {
        if entry.grants == Grants::Deny && filter.is_none_or(|f| target.reached_by(f)) {
            return Verdict::Deny(entry.line);
        }
    }
    if grantable {
        for (entry, filter) in entries {
            if entry.grants != Grants::Deny
                && target.wants(entry.grants)
                && filter.is_some_and(|f| target.reached_by(f))
            {
                return Verdict::Allow;
            }
        }
    }
    Verdict::NoMatch
}

/// The blanks C's `isspace` trims (Mosquitto trims lines with it).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Split off the first word as Mosquitto's `strtok(" ")` does: spaces
/// separate words, tabs do not.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(' ');
    s.split_once(' ').unwrap_or((s, ""))
}

#[derive(Debug)]
pub(crate) struct AclFile {
    anonymous: Vec<Entry>,
    users: HashMap<String, Vec<Entry>>,
    patterns: Vec<Entry>,
    identity: Identity,
}

impl AclFile {
    /// Parse the text of an acl_file. `identity` is the `acl_username`
    /// setting (`{attr:KEY}` or `{username}`; default `{attr:username}`).
    pub(crate) fn parse(text: &str, identity: Option<&str>) -> Result<AclFile, String> {
        let identity = match identity.unwrap_or("{attr:username}") {
            "{username}" => Identity::Username,
            other => match other
                .strip_prefix("{attr:")
                .and_then(|k| k.strip_suffix('}'))
            {
                Some(key) if !key.is_empty() => Identity::Attribute(key.to_owned()),
                _ => {
                    return Err(format!(
                        "acl_username \"{other}\": use \"{{attr:KEY}}\" or \"{{username}}\""
                    ));
                }
            },
        };
        let mut acl = AclFile {
            anonymous: Vec::new(),
            users: HashMap::new(),
            patterns: Vec::new(),
            identity,
        };
        // `topic` lines before the first `user` line are the anonymous section.
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let err = |m: &str| format!("acl_file line {n}: {m}");
            let line = line.trim_end_matches(is_c_space);
            // Only a `#` in the first column starts a comment, as in Mosquitto.
            if line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = word(line);
            match keyword {
                "" => {}
                "user" => {
                    let name = rest.trim_matches(is_c_space);
                    if name.is_empty() {
                        return Err(err("user with no name"));
                    }
                    user = Some(name.to_owned());
                }
                "topic" | "pattern" => {
                    let (first, rest) = word(rest);
                    // The filter is the rest of the line, so it may hold spaces.
                    let rest = rest.trim_matches(is_c_space);
                    let (grants, filter) = if rest.is_empty() {
                        if first.is_empty() {
                            return Err(err(&format!("{keyword} with no topic filter")));
                        }
                        if Grants::parse(first).is_some() {
                            // Mosquitto would grant read/write on a topic named
                            // after the access word: surely not what was meant.
                            return Err(err(&format!(
                                "\"{keyword} {first}\" has no topic filter (write \
                                 \"{keyword} readwrite {first}\" for a topic named {first})"
                            )));
                        }
                        (Grants::ReadWrite, first)
                    } else {
                        let grants = Grants::parse(first).ok_or_else(|| {
                            err(&format!(
                                "access \"{first}\" is not read, write, readwrite or deny"
                            ))
                        })?;
                        (grants, rest)
                    };
                    let is_pattern = keyword == "pattern";
                    let pattern = if is_pattern {
                        pieces(filter)
                    } else {
                        vec![Piece::Text(filter.to_owned())]
                    };
                    // Check the filter with placeholders filled by a safe value.
                    let probe: String = pattern
                        .iter()
                        .map(|p| match p {
                            Piece::Text(t) => t.as_str(),
                            Piece::ClientId | Piece::Username => "x",
                        })
                        .collect();
                    topic::validate_filter(&probe)
                        .map_err(|e| err(&format!("topic filter \"{filter}\": {e}")))?;
                    let entry = Entry {
                        line: n,
                        grants,
                        filter: filter.to_owned(),
                        pattern,
                    };
                    if is_pattern {
                        if entry.pattern.iter().all(|p| matches!(p, Piece::Text(_))) {
                            log::warn(
                                "acl_file pattern has no %c or %u, so it applies to every client",
                                &[("line", &n.to_string())],
                            );
                        }
                        acl.patterns.push(entry);
                    } else {
                        match &user {
                            Some(u) => acl.users.entry(u.clone()).or_default().push(entry),
                            None => acl.anonymous.push(entry),
                        }
                    }
                }
                _ => {
                    return Err(err(
                        "expected \"topic\", \"pattern\" or \"user\" (a comment's # must be \
                         the first character of the line)",
                    ));
                }
            }
        }
        Ok(acl)
    }

    pub(crate) fn check(&self, req: &TopicRequest) -> Verdict {
        // Mosquitto allows every UNSUBSCRIBE: it can only narrow what the
        // client receives.
        if req.access == Access::Unsubscribe {
            return Verdict::Allow;
        }
        let is_share = |t: &str| t.starts_with("$share");
        let (target, grantable) = match req.access {
            // Mosquitto refuses to publish or deliver `$share` names, and
            // refuses writes to `$SYS` except a bridge's connection state.
            Access::Publish if is_share(&req.topic) => return Verdict::NoMatch,
            Access::Receive if is_share(&req.topic) => return Verdict::NoMatch,
            Access::Publish => (
                Target::Name {
                    topic: &req.topic,
                    write: true,
                },
                !req.topic.starts_with("$SYS")
                    || topic::matches("$SYS/broker/connection/+/state", &req.topic),
            ),
            Access::Receive => (
                Target::Name {
                    topic: &req.topic,
                    write: false,
                },
                true,
            ),
            // A shared subscription delivers the messages of its filter, so
            // `$share/GROUP/FILTER` needs read on FILTER.
            Access::Subscribe | Access::Unsubscribe => {
                let filter = match req.topic.splitn(3, '/').collect::<Vec<_>>()[..] {
                    ["$share", _, inner] if !inner.is_empty() => inner,
                    _ => req.topic.as_str(),
                };
                (Target::Filter(filter), true)
            }
        };
        let username = match &self.identity {
            Identity::Attribute(key) => req.attribute(key),
            Identity::Username => req.username.as_deref(),
        };
        // A username's own section; the anonymous one for a client that sent
        // no username; none for a username nobody vouched for.
        let section = match username {
            Some(name) => self.users.get(name),
            None if req.username.is_none() => Some(&self.anonymous),
            None => None,
        };
        // A user's own lines are decided first, so they beat patterns, even a
        // pattern deny (Mosquitto returns on the first list that decides).
        if let Some(entries) = section {
            let entries = entries.iter().map(|e| (e, Some(e.filter.as_str())));
            match decide(entries, &target, grantable) {
                Verdict::NoMatch => {}
                decided => return decided,
            }
        }
        let expanded: Vec<(&Entry, Option<String>)> = self
            .patterns
            .iter()
            .filter_map(|e| match e.expand(&req.client_id, username) {
                Expanded::Skipped => None,
                Expanded::Unsafe => Some((e, None)),
                Expanded::Filter(f) => Some((e, Some(f))),
            })
            .collect();
        decide(
            expanded.iter().map(|(e, f)| (*e, f.as_deref())),
            &target,
            grantable,
        )
    }
}
