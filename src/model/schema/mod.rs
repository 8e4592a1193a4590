//! Kong-style schema engine: data-driven field definitions, Kong's error shapes and messages.
//!
//! A [`Schema`] is a list of named [`Field`]s plus entity-level [`EntityCheck`]s. Validation walks
//! a `serde_json::Value`, rejects unknown fields, fills defaults and automatic values (ids,
//! timestamps, generated keys), collects *every* error into a [`FieldErrors`] tree shaped like
//! Kong's `fields` object, and the typed front-ends in [`entities`] then deserialize the result
//! into the structs of [`crate::model`].
//!
//! The same engine is meant to back the Admin API: [`Ctx::coerce`] turns on form-style string
//! coercion (`"8080"` -> 8080, `"true"` -> true, `""` -> null); PATCH merges are the caller's job
//! (merge the stored entity's JSON with the patch, then validate the result).

pub mod entities;
mod errors;
pub mod validators;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use entities::{
    EntityKind, NoPlugins, PluginSchemas, Validated, validate, validate_acl,
    validate_ca_certificate, validate_consumer, validate_jwt_secret, validate_keyauth_credential,
    validate_plugin, validate_route, validate_service, validate_target, validate_upstream,
};
pub use errors::{ErrNode, FieldErrors, PathSeg};

/// A custom per-field validator: `Err(message)` on failure.
pub type CustomValidator = fn(&Value) -> Result<(), String>;

/// A custom entity check over the (defaults-filled) record. Returns entity-level messages and
/// per-field messages.
pub type CustomCheck = fn(&Map<String, Value>) -> Result<(), CheckFailure>;

/// A hook that rewrites the raw input record before field validation (e.g. the service `url`
/// shorthand, upstream hash_on coupling). It may report errors.
pub type PreHook = fn(&mut Map<String, Value>, &mut FieldErrors);

/// A hook that normalizes a record after it validated cleanly (e.g. target `host:port`).
pub type PostHook = fn(&mut Map<String, Value>);

/// Errors reported by a [`CustomCheck`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckFailure {
    /// Messages that go to `@entity`.
    pub entity: Vec<String>,
    /// `(field, message)` pairs.
    pub fields: Vec<(String, String)>,
}

impl CheckFailure {
    /// One entity-level message.
    pub fn entity(msg: impl Into<String>) -> Self {
        Self {
            entity: vec![msg.into()],
            fields: Vec::new(),
        }
    }
    /// One field-level message.
    pub fn field(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            entity: Vec::new(),
            fields: vec![(name.into(), msg.into())],
        }
    }
}

/// The value types Kong's schema language knows.
#[derive(Clone)]
pub enum FieldType {
    /// A string.
    String,
    /// An integer (JSON number without fraction).
    Integer,
    /// Any JSON number.
    Number,
    /// true / false.
    Boolean,
    /// An ordered list of elements.
    Array(Box<Field>),
    /// A list of distinct elements (duplicates are dropped, order kept).
    Set(Box<Field>),
    /// A nested record with its own fields and checks.
    Record(Arc<Schema>),
    /// A map with typed keys and values.
    Map(Box<Field>, Box<Field>),
    /// A foreign key `{"id": "<uuid>"}` to the named entity collection.
    Foreign(&'static str),
    /// Anything (left as given).
    Any,
}

impl fmt::Debug for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FieldType {
    /// Kong's name for the type (as in `GET /schemas`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array(_) => "array",
            Self::Set(_) => "set",
            Self::Record(_) => "record",
            Self::Map(..) => "map",
            Self::Foreign(_) => "foreign",
            Self::Any => "any",
        }
    }

    fn expected(&self) -> &'static str {
        match self {
            Self::String => "expected a string",
            Self::Integer => "expected an integer",
            Self::Number => "expected a number",
            Self::Boolean => "expected a boolean",
            Self::Array(_) => "expected an array",
            Self::Set(_) => "expected a set",
            Self::Record(_) | Self::Foreign(_) => "expected a record",
            Self::Map(..) => "expected a map",
            Self::Any => "",
        }
    }
}

