//! Comparing what the file sets with what the server has, and rendering values for people.
//!
//! Only the fields the file sets are compared: the server fills every other field with its
//! defaults, and those must not count as changes. How a field compares follows its type in
//! gwctl's schema (the entity schemas and the plugins' `config` schemas, which carry Kong's
//! field names and types): a record compares only the sub-fields the file sets (Kong merges a
//! PATCHed record field by field), a set ignores order, arrays, maps and scalars compare whole
//! (Kong replaces them), and numbers compare by value (`5` equals `5.0`). A field gwctl has no
//! schema for (a Kong-only plugin) compares as a record when both sides are objects, else whole.
//!
//! Rendering masks secrets: values under secret-like field names (`secret`, `key`, `password`,
//! `token`, ...), strings that look like credentials (`Bearer ...`, `Basic ...`), and any
//! occurrence of a secret the file holds ([`Secrets`]) in text that came from elsewhere (a
//! server's error message).

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::Kind;
use crate::model::schema::{Field, FieldType, PluginSchemas, Schema};
use crate::plugins::Registry;

/// gwctl's plugins, for the types of their `config` fields.
static PLUGINS: LazyLock<Registry> = LazyLock::new(Registry::builtin);

/// Longest rendered value before it is cut.
const MAX_RENDERED: usize = 160;

/// The schema of top-level field `name` of an entity of `kind` (for plugins, `config` is the
/// schema of plugin `plugin`).
pub(crate) fn top_field(kind: Kind, plugin: Option<&str>, name: &str) -> Option<Field> {
    if kind == Kind::Plugin && name == "config" {
        return plugin.and_then(|p| PLUGINS.config(p));
    }
    kind.entity_kind().schema().field(name).cloned()
}

/// One difference: the server's value and the file's, at a dotted path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Difference {
    /// Dotted path (`config.minute`).
    pub(crate) path: String,
    /// The server's value (`Null` when absent).
    pub(crate) old: Value,
    /// The file's value.
    pub(crate) new: Value,
}

/// Every difference between the file's value `want` of a field and the server's `have`.
pub(crate) fn differences(
    field: Option<&Field>,
    path: &str,
    want: &Value,
    have: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    let have = have.unwrap_or(&Value::Null);
    let same = match field.map(|f| &f.ty) {
        Some(FieldType::Record(schema)) => return record(Some(schema), path, want, have, out),
        Some(FieldType::Set(_)) => set_eq(want, have),
        Some(FieldType::Any) | None if want.is_object() && have.is_object() => {
            return record(None, path, want, have, out);
        }
        _ => deep_eq(want, have),
    };
    if !same {
        out.push(Difference {
            path: path.to_owned(),
            old: have.clone(),
            new: want.clone(),
        });
    }
}

fn record(
    schema: Option<&Schema>,
    path: &str,
    want: &Value,
    have: &Value,
    out: &mut Vec<Difference>,
) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (k, v) in w {
                let sub = schema.and_then(|s| s.field(k));
                differences(sub, &format!("{path}.{k}"), v, h.get(k), out);
            }
        }
        _ if deep_eq(want, have) => {}
        _ => out.push(Difference {
            path: path.to_owned(),
            old: have.clone(),
            new: want.clone(),
        }),
    }
}

/// Equality with numbers compared by value.
pub(crate) fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| deep_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Set equality: the same elements, in any order.
fn set_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.iter().all(|v| y.iter().any(|w| deep_eq(v, w)))
                && y.iter().all(|w| x.iter().any(|v| deep_eq(v, w)))
        }
        _ => deep_eq(a, b),
    }
}

/// The leaves of a value as `(path, value)`: objects are walked, everything else is a leaf.
pub(crate) fn leaves(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, sub) in m {
                leaves(&format!("{path}.{k}"), sub, out);
            }
        }
        _ => out.push((path.to_owned(), v.clone())),
    }
}

/// Whether a field called `name` holds a secret (its value is never shown).
pub(crate) fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "key"
        || n.ends_with("_key")
        || n.ends_with("-key")
        || n == "apikey"
        || [
            "secret",
            "password",
            "passwd",
            "passcode",
            "token",
            "authorization",
            "credential",
            "private",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// Whether a string looks like a credential wherever it appears (`Bearer x`, `Authorization: x`).
fn looks_secret(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    ["bearer ", "basic ", "authorization:", "authorization="]
        .iter()
        .any(|p| l.starts_with(p))
}

/// `v` with secret values replaced by `"(secret)"`.
fn masked(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, sub)| {
                    let sub = if is_secret_name(k) && !sub.is_null() {
                        Value::from("(secret)")
                    } else {
                        masked(sub)
                    };
                    (k.clone(), sub)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        Value::String(s) if looks_secret(s) => Value::from("(secret)"),
        other => other.clone(),
    }
}

