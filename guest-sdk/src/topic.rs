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
    /// Zero characters: MQTT topics are at least one character long.
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
    } else {
        Ok(())
    }
}

/// Does any byte of `word` equal `b`? (The classic zero-byte test on
/// `word ^ b…b`: exact, no false positives.)
fn has_byte(word: u64, b: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// Is any byte of `word` below `n` (at most 128)? Exact, like `has_byte`.
fn has_less(word: u64, n: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0
}

/// The levels of a name or filter. A byte loop: topics are short, and these
/// run for every rule on every check.
fn levels(s: &str) -> impl Iterator<Item = &[u8]> {
    s.as_bytes().split(|b| *b == b'/')
}

/// Check a topic name (publish, delivery): no wildcards.
///
/// ```
/// use mqtt_policy_sdk::topic::{validate_name, TopicError};
///
/// assert!(validate_name("sensors/1/temp").is_ok());
/// assert_eq!(validate_name("sensors/+/temp"), Err(TopicError::WildcardInName));
/// ```
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    common(name)?;
    // One pass, eight bytes at a time (this runs on every check); U+0000
    // is reported before a wildcard wherever it is.
    let bytes = name.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut wildcard = false;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        if has_byte(w, 0) {
            return Err(TopicError::NullCharacter);
        }
        wildcard |= has_byte(w, b'+') || has_byte(w, b'#');
    }
    for &b in words.remainder() {
        match b {
            0 => return Err(TopicError::NullCharacter),
            b'+' | b'#' => wildcard = true,
            _ => {}
        }
    }
    if wildcard {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Check a topic filter (subscribe): wildcards only as whole levels, `#` last.
///
/// ```
/// use mqtt_policy_sdk::topic::{validate_filter, TopicError};
///
/// assert!(validate_filter("sensors/+/#").is_ok());
/// assert_eq!(validate_filter("sensors/a#"), Err(TopicError::MisplacedWildcard));
/// ```
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    // One pass; U+0000 is reported before a misplaced wildcard.
    let bytes = filter.as_bytes();
    let mut level_start = 0;
    let mut misplaced = false;
    for (i, &b) in bytes.iter().enumerate() {
        let alone = i == level_start && bytes.get(i + 1).is_none_or(|n| *n == b'/');
        match b {
            0 => return Err(TopicError::NullCharacter),
            b'/' => level_start = i + 1,
            b'+' => misplaced |= !alone,
            b'#' => misplaced |= !(alone && i + 1 == bytes.len()),
            _ => {}
        }
    }
    if misplaced {
        return Err(TopicError::MisplacedWildcard);
    }
    Ok(())
}

