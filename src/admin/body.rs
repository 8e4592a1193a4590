//! Request bodies the way Kong's Admin API reads them (kong-compat §1.1): JSON (typed as sent),
//! form-encoded and multipart (strings, coerced later by the schema), YAML for `/config`.
//!
//! Form keys build nested values: `config.minute=5` -> `{"config":{"minute":"5"}}`, repeated keys
//! and `key[]=` / `key[2]=` build arrays; values are never split on commas.

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::AdminError;

/// How the body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No body.
    Empty,
    /// `application/json`.
    Json,
    /// Form-encoded or multipart: values are strings to coerce.
    Form,
    /// `application/yaml` / `text/yaml` (only `/config` accepts it).
    Yaml,
}

/// A parsed request body.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    /// How it was encoded.
    pub(crate) encoding: Encoding,
    /// The value (an object for JSON and forms; the parsed document for YAML).
    pub(crate) value: Value,
    /// The raw text (for `/config`'s hash).
    pub(crate) raw: Bytes,
}

impl Body {
    /// Whether the schema should coerce strings (form-encoded input).
    pub(crate) fn coerce(&self) -> bool {
        self.encoding == Encoding::Form
    }

    /// The body as an object (empty when there was none).
    pub(crate) fn object(&self) -> Result<Map<String, Value>, AdminError> {
        match &self.value {
            Value::Object(m) => Ok(m.clone()),
            Value::Null => Ok(Map::new()),
            _ => Err(AdminError::BadRequest("Cannot parse JSON body".into())),
        }
    }
}

/// Parse a body by its `Content-Type`. `yaml_ok` allows YAML (`/config`).
pub(crate) async fn parse(
    headers: &HeaderMap,
    raw: Bytes,
    yaml_ok: bool,
) -> Result<Body, AdminError> {
    let mut types = headers.get_all(axum::http::header::CONTENT_TYPE).iter();
    let ctype = types.next();
    if types.next().is_some() {
        return Err(AdminError::BadRequest(
            "Cannot parse body: more than one Content-Type header".into(),
        ));
    }
    let ctype = ctype
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if raw.iter().all(u8::is_ascii_whitespace) && !mime.starts_with("multipart/") {
        return Ok(Body {
            encoding: Encoding::Empty,
            value: Value::Null,
            raw,
        });
    }
    if mime == "application/json" || mime.ends_with("+json") {
        let value: Value = serde_json::from_slice(&raw)
            .map_err(|_| AdminError::BadRequest("Cannot parse JSON body".into()))?;
        return Ok(Body {
            encoding: Encoding::Json,
            value,
            raw,
        });
    }
    if mime == "application/x-www-form-urlencoded" {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        return Ok(Body {
            encoding: Encoding::Form,
            value: Value::Object(build_form(pairs)?),
            raw,
        });
    }
    if mime == "multipart/form-data" {
        let boundary = multer::parse_boundary(&ctype)
            .map_err(|_| AdminError::BadRequest("Cannot parse multipart body".into()))?;
        let stream = futures_util::stream::once({
            let raw = raw.clone();
            async move { Ok::<Bytes, std::convert::Infallible>(raw) }
        });
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut pairs = Vec::new();
        loop {
            match mp.next_field().await {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or_default().to_owned();
                    let text = field.text().await.map_err(|_| {
                        AdminError::BadRequest("Cannot parse multipart body".into())
                    })?;
                    pairs.push((name, text));
                }
                Ok(None) => break,
                Err(_) => return Err(AdminError::BadRequest("Cannot parse multipart body".into())),
            }
        }
        return Ok(Body {
            encoding: Encoding::Form,
            value: Value::Object(build_form(pairs)?),
            raw,
        });
    }
    if yaml_ok
        && matches!(
            mime.as_str(),
            "application/yaml" | "text/yaml" | "application/x-yaml" | "text/x-yaml" | "text/plain"
        )
    {
        return Ok(Body {
            encoding: Encoding::Yaml,
            value: Value::Null,
            raw,
        });
    }
    Err(AdminError::UnsupportedMediaType)
}

#[derive(Debug)]
enum Seg {
    Key(String),
    Push,
    Index(usize),
}

fn segments(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        out.push(Seg::Key(name.to_owned()));
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            let inner = &stripped[..end];
            out.push(match inner.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Push,
            });
            rest = &stripped[end + 1..];
        }
    }
    out
}

