//! Reading a policy's configuration with errors that name the offending
//! field: [`crate::config`].
//!
//! The host hands `init` the `[policy.config]` table as one line of JSON
//! (with `[policy.files]` contents inlined), so serde_json's "line 1 column
//! 2817" points nowhere useful. When parsing fails, the text is read again
//! through a deserializer that tracks where it is, and the error names the
//! path instead: `rules[2].publish[0]: invalid type: integer `5`, expected a
//! string`.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::{Map, Value};
use std::fmt;

/// Parse `json` into `T`; see [`crate::config`] for the error format.
pub(crate) fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let first = match serde_json::from_str::<T>(json) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    // Syntax errors have no path; the JSON came from a TOML table the host
    // already parsed, so these are rare (a hand-written config in a test).
    if first.is_syntax() || first.is_eof() {
        return Err(format!("invalid config: {first}"));
    }
    let Ok(value) = serde_json::from_str::<Value>(json) else {
        return Err(format!("invalid config: {first}"));
    };
    match T::deserialize(Located { value: &value }) {
        Err(located) => Err(format!("invalid config: {located}")),
        // Only the direct parse sees duplicate keys; keep its message.
        Ok(_) => Err(format!("invalid config: {}", strip_position(&first))),
    }
}

/// serde_json appends " at line L column C", which means nothing to an
/// operator who wrote TOML.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// One step of a path into the configuration.
enum Segment {
    Key(String),
    Index(usize),
}

/// A deserialization error and where it happened.
#[derive(Default)]
struct Error {
    /// Outermost first.
    path: Vec<Segment>,
    message: String,
}

impl Error {
    fn at(mut self, segment: Segment) -> Self {
        self.path.insert(0, segment);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.path {
            match segment {
                Segment::Key(k) if first => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if !self.path.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Error {
            path: Vec::new(),
            message: msg.to_string(),
        }
    }
}

/// A JSON value being deserialized; errors from inside it carry their path.
struct Located<'a> {
    value: &'a Value,
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => de::Unexpected::Unsigned(u),
            (_, Some(i), _) => de::Unexpected::Signed(i),
            (_, _, Some(f)) => de::Unexpected::Float(f),
            _ => de::Unexpected::Other("number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl<'de> de::Deserializer<'de> for Located<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
            }),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(map) if map.len() == 1 => visitor.visit_enum(Variant { map }),
            other => Err(de::Error::invalid_type(
                unexpected(other),
                &"a variant name or a single-key object",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Located { value })
            .map(Some)
            .map_err(|e| e.at(Segment::Index(index)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        seed.deserialize(Located { value })
            .map_err(|e| e.at(Segment::Key(key.clone())))
    }
}

struct Variant<'a> {
    map: &'a Map<String, Value>,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = VariantValue<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, VariantValue<'de>), Error> {
        let Some((name, value)) = self.map.iter().next() else {
            return Err(de::Error::custom("an empty object is not a variant"));
        };
        let variant = seed.deserialize(name.as_str().into_deserializer())?;
        Ok((variant, VariantValue { name, value }))
    }
}

struct VariantValue<'a> {
    name: &'a String,
    value: &'a Value,
}

impl<'de> VariantAccess<'de> for VariantValue<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            Value::Null => Ok(()),
            other => Err(de::Error::invalid_type(unexpected(other), &"unit variant")),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let name = self.name.clone();
        seed.deserialize(Located { value: self.value })
            .map_err(|e| e.at(Segment::Key(name)))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        let name = self.name.clone();
        de::Deserializer::deserialize_any(Located { value: self.value }, visitor)
            .map_err(|e| e.at(Segment::Key(name)))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let name = self.name.clone();
        de::Deserializer::deserialize_any(Located { value: self.value }, visitor)
            .map_err(|e| e.at(Segment::Key(name)))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        client_id: String,
        #[serde(default)]
        publish: Vec<String>,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Deny,
        Defer,
        Limit(u32),
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        rules: Vec<Rule>,
        #[serde(default)]
        limit: Option<u16>,
    }

    fn err(json: &str) -> String {
        crate::config::<Config>(json).err().unwrap_or_default()
    }

    #[test]
    fn good_configs_parse() {
        let c: Result<Config, String> = crate::config(
            r#"{"rules": [{"client_id": "a", "publish": ["x"], "mode": {"limit": 3}}], "limit": null}"#,
        );
        assert_eq!(
            c,
            Ok(Config {
                rules: vec![Rule {
                    client_id: "a".into(),
                    publish: vec!["x".into()],
                    mode: Mode::Limit(3)
                }],
                limit: None
            })
        );
    }

    #[test]
    fn errors_name_the_path_not_a_column() {
        assert_eq!(
            err(r#"{"rules": [{"client_id": "a"}, {"client_id": "b", "publish": ["x", 5]}]}"#),
            "invalid config: rules[1].publish[1]: invalid type: integer `5`, expected a string"
        );
        let unknown = err(r#"{"rules": [{"client_id": "a", "colour": "red"}]}"#);
        assert!(
            unknown
                .starts_with("invalid config: rules[0]: unknown field `colour`, expected one of"),
            "{unknown}"
        );
        assert_eq!(
            err(r#"{"rules": [{"publish": []}]}"#),
            "invalid config: rules[0]: missing field `client_id`"
        );
        assert!(err(r#"{"rules": [], "limit": 70000}"#).starts_with("invalid config: limit: "));
        assert!(
            err(r#"{"rules": [{"client_id": "a", "mode": "maybe"}]}"#)
                .starts_with("invalid config: rules[0].mode: unknown variant `maybe`")
        );
        assert!(err(r#"{"rules": [], "x": 1}"#).starts_with("invalid config: unknown field `x`"));
        assert_eq!(err("{}"), "invalid config: missing field `rules`");
        assert!(err("{not json").starts_with("invalid config: key must be a string at line 1"));
        let duplicate = err(r#"{"rules": [], "rules": []}"#);
        assert_eq!(duplicate, "invalid config: duplicate field `rules`");
    }
}
