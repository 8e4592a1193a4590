//! What `request-transformer` and `response-transformer` share: Kong's `name:value` entries,
//! their config schemas and validators, query/form encoding, and JSON edits with Lua's notion of
//! a present value.

use serde_json::Value;

use crate::model::schema::Field;

/// Split a `name:value` entry like Kong's `^([^:]+):*(.-)$`: the name runs to the first colon,
/// every colon right after it is skipped, the rest is the value (`None` when empty).
pub fn split_pair(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once(':') {
        None => (entry, None),
        Some((name, rest)) => {
            let value = rest.trim_start_matches(':');
            (name, (!value.is_empty()).then_some(value))
        }
    }
}

/// Kong's `validate_header_name`: letters, digits, `-` and `_`.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kong's `match = "^[^:]+:.*$"`: a non-empty name, a colon, anything.
fn check_colon(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    match s.split_once(':') {
        Some((name, _)) if !name.is_empty() => Ok(()),
        _ => Err(format!("invalid value: {s}")),
    }
}

fn check_header(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let (name, _) = split_pair(s);
    if is_header_name(name) {
        Ok(())
    } else {
        Err(format!("'{name}' is not a valid header"))
    }
}

fn check_header_pair(v: &Value) -> Result<(), String> {
    check_header(v)?;
    let s = v.as_str().unwrap_or_default();
    let value = split_pair(s).1.unwrap_or_default();
    if is_header_name(value) {
        Ok(())
    } else {
        Err(format!("'{value}' is not a valid header"))
    }
}

fn array_of(elem: Field) -> Field {
    Field::array(elem).default(serde_json::json!([]))
}

/// Plain names (`remove.body`, `remove.querystring`, `remove.json`).
pub fn names() -> Field {
    array_of(Field::string())
}

/// Header names (`remove.headers` of request-transformer).
pub fn header_names() -> Field {
    array_of(Field::string().validator(check_header))
}

/// A further check of an entry (request-transformer's templates).
pub type EntryCheck = fn(&Value) -> Result<(), String>;

/// `name:value` entries; `extra` validates further (templates).
pub fn pairs(extra: Option<EntryCheck>) -> Field {
    let mut f = Field::string().validator(check_colon);
    if let Some(x) = extra {
        f = f.validator(x);
    }
    array_of(f)
}

/// `header:value` entries (the name must be a valid header name).
pub fn header_pairs(extra: Option<EntryCheck>) -> Field {
    let mut f = Field::string()
        .validator(check_colon)
        .validator(check_header);
    if let Some(x) = extra {
        f = f.validator(x);
    }
    array_of(f)
}

/// `old:new` header renames (both must be valid header names).
pub fn header_renames() -> Field {
    array_of(
        Field::string()
            .validator(check_colon)
            .validator(check_header_pair),
    )
}

/// Parsed entries of a config array: `(name, value)`.
pub fn parse_entries(list: &[String]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|e| {
            let (n, v) = split_pair(e);
            (n.to_owned(), v.map(str::to_owned))
        })
        .collect()
}

/// Decode `a=1&b&c=x+y` into ordered pairs; a bare `b` has no value (Lua's `true`).
pub fn decode_args(s: &str) -> Vec<(String, Option<String>)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (p, None),
            };
            let k = unescape(k);
            // nginx drops arguments without a name.
            (!k.is_empty()).then(|| (k, v.map(unescape)))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// `ngx.escape_uri` (component): everything but `A-Z a-z 0-9 - . _ ~` is percent-encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a query or form component like `ngx.escape_uri`.
pub fn escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// Encode pairs as `a=1&b`: a pair without a value (or with an empty one) is a bare name, like
/// Kong's `encode_args`.
pub fn encode_args(pairs: &[(String, Option<String>)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&escape(k));
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            out.push('=');
            out.push_str(&escape(v));
        }
    }
    out
}

/// Ordered multi-valued arguments (query string, form body) with the edits of both
/// transformers.
#[derive(Debug, Clone, Default)]
pub struct Args(pub Vec<(String, Option<String>)>);

