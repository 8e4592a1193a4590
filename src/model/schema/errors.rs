//! Kong's per-field error tree and its message construction (kong-compat §1.6).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One node of the error tree.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrNode {
    /// A message for a scalar field (or a whole aggregate).
    Msg(String),
    /// Errors inside a record or map.
    Record(FieldErrors),
    /// Errors of array elements, by 0-based index.
    List(BTreeMap<usize, ErrNode>),
}

impl ErrNode {
    /// A message node.
    pub fn msg(m: impl Into<String>) -> Self {
        Self::Msg(m.into())
    }

    /// Kong's JSON for the node: string, object, or array with `null` for valid elements.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Msg(m) => Value::String(m.clone()),
            Self::Record(r) => r.to_json(),
            Self::List(items) => {
                let len = items.keys().next_back().map_or(0, |k| k + 1);
                let mut arr = vec![Value::Null; len];
                for (i, e) in items {
                    arr[*i] = e.to_json();
                }
                Value::Array(arr)
            }
        }
    }

    /// Flattened `(suffix, message)` pairs with Kong's dotted, 1-based paths (`.paths.1`).
    fn flatten_dotted(&self, prefix: &str, out: &mut Vec<String>) {
        match self {
            Self::Msg(m) => out.push(format!("{prefix}: {m}")),
            Self::Record(r) => {
                for m in &r.entity {
                    out.push(format!("{prefix}.@entity: {m}"));
                }
                for (k, v) in &r.fields {
                    v.flatten_dotted(&format!("{prefix}.{k}"), out);
                }
            }
            Self::List(items) => {
                for (i, v) in items {
                    v.flatten_dotted(&format!("{prefix}.{}", i + 1), out);
                }
            }
        }
    }

    /// Flattened lines with 0-based bracket paths (`services[0].routes[1].paths[0]: ...`).
    fn flatten_brackets(&self, prefix: &str, out: &mut Vec<String>) {
        match self {
            Self::Msg(m) => out.push(format!("{prefix}: {m}")),
            Self::Record(r) => r.flatten_brackets(prefix, out),
            Self::List(items) => {
                for (i, v) in items {
                    v.flatten_brackets(&format!("{prefix}[{i}]"), out);
                }
            }
        }
    }

    /// Render like Lua's `pl.pretty.write(t, "")` (used in Kong's declarative message).
    fn lua_pretty(&self, out: &mut String) {
        match self {
            Self::Msg(m) => {
                out.push('"');
                out.push_str(m);
                out.push('"');
            }
            Self::Record(r) => r.lua_pretty(out),
            Self::List(items) => {
                out.push('{');
                let contiguous = items.keys().enumerate().all(|(n, k)| n == *k);
                let mut first = true;
                for (i, v) in items {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    if !contiguous {
                        out.push_str(&format!("[{}]=", i + 1));
                    }
                    v.lua_pretty(out);
                }
                out.push('}');
            }
        }
    }
}

/// Kong's per-field errors: a nested map mirroring the input, plus entity-level errors under
/// `@entity`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors {
    /// Entity-level messages (`fields["@entity"]`), in the order the checks ran.
    pub entity: Vec<String>,
    /// Per-field errors, sorted by field name.
    pub fields: BTreeMap<String, ErrNode>,
}

impl FieldErrors {
    /// No errors at all.
    pub fn is_empty(&self) -> bool {
        self.entity.is_empty() && self.fields.is_empty()
    }

    /// Number of messages [`message`](Self::message) lists.
    pub fn count(&self) -> usize {
        self.flat().len()
    }

    /// Add an entity-level message.
    pub fn add_entity(&mut self, msg: impl Into<String>) {
        self.entity.push(msg.into());
    }

    /// Add a message for `field` (the first message for a field wins).
    pub fn add_field(&mut self, field: &str, msg: impl Into<String>) {
        self.fields
            .entry(field.to_owned())
            .or_insert_with(|| ErrNode::Msg(msg.into()));
    }

    /// Put a node under `field`, merging records and lists with what is already there.
    pub fn insert(&mut self, field: &str, node: ErrNode) {
        match self.fields.get_mut(field) {
            None => {
                self.fields.insert(field.to_owned(), node);
            }
            Some(existing) => merge(existing, node),
        }
    }

