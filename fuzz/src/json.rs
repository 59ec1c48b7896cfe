//! An arbitrary JSON value. Depth is capped when converting, so a long
//! input cannot build a tree deeper than [`MAX_DEPTH`].

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde_json::{Map, Number, Value};

/// Deepest nesting produced by [`Json::to_value`]; deeper nodes become `null`.
pub const MAX_DEPTH: usize = 8;

/// Any JSON value, as the fuzzer builds it.
#[derive(Arbitrary, Debug, Clone)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (reaches `u64` values `i64` cannot).
    UInt(u64),
    /// A float (non-finite ones become `null`, as JSON has no such number).
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object; later duplicate keys replace earlier ones.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The `serde_json` value.
    pub fn to_value(&self) -> Value {
        self.at_depth(0)
    }

    fn at_depth(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(|j| j.at_depth(depth + 1)).collect()),
            Json::Obj(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), v.at_depth(depth + 1));
                }
                Value::Object(map)
            }
        }
    }
}
