//! Strict JSON for untrusted manifests, indexes and configs.
//!
//! `serde_json` silently keeps the last of two equal keys; two parsers that pick differently can
//! be made to see two different images in one manifest, so duplicate keys are rejected here. Size
//! and nesting depth are bounded before and while parsing.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The largest JSON document airlock reads (containerd uses the same bound for manifests).
pub const MAX_JSON_BYTES: u64 = 4 << 20;
const MAX_DEPTH: usize = 64;

/// Parses `bytes` as JSON with no duplicate keys and bounded depth. Callers bound the size when
/// they read (see [`read_bounded`]).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { depth: 0 }.deserialize(&mut de).map_err(|e| format!("invalid JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(value)
}

/// Parses into a typed value after the strict checks.
pub fn parse_as<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let value = parse(bytes)?;
    // serde quotes an unknown field or variant whole and unescaped: shown like any outside text.
    serde_json::from_value(value)
        .map_err(|e| format!("unexpected JSON shape: {}", crate::error::quoted(&e.to_string())))
}

/// Reads at most [`MAX_JSON_BYTES`] from `r`; a longer document is an error, not a truncation.
pub fn read_bounded(r: impl Read) -> std::io::Result<Result<Vec<u8>, String>> {
    read_limited(r, MAX_JSON_BYTES)
}

/// Reads at most `limit` bytes; more is an error.
pub fn read_limited(r: impl Read, limit: u64) -> std::io::Result<Result<Vec<u8>, String>> {
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Ok(Err(format!("document exceeds the {limit} byte limit")));
    }
    Ok(Ok(buf))
}

struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { depth: self.depth + 1 })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{}`", crate::error::shown(&key))));
            }
            let v = map.next_value_seed(Strict { depth: self.depth + 1 })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert!(parse(br#"{"a":1,"b":{"c":1}}"#).is_ok());
        let e = parse(br#"{"a":{"c":1,"c":2}}"#).unwrap_err();
        assert!(e.contains("duplicate key `c`"), "{e}");
    }

    #[test]
    fn rejects_deep_nesting_and_trailing_bytes() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nesting") || parse(deep.as_bytes()).is_err());
        assert!(parse(br#"{"a":1} x"#).is_err());
    }
}
