//! Bytes → [`App`], for bytes anyone could have written into Consul KV.
//!
//! Every input ends in a value or in field errors, never in a panic, a stall or an allocation
//! out of proportion to the input:
//! - the size is capped at Consul's value limit before anything is parsed;
//! - non-UTF-8 input is rejected;
//! - nesting depth is capped (serde_json's recursion limit, and the YAML budget);
//! - YAML aliases, anchors, nodes and replayed events are budgeted, so an alias bomb stops
//!   after a bounded amount of work;
//! - numbers that do not fit their field are type errors with the field's path.
//!
//! Parsing is two steps: text → `serde_json::Value` (syntax and budgets), then `Value` → `App`
//! (types and unknown fields) through `serde_path_to_error`, so each error names its field. A
//! typed error stops serde at the first problem; to still report every problem, the offending
//! field is removed and the value deserialised again, a bounded number of times.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::spec::App;
use super::{FieldError, index_path, key_path};

/// The largest record accepted: Consul's KV value limit (512 KiB), so anything bigger could not
/// have been stored anyway.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// The largest file `parse_documents` reads (`drover apply -f` of many records at once).
pub const MAX_DOCUMENTS_BYTES: usize = 32 * 1024 * 1024;

/// The deepest nesting of mappings and sequences accepted. A Nomad job nests about a dozen
/// levels deep; this keeps recursive code far from the stack's limit.
pub const MAX_DEPTH: usize = 64;

/// How many field errors one document may report from the type-checking step before giving up.
const MAX_TYPE_ERRORS: usize = 32;

/// Parses one record, YAML or JSON (JSON if the first non-blank character is `{`).
///
/// # Errors
/// Every problem found while reading: syntax, limits, wrong types, unknown fields. This does
/// not validate values (see [`super::validate()`]).
pub fn parse(bytes: &[u8]) -> Result<App, Vec<FieldError>> {
    match parse_lenient(bytes) {
        (Some(app), errors) if errors.is_empty() => Ok(app),
        (_, errors) => Err(errors),
    }
}

/// Splits a file of records into its documents, as JSON values: multi-document YAML (`---` between
/// records) or one JSON object. Empty YAML documents are skipped. The same limits as for one record
/// apply to each document.
///
/// # Errors
/// The file is too large or is not YAML or JSON.
pub fn split_documents(text: &str) -> Result<Vec<Value>, Vec<FieldError>> {
    if text.len() > MAX_DOCUMENTS_BYTES {
        return Err(vec![FieldError::new(
            "",
            format!("the file is {} bytes; the limit is {MAX_DOCUMENTS_BYTES}", text.len()),
        )]);
    }
    if looks_like_json(text.as_bytes()) {
        return Ok(vec![json_value(text.as_bytes()).map_err(|e| vec![e.prefixed("documents[0]")])?]);
    }
    let mut options = yaml_options();
    if let Some(budget) = options.budget.as_mut() {
        // A stream of records may be larger than one record, but each one is bounded.
        budget.max_nodes = budget.max_nodes.saturating_mul(16);
        budget.max_events = budget.max_events.saturating_mul(16);
    }
    serde_saphyr::from_str_multiple_with_options::<Value, Vec<Value>>(text, options)
        .map_err(|e| vec![FieldError::new("", yaml_reason(&e))])
}

/// Parses a file of records: multi-document YAML (`---` between records) or one JSON object.
/// Empty YAML documents are skipped; `documents[i]` in error paths counts the others.
///
/// # Errors
/// Every problem of every document, each path prefixed by `documents[i]`.
pub fn parse_documents(text: &str) -> Result<Vec<App>, Vec<FieldError>> {
    let values = split_documents(text)?;
    let mut apps = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let prefix = index_path("documents", i);
        match from_value(value) {
            (Some(app), errs) if errs.is_empty() => apps.push(app),
            (_, errs) => errors.extend(errs.into_iter().map(|e| e.prefixed(&prefix))),
        }
    }
    if errors.is_empty() { Ok(apps) } else { Err(errors) }
}