/// Values generated when a field is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    /// A random UUID v4.
    UuidV4,
    /// Now, integer Unix seconds.
    Timestamp,
    /// Now, float Unix seconds with milliseconds.
    TimestampMs,
    /// 32 random alphanumerics (key-auth keys).
    Alnum32,
    /// 32 random lowercase hex digits (jwt key/secret, like Kong's `random_string`).
    Hex32,
}

/// One field definition.
#[derive(Clone, Debug)]
pub struct Field {
    /// Value type.
    pub ty: FieldType,
    /// Null/absent is an error (`required field missing`) unless a default/auto fills it.
    pub required: bool,
    /// Default used when the field is absent.
    pub default: Option<Value>,
    /// Generated value used when the field is absent.
    pub auto: Option<Auto>,
    /// Accepted values (`expected one of: ...`).
    pub one_of: Option<Vec<Value>>,
    /// Inclusive numeric range (`value should be between X and Y`).
    pub between: Option<(i64, i64)>,
    /// Minimum string or array length (`length must be at least N`).
    pub len_min: Option<usize>,
    /// Required string prefix (`should start with: X`).
    pub starts_with: Option<&'static str>,
    /// Custom message for `starts_with` failures.
    pub starts_with_err: Option<&'static str>,
    /// Forbidden substrings with their messages.
    pub match_none: Vec<(&'static str, &'static str)>,
    /// The string must be a UUID (`expected a valid UUID`).
    pub uuid: bool,
    /// Custom validators, run after the built-in constraints pass.
    pub validators: Vec<CustomValidator>,
}

impl Field {
    /// A field of the given type, optional, without constraints.
    pub fn new(ty: FieldType) -> Self {
        Self {
            ty,
            required: false,
            default: None,
            auto: None,
            one_of: None,
            between: None,
            len_min: None,
            starts_with: None,
            starts_with_err: None,
            match_none: Vec::new(),
            uuid: false,
            validators: Vec::new(),
        }
    }
    /// A string field.
    pub fn string() -> Self {
        Self::new(FieldType::String)
    }
    /// An integer field.
    pub fn integer() -> Self {
        Self::new(FieldType::Integer)
    }
    /// A number field.
    pub fn number() -> Self {
        Self::new(FieldType::Number)
    }
    /// A boolean field.
    pub fn boolean() -> Self {
        Self::new(FieldType::Boolean)
    }
    /// An array of `elements`.
    pub fn array(elements: Field) -> Self {
        Self::new(FieldType::Array(Box::new(elements)))
    }
    /// A set of `elements`.
    pub fn set(elements: Field) -> Self {
        Self::new(FieldType::Set(Box::new(elements)))
    }
    /// A nested record.
    pub fn record(schema: Schema) -> Self {
        Self::new(FieldType::Record(Arc::new(schema)))
    }
    /// A map.
    pub fn map(keys: Field, values: Field) -> Self {
        Self::new(FieldType::Map(Box::new(keys), Box::new(values)))
    }
    /// A foreign key to `entity`.
    pub fn foreign(entity: &'static str) -> Self {
        Self::new(FieldType::Foreign(entity))
    }
    /// Anything.
    pub fn any() -> Self {
        Self::new(FieldType::Any)
    }
    /// Mark required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Set the default.
    pub fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
    /// Set the automatic value.
    pub fn auto(mut self, a: Auto) -> Self {
        self.auto = Some(a);
        self
    }
    /// Restrict to values.
    pub fn one_of(mut self, vals: Vec<Value>) -> Self {
        self.one_of = Some(vals);
        self
    }
    /// Restrict to string values.
    pub fn one_of_str(self, vals: &[&str]) -> Self {
        self.one_of(vals.iter().map(|s| Value::from(*s)).collect())
    }
    /// Inclusive range.
    pub fn between(mut self, lo: i64, hi: i64) -> Self {
        self.between = Some((lo, hi));
        self
    }
    /// Minimum length.
    pub fn len_min(mut self, n: usize) -> Self {
        self.len_min = Some(n);
        self
    }
    /// Required prefix.
    pub fn starts_with(mut self, p: &'static str) -> Self {
        self.starts_with = Some(p);
        self
    }
    /// Required prefix with a custom message.
    pub fn starts_with_err(mut self, p: &'static str, err: &'static str) -> Self {
        self.starts_with = Some(p);
        self.starts_with_err = Some(err);
        self
    }
    /// Forbidden substring.
    pub fn match_none(mut self, pat: &'static str, err: &'static str) -> Self {
        self.match_none.push((pat, err));
        self
    }
    /// Must be a UUID.
    pub fn uuid(mut self) -> Self {
        self.uuid = true;
        self
    }
    /// Add a custom validator.
    pub fn validator(mut self, f: CustomValidator) -> Self {
        self.validators.push(f);
        self
    }
}

