//! MQTT topic names and filters: validation, matching, and coverage.
//!
//! Rules (MQTT 3.1.1 §4.7, MQTT 5 §4.7): `/` separates levels and empty levels
//! are real levels; `+` matches exactly one level; `#` matches the parent level
//! and any number of child levels and must be last; a wildcard must occupy a
//! whole level; a filter starting with a wildcard does not match topic names
//! starting with `$` (such as `$SYS/...`); topic names used to publish contain
//! no wildcards. Names and filters are at least one character long.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    /// Contains U+0000, which MQTT forbids.
    NullCharacter,
    /// Longer than the 65,535 bytes an MQTT string can carry.
    TooLong,
    /// A topic name (for publish or delivery) contains `+` or `#`.
    WildcardInName,
    /// `+` or `#` shares a level with other characters, or `#` is not last.
    MisplacedWildcard,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty topic",
            TopicError::NullCharacter => "topic contains U+0000",
            TopicError::TooLong => "topic longer than 65535 bytes",
            TopicError::WildcardInName => "topic name contains a wildcard",
            TopicError::MisplacedWildcard => "wildcard must be a whole level and # must be last",
        })
    }
}

impl std::error::Error for TopicError {}

fn common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        Err(TopicError::Empty)
    } else if s.len() > 65_535 {
        Err(TopicError::TooLong)
    } else if s.contains('\0') {
        Err(TopicError::NullCharacter)
    } else {
        Ok(())
    }
}

/// Check a topic name (publish, delivery): no wildcards.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Check a topic filter (subscribe): wildcards only as whole levels, `#` last.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if is_last => {}
            _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Does `filter` match the topic name `name`? Invalid input never matches.
pub fn matches(filter: &str, name: &str) -> bool {
    if validate_filter(filter).is_err() || validate_name(name).is_err() {
        return false;
    }
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(nl)) if fl == nl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Does `outer` cover `inner`: is every topic name that `inner` matches also
/// matched by `outer`? This is how a subscription with wildcards is
/// authorized: the requested filter must be covered by an allowed filter.
/// Invalid filters never cover and are never covered.
pub fn covers(outer: &str, inner: &str) -> bool {
    if validate_filter(outer).is_err() || validate_filter(inner).is_err() {
        return false;
    }
    // At the first level `+/#` matches exactly what `#` matches: every name
    // (a name has at least one level, and `#` also matches the parent), and
    // no `$` name (§4.7.2). Deeper down `x/+/#` is narrower than `x/#`
    // (it misses `x` itself), so only the whole filter is equivalent.
    let outer = if outer == "+/#" { "#" } else { outer };
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    let mut first = true;
    loop {
        let (ol, il) = (o.next(), i.next());
        // A wildcard in the first level of `outer` matches no `$` topic, so it
        // cannot cover an `inner` whose first level names one.
        if first && matches!(ol, Some("+" | "#")) && il.is_some_and(|l| l.starts_with('$')) {
            return false;
        }
        first = false;
        match (ol, il) {
            (Some("#"), _) => return true,
            // `inner` matches arbitrarily deep names here; only `#` covers that.
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_for_multi_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.2
        for name in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(matches("sport/tennis/player1/#", name), "{name}");
        }
        assert!(matches("sport/#", "sport"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "a/b/c"));
        assert!(validate_filter("sport/tennis#").is_err());
        assert!(validate_filter("sport/tennis/#/ranking").is_err());
    }

    #[test]
    fn spec_examples_for_single_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.3
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(validate_filter("+").is_ok());
        assert!(validate_filter("+/tennis/#").is_ok());
        assert!(validate_filter("sport+").is_err());
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        // MQTT 3.1.1 §4.7.2
        assert!(!matches("#", "$SYS/broker/clients"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!covers("#", "$SYS/#"));
        assert!(!covers("+/monitor", "$SYS/monitor"));
        assert!(covers("$SYS/#", "$SYS/monitor/+"));
    }

    #[test]
    fn empty_levels_are_levels() {
        assert!(matches("a//b", "a//b"));
        assert!(!matches("a/b", "a//b"));
        assert!(matches("a/+/b", "a//b"));
        assert!(!matches("+", "")); // an empty name is invalid
        assert!(matches("/", "/"));
        assert!(matches("+/+", "/"));
        assert!(!matches("+", "/"));
    }

    #[test]
    fn names_with_wildcards_or_nul_never_match() {
        assert!(!matches("#", "a/+"));
        assert!(!matches("#", "a/#"));
        assert!(!matches("#", "a\0b"));
        assert_eq!(validate_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert_eq!(validate_filter("a\0"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn coverage_of_wildcard_subscriptions() {
        assert!(covers("a/#", "a/b/c"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "a/#"));
        assert!(covers("a/#", "a"));
        assert!(covers("#", "a/#"));
        assert!(covers("a/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(covers("+/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+", "a"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/b/#", "a/#"));
        assert!(!covers("a/+/c", "a/+/+"));
        assert!(!covers("a", "a/#"));
        assert!(covers("a/+/#", "a/b"));
        assert!(covers("+/#", "#"), "+/# matches every name # does");
        assert!(covers("+/#", "a/#"));
        assert!(!covers("+/#", "$SYS/#"));
        assert!(!covers("a/+/#", "a/#"), "a/+/# misses a itself");
        assert!(!covers("a/+/#", "a"));
        assert!(covers("a//#", "a//x"));
        assert!(!covers("a/#", "b/#"));
        assert!(!covers("a/b#", "a/b"));
    }

    /// Coverage agrees with matching: whenever `outer` covers `inner`, every
    /// sample name that `inner` matches is matched by `outer`.
    #[test]
    fn coverage_is_consistent_with_matching() {
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "+/b", "+/+", "a/+/#", "$SYS/#", "+/#", "a//#",
            "/#",
        ];
        let names = [
            "a", "a/b", "a/c", "b/b", "a/b/c", "$SYS/x", "$SYS", "a//x", "/", "/b", "x",
        ];
        for outer in filters {
            for inner in filters {
                if covers(outer, inner) {
                    for name in names {
                        if matches(inner, name) {
                            assert!(
                                matches(outer, name),
                                "{outer} covers {inner} but misses {name}"
                            );
                        }
                    }
                }
            }
        }
    }
}