/// Where a record says it belongs (`metadata.namespace`/`metadata.name`, namespace defaulting
/// to `default`), read leniently so that even an invalid record can be stored at its key and
/// show up as `Invalid` (e.g. `drover dev` loading `manifests/examples/broken.yaml`). `None`
/// when the bytes are not a document or have no string `metadata.name`.
#[must_use]
pub fn record_key(bytes: &[u8]) -> Option<super::AppKey> {
    let value = document_value(bytes).ok()?;
    let metadata = value.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let namespace = metadata.get("namespace").and_then(Value::as_str).unwrap_or(super::spec::DEFAULT_NAMESPACE);
    Some(super::AppKey::new(namespace, name))
}

/// Parses as far as possible: the record with the fields that failed to parse left out (if the
/// rest still makes a record), and every error found. `load` validates the partial record too,
/// so one typo does not hide the other problems.
pub(crate) fn parse_lenient(bytes: &[u8]) -> (Option<App>, Vec<FieldError>) {
    match document_value(bytes) {
        Ok(value) => from_value(value),
        Err(e) => (None, vec![e]),
    }
}

/// Text → `Value`, with every limit applied.
fn document_value(bytes: &[u8]) -> Result<Value, FieldError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(FieldError::new(
            "",
            format!("the record is {} bytes; Consul values are limited to {MAX_RECORD_BYTES}", bytes.len()),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldError::new("", "the record is empty"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        FieldError::new(
            "",
            format!(
                "the record is not UTF-8 text (invalid byte at offset {}), so neither YAML nor JSON",
                e.valid_up_to()
            ),
        )
    })?;
    if looks_like_json(bytes) { json_value(bytes) } else { yaml_value(text) }
}

fn looks_like_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn json_value(bytes: &[u8]) -> Result<Value, FieldError> {
    // serde_json stops at 128 levels by itself ("recursion limit exceeded"), before the stack
    // is at risk; the walk below applies Drover's own, lower limit. Going through
    // serde_path_to_error even for the untyped `Value` gives syntax-level errors (a number out
    // of range) the path of the field they are in.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let StrictValue(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        FieldError::new(
            render_path(&e.path().iter().cloned().collect::<Vec<_>>()),
            format!("not valid JSON: {}", e.inner()),
        )
    })?;
    de.end().map_err(|e| FieldError::new("", format!("not valid JSON: {e}")))?;
    if depth_exceeds(&value, MAX_DEPTH) {
        return Err(FieldError::new("", format!("the document nests deeper than {MAX_DEPTH} levels")));
    }
    Ok(value)
}

/// One YAML document → `Value`, under the budget; errors carry the path they were found at.
fn yaml_value(text: &str) -> Result<Value, FieldError> {
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        serde_path_to_error::deserialize::<_, Value>(de).map_err(|e| {
            path = render_path(&e.path().iter().cloned().collect::<Vec<_>>());
            e.into_inner()
        })
    })
    .map_err(|e| FieldError::new(path, yaml_reason(&e)))
}

/// A JSON value read like `serde_json::Value`, except that a key repeated in one object is an
/// error instead of "last one wins": the YAML reader already rejects duplicates, and a silently
/// dropped `image` is exactly the kind of ignored input a record must not have.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
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
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
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
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|StrictValue(v)| v)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let StrictValue(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Whether any path in `value` is deeper than `limit`, without recursion.
fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// The YAML limits. Defaults of serde-saphyr are meant for files of megabytes; a record is at
/// most 512 KiB, so the budgets are set to what such a record can legitimately need.
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_RECORD_BYTES);
    budget.max_depth = MAX_DEPTH;
    budget.max_events = 400_000;
    budget.max_nodes = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_documents = 1_024;
    budget.max_recorded_anchor_events = 20_000;
    budget.max_recorded_anchor_bytes = 1024 * 1024;
    budget.max_total_scalar_bytes = 8 * 1024 * 1024;
    budget.max_merge_keys = 1_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // An alias expands to a copy of its anchor's events; this bounds the total copied, which is
    // what makes a billion-laughs document fail after ~50k events instead of exhausting memory.
    options.alias_limits.max_total_replayed_events = 50_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.with_snippet = false;
    // YAML 1.1 reads `yes`, `no`, `on`, `off`, `y` and `n` as booleans (the "Norway problem"):
    // `env: {DEBUG: on}` would become a type error and `country: no` a boolean. Only `true` and
    // `false` are booleans in a record; everything else is a string.
    options.strict_booleans = true;
    options
}