    /// Put a node at a nested path (used by the declarative loader to place an entity's errors
    /// inside the tree mirroring the file).
    pub fn insert_at(&mut self, path: &[PathSeg], node: ErrNode) {
        match path {
            [] => match node {
                ErrNode::Record(r) => {
                    let mut me = ErrNode::Record(std::mem::take(self));
                    merge(&mut me, ErrNode::Record(r));
                    if let ErrNode::Record(r) = me {
                        *self = r;
                    }
                }
                ErrNode::Msg(m) => self.add_entity(m),
                ErrNode::List(_) => {}
            },
            [PathSeg::Key(k), rest @ ..] => {
                let node = wrap(rest, node);
                self.insert(k, node);
            }
            [PathSeg::Index(_), ..] => {}
        }
    }

    /// The `fields` object of Kong's admin error body.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.entity.is_empty() {
            m.insert("@entity".to_owned(), Value::from(self.entity.clone()));
        }
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.to_json());
        }
        Value::Object(m)
    }

    fn flat(&self) -> Vec<String> {
        let mut buf: Vec<String> = self.entity.clone();
        for (k, v) in &self.fields {
            match v {
                ErrNode::Msg(m) => buf.push(format!("{k}: {m}")),
                other => other.flatten_dotted(k, &mut buf),
            }
        }
        buf
    }

    /// `schema violation (host: required field missing)` /
    /// `2 schema violations (host: ...; port: ...)`: entity errors first, then fields sorted by
    /// name, nested ones flattened as `parent.child: msg` (array elements 1-based, as in Kong).
    pub fn message(&self) -> String {
        let buf = self.flat();
        if buf.len() == 1 {
            format!("schema violation ({})", buf[0])
        } else {
            format!("{} schema violations ({})", buf.len(), buf.join("; "))
        }
    }

    /// Kong's full admin error body, code 2.
    pub fn to_admin_body(&self) -> Value {
        serde_json::json!({
            "code": 2,
            "name": "schema violation",
            "message": self.message(),
            "fields": self.to_json(),
        })
    }

    /// Lines with 0-based bracket paths, entity errors at the record's own path.
    pub fn flatten_brackets(&self, prefix: &str, out: &mut Vec<String>) {
        for m in &self.entity {
            if prefix.is_empty() {
                out.push(m.clone());
            } else {
                out.push(format!("{prefix}: {m}"));
            }
        }
        for (k, v) in &self.fields {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            v.flatten_brackets(&p, out);
        }
    }

    /// Render like Lua's `pl.pretty.write(t, "")`.
    pub fn lua_pretty(&self, out: &mut String) {
        out.push('{');
        let mut first = true;
        if !self.entity.is_empty() {
            out.push_str("[\"@entity\"]={");
            let quoted: Vec<String> = self.entity.iter().map(|m| format!("\"{m}\"")).collect();
            out.push_str(&quoted.join(","));
            out.push('}');
            first = false;
        }
        for (k, v) in &self.fields {
            if !first {
                out.push(',');
            }
            first = false;
            if is_lua_ident(k) {
                out.push_str(k);
            } else {
                out.push_str(&format!("[\"{k}\"]"));
            }
            out.push('=');
            v.lua_pretty(out);
        }
        out.push('}');
    }
}

fn is_lua_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One step of a path into the error tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A record key.
    Key(String),
    /// An array index (0-based).
    Index(usize),
}

fn wrap(path: &[PathSeg], node: ErrNode) -> ErrNode {
    match path {
        [] => node,
        [PathSeg::Index(i), rest @ ..] => {
            let mut m = BTreeMap::new();
            m.insert(*i, wrap(rest, node));
            ErrNode::List(m)
        }
        [PathSeg::Key(k), rest @ ..] => {
            let mut r = FieldErrors::default();
            r.fields.insert(k.clone(), wrap(rest, node));
            ErrNode::Record(r)
        }
    }
}

fn merge(into: &mut ErrNode, node: ErrNode) {
    match (into, node) {
        (ErrNode::Record(a), ErrNode::Record(b)) => {
            a.entity.extend(b.entity);
            for (k, v) in b.fields {
                a.insert(&k, v);
            }
        }
        (ErrNode::List(a), ErrNode::List(b)) => {
            for (i, v) in b {
                match a.get_mut(&i) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(i, v);
                    }
                }
            }
        }
        (ErrNode::Record(a), ErrNode::Msg(m)) => a.add_entity(m),
        // A message already present wins.
        _ => {}
    }
}