fn build_form(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, AdminError> {
    let mut root = Value::Object(Map::new());
    // Indexed array elements are collected first, then placed in index order.
    for (key, value) in pairs {
        if key.is_empty() {
            continue;
        }
        insert(&mut root, &segments(&key), Value::String(value))?;
    }
    finish_indexed(&mut root);
    match root {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

const INDEXED: &str = "\u{0}indexed";

fn insert(node: &mut Value, segs: &[Seg], value: Value) -> Result<(), AdminError> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    let bad = || AdminError::BadRequest("Cannot parse form body: conflicting keys".into());
    match first {
        Seg::Key(k) => {
            let Value::Object(m) = node else {
                return Err(bad());
            };
            if rest.is_empty() {
                match m.get_mut(k) {
                    None => {
                        m.insert(k.clone(), value);
                    }
                    Some(Value::Array(a)) => a.push(value),
                    Some(existing @ Value::String(_)) => {
                        let old = existing.take();
                        *existing = Value::Array(vec![old, value]);
                    }
                    Some(_) => return Err(bad()),
                }
                return Ok(());
            }
            let child = m.entry(k.clone()).or_insert_with(|| match rest[0] {
                Seg::Key(_) => Value::Object(Map::new()),
                Seg::Push => Value::Array(Vec::new()),
                Seg::Index(_) => {
                    let mut o = Map::new();
                    o.insert(INDEXED.to_owned(), Value::Bool(true));
                    Value::Object(o)
                }
            });
            insert(child, rest, value)
        }
        Seg::Push => {
            let Value::Array(a) = node else {
                return Err(bad());
            };
            if rest.is_empty() {
                a.push(value);
                Ok(())
            } else {
                let mut child = Value::Object(Map::new());
                insert(&mut child, rest, value)?;
                a.push(child);
                Ok(())
            }
        }
        Seg::Index(i) => {
            let Value::Object(m) = node else {
                return Err(bad());
            };
            let key = format!("{i:020}");
            if rest.is_empty() {
                m.insert(key, value);
                Ok(())
            } else {
                let child = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
                insert(child, rest, value)
            }
        }
    }
}

/// Turn the placeholder objects of `key[n]=` into arrays ordered by n.
fn finish_indexed(node: &mut Value) {
    match node {
        Value::Object(m) => {
            if m.remove(INDEXED).is_some() {
                let mut items: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                let mut arr: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
                for v in &mut arr {
                    finish_indexed(v);
                }
                *node = Value::Array(arr);
            } else {
                for v in m.values_mut() {
                    finish_indexed(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(finish_indexed),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Value {
        let pairs = form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Value::Object(build_form(pairs).unwrap())
    }

    #[test]
    fn dotted_keys_and_arrays() {
        assert_eq!(
            form("name=a&config.minute=5&config.redis.host=r&service.id=x"),
            json!({"name":"a","config":{"minute":"5","redis":{"host":"r"}},"service":{"id":"x"}})
        );
        assert_eq!(
            form("methods=GET&methods=POST&paths[]=/a&paths[]=/b&hosts[2]=b&hosts[1]=a"),
            json!({"methods":["GET","POST"],"paths":["/a","/b"],"hosts":["a","b"]})
        );
        assert_eq!(form("hosts=a.com,b.com"), json!({"hosts":"a.com,b.com"}));
        assert_eq!(
            form("headers.x-version=v1&healthchecks.active.healthy.interval=5"),
            json!({"headers":{"x-version":"v1"},"healthchecks":{"active":{"healthy":{"interval":"5"}}}})
        );
        assert_eq!(form("tags="), json!({"tags": ""}));
    }

    #[tokio::test]
    async fn content_types() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        let b = parse(&h, Bytes::from_static(b"{\"a\":1}"), false)
            .await
            .unwrap();
        assert_eq!(b.value, json!({"a": 1}));
        assert!(matches!(
            parse(&h, Bytes::from_static(b"{"), false).await,
            Err(AdminError::BadRequest(_))
        ));
        h.insert("content-type", "text/csv".parse().unwrap());
        assert!(matches!(
            parse(&h, Bytes::from_static(b"a,b"), false).await,
            Err(AdminError::UnsupportedMediaType)
        ));
        // No body is fine whatever the type.
        let b = parse(&h, Bytes::new(), false).await.unwrap();
        assert_eq!(b.encoding, Encoding::Empty);

        h.insert(
            "content-type",
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nsvc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"port\"\r\n\r\n8080\r\n--XyZ--\r\n";
        let b = parse(&h, Bytes::from(body), false).await.unwrap();
        assert_eq!(b.value, json!({"name": "svc", "port": "8080"}));
        assert!(b.coerce());
    }
}
