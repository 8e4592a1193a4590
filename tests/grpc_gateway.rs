//! issue 8 §2-§4: the grpc-gateway plugin against a real tonic gRPC server with reflection.
//!
//! - Discovery (reflection v1 and v1alpha, on demand and on an interval): routes created for
//!   the allowed methods only, refresh adding and removing methods when the server's service set
//!   changes, overrides (edited routes, `grpc-override`, hand-made `grpc-method:` routes) kept,
//!   discovered routes listed, patched and deleted through the Admin API, schema violations.
//! - Transcoding through the proxy, over the tonic server (`grpc` service: the HTTP/2 upstream)
//!   and over an HTTP/1.1 stand-in (`http` service): path, query and body mapping, additional
//!   bindings, every gRPC status -> HTTP status, JSON errors, the allow list, discovered and
//!   overridden routes serving calls.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::admin::{AdminApi, Backend, start_admin};
use crate::support::grpc_gw_server::{GrpcServer, Http1GrpcServer, ServiceSet, protos};

async fn admin() -> (crate::support::Gateway, AdminApi) {
    start_admin(Backend::Memory).await.expect("memory backend")
}

/// A `grpc` service pointing at `server`.
async fn grpc_service(api: &AdminApi, name: &str, server: &GrpcServer) -> Value {
    api.post(
        "/services",
        &json!({"name": name, "protocol": "grpc", "host": "127.0.0.1", "port": server.addr.port()}),
    )
    .await
    .expect(201)
}

/// A reflection grpc-gateway plugin on `service`.
async fn reflection_plugin(api: &AdminApi, service: &str, config: Value) -> String {
    let mut conf = json!({"reflection": true, "refresh_interval": 0, "naming_convention": true});
    for (k, v) in config.as_object().unwrap() {
        conf[k] = v.clone();
    }
    let p = api
        .post(
            &format!("/services/{service}/plugins"),
            &json!({"name": "grpc-gateway", "config": conf}),
        )
        .await
        .expect(201);
    p["id"].as_str().unwrap().to_owned()
}