impl Args {
    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
    /// Drop every value of `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| k != name);
        before != self.0.len()
    }
    /// Move every value of `old` to `new` (replacing `new`'s values); whether `old` existed.
    pub fn rename(&mut self, old: &str, new: &str) -> bool {
        if old == new || !self.has(old) {
            return false;
        }
        self.remove(new);
        for (k, _) in &mut self.0 {
            if k == old {
                new.clone_into(k);
            }
        }
        true
    }
    /// Replace every value of `name` by `value` if present; whether it was.
    pub fn replace(&mut self, name: &str, value: &str) -> bool {
        let Some(first) = self.0.iter().position(|(k, _)| k == name) else {
            return false;
        };
        self.0[first].1 = Some(value.to_owned());
        let mut i = 0;
        self.0.retain(|(k, _)| {
            i += 1;
            i - 1 == first || k != name
        });
        true
    }
    /// Add `name=value` if `name` is absent; whether it was added.
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        if self.has(name) {
            return false;
        }
        self.0.push((name.to_owned(), Some(value.to_owned())));
        true
    }
    /// Add another `name=value`.
    pub fn append(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), Some(value.to_owned())));
    }
}

/// Lua truthiness of a JSON member as cjson decodes it: absent and `false` are falsy, `null`
/// (a light userdata) is truthy.
pub fn lua_truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Bool(false)))
}

/// Kong's `append_value`: a string (or other scalar) becomes `[old, new]`, an array gets `new`
/// pushed, anything else (absent, null, object) becomes `[new]`.
pub fn append_value(current: Option<Value>, value: Value) -> Value {
    match current {
        Some(Value::Array(mut a)) => {
            a.push(value);
            Value::Array(a)
        }
        Some(old @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
            Value::Array(vec![old, value])
        }
        _ => Value::Array(vec![value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_like_kong() {
        assert_eq!(split_pair("a:b"), ("a", Some("b")));
        assert_eq!(split_pair("a:b:c"), ("a", Some("b:c")));
        assert_eq!(split_pair("a::b"), ("a", Some("b")));
        assert_eq!(split_pair("a:"), ("a", None));
        assert_eq!(split_pair("a"), ("a", None));
        assert_eq!(
            split_pair("x:http://h/p?q=1"),
            ("x", Some("http://h/p?q=1"))
        );
    }

    #[test]
    fn args_round_trip() {
        let a = decode_args("a=1&b&c=x+y%21&&=z&a=2");
        assert_eq!(
            a,
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), None),
                ("c".into(), Some("x y!".into())),
                ("a".into(), Some("2".into())),
            ]
        );
        assert_eq!(encode_args(&a), "a=1&b&c=x%20y%21&a=2");
        assert_eq!(escape("a[1]~.-_ é"), "a%5B1%5D~.-_%20%C3%A9");
    }

    #[test]
    fn args_edits() {
        let mut a = Args(decode_args("a=1&b=2&a=3"));
        assert!(a.replace("a", "x"));
        assert_eq!(encode_args(&a.0), "a=x&b=2");
        assert!(a.rename("b", "a"));
        assert_eq!(encode_args(&a.0), "a=2");
        assert!(!a.add("a", "n"));
        assert!(a.add("c", "n"));
        a.append("c", "m");
        assert_eq!(encode_args(&a.0), "a=2&c=n&c=m");
        assert!(a.remove("c"));
        assert!(!a.rename("zz", "y"));
    }

    #[test]
    fn appending() {
        use serde_json::json;
        assert_eq!(append_value(None, json!("v")), json!(["v"]));
        assert_eq!(
            append_value(Some(json!("a")), json!("v")),
            json!(["a", "v"])
        );
        assert_eq!(append_value(Some(json!([1])), json!("v")), json!([1, "v"]));
        assert_eq!(append_value(Some(json!(null)), json!("v")), json!(["v"]));
        assert!(lua_truthy(Some(&json!(null))));
        assert!(!lua_truthy(Some(&json!(false))));
        assert!(!lua_truthy(None));
    }
}
