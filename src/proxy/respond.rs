//! Responses the gateway makes itself, built in one place with Kong's exact bodies, status codes
//! and headers (kong-compat §4.13): JSON `{"message": ..., "request_id": ...}` by default, plain
//! text or HTML when the client's `Accept` prefers it.
//!
//! gRPC clients get the same errors in gRPC form. Every response built here carries a
//! [`GatewayMade`] mark; [`grpc_form`] turns a marked response to a gRPC request
//! ([`is_grpc_request`]: HTTP/2 with `Content-Type: application/grpc...`, Kong's test) into a
//! Trailers-Only response: `200`, `content-type: application/grpc`, `grpc-status` from Kong's
//! HTTP-to-gRPC table ([`grpc_status_for`]: 401→16, 404→5, 429→8, 503→14, 504→4, other
//! 5xx→13...) and `grpc-message` as Kong words it (the code's name for `kong.response.error`
//! errors, the message itself for nginx-level errors and `{message}` exits). Kong keeps the HTTP
//! status on such responses; gwctl answers `200` as the gRPC spec asks, so every gRPC client
//! reads the same code (grpc-go ignores `grpc-status` on a non-200 response), and logs the HTTP
//! status Kong would have sent ([`logged_status`]).

use std::borrow::Cow;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, SERVER};
use http::{HeaderMap, Response, StatusCode, Version};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::body::ProxyBody;

/// `Server: kong/<version>` on gateway-made responses.
pub static SERVER_HEADER: HeaderValue = HeaderValue::from_static(concat!("kong/", "3.9.0"));

/// A gateway-made error: status and Kong's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayError {
    /// Status code.
    pub status: StatusCode,
    /// Kong's message text.
    pub message: &'static str,
}

impl GatewayError {
    /// 404 when no route matched.
    pub const NO_ROUTE: Self = Self::new(404, "no Route matched with those values");
    /// 503 for a matched route without a service.
    pub const NO_SERVICE: Self = Self::new(503, "no Service found with those values");
    /// 503 when the balancer has no available target.
    pub const NO_PEER: Self = Self::new(503, "failure to get a peer from the ring-balancer");
    /// 503 when the service host does not resolve.
    pub const NAME_RESOLUTION: Self = Self::new(503, "name resolution failed");
    /// 502 for connection failures and invalid upstream responses.
    pub const BAD_GATEWAY: Self = Self::new(
        502,
        "An invalid response was received from the upstream server",
    );
    /// 504 for upstream timeouts.
    pub const TIMEOUT: Self = Self::new(504, "The upstream server is timing out");
    /// 503 for an unavailable upstream.
    pub const UNAVAILABLE: Self = Self::new(503, "The upstream server is currently unavailable");
    /// 400 for requests the gateway cannot interpret.
    pub const BAD_REQUEST: Self = Self::new(400, "Bad request");

    /// Whether nginx itself (not `kong.response.error`) makes this response: upstream
    /// failures (502/503/504), whose format falls back to text/plain (§4.13).
    pub fn is_nginx_level(&self) -> bool {
        *self == Self::BAD_GATEWAY || *self == Self::TIMEOUT || *self == Self::UNAVAILABLE
    }

    const fn new(status: u16, message: &'static str) -> Self {
        let status = match StatusCode::from_u16(status) {
            Ok(s) => s,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message }
    }
}

/// Build Kong's error response for `err`, in the format `Accept` asks for.
pub fn error(
    err: GatewayError,
    request_id: &str,
    accept: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    render(
        err.status,
        err.message,
        request_id,
        preferred_format(accept),
        code_name_of(err.status),
    )
}

/// Kong's error response (`kong.response.error`) with any status and message, in the format
/// `Accept` asks for: what plugins answer with (401 `No API key found in request`, 429, ...).
pub fn error_with(
    status: StatusCode,
    message: &str,
    request_id: &str,
    accept: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    render(
        status,
        message,
        request_id,
        preferred_format(accept),
        code_name_of(status),
    )
}

/// Kong's error handler for nginx-level errors: the format comes from `accept_or_type`
/// (`Accept`, else `Content-Type`), else `error_default_type` (text/plain).
pub fn nginx_error(
    err: GatewayError,
    request_id: &str,
    accept_or_type: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let format = match accept_or_type {
        Some(v) => preferred_format(Some(v)),
        None => Format::Text,
    };
    // Kong's error handler exits with `{message = ...}`: gRPC clients get the message itself.
    render(
        err.status,
        err.message,
        request_id,
        format,
        Cow::Borrowed(err.message),
    )
}

fn code_name_of(status: StatusCode) -> Cow<'static, str> {
    Cow::Borrowed(grpc_code_name(grpc_status_for(status)))
}

