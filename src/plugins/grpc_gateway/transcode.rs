//! JSON <-> protobuf for one unary call: the request message from the JSON body, the query
//! string and the path variables; gRPC length-prefixed framing; the response message (or the
//! gRPC status) back to JSON and an HTTP status.
//!
//! Field precedence follows google/api/http.proto: path variables win over everything, query
//! parameters fill fields when the body rule is not `*`, the body fills the whole message (`*`)
//! or one field. Query and path values are text and are converted to the field's JSON form
//! (numbers, booleans, enum names or numbers, wrappers, timestamps); query parameters naming
//! no field are ignored, as Kong does.

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use serde_json::{Map, Value};

/// Why a request could not be turned into a gRPC message (a 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// The body rule is `*` but the body is not an object.
    #[error("body must be a JSON object")]
    NotObject,
    /// A query or path value does not fit its field.
    #[error("invalid value '{value}' for field '{field}': {reason}")]
    Value {
        /// Field path.
        field: String,
        /// The text.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A field path crosses a field that is not a singular message.
    #[error("field path '{0}' does not name a field of a singular message")]
    Path(String),
    /// The assembled JSON does not fit the input message.
    #[error("{0}")]
    Message(String),
}

/// Why a gRPC response could not be read (a 502: the upstream's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Truncated or malformed framing.
    #[error("malformed gRPC frame")]
    Frame,
    /// A compressed message (the gateway never offers compression).
    #[error("compressed gRPC message")]
    Compressed,
    /// A unary call answered with no message, or several.
    #[error("expected one response message, got {0}")]
    Count(usize),
    /// The message does not decode as the method's output type.
    #[error("response does not decode as {ty}: {reason}")]
    Decode {
        /// The output type.
        ty: String,
        /// Decoder message.
        reason: String,
    },
}

/// A gRPC message frame: flag 0 (uncompressed), big-endian length, message.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    b.put_slice(msg);
    b.freeze()
}

/// Split a complete body into its messages.
pub fn unframe(mut body: &[u8]) -> Result<Vec<&[u8]>, ResponseError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(ResponseError::Frame);
        }
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        if rest.len() < len {
            return Err(ResponseError::Frame);
        }
        match flag {
            0 => {}
            1 => return Err(ResponseError::Compressed),
            _ => return Err(ResponseError::Frame),
        }
        out.push(&rest[..len]);
        body = &rest[len..];
    }
    Ok(out)
}

/// The field of `desc` called `name` (proto name, else JSON name).
fn field(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// The object slot for `f` in `obj`, keyed by the proto name (any JSON-name key is folded in).
fn slot<'a>(obj: &'a mut Map<String, Value>, f: &FieldDescriptor) -> &'a mut Value {
    if f.json_name() != f.name()
        && let Some(v) = obj.remove(f.json_name())
    {
        obj.entry(f.name().to_owned()).or_insert(v);
    }
    obj.entry(f.name().to_owned()).or_insert(Value::Null)
}

/// The last field of a path and the object holding it.
type Slot<'a> = Option<(FieldDescriptor, &'a mut Map<String, Value>)>;

/// Walk `path` (`a.b.c`) from `root`, creating objects for the singular message fields on the
/// way; the last field and its parent object. `None` when a segment names no field.
fn walk<'a>(
    root: &'a mut Map<String, Value>,
    desc: &MessageDescriptor,
    path: &str,
) -> Result<Slot<'a>, RequestError> {
    let mut desc = desc.clone();
    let mut obj = root;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        let Some(f) = field(&desc, seg) else {
            return Ok(None);
        };
        if segs.peek().is_none() {
            return Ok(Some((f, obj)));
        }
        let Kind::Message(sub) = f.kind() else {
            return Err(RequestError::Path(path.to_owned()));
        };
        if f.is_list() || f.is_map() {
            return Err(RequestError::Path(path.to_owned()));
        }
        let v = slot(obj, &f);
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        let Value::Object(next) = v else {
            return Err(RequestError::Path(path.to_owned()));
        };
        obj = next;
        desc = sub;
    }
    Ok(None)
}

