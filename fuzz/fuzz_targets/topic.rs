//! Topic names and filters through the SDK's matcher: no panic, and the
//! invariants that authorization relies on hold for any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_policy_sdk::topic::{covers, matches, validate_filter, validate_name};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (a, b, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(n)) => (a, b, n),
        _ => return,
    };
    let (ma, mb) = (matches(a, name), matches(b, name));
    // Malformed input never grants anything.
    if validate_filter(a).is_err() || validate_name(name).is_err() {
        assert!(!ma, "invalid input matched: {a:?} {name:?}");
    }
    if validate_filter(a).is_err() || validate_filter(b).is_err() {
        assert!(!covers(a, b), "invalid filter covered: {a:?} {b:?}");
    }
    // Coverage is sound: whatever the narrower filter matches, the wider does.
    if covers(a, b) && mb {
        assert!(ma, "{a:?} covers {b:?} but misses {name:?}");
    }
    // `$` topics are never matched by a leading wildcard.
    if name.starts_with('$') && a.starts_with(['+', '#']) {
        assert!(!ma);
    }
    // A filter without wildcards matches exactly itself.
    if validate_filter(a).is_ok() && !a.contains(['+', '#']) {
        assert_eq!(ma, a == name);
    }
});
