//! [`Datum`]: the dynamically typed record that flows between pipeline stages.
//!
//! Pipelines are assembled from a declarative spec, so stages cannot share Rust
//! types at compile time. A `Datum` is the common currency. Unlike
//! `serde_json::Value` it encodes through the codec (bincode cannot carry
//! self-describing types), so a datum can cross the wire to a stage on another node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A self-describing value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered list.
    List(Vec<Datum>),
    /// A map with ordered keys (so encoding is deterministic).
    Map(BTreeMap<String, Datum>),
}

impl Datum {
    /// The text, if this is `Text`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Datum::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Datum::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The field `key`, if this is a `Map` holding it.
    pub fn get(&self, key: &str) -> Option<&Datum> {
        match self {
            Datum::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// Converts a JSON value (for example a stage's config). Numbers that fit `i64`
    /// become `Int`, other numbers `Float`.
    pub fn from_json(value: &serde_json::Value) -> Datum {
        use serde_json::Value as J;
        match value {
            J::Null => Datum::Null,
            J::Bool(b) => Datum::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map(Datum::Int)
                .unwrap_or_else(|| Datum::Float(n.as_f64().unwrap_or(f64::NAN))),
            J::String(s) => Datum::Text(s.clone()),
            J::Array(items) => Datum::List(items.iter().map(Datum::from_json).collect()),
            J::Object(map) => Datum::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Datum::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to JSON for display. Bytes become an array of numbers; a
    /// non-finite float becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Datum::Null => J::Null,
            Datum::Bool(b) => J::Bool(*b),
            Datum::Int(i) => J::from(*i),
            Datum::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Datum::Text(s) => J::String(s.clone()),
            Datum::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Datum::List(items) => J::Array(items.iter().map(Datum::to_json).collect()),
            Datum::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

impl From<&str> for Datum {
    fn from(s: &str) -> Self {
        Datum::Text(s.to_string())
    }
}

impl From<String> for Datum {
    fn from(s: String) -> Self {
        Datum::Text(s)
    }
}

impl From<i64> for Datum {
    fn from(i: i64) -> Self {
        Datum::Int(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn datum_crosses_the_codec_and_json() {
        let json = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        let d = Datum::from_json(&json);
        assert_eq!(
            d.get("b").and_then(|b| b.get("c")).and_then(Datum::as_int),
            Some(-3)
        );
        let back: Datum = codec::decode(&codec::encode(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.to_json(), json);
    }
}