/// A text value (query or path) as the JSON the field's type accepts.
fn text_value(f: &FieldDescriptor, path: &str, text: &str) -> Result<Value, RequestError> {
    let bad = |reason| RequestError::Value {
        field: path.to_owned(),
        value: text.to_owned(),
        reason,
    };
    Ok(match f.kind() {
        Kind::Double | Kind::Float => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
            _ if matches!(text, "NaN" | "Infinity" | "-Infinity") => Value::String(text.into()),
            _ => return Err(bad("expected a number")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::from(
            text.parse::<i32>()
                .map_err(|_| bad("expected a 32-bit integer"))?,
        ),
        Kind::Uint32 | Kind::Fixed32 => Value::from(
            text.parse::<u32>()
                .map_err(|_| bad("expected an unsigned 32-bit integer"))?,
        ),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            text.parse::<i64>()
                .map_err(|_| bad("expected a 64-bit integer"))?;
            Value::String(text.into())
        }
        Kind::Uint64 | Kind::Fixed64 => {
            text.parse::<u64>()
                .map_err(|_| bad("expected an unsigned 64-bit integer"))?;
            Value::String(text.into())
        }
        Kind::Bool => match text {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("expected true or false")),
        },
        Kind::String | Kind::Bytes => Value::String(text.into()),
        Kind::Enum(e) => match text.parse::<i32>() {
            Ok(n) => Value::from(n),
            Err(_) if e.get_value_by_name(text).is_some() => Value::String(text.into()),
            Err(_) => return Err(bad("expected an enum value name or number")),
        },
        Kind::Message(m) => {
            // Wrappers (`google.protobuf.Int32Value`...) take their inner value's form; the
            // other well-known types with a string form (Timestamp, Duration, FieldMask) and
            // anything else take the text as a JSON string.
            match (
                m.full_name().starts_with("google.protobuf."),
                m.get_field_by_name("value"),
            ) {
                (true, Some(inner))
                    if m.full_name().ends_with("Value") && m.fields().len() == 1 =>
                {
                    text_value(&inner, path, text)?
                }
                _ => Value::String(text.into()),
            }
        }
    })
}

/// Set a text value at `path`: appended for repeated fields, replacing otherwise.
fn set_text(
    root: &mut Map<String, Value>,
    desc: &MessageDescriptor,
    path: &str,
    text: &str,
) -> Result<(), RequestError> {
    let Some((f, obj)) = walk(root, desc, path)? else {
        return Ok(());
    };
    if f.is_map() {
        return Err(RequestError::Path(path.to_owned()));
    }
    let v = text_value(&f, path, text)?;
    let s = slot(obj, &f);
    if f.is_list() {
        match s {
            Value::Array(a) => a.push(v),
            other => *other = Value::Array(vec![v]),
        }
    } else {
        *s = v;
    }
    Ok(())
}

/// The request message of `method` from the body (per `body_rule`), the query string and the
/// path variables.
pub fn request_message(
    method: &MethodDescriptor,
    body_rule: Option<&str>,
    body: &[u8],
    query: Option<&str>,
    path_vars: &[(String, String)],
) -> Result<DynamicMessage, RequestError> {
    let input = method.input();
    let mut root = Map::new();
    let has_body = body.iter().any(|b| !b.is_ascii_whitespace());
    match body_rule {
        Some(rule) if has_body => {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| RequestError::Json(e.to_string()))?;
            if rule == "*" {
                match v {
                    Value::Object(o) => root = o,
                    _ => return Err(RequestError::NotObject),
                }
            } else if let Some((f, obj)) = walk(&mut root, &input, rule)? {
                *slot(obj, &f) = v;
            }
        }
        _ => {}
    }
    if body_rule != Some("*")
        && let Some(q) = query
    {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            set_text(&mut root, &input, &k, &v)?;
        }
    }
    for (k, v) in path_vars {
        set_text(&mut root, &input, k, v)?;
    }
    DynamicMessage::deserialize_with_options(
        input,
        Value::Object(root),
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| RequestError::Message(e.to_string()))
}

/// The request body sent upstream: the framed message.
pub fn request_frame(msg: &DynamicMessage) -> Bytes {
    use prost::Message;
    frame(&msg.encode_to_vec())
}