/// A predicate used by conditional entity checks.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// The value is one of these.
    OneOf(Vec<Value>),
    /// The value is none of these.
    NotOneOf(Vec<Value>),
    /// The value is not null.
    Required,
    /// The value equals this (null included).
    Eq(Value),
    /// The value is an array whose every element is one of these.
    ElementsOneOf(Vec<&'static str>),
    /// The value is an array with at least one element among these.
    AnyElementOneOf(Vec<&'static str>),
}

impl Matcher {
    fn matches(&self, v: &Value) -> bool {
        match self {
            Self::OneOf(vals) => vals.contains(v),
            Self::NotOneOf(vals) => !vals.contains(v),
            Self::Required => !v.is_null(),
            Self::Eq(x) => x == v,
            Self::ElementsOneOf(set) => v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|e| e.as_str().is_some_and(|s| set.contains(&s)))
            }),
            Self::AnyElementOneOf(set) => v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e.as_str().is_some_and(|s| set.contains(&s)))
            }),
        }
    }

    fn error(&self) -> String {
        match self {
            Self::OneOf(vals) => format!("expected one of: {}", list_values(vals)),
            Self::NotOneOf(vals) => format!("must not be one of: {}", list_values(vals)),
            Self::Required => "required field missing".to_owned(),
            Self::Eq(Value::Null) => "value must be null".to_owned(),
            Self::Eq(x) => format!("value must be {}", display_value(x)),
            Self::ElementsOneOf(set) | Self::AnyElementOneOf(set) => {
                format!("expected one of: {}", set.join(", "))
            }
        }
    }
}

/// An entity-level check.
#[derive(Clone, Debug)]
pub enum EntityCheck {
    /// `at least one of these fields must be non-empty: 'a', 'b'` (names sorted).
    AtLeastOneOf(Vec<&'static str>),
    /// When `if_field` matches `if_match`, `then_field` must match `then_match`; on failure the
    /// field gets the matcher's message and `@entity` gets
    /// `failed conditional validation given value of field '<if_field>'`.
    Conditional {
        /// Field tested.
        if_field: &'static str,
        /// Condition.
        if_match: Matcher,
        /// Field constrained.
        then_field: &'static str,
        /// Constraint.
        then_match: Matcher,
    },
    /// A custom check; skipped when any of `fields` already failed validation.
    Custom {
        /// Fields the check reads.
        fields: Vec<&'static str>,
        /// The check.
        check: CustomCheck,
    },
}

impl EntityCheck {
    fn fields(&self) -> Vec<&'static str> {
        match self {
            Self::AtLeastOneOf(f) => f.clone(),
            Self::Conditional {
                if_field,
                then_field,
                ..
            } => vec![if_field, then_field],
            Self::Custom { fields, .. } => fields.clone(),
        }
    }
}

