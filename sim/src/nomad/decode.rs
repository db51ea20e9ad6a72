//! Typed, case-insensitive reads from request JSON with Go `encoding/json`'s error texts (B1, C13).

use serde_json::{Map, Value};

/// A body that Go's decoder would reject: answered as 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// A JSON object seen as a Go struct: `strukt` is the Go type name and `path` the field path from
/// the request root, both used in `UnmarshalTypeError` texts.
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    /// The object itself.
    pub map: &'a Map<String, Value>,
    strukt: &'static str,
    path: &'a str,
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

impl<'a> Obj<'a> {
    /// Wraps `map`, a value of Go type `strukt` found at `path` (e.g. `Job.TaskGroups`).
    pub fn new(map: &'a Map<String, Value>, strukt: &'static str, path: &'a str) -> Obj<'a> {
        Obj { map, strukt, path }
    }

    /// The path of a field below this object.
    pub fn sub_path(&self, field: &str) -> String {
        if self.path.is_empty() { field.to_string() } else { format!("{}.{field}", self.path) }
    }

    /// The raw value of `field`, matched like Go does: exact name first, then case-insensitively.
    /// JSON `null` reads as absent, as it leaves a Go field at its zero value.
    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        let v = self
            .map
            .get(field)
            .or_else(|| self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| v))?;
        (!v.is_null()).then_some(v)
    }

    fn type_err(&self, field: &str, v: &Value, go_type: &str) -> DecodeError {
        let kind = match v {
            Value::Number(_) if go_type == "string" || go_type == "bool" => "number".to_string(),
            other => kind(other),
        };
        let kind = if go_type.starts_with("int") || go_type.starts_with("uint") || go_type == "time.Duration" {
            kind
        } else {
            kind.split(' ').next().unwrap_or("number").to_string()
        };
        DecodeError(format!(
            "json: cannot unmarshal {kind} into Go struct field {}.{} of type {go_type}",
            self.strukt,
            self.sub_path(field)
        ))
    }

    /// A string field.
    pub fn str(&self, field: &str) -> Result<Option<String>, DecodeError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.type_err(field, v, "string")),
        }
    }

    /// A boolean field.
    pub fn bool(&self, field: &str) -> Result<Option<bool>, DecodeError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_err(field, v, "bool")),
        }
    }

    /// An integer field of Go type `go_type` (`int`, `int64`, `uint64`, `time.Duration`, …).
    pub fn int_as(&self, field: &str, go_type: &str) -> Result<Option<i64>, DecodeError> {
        match self.raw(field) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match n.as_i64() {
                Some(i) if !(go_type.starts_with("uint") && i < 0) => Ok(Some(i)),
                _ => Err(self.type_err(field, v, go_type)),
            },
            Some(v) => Err(self.type_err(field, v, go_type)),
        }
    }

    /// An `int` field.
    pub fn int(&self, field: &str) -> Result<Option<i64>, DecodeError> {
        self.int_as(field, "int")
    }

    /// A `time.Duration` field: integer nanoseconds only; a string such as `"10s"` is a 400.
    pub fn dur(&self, field: &str) -> Result<Option<i64>, DecodeError> {
        self.int_as(field, "time.Duration")
    }

    /// A nested struct of Go type `strukt`.
    pub fn obj(&self, field: &str, strukt: &'static str) -> Result<Option<&'a Map<String, Value>>, DecodeError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.type_err(field, v, strukt)),
        }
    }

    /// A slice field whose elements are of Go type `elem`.
    pub fn arr(&self, field: &str, elem: &str) -> Result<Option<&'a Vec<Value>>, DecodeError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.type_err(field, v, &format!("[]{elem}"))),
        }
    }

    /// A `[]string` field.
    pub fn strs(&self, field: &str) -> Result<Option<Vec<String>>, DecodeError> {
        let Some(a) = self.arr(field, "string")? else {
            return Ok(None);
        };
        a.iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.type_err(field, other, "string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A `map[string]string` field.
    pub fn str_map(&self, field: &str) -> Result<Option<Map<String, Value>>, DecodeError> {
        let Some(m) = self.obj(field, "map[string]string")? else {
            return Ok(None);
        };
        for v in m.values() {
            if !v.is_string() && !v.is_null() {
                return Err(self.type_err(field, v, "string"));
            }
        }
        Ok(Some(m.clone()))
    }

    /// A free-form field passed through as given (`null` when absent).
    pub fn any(&self, field: &str) -> Value {
        self.raw(field).cloned().unwrap_or(Value::Null)
    }
}

/// `null` for an empty map or slice, as Nomad's canonicalisation normalises them.
pub fn null_if_empty(v: Value) -> Value {
    match &v {
        Value::Object(m) if m.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        _ => v,
    }
}