/// Does `filter` match the topic name `name`? Invalid input never matches.
///
/// ```
/// use mqtt_policy_sdk::topic::matches;
///
/// assert!(matches("sensors/+/temp", "sensors/1/temp"));
/// assert!(matches("sensors/#", "sensors"));
/// assert!(!matches("#", "$SYS/uptime")); // leading wildcards skip `$` topics
/// ```
pub fn matches(filter: &str, name: &str) -> bool {
    if validate_filter(filter).is_err() || validate_name(name).is_err() {
        return false;
    }
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = levels(filter);
    let mut n = levels(name);
    loop {
        match (f.next(), n.next()) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
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
///
/// ```
/// use mqtt_policy_sdk::topic::covers;
///
/// assert!(covers("devices/d1/#", "devices/d1/+/config"));
/// assert!(!covers("devices/+/config", "devices/#")); // wider than allowed
/// ```
pub fn covers(outer: &str, inner: &str) -> bool {
    if validate_filter(outer).is_err() || validate_filter(inner).is_err() {
        return false;
    }
    // At the first level `+/#` matches exactly what `#` matches: every name
    // (a name has at least one level, and `#` also matches the parent), and
    // no `$` name (§4.7.2). Deeper down `x/+/#` is narrower than `x/#`
    // (it misses `x` itself), so only the whole filter is equivalent.
    let outer = if outer == "+/#" { "#" } else { outer };
    let mut o = levels(outer);
    let mut i = levels(inner);
    let mut first = true;
    loop {
        let (ol, il) = (o.next(), i.next());
        // A wildcard in the first level of `outer` matches no `$` topic, so it
        // cannot cover an `inner` whose first level names one.
        if first && matches!(ol, Some(b"+" | b"#")) && il.is_some_and(|l| l.starts_with(b"$")) {
            return false;
        }
        first = false;
        match (ol, il) {
            (Some(b"#"), _) => return true,
            // `inner` matches arbitrarily deep names here; only `#` covers that.
            (_, Some(b"#")) => return false,
            (Some(b"+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != b"+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `value` if it is safe to put into a topic or filter as exactly one level,
/// else `None`.
///
/// Use it for anything a client chose or a certificate carries (client id,
/// username, common name, a token claim) before building a topic from it:
/// `format!("devices/{id}/#")` with a client id of `+` would grant every
/// device's topics, and one of `$SYS` would reach broker internals. `None`
/// when the value is empty, starts with `$`, contains `/`, `+`, `#` or a
/// control character (U+0000 included), or is longer than an MQTT string.
///
/// ```
/// use mqtt_policy_sdk::topic::level;
///
/// assert_eq!(level("thermostat-1a"), Some("thermostat-1a"));
/// assert_eq!(level("Thermostat 1a"), Some("Thermostat 1a")); // spaces are fine
/// for unsafe_value in ["", "+", "#", "a/b", "$SYS", "a\nb", "a\0b"] {
///     assert_eq!(level(unsafe_value), None, "{unsafe_value:?}");
/// }
/// let filter = level("device-7").map(|id| format!("devices/{id}/#"));
/// assert_eq!(filter.as_deref(), Some("devices/device-7/#"));
/// ```
pub fn level(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 65_535 || bytes.first() == Some(&b'$') {
        return None;
    }
    // Eight bytes at a time while no byte could be unsafe (this runs for
    // every placeholder on every check); the exact test on the rest.
    let mut words = bytes.chunks_exact(8);
    let mut checked = 0;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        if [b'/', b'+', b'#', 0x7f, 0xc2]
            .iter()
            .any(|b| has_byte(w, *b))
            || has_less(w, 0x20)
        {
            break;
        }
        checked += 8;
    }
    let rest = bytes.get(checked..).unwrap_or_default();
    (!rest.iter().enumerate().any(|(i, &b)| match b {
        // The control characters are C0 and DEL (one byte each) and C1,
        // U+0080..U+009F, which UTF-8 writes as 0xC2 0x80..=0x9F.
        b'/' | b'+' | b'#' | 0..=0x1f | 0x7f => true,
        0xc2 => rest.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        _ => false,
    }))
    .then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward definitions the one-pass versions replace.
    fn reference_name(name: &str) -> Result<(), TopicError> {
        common(name)?;
        if name.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
        if name.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    fn reference_filter(filter: &str) -> Result<(), TopicError> {
        common(filter)?;
        if filter.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
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

    #[test]
    fn long_names_are_checked_in_every_position() {
        for len in 1..40 {
            for at in 0..len {
                for (c, want) in [
                    ('\0', Err(TopicError::NullCharacter)),
                    ('+', Err(TopicError::WildcardInName)),
                    ('#', Err(TopicError::WildcardInName)),
                    ('é', Ok(())),
                    ('\u{7f}', Ok(())),
                ] {
                    let mut name: Vec<char> = "a/b".chars().cycle().take(len).collect();
                    name[at] = c;
                    let name: String = name.into_iter().collect();
                    assert_eq!(validate_name(&name), want, "{name:?}");
                    assert_eq!(validate_name(&name), reference_name(&name), "{name:?}");
                }
            }
        }
    }

    #[test]
    fn one_pass_validation_agrees_with_the_definition_on_every_short_string() {
        let alphabet = ['a', '/', '+', '#', '\0', '$'];
        let mut strings = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.len() == strings.last().map_or(0, String::len))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert!(strings.len() > 9000);
        for s in &strings {
            assert_eq!(validate_name(s), reference_name(s), "name {s:?}");
            assert_eq!(validate_filter(s), reference_filter(s), "filter {s:?}");
        }
    }

    #[test]
    fn level_agrees_with_the_char_definition() {
        fn reference(value: &str) -> Option<&str> {
            let safe = !value.is_empty()
                && value.len() <= 65_535
                && !value.starts_with('$')
                && !value
                    .chars()
                    .any(|c| matches!(c, '/' | '+' | '#') || c.is_control());
            safe.then_some(value)
        }
        // Every character up to U+0800 (all of one and two byte UTF-8, C1
        // included) and a sample beyond, alone and between others.
        let chars = (0..0x800u32)
            .chain([0x2028, 0xfeff, 0x1f600, 0x10ffff])
            .filter_map(char::from_u32);
        for c in chars {
            // Alone, around, and at each place of the eight-byte words.
            let mut values = vec![
                c.to_string(),
                format!("a{c}"),
                format!("{c}b"),
                format!("a{c}b"),
            ];
            for at in 0..18 {
                let pad = "x".repeat(at);
                values.push(format!("{pad}{c}"));
                values.push(format!("{pad}{c}abcdefghij"));
            }
            for value in values {
                assert_eq!(level(&value), reference(&value), "{value:?}");
            }
        }
        let long = "x".repeat(65_536);
        assert_eq!(level(&long), None);
        assert_eq!(level(&long[1..]), Some(&long[1..]));
    }

    #[test]
    fn levels_refuse_what_would_add_levels_wildcards_or_dollar_topics() {
        for ok in ["a", "device-1", "Thermostat 1a", "a$", "é", "a.b:c"] {
            assert_eq!(level(ok), Some(ok));
        }
        for bad in [
            "", "$", "$SYS", "/", "a/", "+", "a+", "#", "\0", "a\u{7f}", "\t", "\u{85}",
        ] {
            assert_eq!(level(bad), None, "{bad:?}");
        }
        assert_eq!(level(&"a".repeat(65_536)), None);
        // Every accepted level makes a valid name and filter level.
        assert!(matches(&format!("x/{}/#", "a b"), "x/a b/c"));
    }

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