/// The JSON of a unary response body (all frames of it), or the one field `response_body`
/// names.
pub fn response_json(
    method: &MethodDescriptor,
    response_body: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, ResponseError> {
    let msgs = unframe(body)?;
    let [msg] = msgs.as_slice() else {
        return Err(ResponseError::Count(msgs.len()));
    };
    let output = method.output();
    let decoded =
        DynamicMessage::decode(output.clone(), *msg).map_err(|e| ResponseError::Decode {
            ty: output.full_name().to_owned(),
            reason: e.to_string(),
        })?;
    let opts = SerializeOptions::new().use_proto_field_name(true);
    let mut ser = serde_json::Serializer::new(Vec::new());
    decoded
        .serialize_with_options(&mut ser, &opts)
        .map_err(|e| ResponseError::Decode {
            ty: output.full_name().to_owned(),
            reason: e.to_string(),
        })?;
    let whole = ser.into_inner();
    let Some(field) = response_body else {
        return Ok(whole);
    };
    let v: Value = serde_json::from_slice(&whole).map_err(|e| ResponseError::Decode {
        ty: output.full_name().to_owned(),
        reason: e.to_string(),
    })?;
    let mut cur = &v;
    for seg in field.split('.') {
        cur = cur.get(seg).unwrap_or(&Value::Null);
    }
    // An unset field is its JSON default (empty list for repeated fields, null otherwise).
    let picked = match cur {
        Value::Null => default_json(&output, field),
        v => v.clone(),
    };
    Ok(serde_json::to_vec(&picked).unwrap_or_default())
}

fn default_json(desc: &MessageDescriptor, path: &str) -> Value {
    let mut d = desc.clone();
    let mut last = None;
    for seg in path.split('.') {
        let Some(f) = d.get_field_by_name(seg) else {
            return Value::Null;
        };
        if let Kind::Message(m) = f.kind() {
            d = m;
        }
        last = Some(f);
    }
    match last {
        Some(f) if f.is_list() => Value::Array(Vec::new()),
        Some(f) if f.is_map() => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

/// The HTTP status for a gRPC status code (grpc-gateway's mapping; Kong's differs only in
/// answering UNIMPLEMENTED with 500).
pub fn http_status(code: i32) -> StatusCode {
    let s = match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    };
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The JSON body of a failed call: `{"code": <grpc code>, "message": <grpc-message>}`, plus
/// `details` when the server sent `grpc-status-details-bin` (see [`status_details`]).
pub fn status_body(code: i32, message: &str, details: Option<Vec<Value>>) -> Vec<u8> {
    let mut body = serde_json::json!({ "code": code, "message": message });
    if let Some(d) = details {
        body["details"] = Value::Array(d);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `google.rpc.Status`, the message `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// The details, each a packed message.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcAny {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// The `details` of a `grpc-status-details-bin` value (base64, padded or not, of a
/// `google.rpc.Status`), rendered as grpc-gateway does: each `Any` as its message's JSON plus
/// `@type` when `pool` describes the type (e.g. the service's proto imports
/// `google/rpc/error_details.proto`), else `{"@type": ..., "value": <base64>}`. `None` when the
/// value is not a Status (the body then has no `details`).
pub fn status_details(raw: &[u8], pool: &prost_reflect::DescriptorPool) -> Option<Vec<Value>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = B64.decode(raw.trim_ascii()).ok()?;
    let status = <RpcStatus as prost::Message>::decode(bytes.as_slice()).ok()?;
    let opts = SerializeOptions::new().use_proto_field_name(true);
    let details = status
        .details
        .into_iter()
        .map(|any| {
            let name = any.type_url.rsplit('/').next().unwrap_or_default();
            let known = pool
                .get_message_by_name(name)
                .and_then(|desc| DynamicMessage::decode(desc, any.value.as_slice()).ok())
                .and_then(|msg| {
                    let mut ser = serde_json::Serializer::new(Vec::new());
                    msg.serialize_with_options(&mut ser, &opts).ok()?;
                    serde_json::from_slice::<Value>(&ser.into_inner()).ok()
                });
            match known {
                Some(Value::Object(fields)) => {
                    let mut o = serde_json::Map::new();
                    o.insert("@type".into(), Value::String(any.type_url));
                    o.extend(fields);
                    Value::Object(o)
                }
                _ => serde_json::json!({
                    "@type": any.type_url,
                    "value": base64::engine::general_purpose::STANDARD.encode(&any.value),
                }),
            }
        })
        .collect();
    Some(details)
}

/// `grpc-message` as sent (percent-encoded, RFC 3986 unreserved kept) decoded to text.
pub fn decode_grpc_message(raw: &[u8]) -> String {
    percent_encoding::percent_decode(raw)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::proto::tests::users_pool;
    use super::*;
    use prost::Message;
    use serde_json::json;

    fn method(name: &str) -> MethodDescriptor {
        users_pool()
            .get_service_by_name("demo.v1.UserService")
            .unwrap()
            .methods()
            .find(|m| m.name() == name)
            .unwrap()
    }

    fn to_json(msg: &DynamicMessage) -> Value {
        let opts = SerializeOptions::new().use_proto_field_name(true);
        let mut ser = serde_json::Serializer::new(Vec::new());
        msg.serialize_with_options(&mut ser, &opts).unwrap();
        serde_json::from_slice(&ser.into_inner()).unwrap()
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
    }

    #[test]
    fn frames_round_trip_and_bad_frames_fail() {
        let f = frame(b"abc");
        assert_eq!(&f[..], b"\0\0\0\0\x03abc");
        let mut two = f.to_vec();
        two.extend_from_slice(&frame(b""));
        assert_eq!(unframe(&two).unwrap(), vec![&b"abc"[..], &b""[..]]);
        assert_eq!(unframe(&f[..6]), Err(ResponseError::Frame));
        assert_eq!(unframe(b"\0\0\0"), Err(ResponseError::Frame));
        assert_eq!(unframe(b"\x01\0\0\0\0"), Err(ResponseError::Compressed));
        assert_eq!(unframe(b"\x07\0\0\0\0"), Err(ResponseError::Frame));
    }

    #[test]
    fn path_and_query_fill_fields_with_their_types() {
        let m = method("GetUser");
        let msg = request_message(
            &m,
            None,
            b"",
            Some("verbose=true&name=a+b&address.city=Paris&unknown=1"),
            &vars(&[("id", "42")]),
        )
        .unwrap();
        assert_eq!(
            to_json(&msg),
            json!({"id": "42", "name": "a b", "verbose": true, "address": {"city": "Paris"}})
        );
        // The path wins over the query.
        let msg = request_message(&m, None, b"", Some("id=1"), &vars(&[("id", "2")])).unwrap();
        assert_eq!(to_json(&msg), json!({"id": "2"}));
        let err = request_message(&m, None, b"", None, &vars(&[("id", "x")])).unwrap_err();
        assert!(matches!(err, RequestError::Value { .. }), "{err}");
        let err = request_message(&m, None, b"", Some("verbose=maybe"), &[]).unwrap_err();
        assert!(err.to_string().contains("verbose"), "{err}");
    }

    #[test]
    fn repeated_and_enum_query_values() {
        let m = method("ListUsers");
        let msg = request_message(
            &m,
            None,
            b"",
            Some("tags=a&tags=b&role=ADMIN&page_size=5"),
            &[],
        )
        .unwrap();
        assert_eq!(
            to_json(&msg),
            json!({"tags": ["a", "b"], "role": "ADMIN", "page_size": 5})
        );
        let msg = request_message(&m, None, b"", Some("role=1&pageSize=3"), &[]).unwrap();
        assert_eq!(to_json(&msg), json!({"role": "ADMIN", "page_size": 3}));
        assert!(request_message(&m, None, b"", Some("role=ROOT"), &[]).is_err());
    }

    #[test]
    fn body_star_field_body_and_path_precedence() {
        let m = method("UpdateUser");
        let msg = request_message(
            &m,
            Some("*"),
            br#"{"id": "1", "name": "n", "displayName": "D", "tags": ["x"]}"#,
            Some("name=ignored"),
            &vars(&[("id", "7")]),
        )
        .unwrap();
        assert_eq!(
            to_json(&msg),
            json!({"id": "7", "name": "n", "display_name": "D", "tags": ["x"]})
        );
        let m = method("CreateUser");
        let msg = request_message(
            &m,
            Some("user"),
            br#"{"name": "ann", "role": "ADMIN", "created": "2024-01-02T03:04:05Z"}"#,
            Some("request_id=r1"),
            &[],
        )
        .unwrap();
        assert_eq!(
            to_json(&msg),
            json!({"user": {"name": "ann", "role": "ADMIN", "created": "2024-01-02T03:04:05Z"}, "request_id": "r1"})
        );
    }

    #[test]
    fn bad_bodies_are_client_errors() {
        let m = method("UpdateUser");
        assert!(matches!(
            request_message(&m, Some("*"), b"{", None, &[]),
            Err(RequestError::Json(_))
        ));
        assert_eq!(
            request_message(&m, Some("*"), b"[1]", None, &[]),
            Err(RequestError::NotObject)
        );
        let err = request_message(&m, Some("*"), br#"{"nope": 1}"#, None, &[]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = request_message(&m, Some("*"), br#"{"age": "old"}"#, None, &[]).unwrap_err();
        assert!(matches!(err, RequestError::Message(_)), "{err}");
        // An empty body is an empty message.
        let msg = request_message(&m, Some("*"), b"  ", None, &vars(&[("id", "3")])).unwrap();
        assert_eq!(to_json(&msg), json!({"id": "3"}));
    }

    #[test]
    fn responses_to_json_whole_or_one_field() {
        let m = method("ListUsers");
        let out = m.output();
        let mut msg = DynamicMessage::new(out.clone());
        msg.transcode_from(
            &DynamicMessage::deserialize(
                out.clone(),
                json!({"users": [{"id": "1", "name": "a", "role": "ADMIN"}], "next": "t"}),
            )
            .unwrap(),
        )
        .unwrap();
        let body = frame(&msg.encode_to_vec());
        let whole: Value =
            serde_json::from_slice(&response_json(&m, None, &body).unwrap()).unwrap();
        assert_eq!(
            whole,
            json!({"users": [{"id": "1", "name": "a", "role": "ADMIN"}], "next": "t"})
        );
        let users: Value =
            serde_json::from_slice(&response_json(&m, Some("users"), &body).unwrap()).unwrap();
        assert_eq!(users, json!([{"id": "1", "name": "a", "role": "ADMIN"}]));
        let empty = frame(&DynamicMessage::new(out).encode_to_vec());
        let users: Value =
            serde_json::from_slice(&response_json(&m, Some("users"), &empty).unwrap()).unwrap();
        assert_eq!(users, json!([]));
        assert_eq!(response_json(&m, None, b""), Err(ResponseError::Count(0)));
        let mut two = body.to_vec();
        two.extend_from_slice(&body);
        assert_eq!(response_json(&m, None, &two), Err(ResponseError::Count(2)));
        assert!(matches!(
            response_json(&m, None, &frame(b"\xff\xff")),
            Err(ResponseError::Decode { .. })
        ));
    }

    #[test]
    fn grpc_statuses_map_to_http() {
        let want = [
            (0, 200),
            (1, 499),
            (2, 500),
            (3, 400),
            (4, 504),
            (5, 404),
            (6, 409),
            (7, 403),
            (8, 429),
            (9, 400),
            (10, 409),
            (11, 400),
            (12, 501),
            (13, 500),
            (14, 503),
            (15, 500),
            (16, 401),
            (99, 500),
        ];
        for (code, status) in want {
            assert_eq!(http_status(code).as_u16(), status, "grpc {code}");
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&status_body(5, "no user 9", None)).unwrap(),
            json!({"code": 5, "message": "no user 9"})
        );
        assert_eq!(decode_grpc_message(b"caf%C3%A9 %25"), "café %");
    }

    #[test]
    fn status_details_render_known_and_unknown_types() {
        use base64::Engine as _;
        let pool = users_pool();
        let user = DynamicMessage::decode(
            pool.get_message_by_name("demo.v1.User").unwrap(),
            &[0x12, 0x01, b'x'][..],
        )
        .unwrap();
        let status = RpcStatus {
            code: 5,
            message: "m".into(),
            details: vec![
                RpcAny {
                    type_url: "type.googleapis.com/demo.v1.User".into(),
                    value: user.encode_to_vec(),
                },
                RpcAny {
                    type_url: "type.googleapis.com/x.Y".into(),
                    value: vec![0xff],
                },
            ],
        };
        let want = json!([
            {"@type": "type.googleapis.com/demo.v1.User", "name": "x"},
            {"@type": "type.googleapis.com/x.Y", "value": "/w=="},
        ]);
        let bytes = status.encode_to_vec();
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            let raw = engine.encode(&bytes);
            assert_eq!(
                status_details(raw.as_bytes(), &pool).map(Value::Array),
                Some(want.clone())
            );
        }
        assert_eq!(status_details(b"not base64!", &pool), None);
        assert_eq!(status_details(b"/w==", &pool), None, "not a Status");
    }
}