/// A record schema: an entity or a nested record.
#[derive(Clone, Default)]
pub struct Schema {
    /// Entity or record name (e.g. `services`).
    pub name: &'static str,
    /// Fields in Kong's order.
    pub fields: Vec<(&'static str, Field)>,
    /// Entity-level checks.
    pub checks: Vec<EntityCheck>,
    /// Rewrites the raw input before field validation.
    pub pre: Option<PreHook>,
    /// Normalizes the record once it validated cleanly.
    pub post: Option<PostHook>,
    /// Kong's deprecated shorthand fields with `translate_backwards`: `(name, path)`. The name
    /// must also be declared in `fields` (it is type-checked there). On input a non-null value
    /// is copied to `path` unless the field at `path` is given (the real field wins, as in Kong
    /// 3.9); on output the shorthand shows the value at `path`. A PATCH merges into the stored
    /// record without these echoes (see [`Schema::prepare_patch`]).
    pub shorthands: Vec<(&'static str, &'static [&'static str])>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .field("fields", &self.fields)
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// A schema with the given name and fields.
    pub fn new(name: &'static str, fields: Vec<(&'static str, Field)>) -> Self {
        Self {
            name,
            fields,
            ..Self::default()
        }
    }

    /// Add an entity check.
    pub fn check(mut self, c: EntityCheck) -> Self {
        self.checks.push(c);
        self
    }

    /// Declare a deprecated shorthand field (see [`Schema::shorthands`]).
    pub fn shorthand(mut self, name: &'static str, path: &'static [&'static str]) -> Self {
        self.shorthands.push((name, path));
        self
    }

    /// Prepare a PATCH of a record with shorthands, as Kong does (it expands the patch's
    /// shorthands before merging it into the stored entity): drop the echoes from the stored
    /// record, and copy each shorthand the patch sets to its path in the patch (unless the patch
    /// sets that path itself), so that the merge neither keeps a stale echo nor lets the stored
    /// real field hide a patched shorthand.
    pub fn prepare_patch(&self, stored: &mut Map<String, Value>, patch: &mut Map<String, Value>) {
        let ctx = Ctx::new(0, &NoPlugins);
        for (name, path) in &self.shorthands {
            stored.remove(*name);
            let (Some(v), Some(field)) = (patch.get(*name), self.field(name)) else {
                continue;
            };
            if !v.is_null() && validate_value(field, v.clone(), &ctx).is_ok() {
                let v = v.clone();
                set_path_if_null(patch, path, v);
            }
        }
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }

    /// Validate a record value: unknown fields rejected, defaults and automatic values filled,
    /// every error collected.
    pub fn validate(&self, input: &Value, ctx: &Ctx<'_>) -> Result<Value, FieldErrors> {
        let Value::Object(obj) = input else {
            let mut errs = FieldErrors::default();
            errs.add_entity("expected a record");
            return Err(errs);
        };
        let (out, errs) = self.validate_record(obj, ctx);
        if errs.is_empty() {
            Ok(Value::Object(out))
        } else {
            Err(errs)
        }
    }

    fn validate_record(
        &self,
        obj: &Map<String, Value>,
        ctx: &Ctx<'_>,
    ) -> (Map<String, Value>, FieldErrors) {
        let mut errs = FieldErrors::default();
        let mut input = obj.clone();
        for (name, path) in &self.shorthands {
            let Some(v) = input.get(*name).filter(|v| !v.is_null()) else {
                continue;
            };
            let Some(field) = self.field(name) else {
                continue;
            };
            let v = ctx.coerce_value(field, v);
            // A value of the wrong type is reported under the shorthand's own name only.
            if validate_value(field, v.clone(), ctx).is_ok() {
                set_path_if_null(&mut input, path, v);
            }
        }
        if let Some(pre) = self.pre {
            pre(&mut input, &mut errs);
        }
        for key in input.keys() {
            if self.field(key).is_none() {
                errs.add_field(key, "unknown field");
            }
        }
        let mut out = Map::new();
        for (name, field) in &self.fields {
            if errs.fields.contains_key(*name) {
                continue;
            }
            let value = match input.get(*name) {
                Some(v) => ctx.coerce_value(field, v),
                None => match absent_value(field, ctx) {
                    Some(v) => v,
                    None => {
                        out.insert((*name).to_owned(), Value::Null);
                        continue;
                    }
                },
            };
            match validate_value(field, value, ctx) {
                Ok(v) => {
                    out.insert((*name).to_owned(), v);
                }
                Err(node) => {
                    errs.insert(name, node);
                }
            }
        }
        for check in &self.checks {
            // A dotted name (`config.allow`, in a plugin's entity checks) failed when its
            // top-level field did.
            if check.fields().iter().any(|f| {
                let top = f.split('.').next().unwrap_or(f);
                errs.fields.contains_key(top)
            }) {
                continue;
            }
            run_check(check, &out, &mut errs);
        }
        if errs.is_empty() {
            for (name, path) in &self.shorthands {
                let echo = get_path(&out, path).cloned().unwrap_or(Value::Null);
                out.insert((*name).to_owned(), echo);
            }
            if let Some(post) = self.post {
                post(&mut out);
            }
        }
        (out, errs)
    }
}

fn run_check(check: &EntityCheck, rec: &Map<String, Value>, errs: &mut FieldErrors) {
    let get = |f: &str| lookup(rec, f).cloned().unwrap_or(Value::Null);
    match check {
        EntityCheck::AtLeastOneOf(fields) => {
            let any = fields.iter().any(|f| is_nonempty(&get(f)));
            if !any {
                let mut names: Vec<&str> = fields.clone();
                names.sort_unstable();
                let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
                errs.add_entity(format!(
                    "at least one of these fields must be non-empty: {}",
                    quoted.join(", ")
                ));
            }
        }
        EntityCheck::Conditional {
            if_field,
            if_match,
            then_field,
            then_match,
        } => {
            if if_match.matches(&get(if_field)) && !then_match.matches(&get(then_field)) {
                errs.add_field(then_field, then_match.error());
                errs.add_entity(format!(
                    "failed conditional validation given value of field '{if_field}'"
                ));
            }
        }
        EntityCheck::Custom { check, .. } => {
            if let Err(fail) = check(rec) {
                for m in fail.entity {
                    errs.add_entity(m);
                }
                for (f, m) in fail.fields {
                    errs.add_field(&f, m);
                }
            }
        }
    }
}

/// The value at `path` in `rec`: a field name, or a dotted path into nested records
/// (`config.allow`, as Kong's plugin entity checks name config fields).
fn lookup<'a>(rec: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.split('.').collect();
    get_path(rec, &parts)
}

/// The value at `path` inside `rec`.
fn get_path<'v>(rec: &'v Map<String, Value>, path: &[&str]) -> Option<&'v Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = rec;
    for p in parents {
        cur = cur.get(*p)?.as_object()?;
    }
    cur.get(*last)
}

