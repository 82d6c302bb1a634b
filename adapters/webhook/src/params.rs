//! Request parameters as brokers send them: a query string, a urlencoded
//! form, or a JSON object (amqtt sends JSON bodies even on GET). All sources
//! are merged into one flat map; a name given twice, in one source or across
//! two, is a bad request rather than a guess about which one counts.

use std::collections::HashMap;

use hyper::HeaderMap;
use hyper::header::CONTENT_TYPE;
use serde_json::Value;

use crate::error::RequestError;

/// Where the parameters came from; form encodings cannot say "null".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Query,
    Form,
    Json,
}

#[derive(Debug, Default)]
pub(crate) struct Params {
    values: HashMap<String, (Value, Source)>,
}

impl Params {
    /// Parameters of a request: its query string and its body.
    pub(crate) fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, RequestError> {
        let mut params = Params::default();
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            params.add_form(q.as_bytes(), Source::Query)?;
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(params);
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)"))
            .unwrap_or("");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" => params.add_json(body)?,
            "application/x-www-form-urlencoded" => params.add_form(body, Source::Form)?,
            _ => return Err(RequestError::ContentType(content_type.to_owned())),
        }
        Ok(params)
    }

    fn insert(&mut self, key: String, value: Value, source: Source) -> Result<(), RequestError> {
        if self.values.contains_key(&key) {
            return Err(RequestError::Duplicate(key));
        }
        self.values.insert(key, (value, source));
        Ok(())
    }

    fn add_form(&mut self, bytes: &[u8], source: Source) -> Result<(), RequestError> {
        if std::str::from_utf8(bytes).is_err() {
            return Err(RequestError::Form("not UTF-8".into()));
        }
        for (k, v) in form_urlencoded::parse(bytes) {
            // form_urlencoded replaces bad percent-escapes' bytes with U+FFFD
            // rather than failing; refuse them so no two clients collide.
            if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
                return Err(RequestError::Form(format!(
                    "parameter \"{}\" is not valid UTF-8 after decoding",
                    k.replace('\u{FFFD}', "?")
                )));
            }
            self.insert(k.into_owned(), Value::String(v.into_owned()), source)?;
        }
        Ok(())
    }

    fn add_json(&mut self, bytes: &[u8]) -> Result<(), RequestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Json(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(RequestError::Json("the body is not a JSON object".into()));
        };
        for (k, v) in map {
            self.insert(k, v, Source::Json)?;
        }
        Ok(())
    }

    /// An optional text parameter. JSON `null` is absent; `none_word`
    /// (amqtt's form encoding of Python's `None`) is absent when it came
    /// from a form or query string.
    pub(crate) fn opt_str(
        &self,
        key: &str,
        none_word: Option<&str>,
    ) -> Result<Option<&str>, RequestError> {
        match self.values.get(key) {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::String(s), source)) => {
                if *source != Source::Json && none_word == Some(s.as_str()) {
                    Ok(None)
                } else {
                    Ok(Some(s))
                }
            }
            Some(_) => Err(RequestError::field(key, "expected a string")),
        }
    }

    /// A required text parameter.
    pub(crate) fn str(&self, key: &str) -> Result<&str, RequestError> {
        self.opt_str(key, None)?
            .ok_or_else(|| RequestError::Missing(key.to_owned()))
    }

    /// An optional unsigned integer, as a JSON number or decimal text.
    pub(crate) fn opt_uint(&self, key: &str) -> Result<Option<u64>, RequestError> {
        match self.values.get(key) {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Number(n), _)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| RequestError::field(key, "expected an unsigned integer")),
            Some((Value::String(s), _)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RequestError::field(key, "expected an unsigned integer")),
            Some(_) => Err(RequestError::field(key, "expected an unsigned integer")),
        }
    }

    /// An optional boolean, as JSON or the text `true`/`false` (also `1`/`0`).
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, RequestError> {
        let bad = || RequestError::field(key, "expected true or false");
        match self.values.get(key) {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Bool(b), _)) => Ok(Some(*b)),
            Some((Value::String(s), _)) => match s.trim() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some((Value::Number(n), _)) => match n.as_u64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, ct.parse().expect("header"));
        h
    }

    #[test]
    fn sources_merge_and_duplicates_are_refused() {
        let p = Params::parse(Some("a=1"), &headers("application/json"), br#"{"b":"x"}"#)
            .expect("parses");
        assert_eq!(p.str("a"), Ok("1"));
        assert_eq!(p.str("b"), Ok("x"));
        let dup = Params::parse(Some("a=1"), &headers("application/json"), br#"{"a":"x"}"#);
        assert!(matches!(dup, Err(RequestError::Duplicate(k)) if k == "a"));
        let dup = Params::parse(
            None,
            &headers("application/x-www-form-urlencoded"),
            b"a=1&a=2",
        );
        assert!(matches!(dup, Err(RequestError::Duplicate(_))));
    }

    #[test]
    fn none_word_only_counts_in_forms() {
        let form = Params::parse(
            None,
            &headers("application/x-www-form-urlencoded"),
            b"username=None",
        )
        .expect("parses");
        assert_eq!(form.opt_str("username", Some("None")), Ok(None));
        let json = Params::parse(
            None,
            &headers("application/json"),
            br#"{"username":"None"}"#,
        )
        .expect("parses");
        assert_eq!(json.opt_str("username", Some("None")), Ok(Some("None")));
    }

    #[test]
    fn bad_bodies_are_errors() {
        let h = headers("application/json");
        assert!(matches!(
            Params::parse(None, &h, b"{"),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(
            Params::parse(None, &h, b"[1]"),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(
            Params::parse(None, &headers("text/plain"), b"x"),
            Err(RequestError::ContentType(_))
        ));
        let form = headers("application/x-www-form-urlencoded");
        assert!(matches!(
            Params::parse(None, &form, b"a=%FF"),
            Err(RequestError::Form(_))
        ));
        assert!(matches!(
            Params::parse(None, &form, b"\xff=1"),
            Err(RequestError::Form(_))
        ));
    }
}
