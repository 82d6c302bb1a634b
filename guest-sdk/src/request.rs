//! Typed access to request fields: passwords as text, certificates, user
//! properties, session attributes, and thumbprint comparison.

use subtle::ConstantTimeEq as _;

use crate::{Certificate, ConnectRequest, TopicRequest};

/// Helpers on [`ConnectRequest`].
pub trait ConnectRequestExt {
    /// The password as UTF-8 text, if present and valid UTF-8.
    fn password_text(&self) -> Option<&str>;
    /// The client's own certificate (first of the chain).
    fn leaf_certificate(&self) -> Option<&Certificate>;
    /// The first MQTT 5 user property with this name.
    fn user_property(&self, name: &str) -> Option<&str>;
}

impl ConnectRequestExt for ConnectRequest {
    fn password_text(&self) -> Option<&str> {
        self.password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
    }

    fn leaf_certificate(&self) -> Option<&Certificate> {
        self.certificates.first()
    }

    fn user_property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

/// Helpers on [`TopicRequest`].
pub trait TopicRequestExt {
    /// The session attribute granted at connect under `key`.
    fn attribute(&self, key: &str) -> Option<&str>;
    /// A list-valued session attribute (JSON array text). Missing or not a
    /// list of strings: `None`.
    fn attribute_list(&self, key: &str) -> Option<Vec<String>>;
    /// Was this role granted at connect?
    fn has_role(&self, role: &str) -> bool;
}

impl TopicRequestExt for TopicRequest {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }

    fn attribute_list(&self, key: &str) -> Option<Vec<String>> {
        serde_json::from_str(self.attribute(key)?).ok()
    }

    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Canonical form of a thumbprint as operators write it: separators (`:`,
/// space, `-`) dropped, uppercase. `None` unless what is left is hex.
pub fn normalize_thumbprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Compare two normalized thumbprints in constant time (for equal lengths),
/// so timing reveals nothing about how much of a listed value matched.
pub fn thumbprint_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_ignore_case_and_separators() {
        assert_eq!(normalize_thumbprint("ab:cd:0f").as_deref(), Some("ABCD0F"));
        assert_eq!(normalize_thumbprint("AB CD-0F").as_deref(), Some("ABCD0F"));
        assert_eq!(normalize_thumbprint("xyz"), None);
        assert_eq!(normalize_thumbprint("::"), None);
        assert!(thumbprint_eq("ABCD", "ABCD"));
        assert!(!thumbprint_eq("ABCD", "ABCE"));
        assert!(!thumbprint_eq("ABCD", "ABC"));
    }
}