/// Put `v` at `path` inside `rec` unless a non-null value is there; intermediate records are
/// created when absent or null (a non-record in the way leaves `rec` alone).
fn set_path_if_null(rec: &mut Map<String, Value>, path: &[&str], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = rec;
    for p in parents {
        let slot = cur
            .entry((*p).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else {
            return;
        };
        cur = next;
    }
    match cur.get(*last) {
        Some(x) if !x.is_null() => {}
        _ => {
            cur.insert((*last).to_owned(), v);
        }
    }
}

/// Kong's notion of "non-empty": not null, not "", not an empty array/object.
pub fn is_nonempty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// The value Kong fills for an absent field: default, automatic value, or (for a required record)
/// the record built from its own defaults. `None` means null.
fn absent_value(field: &Field, ctx: &Ctx<'_>) -> Option<Value> {
    if let Some(d) = &field.default {
        return Some(d.clone());
    }
    if let Some(a) = field.auto {
        return Some(ctx.generate(a));
    }
    if let FieldType::Record(_) = field.ty
        && field.required
    {
        return Some(Value::Object(Map::new()));
    }
    if field.required {
        // Let validate_value report it.
        return Some(Value::Null);
    }
    None
}

fn validate_value(field: &Field, value: Value, ctx: &Ctx<'_>) -> Result<Value, ErrNode> {
    if value.is_null() {
        return if field.required {
            Err(ErrNode::msg("required field missing"))
        } else {
            Ok(Value::Null)
        };
    }
    let fail = |m: &str| Err(ErrNode::msg(m));
    let value = match &field.ty {
        FieldType::Any => value,
        FieldType::String => {
            let Value::String(s) = &value else {
                return fail(field.ty.expected());
            };
            if let Some(n) = field.len_min
                && s.chars().count() < n
            {
                return Err(ErrNode::msg(format!("length must be at least {n}")));
            }
            if let Some(p) = field.starts_with
                && !s.starts_with(p)
            {
                return Err(ErrNode::msg(
                    field
                        .starts_with_err
                        .map_or_else(|| format!("should start with: {p}"), str::to_owned),
                ));
            }
            for (pat, err) in &field.match_none {
                if s.contains(pat) {
                    return fail(err);
                }
            }
            if field.uuid && uuid::Uuid::parse_str(s).is_err() {
                return fail("expected a valid UUID");
            }
            value
        }
        FieldType::Integer | FieldType::Number => {
            let Value::Number(n) = &value else {
                return fail(field.ty.expected());
            };
            if matches!(field.ty, FieldType::Integer) && !(n.is_i64() || n.is_u64()) {
                let is_whole = n
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15);
                if !is_whole {
                    return fail(field.ty.expected());
                }
            }
            if let Some((lo, hi)) = field.between {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !(f >= lo as f64 && f <= hi as f64) {
                    return Err(ErrNode::msg(format!(
                        "value should be between {lo} and {hi}"
                    )));
                }
            }
            match (&field.ty, n.as_f64()) {
                (FieldType::Integer, Some(f)) if !(n.is_i64() || n.is_u64()) => {
                    Value::from(f as i64)
                }
                _ => value,
            }
        }
        FieldType::Boolean => {
            if !value.is_boolean() {
                return fail(field.ty.expected());
            }
            value
        }
        FieldType::Array(elem) | FieldType::Set(elem) => {
            let Value::Array(items) = value else {
                return fail(field.ty.expected());
            };
            if let Some(n) = field.len_min
                && items.len() < n
            {
                return Err(ErrNode::msg(format!("length must be at least {n}")));
            }
            let mut elem = (**elem).clone();
            elem.required = true;
            let mut out = Vec::with_capacity(items.len());
            let mut errs = BTreeMap::new();
            for (i, item) in items.into_iter().enumerate() {
                let item = ctx.coerce_value(&elem, &item);
                match validate_value(&elem, item, ctx) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        errs.insert(i, e);
                    }
                }
            }
            if !errs.is_empty() {
                return Err(ErrNode::List(errs));
            }
            if matches!(field.ty, FieldType::Set(_)) {
                let mut seen: Vec<Value> = Vec::with_capacity(out.len());
                for v in out {
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                out = seen;
            }
            Value::Array(out)
        }
        FieldType::Map(keys, vals) => {
            let Value::Object(m) = value else {
                return fail(field.ty.expected());
            };
            let mut out = Map::new();
            let mut errs = FieldErrors::default();
            let mut vals = (**vals).clone();
            vals.required = true;
            for (k, v) in m {
                if let Err(e) = validate_value(keys, Value::String(k.clone()), ctx) {
                    errs.insert(&k, e);
                    continue;
                }
                let v = ctx.coerce_value(&vals, &v);
                match validate_value(&vals, v, ctx) {
                    Ok(v) => {
                        out.insert(k, v);
                    }
                    Err(e) => {
                        errs.insert(&k, e);
                    }
                }
            }
            if !errs.is_empty() {
                return Err(ErrNode::Record(errs));
            }
            Value::Object(out)
        }
        FieldType::Record(schema) => {
            let Value::Object(m) = &value else {
                return fail(field.ty.expected());
            };
            let (out, errs) = schema.validate_record(m, ctx);
            if !errs.is_empty() {
                return Err(ErrNode::Record(errs));
            }
            Value::Object(out)
        }
        FieldType::Foreign(_) => {
            let Value::Object(m) = &value else {
                return fail(field.ty.expected());
            };
            let mut errs = FieldErrors::default();
            for k in m.keys() {
                if k != "id" {
                    errs.add_field(k, "unknown field");
                }
            }
            match m.get("id") {
                None | Some(Value::Null) => errs.add_field("id", "required field missing"),
                Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => {}
                Some(Value::String(_)) => errs.add_field("id", "expected a valid UUID"),
                Some(_) => errs.add_field("id", "expected a string"),
            }
            if !errs.is_empty() {
                return Err(ErrNode::Record(errs));
            }
            value
        }
    };
    if let Some(vals) = &field.one_of
        && !vals.contains(&value)
    {
        return Err(ErrNode::msg(format!(
            "expected one of: {}",
            list_values(vals)
        )));
    }
    for v in &field.validators {
        if let Err(m) = v(&value) {
            return Err(ErrNode::msg(m));
        }
    }
    Ok(value)
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list_values(vals: &[Value]) -> String {
    vals.iter()
        .map(display_value)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validation context: the clock, the plugin registry hook and the coercion mode.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Now, Unix milliseconds (integer timestamps use the seconds, targets keep the ms).
    pub now_ms: i64,
    /// Plugin config schemas.
    pub plugins: &'a dyn PluginSchemas,
    /// Form-encoded mode: coerce strings to the field's type, `""` to null.
    pub coerce: bool,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("now_ms", &self.now_ms)
            .field("coerce", &self.coerce)
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    /// A context at `now_ms` with the given plugin registry, JSON mode (no coercion).
    pub fn new(now_ms: i64, plugins: &'a dyn PluginSchemas) -> Self {
        Self {
            now_ms,
            plugins,
            coerce: false,
        }
    }

    fn generate(&self, a: Auto) -> Value {
        match a {
            Auto::UuidV4 => Value::from(uuid::Uuid::new_v4().to_string()),
            Auto::Timestamp => Value::from(self.now_ms.div_euclid(1000)),
            Auto::TimestampMs => Value::from(self.now_ms as f64 / 1000.0),
            Auto::Alnum32 => Value::from(validators::random_alnum(32)),
            Auto::Hex32 => Value::from(uuid::Uuid::new_v4().simple().to_string()),
        }
    }

    /// Form-style coercion of a string value to the field's type.
    fn coerce_value(&self, field: &Field, v: &Value) -> Value {
        if !self.coerce {
            return v.clone();
        }
        let Value::String(s) = v else {
            return v.clone();
        };
        if s.is_empty() {
            return Value::Null;
        }
        match &field.ty {
            FieldType::Integer => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| v.clone()),
            FieldType::Number => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| {
                    if n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                        s.parse::<i64>()
                            .map(Value::from)
                            .unwrap_or(Value::Number(n))
                    } else {
                        Value::Number(n)
                    }
                })
                .unwrap_or_else(|| v.clone()),
            FieldType::Boolean => match s.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => v.clone(),
            },
            FieldType::Array(_) | FieldType::Set(_) => Value::Array(vec![v.clone()]),
            _ => v.clone(),
        }
    }
}

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
