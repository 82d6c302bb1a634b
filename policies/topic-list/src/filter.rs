//! A rule's filter, parsed once at `init` into levels with their
//! placeholders, and matched against a request without building the
//! expanded filter: no allocation and no re-parsing on the hot path.
//!
//! Same meaning as expanding the placeholders and then using
//! `topic::matches` / `topic::covers`: a placeholder whose value is missing
//! or not a safe topic level makes the filter grant nothing.

use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::topic;

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    ClientId,
    Username,
    Attribute(String),
}

/// A run of a level: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// `+`
    Plus,
    /// `#` (always last).
    Hash,
    /// Literal text and placeholders, e.g. `{client_id}` or `dev-{username}`.
    Pieces(Vec<Piece>),
}

/// A parsed rule filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleFilter {
    levels: Vec<Level>,
}

impl RuleFilter {
    /// Parse a rule's filter and check it: every placeholder known and
    /// closed, and the filter valid with a safe level in each placeholder.
    /// The error says what is wrong.
    pub(crate) fn parse(filter: &str) -> Result<Self, String> {
        let levels = filter
            .split('/')
            .map(|level| match level {
                "+" => Ok(Level::Plus),
                "#" => Ok(Level::Hash),
                _ => pieces(level).map(Level::Pieces),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parsed = RuleFilter { levels };
        topic::validate_filter(&parsed.probe()).map_err(|e| e.to_string())?;
        Ok(parsed)
    }

    /// The filter with `x` in every placeholder: what validating it checks.
    fn probe(&self) -> String {
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|level| match level {
                Level::Plus => "+".to_owned(),
                Level::Hash => "#".to_owned(),
                Level::Pieces(pieces) => pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.as_str(),
                        Piece::Var(_) => "x",
                    })
                    .collect(),
            })
            .collect();
        levels.join("/")
    }

    /// Does this filter grant `access` on the request's topic (a name for
    /// publish and receive, a filter for subscribe and unsubscribe, already
    /// validated)?
    pub(crate) fn grants(&self, req: &TopicRequest) -> bool {
        match req.access {
            Access::Publish | Access::Receive => self.matches(req, &req.topic),
            Access::Subscribe | Access::Unsubscribe => self.covers(req, &req.topic),
        }
    }

    fn first_is_wildcard(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
    }

    /// `topic::matches` on the expanded filter.
    fn matches(&self, req: &TopicRequest, name: &str) -> bool {
        if name.starts_with('$') && self.first_is_wildcard() {
            return false;
        }
        let mut names = name.as_bytes().split(|b| *b == b'/');
        for level in &self.levels {
            match (level, names.next()) {
                (Level::Hash, _) => return true,
                (Level::Plus, Some(_)) => {}
                (Level::Pieces(p), Some(n)) if level_is(p, req, n) => {}
                _ => return false,
            }
        }
        names.next().is_none()
    }

    /// `topic::covers` on the expanded filter (`outer`) and the request's
    /// filter (`inner`).
    fn covers(&self, req: &TopicRequest, inner: &str) -> bool {
        // `+/#` covers exactly what `#` covers (see `topic::covers`).
        let whole_hash = matches!(self.levels.as_slice(), [Level::Plus, Level::Hash]);
        if whole_hash || matches!(self.levels.as_slice(), [Level::Hash]) {
            return !inner.starts_with('$');
        }
        let mut inners = inner.as_bytes().split(|b| *b == b'/');
        for (i, level) in self.levels.iter().enumerate() {
            let il = inners.next();
            if i == 0
                && matches!(level, Level::Plus | Level::Hash)
                && il.is_some_and(|l| l.starts_with(b"$"))
            {
                return false;
            }
            match (level, il) {
                (Level::Hash, _) => return true,
                (_, Some(b"#")) => return false,
                (Level::Plus, Some(_)) => {}
                (Level::Pieces(p), Some(l)) if l != b"+" && level_is(p, req, l) => {}
                _ => return false,
            }
        }
        inners.next().is_none()
    }
}

const UNKNOWN: &str = "unknown placeholder (use {client_id}, {username} or {attr:KEY})";

/// Split a level into text and placeholders.
fn pieces(level: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = level;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            return Err(if rest[open..].starts_with("{attr:") {
                "unclosed placeholder".into()
            } else {
                UNKNOWN.into()
            });
        };
        let var = match &rest[open + 1..close] {
            "client_id" => Var::ClientId,
            "username" => Var::Username,
            name => match name.strip_prefix("attr:") {
                Some(key) => Var::Attribute(key.to_owned()),
                None => return Err(UNKNOWN.into()),
            },
        };
        out.push(Piece::Var(var));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    Ok(out)
}

