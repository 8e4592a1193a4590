//! request-transformer (kong-compat §4.4): every record and target through real sockets, the
//! order rules, Host, templates with regex-route captures, the method switch, multipart, large
//! bodies left alone, and schema violations through the Admin API.

use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin};
use crate::support::echo::GenBody;
use crate::support::raw::hyper_send;
use crate::support::{Echo, Echoed, Gateway, client};

fn yaml(echo: &Echo, routes: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: {}\n    routes:\n{routes}",
        echo.url()
    )
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Echoed {
    let mut req = client().get(format!("{}{path}", gw.proxy_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn post(gw: &Gateway, path: &str, ct: &str, body: impl Into<reqwest::Body>) -> Echoed {
    let resp = client()
        .post(format!("{}{path}", gw.proxy_url()))
        .header("content-type", ct)
        .header("x-echo-body", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn all<'a>(e: &'a Echoed, name: &str) -> Vec<&'a str> {
    e.headers
        .get(name)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_querystring_in_order() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: r
        paths: ["/r"]
        plugins:
          - name: request-transformer
            config:
              remove:
                headers: [X-To-Remove, authorization]
                querystring: [toremove]
              rename:
                headers: ["x-old:x-new"]
                querystring: ["oldq:newq"]
              replace:
                headers: ["x-to-replace:replaced", "x-absent:never"]
                querystring: ["rq:replaced", "absentq:never"]
              add:
                headers: ["x-added:a1", "authorization:Basic test", "x-exists:not-me", "h2:value:2"]
                querystring: ["q-added:new", "keep:not-me", "p1:anything:1"]
              append:
                headers: ["x-added:a2", "x-added:a3", "x-multi:m2"]
                querystring: ["p1:a2", "p2:b 1"]
"#,
    ))
    .await;

    let e = get(
        &gw,
        "/r?toremove=1&oldq=o&rq=1&rq=2&keep=me&z=last",
        &[
            ("x-to-remove", "1"),
            ("authorization", "Basic dGVzdDp0ZXN0"),
            ("x-old", "moved"),
            ("x-new", "overwritten"),
            ("x-to-replace", "orig"),
            ("x-exists", "mine"),
            ("x-multi", "m1"),
        ],
    )
    .await;
    assert!(!e.has("x-to-remove"));
    // remove then add: the added value wins (Kong's regression test).
    assert_eq!(e.header("authorization"), "Basic test");
    assert!(!e.has("x-old"));
    assert_eq!(e.header("x-new"), "moved", "rename overrides the target");
    assert_eq!(e.header("x-to-replace"), "replaced");
    assert!(!e.has("x-absent"), "replace only if present");
    assert_eq!(e.header("x-exists"), "mine", "add only if absent");
    assert_eq!(e.header("h2"), "value:2", "values may contain colons");
    assert_eq!(all(&e, "x-added"), ["a1", "a2", "a3"], "add then append");
    assert_eq!(all(&e, "x-multi"), ["m1", "m2"]);
    // Query: rebuilt sorted by name, like kong.service.request.set_query.
    assert_eq!(
        e.path,
        "/?keep=me&newq=o&p1=anything%3A1&p1=a2&p2=b%201&q-added=new&rq=replaced&z=last"
    );

    // Without the keys: add and append still add, replace does not.
    let e = get(&gw, "/r", &[]).await;
    assert_eq!(e.header("authorization"), "Basic test");
    assert!(!e.has("x-to-replace"));
    assert_eq!(all(&e, "x-multi"), ["m2"]);
    assert_eq!(
        e.path,
        "/?keep=not-me&p1=anything%3A1&p1=a2&p2=b%201&q-added=new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rules() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: replace-host
        paths: ["/replace"]
        plugins:
          - name: request-transformer
            config:
              replace:
                headers: ["host:replaced.test"]
      - name: replace-host-preserved
        paths: ["/preserved"]
        preserve_host: true
        plugins:
          - name: request-transformer
            config:
              replace:
                headers: ["Host:replaced.test:8080"]
      - name: add-host
        paths: ["/add"]
        preserve_host: true
        plugins:
          - name: request-transformer
            config:
              add:
                headers: ["host:mark"]
              append:
                headers: ["host:mark2"]
              remove:
                headers: ["host"]
"#,
    ))
    .await;
    let e = get(&gw, "/replace", &[("host", "client.test")]).await;
    assert_eq!(e.header("host"), "replaced.test");
    // The client's Host is still what X-Forwarded-Host says.
    assert_eq!(e.header("x-forwarded-host"), "client.test");
    let e = get(&gw, "/preserved", &[("host", "client.test")]).await;
    assert_eq!(e.header("host"), "replaced.test:8080");
    // Host cannot be added, appended or removed.
    let e = get(&gw, "/add", &[("host", "client.test")]).await;
    assert_eq!(e.header("host"), "client.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_form_bodies() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: body
        paths: ["/body"]
        plugins:
          - name: request-transformer
            config:
              remove:
                body: [gone]
              rename:
                body: ["old:new"]
              replace:
                body: ["rep:replaced", "absent:never", "f:never"]
              add:
                body: ["added:a:1", "keep:not-me", "f:added"]
              append:
                body: ["list:x", "str:y", "fresh:z"]
"#,
    ))
    .await;
    let e = post(
        &gw,
        "/body",
        "application/json; charset=utf-8",
        r#"{"gone":1,"old":"o","rep":"r","keep":"me","list":[1],"str":"s","f":false,"emptyarray":[]}"#,
    )
    .await;
    let body = e.body.clone().unwrap();
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        got,
        json!({"new":"o","rep":"replaced","keep":"me","list":[1,"x"],"str":["s","y"],
               "fresh":["z"],"added":"a:1","f":"added","emptyarray":[]})
    );
    // Content-Length recomputed.
    assert_eq!(e.header("content-length"), body.len().to_string());

    // Malformed JSON passes untouched; an empty JSON body gets only the additions.
    let e = post(&gw, "/body", "application/json", "malformed {").await;
    assert_eq!(e.body.as_deref(), Some("malformed {"));
    let e = post(&gw, "/body", "application/json", "").await;
    let got: Value = serde_json::from_str(e.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"added":"a:1","keep":"not-me","f":"added","list":["x"],"str":["y"],"fresh":["z"]})
    );

    // Form bodies.
    let e = post(
        &gw,
        "/body",
        "application/x-www-form-urlencoded",
        "gone=1&old=o&rep=r&keep=me&list=1&x=a+b",
    )
    .await;
    assert_eq!(
        e.body.as_deref(),
        Some("new=o&rep=replaced&keep=me&list=1&x=a%20b&added=a%3A1&f=added&list=x&str=y&fresh=z")
    );

    // Other content types are not touched.
    let e = post(&gw, "/body", "text/plain", "gone=1").await;
    assert_eq!(e.body.as_deref(), Some("gone=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_body() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: mp
        paths: ["/mp"]
        plugins:
          - name: request-transformer
            config:
              remove:
                body: [gone]
              rename:
                body: ["old:new"]
              replace:
                body: ["rep:replaced", "absent:never"]
              add:
                body: ["added:a1", "keep:not-me"]
              append:
                body: ["keep:never"]
"#,
    ))
    .await;
    let b = "XyZbOuNdArY";
    let part = |name: &str, v: &str| {
        format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{v}\r\n")
    };
    let body = format!(
        "{}{}{}{}--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\ncontent\r\n--{b}--\r\n",
        part("gone", "1"),
        part("old", "o"),
        part("rep", "r"),
        part("keep", "me"),
    );
    let e = post(
        &gw,
        "/mp",
        &format!("multipart/form-data; boundary={b}"),
        body,
    )
    .await;
    let out = e.body.clone().unwrap();
    assert_eq!(e.header("content-length"), out.len().to_string());
    // Parse what the upstream got with multer.
    let stream = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(out))
    });
    let mut mp = multer::Multipart::new(stream, b);
    let mut fields = Vec::new();
    while let Some(f) = mp.next_field().await.unwrap() {
        let name = f.name().unwrap().to_owned();
        let file = f.file_name().map(str::to_owned);
        let text = f.text().await.unwrap();
        fields.push((name, file, text));
    }
    let names: Vec<&str> = fields.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["keep", "file", "new", "rep", "added"]);
    let get = |n: &str| fields.iter().find(|f| f.0 == n).unwrap();
    assert_eq!(get("keep").2, "me");
    assert_eq!(get("new").2, "o");
    assert_eq!(get("rep").2, "replaced");
    assert_eq!(get("added").2, "a1");
    assert_eq!(get("file").1.as_deref(), Some("a.txt"));
    assert_eq!(get("file").2, "file\r\ncontent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_switch_and_uri() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: to-get
        paths: ["/to-get"]
        plugins:
          - name: request-transformer
            config:
              http_method: GET
      - name: to-post
        paths: ["/to-post"]
        plugins:
          - name: request-transformer
            config:
              http_method: POST
              add:
                headers: ["Content-Type:application/json"]
                body: ["body:somecontent"]
      - name: uri
        paths: ["/uri"]
        plugins:
          - name: request-transformer
            config:
              replace:
                uri: "/new/path tést"
"#,
    ))
    .await;
    // POST form -> GET: the form arguments join the query string.
    let e = post(
        &gw,
        "/to-get?hello=world&name=a",
        "application/x-www-form-urlencoded",
        "name=marco&x=1",
    )
    .await;
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/?hello=world&name=a&name=marco&x=1");

    // GET -> POST with a JSON body built from nothing (Content-Type added by the same plugin).
    let e = get(&gw, "/to-post", &[("x-echo-body", "1")]).await;
    assert_eq!(e.method, "POST");
    assert_eq!(e.body.as_deref(), Some(r#"{"body":"somecontent"}"#));
    assert_eq!(e.header("content-length"), "22");

    // replace.uri: the query string is kept, the path escaped.
    let e = get(&gw, "/uri/ignored?a=1&b", &[]).await;
    assert_eq!(e.path, "/new/path%20t%C3%A9st?a=1&b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: users
        paths: ["~/users/(?<user>\\w+)/(\\d+)$"]
        plugins:
          - name: request-transformer
            config:
              replace:
                uri: "/v2/$(uri_captures.user)/items/$(uri_captures[2])"
                headers: ["x-replace:old=$(headers['x-replace'])"]
              remove:
                headers: [x-secret]
              add:
                headers:
                  - "x-dot:$(headers.x_a)"
                  - "x-bracket:$(headers[\"x-b\"])"
                  - "x-query:$(query_params.q)|$(query_params[\"q\"])"
                  - "x-cap:$(uri_captures[\"user\"])-$(uri_captures[1])-$(uri_captures[0])"
                  - "x-default:$(headers.missing or \"none\")"
                  - "x-empty:[$(query_params.missing)]"
                  - "x-removed:$(headers['x-secret'])"
                  - "x-literal:$('$(uri_captures.user)')"
                querystring: ["who:$(uri_captures.user or 'nobody')"]
"#,
    ))
    .await;
    let e = get(
        &gw,
        "/users/bob/42?q=7",
        &[
            ("x-a", "A"),
            ("x-b", "B"),
            ("x-replace", "R"),
            ("x-secret", "S"),
        ],
    )
    .await;
    assert_eq!(e.path, "/v2/bob/items/42?q=7&who=bob");
    assert_eq!(e.header("x-dot"), "A");
    assert_eq!(e.header("x-bracket"), "B");
    assert_eq!(e.header("x-query"), "7|7");
    assert_eq!(e.header("x-cap"), "bob-bob-/users/bob/42");
    assert_eq!(e.header("x-default"), "none");
    assert_eq!(e.header("x-empty"), "[]");
    assert_eq!(e.header("x-replace"), "old=R");
    assert!(!e.has("x-secret"));
    assert_eq!(
        e.header("x-removed"),
        "S",
        "templates see the request as it came"
    );
    assert_eq!(e.header("x-literal"), "$(uri_captures.user)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_untouched() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&yaml(
        &echo,
        r#"      - name: big
        paths: ["/big"]
        plugins:
          - name: request-transformer
            config:
              add:
                body: ["added:1"]
"#,
    ))
    .await;
    let len = 9 * 1024 * 1024u64;
    for exact in [true, false] {
        let mut req = http::Request::post("/big")
            .header("host", "h")
            .header("content-type", "application/json");
        if exact {
            req = req.header("content-length", len);
        }
        let resp = hyper_send(gw.proxy_addr(), req.body(GenBody::new(len, exact)).unwrap()).await;
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let e: Echoed = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            e.body_len, len,
            "exact={exact}: the body went upstream whole"
        );
        if !exact {
            assert_eq!(e.header("transfer-encoding"), "chunked");
        }
    }
    // A small chunked body is transformed.
    let req = http::Request::post("/big")
        .header("host", "h")
        .header("content-type", "application/json")
        .header("x-echo-body", "1")
        .body(GenBody::new(0, false))
        .unwrap();
    let resp = hyper_send(gw.proxy_addr(), req).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e: Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.body.as_deref(), Some(r#"{"added":"1"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    let cases = [
        (
            json!({"add": {"headers": ["novalue"]}}),
            json!({"add": {"headers": ["invalid value: novalue"]}}),
        ),
        (
            json!({"remove": {"headers": ["bad header"]}}),
            json!({"remove": {"headers": ["'bad header' is not a valid header"]}}),
        ),
        (
            json!({"rename": {"headers": ["a:b c"]}}),
            json!({"rename": {"headers": ["'b c' is not a valid header"]}}),
        ),
        (
            json!({"http_method": "get"}),
            json!({"http_method": "invalid value: get"}),
        ),
        (
            json!({"append": {"querystring": ["ok:v", "q:$(foo.bar)"]}}),
            json!({"append": {"querystring": [null,
                "invalid template expression '$(foo.bar)': unknown variable 'foo' (expected headers, query_params or uri_captures)"]}}),
        ),
        (
            json!({"replace": {"uri": "/x/$(10 * uri_captures.a)"}}),
            json!({"replace": {"uri": "invalid template expression '$(10 * uri_captures.a)': unsupported expression '10 * uri_captures.a'"}}),
        ),
        (
            json!({"add": {"nope": []}}),
            json!({"add": {"nope": "unknown field"}}),
        ),
    ];
    for (config, fields) in cases {
        let body = api
            .post(
                "/plugins",
                &json!({"name": "request-transformer", "config": config}),
            )
            .await
            .expect(400);
        assert_eq!(body["name"], "schema violation", "{body}");
        assert_eq!(body["fields"]["config"], fields, "{body}");
    }
    // A valid one is stored with every default filled.
    let body = api
        .post(
            "/plugins",
            &json!({"name": "request-transformer", "config": {"add": {"headers": ["x:$(headers.y or 'z')"]}}}),
        )
        .await
        .expect(201);
    assert_eq!(
        body["config"],
        json!({"http_method": null,
               "remove": {"body": [], "headers": [], "querystring": []},
               "rename": {"body": [], "headers": [], "querystring": []},
               "replace": {"body": [], "headers": [], "querystring": [], "uri": null},
               "add": {"body": [], "headers": ["x:$(headers.y or 'z')"], "querystring": []},
               "append": {"body": [], "headers": [], "querystring": []}})
    );
}