async fn refresh(api: &AdminApi, plugin: &str) -> Value {
    api.post(&format!("/grpc-gateway/{plugin}/refresh"), &json!({}))
        .await
        .expect(200)
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// Discovered routes by name.
async fn discovered(api: &AdminApi) -> std::collections::BTreeMap<String, Value> {
    api.list_all("/routes?tags=grpc-discovered")
        .await
        .into_iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect()
}

const ALLOW_USERS_WIDGETS: &str =
    r#"["gwtest.v1.UserService/*", "gwtest.v1.Widgets/*", "gwtest.v1.Extra/*"]"#;

/// Tag a discovered route `grpc-override`, so a refresh keeps it as the user left it.
async fn mark_override(api: &AdminApi, route: &Value) {
    let mut tags = route["tags"].as_array().unwrap().clone();
    tags.push(json!("grpc-override"));
    api.patch(
        &format!("/routes/{}", route["id"].as_str().unwrap()),
        &json!({"tags": tags}),
    )
    .await
    .expect(200);
}

fn allow_users_widgets() -> Value {
    serde_json::from_str(ALLOW_USERS_WIDGETS).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_creates_routes_for_allowed_methods_only() {
    let server = GrpcServer::start(&ServiceSet::default()).await;
    let (gw, api) = admin().await;
    let svc = grpc_service(&api, "users-grpc", &server).await;
    let plugin = reflection_plugin(
        &api,
        "users-grpc",
        json!({"allow": allow_users_widgets(), "route_prefix": "/api"}),
    )
    .await;
    let report = refresh(&api, &plugin).await;
    assert_eq!(report["reflection"], "v1");
    let services = names(&report["services"]);
    assert!(
        services.contains(&"gwtest.v1.Internal".to_owned()),
        "{services:?}"
    );
    assert_eq!(
        names(&report["methods"]),
        [
            "gwtest.v1.UserService/CreateUser",
            "gwtest.v1.UserService/Fail",
            "gwtest.v1.UserService/GetUser",
            "gwtest.v1.UserService/ListUsers",
            "gwtest.v1.UserService/UpdateUser",
            "gwtest.v1.Widgets/CreateWidget",
            "gwtest.v1.Widgets/DeleteWidget",
            "gwtest.v1.Widgets/GetWidget",
            "gwtest.v1.Widgets/ListWidgets",
            "gwtest.v1.Widgets/UpdateWidget",
        ]
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("gwtest.v1.Widgets/Ping"), "{warnings}");
    let routes = discovered(&api).await;
    // One route per binding: GetUser and UpdateUser have an additional binding each.
    assert_eq!(routes.len(), 12, "{:?}", routes.keys());
    // The background loop may have made them a moment before this refresh.
    assert_eq!(
        names(&report["created"]).len() + names(&report["unchanged"]).len(),
        12,
        "{report}"
    );
    let get = &routes["users-grpc.gwtest.v1.UserService.GetUser"];
    assert_eq!(get["paths"], json!(["~/api/v1/users/(?<id>[^/]+)$"]));
    assert_eq!(get["methods"], json!(["GET"]));
    assert_eq!(get["service"]["id"], svc["id"]);
    assert_eq!(get["strip_path"], false);
    let tags = get["tags"].to_string();
    assert!(
        tags.contains("grpc-method:gwtest.v1.UserService.GetUser"),
        "{tags}"
    );
    assert!(tags.contains(&format!("grpc-plugin:{plugin}")), "{tags}");
    let members = &routes["users-grpc.gwtest.v1.UserService.GetUser-2"];
    assert_eq!(
        members["paths"],
        json!(["~/api/v1/(?<name>orgs/[^/]+/members/[^/]+)$"])
    );
    let update_widget = &routes["users-grpc.gwtest.v1.Widgets.UpdateWidget"];
    assert_eq!(
        update_widget["paths"],
        json!(["~/api/widgets/(?<id>[^/]+)$"])
    );
    assert_eq!(update_widget["methods"], json!(["PUT", "PATCH"]));
    assert!(update_widget["tags"].to_string().contains("grpc-body:*"));
    // The internal service's annotated method is not exposed: not in the allow list.
    assert!(
        !routes.keys().any(|n| n.contains("Internal")),
        "{:?}",
        routes.keys()
    );
    // A second refresh changes nothing.
    let again = refresh(&api, &plugin).await;
    assert_eq!(names(&again["unchanged"]).len(), 12);
    for k in ["created", "updated", "deleted", "kept"] {
        assert_eq!(again[k], json!([]), "{k}: {again}");
    }
    // The state endpoints.
    let state = api
        .get(&format!("/grpc-gateway/{plugin}"))
        .await
        .expect(200);
    assert_eq!(state["error"], Value::Null);
    assert!(state["refreshed_at"].as_i64().unwrap() > 0);
    assert_eq!(state["last_refresh"]["reflection"], "v1");
    let all = api.get("/grpc-gateway").await.expect(200);
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    gw.stop().await;
    server.stop().await;
}

// On both stores: discovery writes through the same `Store` as the Admin API.
crate::admin_tests! {
    case_refresh_follows_the_server_and_keeps_overrides =>
        refresh_follows_the_server_and_keeps_overrides_memory,
        refresh_follows_the_server_and_keeps_overrides_postgres;
    case_routes_of_a_plugin_that_stops_discovering_are_removed =>
        routes_of_a_plugin_that_stops_discovering_are_removed_memory,
        routes_of_a_plugin_that_stops_discovering_are_removed_postgres;
}

/// Until `f` holds (checked every 100 ms), or panic after `within`.
async fn eventually(within: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plugin that stops discovering (disabled, or deleted) takes its discovered
/// routes with it, after a short grace; overrides and another plugin's routes stay.
async fn case_routes_of_a_plugin_that_stops_discovering_are_removed(api: &AdminApi) {
    let server = GrpcServer::start(&ServiceSet::default()).await;
    grpc_service(api, "users-grpc", &server).await;
    grpc_service(api, "other-grpc", &server).await;
    let users = reflection_plugin(
        api,
        "users-grpc",
        json!({"allow": ["gwtest.v1.UserService/*"]}),
    )
    .await;
    let widgets =
        reflection_plugin(api, "other-grpc", json!({"allow": ["gwtest.v1.Widgets/*"]})).await;
    refresh(api, &users).await;
    refresh(api, &widgets).await;
    let routes = discovered(api).await;
    let of = |routes: &std::collections::BTreeMap<String, Value>, svc: &str| {
        routes.keys().filter(|n| n.starts_with(svc)).count()
    };
    assert_eq!(of(&routes, "users-grpc."), 7, "{:?}", routes.keys());
    let widget_routes = of(&routes, "other-grpc.");
    assert!(widget_routes > 0, "{:?}", routes.keys());
    // The user keeps one of the users routes.
    let kept = routes["users-grpc.gwtest.v1.UserService.GetUser"].clone();
    mark_override(api, &kept).await;

    // Disabled: the plugin no longer discovers, its routes go (not at once).
    api.patch(&format!("/plugins/{users}"), &json!({"enabled": false}))
        .await
        .expect(200);
    let started = tokio::time::Instant::now();
    eventually(
        Duration::from_secs(15),
        "the users routes removed",
        async || of(&discovered(api).await, "users-grpc.") == 1,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "removed after the grace, not at once: {:?}",
        started.elapsed()
    );
    let after = discovered(api).await;
    assert!(
        after.contains_key("users-grpc.gwtest.v1.UserService.GetUser"),
        "the override stays: {:?}",
        after.keys()
    );
    assert_eq!(
        of(&after, "other-grpc."),
        widget_routes,
        "another plugin's routes stay"
    );

    // Deleted: the same for the other plugin.
    api.delete(&format!("/plugins/{widgets}")).await.expect(204);
    eventually(
        Duration::from_secs(15),
        "the widgets routes removed",
        async || of(&discovered(api).await, "other-grpc.") == 0,
    )
    .await;
    assert_eq!(discovered(api).await.len(), 1);
    server.stop().await;
}

async fn case_refresh_follows_the_server_and_keeps_overrides(api: &AdminApi) {
    let first = ServiceSet {
        internal: false,
        ..ServiceSet::default()
    };
    let server = GrpcServer::start(&first).await;
    let addr = server.addr;
    grpc_service(api, "users-grpc", &server).await;
    let plugin =
        reflection_plugin(api, "users-grpc", json!({"allow": allow_users_widgets()})).await;
    refresh(api, &plugin).await;
    let routes = discovered(api).await;
    let get_widget = routes["users-grpc.gwtest.v1.Widgets.GetWidget"].clone();
    let list_widgets = routes["users-grpc.gwtest.v1.Widgets.ListWidgets"].clone();
    let list_users = routes["users-grpc.gwtest.v1.UserService.ListUsers"].clone();

    // The user edits one discovered route (an override from now on), marks another one, deletes
    // a third, and adds a hand-made route for a method discovery does not map (Ping).
    let edited = api
        .patch(
            &format!("/routes/{}", get_widget["id"].as_str().unwrap()),
            &json!({"paths": ["~/gadgets/(?<id>[^/]+)$"]}),
        )
        .await
        .expect(200);
    assert_eq!(edited["paths"], json!(["~/gadgets/(?<id>[^/]+)$"]));
    mark_override(api, &list_widgets).await;
    api.delete(&format!("/routes/{}", list_users["id"].as_str().unwrap()))
        .await
        .expect(204);
    let ping = api
        .post(
            "/services/users-grpc/routes",
            &json!({"name": "ping", "paths": ["/ping"], "methods": ["POST"],
                    "tags": ["grpc-method:gwtest.v1.Widgets.Ping", "grpc-body:*"]}),
        )
        .await
        .expect(201);

    // The server restarts on the same port without Widgets, with Extra.
    server.stop().await;
    let second = ServiceSet {
        widgets: false,
        internal: false,
        extra: true,
        ..ServiceSet::default()
    };
    let server = GrpcServer::start_on(addr, &second).await;
    let report = refresh(api, &plugin).await;
    assert_eq!(
        names(&report["created"]),
        [
            "users-grpc.gwtest.v1.Extra.GetThing",
            "users-grpc.gwtest.v1.UserService.ListUsers",
        ],
        "{report}"
    );
    assert_eq!(
        names(&report["deleted"]),
        [
            "users-grpc.gwtest.v1.Widgets.CreateWidget",
            "users-grpc.gwtest.v1.Widgets.DeleteWidget",
            "users-grpc.gwtest.v1.Widgets.UpdateWidget",
        ],
        "{report}"
    );
    assert_eq!(
        names(&report["kept"]),
        [
            "users-grpc.gwtest.v1.Widgets.GetWidget",
            "users-grpc.gwtest.v1.Widgets.ListWidgets",
        ],
        "{report}"
    );
    let routes = discovered(api).await;
    assert_eq!(
        routes["users-grpc.gwtest.v1.Widgets.GetWidget"]["paths"],
        json!(["~/gadgets/(?<id>[^/]+)$"]),
        "the edited route survives refresh unchanged"
    );
    assert!(routes.contains_key("users-grpc.gwtest.v1.Widgets.ListWidgets"));
    assert!(!routes.contains_key("users-grpc.gwtest.v1.Widgets.CreateWidget"));
    assert!(routes.contains_key("users-grpc.gwtest.v1.Extra.GetThing"));
    let hand_made = api
        .get(&format!("/routes/{}", ping["id"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(hand_made, ping, "hand-made routes are never touched");

    // Narrowing the allow list removes the managed routes of what it no longer names.
    let patched = api
        .patch(
            &format!("/plugins/{plugin}"),
            &json!({"config": {"allow": ["gwtest.v1.Extra/*"]}}),
        )
        .await
        .expect(200);
    assert_eq!(patched["config"]["allow"], json!(["gwtest.v1.Extra/*"]));
    let report = refresh(api, &plugin).await;
    assert_eq!(names(&report["methods"]), ["gwtest.v1.Extra/GetThing"]);
    let routes = discovered(api).await;
    let left: Vec<&String> = routes.keys().collect();
    assert_eq!(
        left,
        [
            "users-grpc.gwtest.v1.Extra.GetThing",
            "users-grpc.gwtest.v1.Widgets.GetWidget",
            "users-grpc.gwtest.v1.Widgets.ListWidgets",
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1alpha_only_servers_and_failures() {
    let server = GrpcServer::start(&ServiceSet {
        reflection_v1: false,
        ..ServiceSet::default()
    })
    .await;
    let (gw, api) = admin().await;
    grpc_service(&api, "old-grpc", &server).await;
    let plugin = reflection_plugin(
        &api,
        "old-grpc",
        json!({"allow": ["gwtest.v1.UserService/GetUser"], "naming_convention": false}),
    )
    .await;
    let report = refresh(&api, &plugin).await;
    assert_eq!(report["reflection"], "v1alpha");
    assert_eq!(names(&report["methods"]), ["gwtest.v1.UserService/GetUser"]);
    assert_eq!(discovered(&api).await.len(), 2);

    // The server goes away: refresh fails with a 502 naming the cause, the routes stay.
    server.stop().await;
    let failed = api
        .post(&format!("/grpc-gateway/{plugin}/refresh"), &json!({}))
        .await
        .expect(502);
    assert!(
        failed["message"].as_str().unwrap().contains("connect"),
        "{failed}"
    );
    let state = api
        .get(&format!("/grpc-gateway/{plugin}"))
        .await
        .expect(200);
    assert!(
        state["error"].as_str().unwrap().contains("connect"),
        "{state}"
    );
    assert_eq!(discovered(&api).await.len(), 2);
    // Unknown instances.
    api.post(
        "/grpc-gateway/00000000-0000-4000-8000-000000000000/refresh",
        &json!({}),
    )
    .await
    .expect(404);
    api.get("/grpc-gateway/nope").await.expect(404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interval_refresh_picks_up_new_services() {
    let server = GrpcServer::start(&ServiceSet::default()).await;
    let addr = server.addr;
    let (gw, api) = admin().await;
    grpc_service(&api, "users-grpc", &server).await;
    // No on-demand refresh: the background loop discovers the new instance at once...
    reflection_plugin(
        &api,
        "users-grpc",
        json!({"allow": allow_users_widgets(), "refresh_interval": 1}),
    )
    .await;
    assert_eventually!(
        Duration::from_secs(10),
        discovered(&api).await.len() == 12,
        "initial discovery"
    );
    // ...and again every second: the restarted server's new service shows up.
    server.stop().await;
    let server = GrpcServer::start_on(
        addr,
        &ServiceSet {
            extra: true,
            ..ServiceSet::default()
        },
    )
    .await;
    assert_eventually!(
        Duration::from_secs(15),
        discovered(&api)
            .await
            .contains_key("users-grpc.gwtest.v1.Extra.GetThing"),
        "interval refresh"
    );
    gw.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_config_is_validated() {
    let (gw, api) = admin().await;
    api.post(
        "/services",
        &json!({"name": "g", "protocol": "grpc", "host": "127.0.0.1", "port": 1}),
    )
    .await
    .expect(201);
    let bad = |config: Value| json!({"name": "grpc-gateway", "config": config});
    let r = api
        .post("/services/g/plugins", &bad(json!({"reflection": true})))
        .await
        .expect(400);
    assert_eq!(r["name"], "schema violation", "{r}");
    assert!(r["fields"]["config.allow"].is_string(), "{r}");
    let r = api
        .post(
            "/services/g/plugins",
            &bad(json!({"reflection": true, "allow": ["nope"]})),
        )
        .await
        .expect(400);
    assert!(
        r["fields"]["config"]["allow"]
            .to_string()
            .contains("invalid method pattern"),
        "{r}"
    );
    let r = api
        .post(
            "/services/g/plugins",
            &bad(json!({"reflection": true, "allow": ["a.B/C"], "proto": "/x.proto"})),
        )
        .await
        .expect(400);
    assert!(
        r["fields"]["@entity"].to_string().contains("only one of"),
        "{r}"
    );
    let r = api
        .post(
            "/plugins",
            &bad(json!({"reflection": true, "allow": ["a.B/C"]})),
        )
        .await
        .expect(400);
    assert!(r["fields"]["service"].is_string(), "{r}");
    let r = api
        .post(
            "/services/g/plugins",
            &bad(json!({"reflection": true, "allow": ["a.B/C"], "refresh_interval": -1})),
        )
        .await
        .expect(400);
    assert!(r["fields"]["config"]["refresh_interval"].is_string(), "{r}");
    let r = api
        .post(
            "/services/g/plugins",
            &bad(json!({"reflection": true, "allow": ["a.B/C"], "route_prefix": "api"})),
        )
        .await
        .expect(400);
    assert!(r["fields"]["config"]["route_prefix"].is_string(), "{r}");
    let r = api
        .post("/services/g/plugins", &bad(json!({"unknown": 1})))
        .await
        .expect(400);
    assert!(r["fields"]["config"]["unknown"].is_string(), "{r}");
    // A Kong-style proto-file configuration is accepted as is.
    let ok = api
        .post(
            "/services/g/plugins",
            &bad(json!({"proto": "/etc/x.proto"})),
        )
        .await
        .expect(201);
    assert_eq!(ok["config"]["reflection"], false);
    assert_eq!(ok["config"]["allow"], json!([]));
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Transcoding through the proxy.

/// Where the transcoded calls go: the tonic server (`grpc` service, HTTP/2) or the HTTP/1.1
/// stand-in (`http` service).
struct Upstream {
    addr: std::net::SocketAddr,
    protocol: &'static str,
}

impl Upstream {
    fn tonic(s: &GrpcServer) -> Self {
        Self {
            addr: s.addr,
            protocol: "grpc",
        }
    }
    fn http1(s: &Http1GrpcServer) -> Self {
        Self {
            addr: s.addr,
            protocol: "http",
        }
    }
}

macro_rules! over_both_upstreams {
    ($($case:ident => $http1:ident, $tonic:ident;)+) => {$(
        /// Through the HTTP/1.1 stand-in (`http` service).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $http1() {
            let server = Http1GrpcServer::start().await;
            $case(Upstream::http1(&server)).await;
        }

        /// Through the tonic server (`grpc` service: the proxy's HTTP/2 upstream).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tonic() {
            let server = GrpcServer::start(&ServiceSet::default()).await;
            $case(Upstream::tonic(&server)).await;
            server.stop().await;
        }
    )+};
}

over_both_upstreams! {
    case_transcodes_path_query_and_body => transcodes_path_query_and_body_http1, transcodes_path_query_and_body_grpc;
    case_grpc_statuses_become_http_statuses => grpc_statuses_become_http_statuses_http1, grpc_statuses_become_http_statuses_grpc;
    case_allow_list_enforced_on_calls => allow_list_enforced_on_calls_http1, allow_list_enforced_on_calls_grpc;
}

/// A gateway proxying `/` to `up` with a proto-file grpc-gateway plugin (Kong's setup).
async fn proto_gateway(
    up: &Upstream,
    allow: Value,
) -> (crate::support::Gateway, AdminApi, crate::support::TempDir) {
    let p = protos();
    let (gw, api) = admin().await;
    api.post(
        "/services",
        &json!({"name": "users-grpc", "protocol": up.protocol, "host": "127.0.0.1", "port": up.addr.port()}),
    )
    .await
    .expect(201);
    // The plugin before the route: no request can reach the route without it.
    api.post(
        "/services/users-grpc/plugins",
        &json!({"name": "grpc-gateway", "config": {"proto": p.path.display().to_string(), "allow": allow}}),
    )
    .await
    .expect(201);
    api.post(
        "/services/users-grpc/routes",
        &json!({"name": "web", "paths": ["/"], "protocols": ["http"]}),
    )
    .await
    .expect(201);
    (gw, api, p.dir)
}

async fn call(api: &AdminApi, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut req = api
            .client
            .request(method.clone(), format!("{}{path}", api.proxy));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("proxy request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        // The configuration reaches the proxy asynchronously: wait out "no route" only.
        if status == 404
            && text.contains("no Route matched")
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(
            ct.starts_with("application/json"),
            "{method} {path}: content type {ct:?}, body {v}"
        );
        return (status, v);
    }
}

async fn case_transcodes_path_query_and_body(up: Upstream) {
    let (gw, api, _dir) = proto_gateway(&up, json!([])).await;
    let (s, v) = call(
        &api,
        Method::GET,
        "/v1/users/42?view=full&verbose=true&unknown=1",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": "42", "name": "user-42", "display_name": "view=full verbose=true"})
    );
    // additional_bindings with a multi-segment variable.
    let (s, v) = call(&api, Method::GET, "/v1/orgs/acme/members/7", None).await;
    assert_eq!((s, &v["name"]), (200, &json!("orgs/acme/members/7")), "{v}");
    // body: "user", plus a query parameter for the other field.
    let (s, v) = call(
        &api,
        Method::POST,
        "/v1/users?request_id=r-1",
        Some(json!({"name": "ann", "role": "ADMIN", "address": {"city": "Oslo"}, "tags": ["a"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": "1000", "name": "ann", "role": "ADMIN", "address": {"city": "Oslo"},
               "tags": ["a"], "display_name": "r-1"})
    );
    // body: "*" with the path winning over the body; PATCH and its PUT additional binding.
    for m in [Method::PATCH, Method::PUT] {
        let (s, v) = call(
            &api,
            m.clone(),
            "/v1/users/5",
            Some(json!({"id": "99", "name": "x", "active": true})),
        )
        .await;
        assert_eq!(s, 200, "{m}: {v}");
        assert_eq!(v, json!({"id": "5", "name": "x", "active": true}), "{m}");
    }
    // Repeated query parameters.
    let (s, v) = call(
        &api,
        Method::GET,
        "/v1/users?page_size=2&tags=a&tags=b",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"users": [{"id": "1", "tags": ["a", "b"]}, {"id": "2", "tags": ["a", "b"]}], "next": "p2"})
    );
    // Client errors: no binding, a bad value for a typed field, bad JSON, unknown body field.
    let (s, v) = call(&api, Method::GET, "/v1/nothing", None).await;
    assert_eq!(s, 400);
    assert_eq!(
        v["message"],
        "failed to transcode .proto file Unknown path \"/v1/nothing\""
    );
    let (s, v) = call(&api, Method::DELETE, "/v1/users/1", None).await;
    assert_eq!(
        (s, v["message"].clone()),
        (
            400,
            json!("failed to transcode .proto file Unknown method \"delete\"")
        )
    );
    let (s, v) = call(&api, Method::GET, "/v1/users/abc", None).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("'id'"), "{v}");
    let resp = api
        .client
        .patch(format!("{}/v1/users/5", api.proxy))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (s, v) = call(&api, Method::PATCH, "/v1/users/5", Some(json!({"nope": 1}))).await;
    assert_eq!(s, 400, "{v}");
    // Kong's CORS preflight answer.
    let resp = api
        .client
        .request(Method::OPTIONS, format!("{}/v1/users/1", api.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    gw.stop().await;
}

async fn case_grpc_statuses_become_http_statuses(up: Upstream) {
    let (gw, api, _dir) = proto_gateway(&up, json!([])).await;
    let (s, v) = call(&api, Method::GET, "/v1/users/404", None).await;
    assert_eq!((s, v), (404, json!({"code": 5, "message": "no user 404"})));
    let want = [
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
    ];
    for (code, status) in want {
        let (s, v) = call(
            &api,
            Method::GET,
            &format!("/v1/fail/{code}?message=boom%20{code}"),
            None,
        )
        .await;
        assert_eq!(s, status, "grpc {code}: {v}");
        assert_eq!(v, json!({"code": code, "message": format!("boom {code}")}));
    }
    let (s, v) = call(&api, Method::GET, "/v1/fail/0", None).await;
    assert_eq!((s, v), (200, json!({})));
    // grpc-status-details-bin: each detail as JSON with its @type when the proto describes
    // it, else its bytes in base64.
    let (s, v) = call(&api, Method::GET, "/v1/fail/8?message=detail%20quota", None).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(
        v,
        json!({"code": 8, "message": "detail quota", "details": [
            {"@type": "type.googleapis.com/gwtest.v1.FailDetail", "reason": "detail quota",
             "retry_after_s": 7},
            {"@type": "type.googleapis.com/other.v1.Unknown", "value": "AQID"},
        ]})
    );
    gw.stop().await;
}

async fn case_allow_list_enforced_on_calls(up: Upstream) {
    let (gw, api, _dir) = proto_gateway(&up, json!(["gwtest.v1.UserService/GetUser"])).await;
    let (s, _) = call(&api, Method::GET, "/v1/users/1", None).await;
    assert_eq!(s, 200);
    let (s, v) = call(&api, Method::GET, "/v1/users?page_size=1", None).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not exposed"),
        "{v}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_and_overridden_routes_serve_calls() {
    let server = GrpcServer::start(&ServiceSet::default()).await;
    let (gw, api) = admin().await;
    grpc_service(&api, "users-grpc", &server).await;
    let plugin =
        reflection_plugin(&api, "users-grpc", json!({"allow": allow_users_widgets()})).await;
    refresh(&api, &plugin).await;
    // Annotated and conventional routes.
    let (s, v) = call(&api, Method::GET, "/v1/users/3?view=v", None).await;
    assert_eq!(
        (s, v["display_name"].clone()),
        (200, json!("view=v verbose=false"))
    );
    let (s, v) = call(&api, Method::GET, "/widgets/3", None).await;
    assert_eq!((s, v), (200, json!({"id": "3", "name": "widget-3"})));
    let (s, v) = call(&api, Method::POST, "/widgets", Some(json!({"name": "w"}))).await;
    assert_eq!((s, v), (200, json!({"id": "7", "name": "w"})));
    let (s, v) = call(&api, Method::DELETE, "/widgets/3", None).await;
    assert_eq!((s, v), (200, json!({})));
    // The internal service is not exposed: no route.
    let resp = api
        .client
        .get(format!("{}/v1/secrets/1", api.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("no Route matched"));
    // An edited route serves on its new path; a hand-made route calls a method of its choice.
    let routes = discovered(&api).await;
    let id = routes["users-grpc.gwtest.v1.Widgets.GetWidget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.patch(
        &format!("/routes/{id}"),
        &json!({"paths": ["~/gadgets/(?<id>[^/]+)$"]}),
    )
    .await
    .expect(200);
    let (s, v) = call(&api, Method::GET, "/gadgets/8", None).await;
    assert_eq!((s, v), (200, json!({"id": "8", "name": "widget-8"})));
    api.post(
        "/services/users-grpc/routes",
        &json!({"name": "ping", "paths": ["/ping"], "methods": ["POST"],
                "tags": ["grpc-method:gwtest.v1.Widgets.Ping", "grpc-body:*"]}),
    )
    .await
    .expect(201);
    let (s, v) = call(&api, Method::POST, "/ping", Some(json!({}))).await;
    assert_eq!((s, v), (200, json!({})));
    gw.stop().await;
    server.stop().await;
}

/// grpcs: reflection over TLS (ALPN h2) to the service's upstream targets, and a hand-made route
/// (`grpc-method:` tag) for a method no convention maps, called through the TLS upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_discovery_through_upstream_targets() {
    let (up, _ca) = crate::support::grpc::GrpcUpstream::start_tls(&["localhost"]).await;
    let (gw, api) = admin().await;
    api.post("/upstreams", &json!({"name": "fixture.upstream"}))
        .await
        .expect(201);
    api.post(
        "/upstreams/fixture.upstream/targets",
        &json!({"target": format!("127.0.0.1:{}", up.addr.port())}),
    )
    .await
    .expect(201);
    api.post(
        "/services",
        &json!({"name": "fixture", "protocol": "grpcs", "host": "fixture.upstream", "port": 443}),
    )
    .await
    .expect(201);
    let plugin = reflection_plugin(
        &api,
        "fixture",
        json!({"allow": ["gwctl.fixture.v1.Fixture/*"]}),
    )
    .await;
    let report = refresh(&api, &plugin).await;
    assert_eq!(report["reflection"], "v1");
    assert!(
        names(&report["services"]).contains(&"gwctl.fixture.v1.Fixture".to_owned()),
        "{report}"
    );
    // Nothing maps by convention; the streaming methods are never transcoded.
    assert_eq!(report["methods"], json!([]), "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("Fixture/Bidi: streaming"), "{warnings}");
    assert!(
        warnings.contains("Fixture/Unary: no google.api.http"),
        "{warnings}"
    );
    assert!(discovered(&api).await.is_empty());
    api.post(
        "/services/fixture/routes",
        &json!({"name": "echo", "paths": ["/echo"], "methods": ["POST"],
                "tags": ["grpc-method:gwctl.fixture.v1.Fixture.Unary", "grpc-body:*"]}),
    )
    .await
    .expect(201);
    let (s, v) = call(
        &api,
        Method::POST,
        "/echo?seq=9",
        Some(json!({"message": "hi", "seq": 3})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "hi");
    // body "*": the query string is not used.
    assert_eq!(v["seq"], 3);
    assert_eq!(v["path"], "/gwctl.fixture.v1.Fixture/Unary");
    gw.stop().await;
    up.stop().await;
}

/// Postgres mode, two nodes on one database: both fetch the descriptors they transcode with,
/// but only the holder of the discovery lease (the first node) writes the discovered routes in
/// its background refreshes; when it stops, the other node takes the lease and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_of_a_cluster_keeps_the_discovered_routes() {
    use crate::support::admin::start_admin_with;
    let Some(url) = crate::support::pg_backend::database_url().await else {
        crate::support::pg::skip_note("one_node_of_a_cluster_keeps_the_discovered_routes");
        return;
    };
    let server = GrpcServer::start(&ServiceSet::default()).await;
    let on = |u: &String| {
        let u = u.clone();
        move |o: &mut gwctl::serve::ServeOptions| o.database_url = Some(u)
    };
    let (gw_a, a) = start_admin_with(Backend::Postgres, on(&url)).await.unwrap();
    // A's discovery loop takes the free lease on its first tick.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (gw_b, b) = start_admin_with(Backend::Postgres, on(&url)).await.unwrap();
    grpc_service(&a, "users-grpc", &server).await;
    let plugin = reflection_plugin(
        &a,
        "users-grpc",
        json!({"allow": ["gwtest.v1.UserService/*"], "refresh_interval": 1}),
    )
    .await;
    let state = |api: &AdminApi| {
        let api = api.clone();
        let path = format!("/grpc-gateway/{plugin}");
        async move { api.get(&path).await.expect(200) }
    };
    eventually(
        Duration::from_secs(15),
        "both nodes refreshed",
        async || {
            !state(&a).await["last_refresh"].is_null() && !state(&b).await["last_refresh"].is_null()
        },
    )
    .await;
    assert_eq!(state(&a).await["last_refresh"]["routes_written"], true);
    let sb = state(&b).await;
    assert_eq!(sb["last_refresh"]["routes_written"], false, "{sb}");
    assert_eq!(
        sb["last_refresh"]["methods"].as_array().unwrap().len(),
        5,
        "{sb}"
    );
    assert_eq!(discovered(&b).await.len(), 7, "B sees A's routes");

    gw_a.stop().await;
    eventually(Duration::from_secs(15), "B took the lease", async || {
        state(&b).await["last_refresh"]["routes_written"] == true
    })
    .await;
    assert_eq!(discovered(&b).await.len(), 7, "nothing duplicated");
    gw_b.stop().await;
    server.stop().await;
}