fn render(
    status: StatusCode,
    message: &str,
    request_id: &str,
    format: Format,
    grpc_message: Cow<'static, str>,
) -> Response<ProxyBody> {
    let (content_type, body) = match format {
        Format::Json => (
            "application/json; charset=utf-8",
            format!(
                "{{\n  \"message\":{},\n  \"request_id\":\"{request_id}\"\n}}",
                json_string(message)
            ),
        ),
        Format::Text => (
            "text/plain; charset=utf-8",
            format!("{message}\nrequest_id: {request_id}\n"),
        ),
        Format::Html => (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{}.</p>\n    <p>request_id: {request_id}</p>\n  </body>\n</html>\n",
                html_escape(message)
            ),
        ),
        Format::Xml => (
            "application/xml; charset=utf-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>{}</message>\n  <requestid>{request_id}</requestid>\n</error>\n",
                html_escape(message)
            ),
        ),
    };
    build(status, content_type, body, grpc_message)
}

/// A JSON response with a plain `{"message": ...}` body (what `kong.response.exit` produces).
pub fn message(status: StatusCode, message: &str) -> Response<ProxyBody> {
    build(
        status,
        "application/json; charset=utf-8",
        format!("{{\"message\":{}}}", json_string(message)),
        Cow::Owned(message.to_owned()),
    )
}

fn build(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    grpc_message: Cow<'static, str>,
) -> Response<ProxyBody> {
    let len = body.len();
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    let headers: &mut HeaderMap = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(SERVER, SERVER_HEADER.clone());
    resp.extensions_mut().insert(GatewayMade { grpc_message });
    resp
}

/// `content-type` of gRPC messages.
pub static CONTENT_TYPE_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
/// The `grpc-status` header (or trailer).
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer).
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Marks a response the gateway made (an error or a plugin's exit), with the `grpc-message` its
/// gRPC form carries.
#[derive(Debug, Clone)]
pub struct GatewayMade {
    grpc_message: Cow<'static, str>,
}

/// Marks a gateway-made response sent in gRPC form: the HTTP status it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcAnswered {
    /// The HTTP status Kong would have sent (and that logs and metrics record).
    pub status: StatusCode,
}

/// Kong's test for a gRPC request: HTTP/2 and a `Content-Type` starting with `application/grpc`
/// (which includes `application/grpc+proto` and `application/grpc-web...`).
pub fn is_grpc_request(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Kong's HTTP status to gRPC status table (`kong.response`): exact entries, then 5xx→13,
/// 4xx→3, 2xx→0, anything else 2 (UNKNOWN).
pub fn grpc_status_for(status: StatusCode) -> u8 {
    // Kong's exact entries 200→0, 400→3 and 500→13 are also its fallbacks for their class.
    match status.as_u16() {
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        429 => 8,
        499 => 1,
        501 => 12,
        503 => 14,
        504 => 4,
        500..=599 => 13,
        400..=499 => 3,
        200..=299 => 0,
        _ => 2,
    }
}

/// The name Kong gives a gRPC status in `grpc-message` (`kong.response`'s `GRPC_MESSAGES`).
pub fn grpc_code_name(code: u8) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Characters percent-encoded in `grpc-message` (the gRPC spec: anything outside 0x20–0x7E, and
/// `%`).
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

fn grpc_message_value(message: &str) -> HeaderValue {
    let encoded = utf8_percent_encode(message, GRPC_MESSAGE_ESCAPES).to_string();
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static("Unknown"))
}

/// A Trailers-Only gRPC response with `code` and `message` (what `kong.response.exit(200, nil,
/// {grpc-status=..., grpc-message=...})` sends).
pub fn grpc_status(code: u8, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, CONTENT_TYPE_GRPC.clone());
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(code)));
    headers.insert(GRPC_MESSAGE.clone(), grpc_message_value(message));
    headers.insert(SERVER, SERVER_HEADER.clone());
    resp
}

/// The gRPC form of a gateway-made response (see the module docs); any other response, or one
/// already in gRPC form, is returned as it is. Headers the gateway or a plugin added (`Server`,
/// `WWW-Authenticate`, rate-limit headers...) are kept; the body goes.
pub fn grpc_form(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if resp.extensions().get::<GatewayMade>().is_none()
        || !matches!(resp.body(), ProxyBody::Full(_))
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Some(made) = parts.extensions.remove::<GatewayMade>() else {
        return Response::from_parts(parts, body);
    };
    if parts
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    {
        return Response::from_parts(parts, body);
    }
    let status = parts.status;
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_TYPE, CONTENT_TYPE_GRPC.clone());
    if !headers.contains_key(&GRPC_STATUS) {
        headers.insert(
            GRPC_STATUS.clone(),
            HeaderValue::from(u16::from(grpc_status_for(status))),
        );
    }
    if !headers.contains_key(&GRPC_MESSAGE) {
        headers.insert(GRPC_MESSAGE.clone(), grpc_message_value(&made.grpc_message));
    }
    parts.status = StatusCode::OK;
    parts.extensions.insert(GrpcAnswered { status });
    Response::from_parts(parts, ProxyBody::empty())
}

