//! Responses the gateway makes itself, built in one place with Kong's exact bodies, status codes
//! and headers (kong-compat §4.13): JSON `{"message": ..., "request_id": ...}` by default, plain
//! text or HTML when the client's `Accept` prefers it.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SERVER};
use http::{HeaderMap, Response, StatusCode};

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
    render(status, message, request_id, preferred_format(accept))
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
    render(err.status, err.message, request_id, format)
}

fn render(
    status: StatusCode,
    message: &str,
    request_id: &str,
    format: Format,
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
    build(status, content_type, body)
}

/// A JSON response with a plain `{"message": ...}` body (what `kong.response.exit` produces).
pub fn message(status: StatusCode, message: &str) -> Response<ProxyBody> {
    build(
        status,
        "application/json; charset=utf-8",
        format!("{{\"message\":{}}}", json_string(message)),
    )
}

fn build(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body.clone()));
    *resp.status_mut() = status;
    let headers: &mut HeaderMap = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(SERVER, SERVER_HEADER.clone());
    resp
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
}
