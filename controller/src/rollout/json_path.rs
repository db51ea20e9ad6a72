//! The `jsonPath` of a web metric: where a value is in a JSON answer. A small subset of JSONPath, enough to point at
//! one value: an optional `$`, then `.name` and `[N]` steps (`$.data.errorRate`, `$.results[0].value`, `.p99`).

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// `.name`: a field of an object.
    Field(String),
    /// `[N]`: an element of an array.
    Index(usize),
}

/// A parsed `jsonPath`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses `text`.
    ///
    /// # Errors
    /// What is wrong, with the character position.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let body = text.strip_prefix('$').unwrap_or(text);
        let offset = text.len() - body.len();
        let bytes = body.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'_' | b'-'))
                    {
                        end += 1;
                    }
                    if end == start {
                        return Err(format!("expected a field name after the `.` at position {}", offset + i + 1));
                    }
                    segments.push(Segment::Field(body[start..end].to_owned()));
                    i = end;
                }
                b'[' => {
                    let start = i + 1;
                    let Some(close) = body[start..].find(']').map(|n| start + n) else {
                        return Err(format!("`[` at position {} is not closed", offset + i + 1));
                    };
                    let index = body[start..close].trim().parse::<usize>().map_err(|_| {
                        format!(
                            "`[{}]` at position {} is not an array index (a whole number ≥ 0)",
                            &body[start..close],
                            offset + i + 1
                        )
                    })?;
                    segments.push(Segment::Index(index));
                    i = close + 1;
                }
                _ => {
                    let c = body[i..].chars().next().unwrap_or('?');
                    return Err(format!(
                        "unexpected `{c}` at position {}: write `.name` and `[N]` steps, e.g. `$.data.errorRate`",
                        offset + i + 1
                    ));
                }
            }
        }
        if segments.is_empty() {
            return Err("must name a value, e.g. `$.data.errorRate`".to_owned());
        }
        Ok(JsonPath { segments })
    }

    /// The value at this path in `doc`, if there is one.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(doc, |v, seg| match seg {
            Segment::Field(name) => v.as_object()?.get(name),
            Segment::Index(i) => v.as_array()?.get(*i),
        })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.segments {
            match seg {
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_path_should_find_fields_and_indexes() {
        let doc = json!({"data": {"errorRate": 0.02, "results": [{"value": 1}, {"value": 2}]}});
        let at = |p: &str| JsonPath::parse(p).expect("parses").get(&doc).cloned();
        assert_eq!(at("$.data.errorRate"), Some(json!(0.02)));
        assert_eq!(at(".data.errorRate"), Some(json!(0.02)));
        assert_eq!(at("$.data.results[1].value"), Some(json!(2)));
        assert_eq!(at("$.data.results[2].value"), None);
        assert_eq!(at("$.data.errorRate.x"), None);
        assert_eq!(JsonPath::parse("$.a[3].b-c").expect("parses").to_string(), "$.a[3].b-c");
    }

    #[test]
    fn json_path_should_say_what_is_wrong() {
        for (text, part) in [
            ("$", "must name a value"),
            ("", "must name a value"),
            ("$.", "field name after the `.` at position 2"),
            ("$.a[", "not closed"),
            ("$.a[-1]", "not an array index"),
            ("$.a b", "unexpected ` ` at position 4"),
            ("$..a", "field name"),
            ("data.x", "unexpected `d` at position 1"),
        ] {
            let e = JsonPath::parse(text).expect_err(text);
            assert!(e.contains(part), "{text:?}: {e}");
        }
    }
}