/// The status logs and metrics record for a response: the HTTP status a gRPC-form error stands
/// for, else the response's own.
pub fn logged_status(parts: &http::response::Parts) -> StatusCode {
    parts
        .extensions
        .get::<GrpcAnswered>()
        .map_or(parts.status, |g| g.status)
}

enum Format {
    Json,
    Text,
    Html,
    Xml,
}

/// Pick the first of json/html/xml/plain that the Accept header names (JSON when absent or `*/*`).
fn preferred_format(accept: Option<&HeaderValue>) -> Format {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return Format::Json;
    };
    for part in accept.split(',') {
        let mime = part.split(';').next().unwrap_or("").trim();
        match mime {
            "application/json" | "*/*" => return Format::Json,
            "text/html" => return Format::Html,
            "application/xml" | "text/xml" => return Format::Xml,
            "text/plain" | "text/*" => return Format::Text,
            _ => {}
        }
    }
    Format::Json
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(resp: Response<ProxyBody>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_by_default_with_request_id() {
        let resp = error(GatewayError::NO_ROUTE, "abc", None);
        assert_eq!(resp.status(), 404);
        let v: serde_json::Value = serde_json::from_str(&body_of(resp).await).unwrap();
        assert_eq!(v["message"], "no Route matched with those values");
        assert_eq!(v["request_id"], "abc");
    }

    #[tokio::test]
    async fn text_when_asked() {
        let accept = HeaderValue::from_static("text/plain");
        let resp = error(GatewayError::TIMEOUT, "id1", Some(&accept));
        assert_eq!(resp.status(), 504);
        assert_eq!(
            body_of(resp).await,
            "The upstream server is timing out\nrequest_id: id1\n"
        );
    }

    #[test]
    fn kong_http_to_grpc_table() {
        let cases = [
            (200, 0),
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 5),
            (409, 6),
            (413, 3),
            (429, 8),
            (499, 1),
            (500, 13),
            (501, 12),
            (502, 13),
            (503, 14),
            (504, 4),
            (302, 2),
        ];
        for (http, grpc) in cases {
            let got = grpc_status_for(StatusCode::from_u16(http).unwrap());
            assert_eq!(got, grpc, "HTTP {http}");
        }
        assert_eq!(grpc_code_name(16), "Unauthenticated");
        assert_eq!(grpc_code_name(2), "Unknown");
    }

    #[tokio::test]
    async fn gateway_errors_in_grpc_form() {
        // kong.response.error: the code's name.
        let resp = grpc_form(error(GatewayError::NO_ROUTE, "id", None));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "5");
        assert_eq!(resp.headers()["grpc-message"], "NotFound");
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(
            resp.extensions().get::<GrpcAnswered>().map(|g| g.status),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(body_of(resp).await, "");
        // nginx-level errors: the message itself.
        let resp = grpc_form(nginx_error(GatewayError::BAD_GATEWAY, "id", None));
        assert_eq!(resp.headers()["grpc-status"], "13");
        assert_eq!(
            resp.headers()["grpc-message"],
            "An invalid response was received from the upstream server"
        );
        // A plugin's exit with a message, percent-encoded as the gRPC spec asks.
        let resp = grpc_form(message(StatusCode::TOO_MANY_REQUESTS, "100% über"));
        assert_eq!(resp.headers()["grpc-status"], "8");
        assert_eq!(resp.headers()["grpc-message"], "100%25 %C3%BCber");
        // Converting twice changes nothing; an unmarked response is left alone.
        let again = grpc_form(resp);
        assert_eq!(again.headers()["grpc-status"], "8");
        let plain = Response::new(ProxyBody::full("x"));
        let plain = grpc_form(plain);
        assert_eq!(plain.status(), 200);
        assert!(plain.headers().get("grpc-status").is_none());
    }

    #[test]
    fn grpc_requests_are_http2_with_grpc_content_type() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc_request(Version::HTTP_2, &h));
        assert!(!is_grpc_request(Version::HTTP_11, &h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc_request(Version::HTTP_2, &h));
        assert!(!is_grpc_request(Version::HTTP_2, &HeaderMap::new()));
    }
}