fn yaml_reason(err: &serde_saphyr::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    format!("not valid YAML: {first}")
}

/// `Value` → `App`, reporting every type error found (bounded), each with its field path.
fn from_value(mut value: Value) -> (Option<App>, Vec<FieldError>) {
    if !value.is_object() {
        return (
            None,
            vec![FieldError::new(
                "",
                format!(
                    "the record must be a mapping with apiVersion, kind, metadata and spec, not {}",
                    kind_of(&value)
                ),
            )],
        );
    }
    let mut errors = Vec::new();
    let mut removed: Vec<Vec<Segment>> = Vec::new();
    loop {
        let result: Result<App, _> = serde_path_to_error::deserialize(&value);
        let err = match result {
            Ok(app) => return (Some(app), errors),
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let reason = err.inner().to_string();
        if let Some(field) = missing_field(&reason) {
            // A required field that is absent because an earlier pass removed it as invalid is
            // already reported; saying it is missing too would be noise. Its parent cannot be
            // built without it, so the parent goes too (silently) and the passes go on.
            let mut full = segments.clone();
            full.push(Segment::Map { key: field.to_owned() });
            let ours = removed.iter().any(|r| same_path(r, &full));
            if !ours {
                errors.push(FieldError::new(render_path(&segments), reason));
            }
            if !ours || !remove_at(&mut value, &segments) {
                return (None, errors);
            }
            removed.push(segments);
            continue;
        }
        errors.push(FieldError::new(render_path(&segments), reason));
        if errors.len() >= MAX_TYPE_ERRORS || !remove_at(&mut value, &segments) {
            return (None, errors);
        }
        removed.push(segments);
    }
}

fn missing_field(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `").and_then(|rest| rest.split('`').next())
}

fn same_path(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| segment_key(x) == segment_key(y))
}

fn segment_key(s: &Segment) -> Option<String> {
    match s {
        Segment::Seq { index } => Some(index.to_string()),
        Segment::Map { key } => Some(key.clone()),
        Segment::Enum { variant } => Some(variant.clone()),
        Segment::Unknown => None,
    }
}

