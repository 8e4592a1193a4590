//! response-compression (gwctl's own): gzip and brotli negotiated from Accept-Encoding, decoded
//! here byte for byte; the skip rules (encoded, HEAD, 204/304, types, sizes, no-transform,
//! proxied); Vary and ETag; a multi-MiB body that streams through; schema errors.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::admin::AdminApi;
use crate::support::{Echo, Gateway, client};

/// Pseudo-random text: compressible, but not to nothing.
fn noisy(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(x % 38) as usize]
        })
        .collect()
}

/// The JSON document the scripted upstream serves on `/json`.
fn document() -> Vec<u8> {
    let items: Vec<Value> = (0..60)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "tags": ["a", "b", "c"]}))
        .collect();
    serde_json::to_vec(&json!({ "items": items })).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

const STREAM_HALF: usize = 4 * 1024 * 1024;

/// An upstream whose answers exercise the skip rules; `/stream` sends half of a large body,
/// then waits for `release` before sending the rest.
struct Scripted {
    addr: SocketAddr,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

async fn scripted_answer(req: Request<Incoming>, release: Arc<Notify>) -> Response<Body> {
    let json = "application/json; charset=utf-8";
    let r = Response::builder();
    match req.uri().path() {
        "/json" => r
            .header("content-type", json)
            .header("etag", "\"v1\"")
            .header("vary", "Origin")
            .header("accept-ranges", "bytes")
            .body(full(document())),
        "/weak" => r
            .header("content-type", json)
            .header("etag", "W/\"v1\"")
            .body(full(document())),
        "/text" => r
            .header("content-type", "text/plain")
            .body(full(noisy(64 * 1024, 3))),
        "/encoded" => r
            .header("content-type", json)
            .header("content-encoding", "gzip")
            .body(full(gzip(&document()))),
        "/no-transform" => r
            .header("content-type", json)
            .header("cache-control", "public, No-Transform")
            .body(full(document())),
        "/not-modified" => r.status(304).header("etag", "\"v1\"").body(full("")),
        "/no-content" => r.status(204).header("content-type", json).body(full("")),
        "/image" => r
            .header("content-type", "image/png")
            .body(full(noisy(4096, 5))),
        "/tiny" => r.header("content-type", json).body(full("{\"ok\":true}")),
        "/stream" => {
            let data = Bytes::from(noisy(2 * STREAM_HALF, 11));
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for (i, chunk) in data.chunks(64 * 1024).enumerate() {
                    if i * 64 * 1024 == STREAM_HALF {
                        release.notified().await;
                    }
                    if tx
                        .send(Ok(Frame::data(data.slice_ref(chunk))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let stream = tokio_stream_from(rx);
            r.header("content-type", "text/plain")
                .body(BodyExt::boxed(StreamBody::new(stream)))
        }
        _ => r.status(404).body(full("")),
    }
    .unwrap()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let rel = Arc::clone(&release);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let rel = Arc::clone(&rel);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let rel = Arc::clone(&rel);
                        async move { Ok::<_, Infallible>(scripted_answer(req, rel).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            release,
            task,
        }
    }
}

fn config(up: &Scripted, echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: scripted
    url: http://{up}
    routes:
      - name: default
        paths: ["/d"]
        plugins:
          - name: response-compression
      - name: gzip-only
        paths: ["/g"]
        plugins:
          - name: response-compression
            config: {{algorithms: [gzip], gzip_level: 1}}
      - name: gzip-best
        paths: ["/g9"]
        plugins:
          - name: response-compression
            config: {{algorithms: [gzip], gzip_level: 9}}
      - name: gzip-first
        paths: ["/gb"]
        plugins:
          - name: response-compression
            config: {{algorithms: [gzip, br]}}
      - name: big-min
        paths: ["/min"]
        plugins:
          - name: response-compression
            config: {{min_length: 100000}}
      - name: html-only
        paths: ["/html"]
        plugins:
          - name: response-compression
            config: {{content_types: [text/html]}}
      - name: text-star
        paths: ["/textstar"]
        plugins:
          - name: response-compression
            config: {{content_types: ["text/*"], vary: false}}
      - name: proxied-off
        paths: ["/poff"]
        plugins:
          - name: response-compression
            config: {{proxied: ["off"]}}
      - name: proxied-auth
        paths: ["/pauth"]
        plugins:
          - name: response-compression
            config: {{proxied: [auth]}}
      - name: plain
        paths: ["/plain"]
  - name: echo
    url: {echo}
    routes:
      - name: any-type
        paths: ["/big"]
        plugins:
          - name: response-compression
            config: {{content_types: ["*"], brotli_quality: 4}}
"#,
        up = up.addr,
        echo = echo.url()
    )
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    fn varies(&self) -> bool {
        self.headers_all("vary")
            .iter()
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .any(|v| v == "accept-encoding")
    }
    /// The body decoded per Content-Encoding.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            None => self.body.clone(),
            Some("gzip") => gunzip(&self.body),
            Some("br") => unbrotli(&self.body),
            Some(other) => panic!("unexpected encoding {other}"),
        }
    }
}

async fn fetch(gw: &Gateway, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().request(method, format!("{}{path}", gw.proxy_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(gw: &Gateway, path: &str, ae: Option<&str>) -> Got {
    match ae {
        Some(ae) => fetch(gw, reqwest::Method::GET, path, &[("accept-encoding", ae)]).await,
        None => fetch(gw, reqwest::Method::GET, path, &[]).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_brotli_negotiated_and_decoded() {
    let up = Scripted::start().await;
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&up, &echo)).await;
    let doc = document();

    let r = get(&gw, "/d/json", Some("gzip")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-length"), None, "streams chunked");
    assert_eq!(r.header("accept-ranges"), None);
    assert_eq!(
        r.header("etag"),
        Some("W/\"v1\""),
        "a strong ETag is weakened"
    );
    assert_eq!(r.headers_all("vary"), ["Origin", "Accept-Encoding"]);
    assert!(r.body.len() < doc.len() / 2, "{} bytes", r.body.len());
    assert!(r.decoded() == doc, "gzip round trip");

    let r = get(&gw, "/d/json", Some("br")).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(r.decoded() == doc, "brotli round trip");

    // Preference: equal q -> br (default algorithms order); the gzip-first route -> gzip.
    let r = get(&gw, "/d/json", Some("gzip, deflate, br")).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    let r = get(&gw, "/gb/json", Some("gzip, deflate, br")).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.decoded() == doc);
    // q-values.
    let r = get(&gw, "/d/json", Some("br;q=0.5, gzip;q=0.8")).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = get(&gw, "/d/json", Some("gzip;q=0, br;q=0.1")).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    let r = get(&gw, "/d/json", Some("*")).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    let r = get(&gw, "/d/json", Some("*;q=0.3, br;q=0")).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = get(&gw, "/d/json", Some("X-GZIP")).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.decoded() == doc);
    // gzip only offered: a br-only client gets the plain body.
    let r = get(&gw, "/g/json", Some("br")).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body == doc);

    // Identity: no header, identity, refusals, identity preferred, unknown codings.
    for ae in [
        None,
        Some("identity"),
        Some("gzip;q=0, br;q=0"),
        Some("*;q=0"),
        Some("identity;q=0"),
        Some("gzip;q=0.5, identity"),
        Some("deflate, compress"),
    ] {
        let r = get(&gw, "/d/json", ae).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None, "{ae:?}");
        assert_eq!(r.header("etag"), Some("\"v1\""), "{ae:?}: ETag unchanged");
        assert_eq!(
            r.header("content-length"),
            Some(doc.len().to_string().as_str()),
            "{ae:?}"
        );
        assert!(r.varies(), "{ae:?}: Vary says the response could differ");
        assert!(r.body == doc, "{ae:?}");
    }

    // An already weak ETag stays as it is.
    let r = get(&gw, "/d/weak", Some("gzip")).await;
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert!(r.decoded() == doc);

    // Levels differ: gzip 9 is smaller than gzip 1 on the same document.
    let fast = get(&gw, "/g/json", Some("gzip")).await;
    let best = get(&gw, "/g9/json", Some("gzip")).await;
    assert_eq!(fast.header("content-encoding"), Some("gzip"));
    assert!(fast.decoded() == best.decoded());
    assert!(
        best.body.len() < fast.body.len(),
        "{} vs {}",
        best.body.len(),
        fast.body.len()
    );

    // Routes without the plugin are untouched.
    let r = get(&gw, "/plain/json", Some("gzip, br")).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(!r.varies());
    assert!(r.body == doc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_left_alone() {
    let up = Scripted::start().await;
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&up, &echo)).await;
    let doc = document();
    let both = Some("gzip, br");

    // Already encoded by the upstream: passed through byte for byte, no second encoding.
    let r = get(&gw, "/d/encoded", both).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(gunzip(&r.body) == doc);
    assert!(r.body == gzip(&doc));

    // Cache-Control: no-transform.
    let r = get(&gw, "/d/no-transform", both).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(!r.varies());
    assert!(r.body == doc);

    // 304 and 204.
    let r = get(&gw, "/d/not-modified", both).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert!(r.body.is_empty());
    let r = get(&gw, "/d/no-content", both).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-encoding"), None);

    // Types not listed; a type list that names only text/html; `text/*`.
    let r = get(&gw, "/d/image", both).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(!r.varies());
    let r = get(&gw, "/html/json", both).await;
    assert_eq!(r.header("content-encoding"), None);
    let r = get(&gw, "/textstar/text", both).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(!r.varies(), "vary: false");
    assert!(r.decoded() == noisy(64 * 1024, 3));
    let r = get(&gw, "/textstar/json", both).await;
    assert_eq!(r.header("content-encoding"), None);

    // Smaller than min_length (known from Content-Length): 11 bytes < 20 by default; the whole
    // document < 100000 on the big-min route.
    let r = get(&gw, "/d/tiny", both).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, b"{\"ok\":true}");
    let r = get(&gw, "/min/json", both).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body == doc);

    // HEAD: nothing is encoded, but Vary is there as for GET.
    let r = fetch(
        &gw,
        reqwest::Method::HEAD,
        "/d/json",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert!(r.varies());
    assert!(r.body.is_empty());

    // proxied (nginx's gzip_proxied) only looks at requests that came through a proxy (Via).
    let via = ("via", "1.1 corporate-proxy");
    let ae = ("accept-encoding", "gzip");
    let r = fetch(&gw, reqwest::Method::GET, "/poff/json", &[ae]).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = fetch(&gw, reqwest::Method::GET, "/poff/json", &[ae, via]).await;
    assert_eq!(r.header("content-encoding"), None, "proxied off");
    let r = fetch(&gw, reqwest::Method::GET, "/pauth/json", &[ae, via]).await;
    assert_eq!(
        r.header("content-encoding"),
        None,
        "proxied auth, no Authorization"
    );
    let auth = ("authorization", "Bearer x");
    let r = fetch(&gw, reqwest::Method::GET, "/pauth/json", &[ae, via, auth]).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.decoded() == doc);
    let r = fetch(&gw, reqwest::Method::GET, "/d/json", &[ae, via]).await;
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "default proxied: any"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through() {
    let up = Scripted::start().await;
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&up, &echo)).await;

    // 8 MiB from the Echo upstream, chunked and with Content-Length, both codings.
    let n = 8 * 1024 * 1024;
    for (ae, length) in [("gzip", false), ("br", true)] {
        let mut headers = vec![("accept-encoding", ae), ("x-echo-bytes", "8388608")];
        if length {
            headers.push(("x-echo-length", "1"));
        }
        let r = fetch(&gw, reqwest::Method::GET, "/big", &headers).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(ae));
        assert_eq!(r.header("content-length"), None);
        assert!(r.body.len() < n / 100, "{ae}: {} bytes", r.body.len());
        let back = r.decoded();
        assert_eq!(back.len(), n, "{ae}");
        assert!(back.iter().all(|b| *b == b'x'), "{ae}: byte-identical");
    }

    // Streaming, not buffering: the upstream sends 4 MiB and waits. Compressed bytes must
    // reach the client before the upstream sends the rest.
    let resp = client()
        .get(format!("{}/d/stream", gw.proxy_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut resp = resp;
    let mut got = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(15), async {
        while got.len() < 512 * 1024 {
            match resp.chunk().await.unwrap() {
                Some(chunk) => got.extend_from_slice(&chunk),
                None => break,
            }
        }
    })
    .await;
    assert!(
        early.is_ok(),
        "only {} compressed bytes arrived while the upstream held back its second half",
        got.len()
    );
    // Decode what arrived so far: it is a prefix of the first half.
    let mut partial = Vec::new();
    let _ = flate2::read::GzDecoder::new(&got[..]).read_to_end(&mut partial);
    let whole = noisy(2 * STREAM_HALF, 11);
    assert!(
        partial.len() > 256 * 1024,
        "{} bytes decoded early",
        partial.len()
    );
    assert!(partial.len() <= STREAM_HALF);
    assert!(partial[..] == whole[..partial.len()]);
    up.release.notify_one();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert!(gunzip(&got) == whole, "byte-identical after the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {}
    plugins:
      - name: response-compression
        config: {{algorithms: [zstd], gzip_level: 10, extra: 1}}
"#,
        echo.url()
    );
    let err = Gateway::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("expected one of: br, gzip"), "{msg}");
    assert!(msg.contains("value should be between 1 and 9"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");

    // Through the Admin API: Kong's 400 schema violation naming each field.
    let gw = Gateway::start_with(crate::support::admin::EMPTY_CONFIG, |o| {
        o.admin_listen = "127.0.0.1:0".into()
    })
    .await;
    let addr = gw.bound.admin.unwrap();
    let api = AdminApi {
        base: format!("http://{addr}"),
        client: client(),
        addr,
        proxy: gw.proxy_url(),
        backend: crate::support::admin::Backend::Memory,
    };
    let r = api
        .post(
            "/plugins",
            &json!({"name": "response-compression", "config": {
                "content_types": ["text"], "brotli_quality": 12, "min_length": -1,
                "proxied": ["off", "auth"], "algorithms": []}}),
        )
        .await;
    let body = r.expect(400);
    assert_eq!(body["name"], "schema violation", "{body}");
    let c = &body["fields"]["config"];
    assert_eq!(
        c["content_types"][0], "invalid media type 'text': expected type/subtype, type/* or *",
        "{body}"
    );
    assert_eq!(
        c["brotli_quality"], "value should be between 0 and 11",
        "{body}"
    );
    assert!(
        c["min_length"].as_str().unwrap().contains("between"),
        "{body}"
    );
    assert_eq!(
        c["proxied"], "'off' cannot be combined with other values",
        "{body}"
    );
    assert_eq!(c["algorithms"], "length must be at least 1", "{body}");

    // The defaults as Kong fills them.
    let r = api
        .post("/plugins", &json!({"name": "response-compression"}))
        .await;
    let body = r.expect(201);
    assert_eq!(
        body["config"],
        json!({
            "algorithms": ["br", "gzip"],
            "content_types": gwctl::plugins::response_compression::DEFAULT_CONTENT_TYPES,
            "min_length": 20,
            "gzip_level": 6,
            "brotli_quality": 6,
            "brotli_window": 19,
            "vary": true,
            "proxied": ["any"],
        })
    );
    gw.stop().await;
}