/// A placeholder's value, if it is safe to put into a topic as one level.
fn value<'a>(var: &Var, req: &'a TopicRequest) -> Option<&'a str> {
    let value = match var {
        Var::ClientId => Some(req.client_id.as_str()),
        Var::Username => req.username.as_deref(),
        Var::Attribute(key) => req.attribute(key),
    };
    value.and_then(topic::level)
}

/// Is `level` exactly the pieces, with the placeholders' values put in?
fn level_is(pieces: &[Piece], req: &TopicRequest, mut level: &[u8]) -> bool {
    for piece in pieces {
        let text = match piece {
            Piece::Text(t) => t.as_str(),
            Piece::Var(v) => match value(v, req) {
                Some(v) => v,
                None => return false,
            },
        };
        match level.split_at_checked(text.len()) {
            Some((head, rest)) if same(head, text.as_bytes()) => level = rest,
            _ => return false,
        }
    }
    level.is_empty()
}

/// `a == b`, a word at a time. In wasm a slice comparison is a call to the
/// C library's byte-by-byte `memcmp`; these compare a few short strings on
/// every check.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> Option<u64> {
        let w: [u8; 8] = s.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(w))
    }
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    // Whole words, then the last eight bytes (overlapping the last word).
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_is_equality() {
        let texts: Vec<String> = (0..20)
            .flat_map(|n| {
                let base: String = ('a'..='z').take(n).collect();
                let mut last = base.clone();
                if let Some(c) = last.pop() {
                    last.push(if c == 'z' { 'y' } else { 'z' });
                }
                let mut first = base.clone();
                if !first.is_empty() {
                    first.replace_range(0..1, "Q");
                }
                [base, last, first]
            })
            .collect();
        for a in &texts {
            for b in &texts {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// The definition: expand, then the SDK's matching.
    fn by_expansion(filter: &str, req: &TopicRequest) -> bool {
        let mut out = String::new();
        let mut rest = filter;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                return false;
            };
            let var = match &rest[open + 1..close] {
                "client_id" => Var::ClientId,
                "username" => Var::Username,
                name => match name.strip_prefix("attr:") {
                    Some(key) => Var::Attribute(key.to_owned()),
                    None => return false,
                },
            };
            match value(&var, req) {
                Some(v) => out.push_str(v),
                None => return false,
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        match req.access {
            Access::Publish | Access::Receive => topic::matches(&out, &req.topic),
            Access::Subscribe | Access::Unsubscribe => topic::covers(&out, &req.topic),
        }
    }

    #[test]
    fn parsed_filters_agree_with_expanding_them() {
        let filters = [
            "#",
            "+/#",
            "+",
            "a/+/c",
            "a/#",
            "a/b",
            "devices/{client_id}/#",
            "devices/{client_id}/+/x",
            "dev-{client_id}/t",
            "{username}",
            "u/{username}-{attr:site}/#",
            "{attr:missing}/x",
            "$SYS/#",
            "x/{client_id}",
        ];
        let names = [
            "a",
            "a/b",
            "a/b/c",
            "a/x/c",
            "a/b/c/d",
            "devices/c1/t",
            "devices/c1/t/x",
            "devices/c1",
            "dev-c1/t",
            "u1",
            "u/u1-north/x",
            "$SYS/up",
            "x/c1",
            "x/c2",
            "b",
        ];
        let subscriptions = [
            "#",
            "a/#",
            "a/+/c",
            "a/b",
            "+/b",
            "devices/c1/#",
            "devices/+/t",
            "$SYS/#",
            "u/u1-north/+",
            "x/+",
            "x/c1",
            "+",
        ];
        for client in ["c1", "$c", "a/b", "+"] {
            for filter in filters {
                let parsed = match RuleFilter::parse(filter) {
                    Ok(parsed) => parsed,
                    Err(e) => panic!("{filter} does not parse: {e}"),
                };
                for (access, topics) in [
                    (Access::Publish, &names[..]),
                    (Access::Receive, &names[..]),
                    (Access::Subscribe, &subscriptions[..]),
                    (Access::Unsubscribe, &subscriptions[..]),
                ] {
                    for topic in topics {
                        let req = TopicRequest::new(client, access, *topic)
                            .username("u1")
                            .attribute("site", "north");
                        assert_eq!(
                            parsed.grants(&req),
                            by_expansion(filter, &req),
                            "{filter} {access:?} {topic} as {client}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_placeholders_do_not_parse() {
        assert!(RuleFilter::parse("a/{nope}").is_err());
        assert!(RuleFilter::parse("a/{client_id").is_err());
    }
}