/// Removes the map entry at `path` so the next pass can go on past it. Only map entries are
/// removed (removing an array element would shift the indexes of later errors); `false` when
/// nothing could be removed, which ends the passes.
fn remove_at(value: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cursor = value;
    for segment in parents {
        cursor = match (segment, cursor) {
            (Segment::Map { key } | Segment::Enum { variant: key }, Value::Object(map)) => match map.get_mut(key) {
                Some(next) => next,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cursor) {
        (Segment::Map { key }, Value::Object(map)) => map.shift_remove(key).is_some(),
        _ => false,
    }
}

/// The longest path shown; deeper ones (from absurd nesting) end in `…`.
const MAX_PATH_SEGMENTS: usize = 12;

pub(crate) fn render_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments.iter().take(MAX_PATH_SEGMENTS) {
        path = match segment {
            Segment::Seq { index } => index_path(&path, *index),
            Segment::Map { key } | Segment::Enum { variant: key } => key_path(&path, key),
            // A key that failed to parse has no name yet: the path ends at its parent.
            Segment::Unknown => return path,
        };
    }
    if segments.len() > MAX_PATH_SEGMENTS {
        path.push('…');
    }
    path
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web}\nspec:\n  template: {image: nginx}\n";

    #[test]
    fn parse_should_read_yaml_and_json_alike() {
        let yaml = parse(GOOD.as_bytes()).expect("yaml");
        let json = br#" {"apiVersion": "drover.io/v1alpha1", "kind": "App", "metadata": {"name": "web"}, "spec": {"template": {"image": "nginx"}}}"#;
        assert_eq!(parse(json).expect("json"), yaml);
        assert_eq!(yaml.metadata.namespace, "default");
    }

    #[test]
    fn parse_should_reject_a_record_larger_than_a_consul_value() {
        let mut big = GOOD.as_bytes().to_vec();
        big.extend(std::iter::repeat_n(b'#', MAX_RECORD_BYTES));
        let errors = parse(&big).expect_err("too big");
        assert!(errors[0].reason.contains("limited to 524288"), "{errors:?}");
    }

    #[test]
    fn parse_should_stop_an_alias_bomb_early() {
        // 10^12 strings if expanded; the replay budget stops it after ~100k events.
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='m' {
            doc.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let errors = parse(doc.as_bytes()).expect_err("bomb");
        assert!(errors[0].reason.contains("budget"), "{errors:?}");
    }

    #[test]
    fn parse_should_report_every_type_error_it_can() {
        let doc = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, x: 1}\nspec:\n  template: {image: 5, count: a}\n  suspend: 3\n";
        let errors = parse(doc.as_bytes()).expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        // `image` is required, so after it is reported the template cannot be built: the
        // passes stop there without a second, "missing field" error for it.
        assert_eq!(paths, ["metadata.x", "spec.template.image", "spec.template.count", "spec.suspend"]);
    }

    #[test]
    fn parse_should_bound_the_number_of_passes() {
        let mut doc = String::from("apiVersion: drover.io/v1alpha1\nkind: App\nmetadata:\n  name: web\n");
        for i in 0..100 {
            doc.push_str(&format!("  junk{i}: 1\n"));
        }
        doc.push_str("spec: {template: {image: nginx}}\n");
        let errors = parse(doc.as_bytes()).expect_err("invalid");
        assert_eq!(errors.len(), MAX_TYPE_ERRORS);
    }

    #[test]
    fn parse_documents_should_prefix_errors_with_the_document() {
        let text = format!("{GOOD}---\n{GOOD}---\n# empty\n---\napiVersion: x\n");
        let errors = parse_documents(&text).expect_err("third is bad");
        assert!(errors.iter().all(|e| e.path.starts_with("documents[2]")), "{errors:?}");
        let apps = parse_documents(&format!("{GOOD}---\n{GOOD}")).expect("two");
        assert_eq!(apps.len(), 2);
        let json = r#"{"apiVersion": "drover.io/v1alpha1", "kind": "App", "metadata": {"name": "web"}, "spec": {"template": {"image": "nginx"}, "bad": 1}}"#;
        let errors = parse_documents(json).expect_err("bad field");
        assert_eq!(errors[0].path, "documents[0].spec.bad");
    }

    #[test]
    fn record_key_should_read_even_an_invalid_record() {
        let doc = b"apiVersion: x\nmetadata: {name: Bad_Name, namespace: prod}\nspec: {bogus: 1}\n";
        assert_eq!(record_key(doc), Some(super::super::AppKey::new("prod", "Bad_Name")));
        assert_eq!(record_key(b"\xff\xfe"), None);
        assert_eq!(record_key(b"metadata: {}"), None);
    }

    #[test]
    fn parse_should_reject_duplicate_json_keys() {
        let json = br#"{"apiVersion": "drover.io/v1alpha1", "kind": "App", "metadata": {"name": "web"},
            "spec": {"template": {"image": "nginx:1", "image": "nginx:2"}}}"#;
        let errors = parse(json).expect_err("duplicate");
        assert!(errors[0].reason.contains("duplicate key `image`"), "{errors:?}");
        assert!(errors[0].path.starts_with("spec.template"), "{errors:?}");
    }

    proptest::proptest! {
        /// Any bytes at all end in a record or in field errors, never in a panic.
        #[test]
        fn parse_should_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = parse(&bytes);
            let _ = crate::app::load(&crate::app::AppKey::new("default", "web"), &bytes);
        }

        /// Text made of YAML's structural characters, appended to a valid record, never panics
        /// either (this reaches much deeper into the parser than random bytes do).
        #[test]
        fn parse_should_never_panic_on_yaml_like_text(tail in "[-:&*!|>\\[\\]{},?#'\" \n\ta-z0-9.]{0,400}") {
            let text = format!("{GOOD}{tail}");
            let _ = parse(text.as_bytes());
            let _ = parse_documents(&text);
            let json = format!("{{{tail}");
            let _ = parse(json.as_bytes());
        }
    }

    #[test]
    fn depth_exceeds_should_count_nesting() {
        let v: Value = serde_json::from_str("[[[1]]]").unwrap();
        assert!(!depth_exceeds(&v, 3));
        assert!(depth_exceeds(&v, 2));
    }
}