/// Secret values the file holds, to be cut out of any text shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// Remember a secret value.
    pub(crate) fn add(&mut self, s: &str) {
        if !s.is_empty() && !self.0.iter().any(|x| x == s) {
            self.0.push(s.to_owned());
            // Longest first, so a secret that contains another is cut whole.
            self.0.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// `text` with every known secret replaced by `****`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "****");
            }
        }
        out
    }
}

/// A value at `path` as people see it: compact JSON, secrets masked, long values cut.
pub(crate) fn render(path: &str, v: &Value, secrets: &Secrets) -> String {
    let last = path.rsplit('.').next().unwrap_or(path);
    let text = if is_secret_name(last) && !v.is_null() {
        "(secret)".to_owned()
    } else {
        secrets.redact(&masked(v).to_string())
    };
    let chars = text.chars().count();
    if chars > MAX_RENDERED {
        let cut: String = text.chars().take(MAX_RENDERED).collect();
        format!("{cut}... ({chars} characters)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn diffs(kind: Kind, plugin: Option<&str>, want: Value, have: Value) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in want.as_object().unwrap() {
            let f = top_field(kind, plugin, k);
            differences(f.as_ref(), k, v, have.get(k), &mut out);
        }
        out.into_iter()
            .map(|d| format!("{}: {} -> {}", d.path, d.old, d.new))
            .collect()
    }

    #[test]
    fn only_fields_the_file_sets_count() {
        let have = json!({"name": "s", "host": "h", "port": 80, "retries": 5, "path": null});
        assert!(
            diffs(
                Kind::Service,
                None,
                json!({"host": "h", "port": 80}),
                have.clone()
            )
            .is_empty()
        );
        assert_eq!(
            diffs(
                Kind::Service,
                None,
                json!({"port": 8080, "path": null}),
                have
            ),
            vec!["port: 80 -> 8080"]
        );
    }

    #[test]
    fn records_compare_field_by_field_sets_ignore_order() {
        let have = json!({
            "healthchecks": {"active": {"http_path": "/", "timeout": 1.0, "healthy": {"interval": 0}}},
            "tags": ["b", "a"],
        });
        let want = json!({
            "healthchecks": {"active": {"timeout": 1, "healthy": {"interval": 5}}},
            "tags": ["a", "b"],
        });
        assert_eq!(
            diffs(Kind::Upstream, None, want, have),
            vec!["healthchecks.active.healthy.interval: 0 -> 5"]
        );
    }

    #[test]
    fn arrays_and_maps_compare_whole() {
        let have = json!({"paths": ["/a", "/b"], "headers": {"x": ["1"], "y": ["2"]}});
        assert_eq!(
            diffs(
                Kind::Route,
                None,
                json!({"paths": ["/b", "/a"], "headers": {"x": ["1"]}}),
                have
            ),
            vec![
                r#"headers: {"x":["1"],"y":["2"]} -> {"x":["1"]}"#,
                r#"paths: ["/a","/b"] -> ["/b","/a"]"#,
            ]
        );
        // A plugin config map (jwt-claim-headers' claims) is replaced whole by Kong.
        let have = json!({"config": {"claims": {"sub": "a", "iss": "b"}}});
        assert_eq!(
            diffs(
                Kind::Plugin,
                Some("jwt-claim-headers"),
                json!({"config": {"claims": {"sub": "a"}}}),
                have
            )
            .len(),
            1
        );
        // Without a schema (a Kong-only plugin) objects compare as records.
        let have = json!({"config": {"access": ["x"], "log": []}});
        assert!(
            diffs(
                Kind::Plugin,
                Some("post-function"),
                json!({"config": {"access": ["x"]}}),
                have
            )
            .is_empty()
        );
    }

    #[test]
    fn secrets_never_render() {
        let s = Secrets::default();
        assert_eq!(render("secret", &json!("hunter2"), &s), "(secret)");
        assert_eq!(
            render("config.redis.password", &json!("pw"), &s),
            "(secret)"
        );
        assert_eq!(render("key", &json!("k"), &s), "(secret)");
        assert_eq!(render("key_claim_name", &json!("iss"), &s), r#""iss""#);
        assert_eq!(
            render(
                "config",
                &json!({"headers": {"Authorization": "x"}, "a": 1}),
                &s
            ),
            r#"{"a":1,"headers":{"Authorization":"(secret)"}}"#
        );
        assert_eq!(
            render(
                "config.add.headers",
                &json!(["Authorization: Bearer abc", "x: y"]),
                &s
            ),
            r#"["(secret)","x: y"]"#
        );
        let mut s = Secrets::default();
        s.add("abc");
        s.add("abcdef");
        assert_eq!(s.redact("key abcdef and abc"), "key **** and ****");
        assert_eq!(
            render("url", &json!("http://u:abcdef@h"), &s),
            r#""http://u:****@h""#
        );
        let long = "x".repeat(400);
        assert!(render("config.access", &json!([long]), &s).ends_with("(404 characters)"));
    }
}
