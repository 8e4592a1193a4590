//! Admin API conformance (kong-compat §1 and the §9 "Admin" and "Credentials" checklist), run
//! against the memory store (DB-less) and, when a database is configured, Postgres.
//!
//! Deliberate deviations from Kong (CONTRACT.md): the DB-less admin API is writable, list bodies
//! carry an extra `total`, and `GET /` says "Welcome to gwctl".

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Echo;
use crate::support::admin::{AdminApi, Backend, wait_proxy};

crate::admin_tests! {
    case_service_from_form_url => service_from_form_url_memory, service_from_form_url_postgres;
    case_service_from_multipart => service_from_multipart_memory, service_from_multipart_postgres;
    case_put_by_name_creates_and_replaces => put_by_name_creates_and_replaces_memory, put_by_name_creates_and_replaces_postgres;
    case_patch_merges_records_and_replaces_arrays => patch_merges_records_and_replaces_arrays_memory, patch_merges_records_and_replaces_arrays_postgres;
    case_delete_is_idempotent => delete_is_idempotent_memory, delete_is_idempotent_postgres;
    case_duplicate_name_is_409 => duplicate_name_is_409_memory, duplicate_name_is_409_postgres;
    case_schema_violations => schema_violations_memory, schema_violations_postgres;
    case_service_with_routes_cannot_be_deleted => service_with_routes_cannot_be_deleted_memory, service_with_routes_cannot_be_deleted_postgres;
    case_pagination => pagination_memory, pagination_postgres;
    case_tag_filters => tag_filters_memory, tag_filters_postgres;
    case_nested_routes => nested_routes_memory, nested_routes_postgres;
    case_route_service => route_service_memory, route_service_postgres;
    case_consumers => consumers_memory, consumers_postgres;
    case_plugins_are_not_enabled => plugins_are_not_enabled_memory, plugins_are_not_enabled_postgres;
    case_key_auth => key_auth_memory, key_auth_postgres;
    case_jwt => jwt_memory, jwt_postgres;
    case_acls => acls_memory, acls_postgres;
    case_ca_certificates => ca_certificates_memory, ca_certificates_postgres;
    case_targets => targets_memory, targets_postgres;
    case_target_health => target_health_memory, target_health_postgres;
    case_cascades => cascades_memory, cascades_postgres;
    case_tags_endpoint => tags_endpoint_memory, tags_endpoint_postgres;
    case_declarative_config => declarative_config_memory, declarative_config_postgres;
    case_node_info_and_schemas => node_info_and_schemas_memory, node_info_and_schemas_postgres;
    case_http_errors => http_errors_memory, http_errors_postgres;
    case_body_too_large => body_too_large_memory, body_too_large_postgres;
    case_foreign_references => foreign_references_memory, foreign_references_postgres;
    case_bad_input_loses_nothing => bad_input_loses_nothing_memory, bad_input_loses_nothing_postgres;
    case_admin_writes_change_routing => admin_writes_change_routing_memory, admin_writes_change_routing_postgres;
    case_concurrent_writes => concurrent_writes_memory, concurrent_writes_postgres;
    case_admin_token => admin_token_memory, admin_token_postgres
        with |o| o.admin_token = Some("s3cret".into());
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn is_uuid(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 36 && uuid::Uuid::parse_str(s).is_ok())
}

/// Integer Unix seconds close to now.
#[track_caller]
fn assert_timestamp(v: &Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = v
        .as_i64()
        .unwrap_or_else(|| panic!("integer timestamp, got {v}"));
    assert!((now - t).abs() < 120, "timestamp {t} far from now {now}");
}

/// The ids of a list of rows.
fn ids(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

/// The `data` of a list body, as ids.
fn data_ids(body: &Value) -> Vec<String> {
    ids(body["data"].as_array().expect("data array"))
}

/// Copy the generated fields (`id`, timestamps) of `got` into `expected`.
fn with_generated(mut expected: Value, got: &Value, fields: &[&str]) -> Value {
    for f in fields {
        expected[*f] = got[*f].clone();
    }
    expected
}

/// MD5 of `text`, lower-case hex (Kong's configuration hash of a `/config` text).
fn md5_hex(text: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A self-signed CA certificate (PEM).
fn ca_pem(name: &str) -> String {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// Kong's service defaults for `host` (everything else unset).
fn service_defaults(name: &str, host: &str) -> Value {
    json!({
        "name": name,
        "protocol": "http",
        "host": host,
        "port": 80,
        "path": null,
        "retries": 5,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "tags": null,
        "client_certificate": null,
        "tls_verify": null,
        "tls_verify_depth": null,
        "ca_certificates": null,
        "enabled": true,
    })
}

// ---------------------------------------------------------------------------------------------
// Services: create, upsert, patch, delete.

async fn case_service_from_form_url(api: &AdminApi) {
    // The curl idiom: `curl -d name=svc -d url=https://api.example.com/v2`.
    let reply = api
        .form(
            Method::POST,
            "/services",
            &[("name", "svc"), ("url", "https://api.example.com/v2")],
        )
        .await;
    assert_eq!(reply.content_type(), "application/json; charset=utf-8");
    let svc = reply.expect(201);
    assert!(is_uuid(&svc["id"]), "{svc}");
    assert_timestamp(&svc["created_at"]);
    assert_eq!(svc["updated_at"], svc["created_at"]);
    let mut expected = service_defaults("svc", "api.example.com");
    expected["protocol"] = json!("https");
    expected["port"] = json!(443);
    expected["path"] = json!("/v2");
    let expected = with_generated(expected, &svc, &["id", "created_at", "updated_at"]);
    // Every field present, `url` never returned.
    assert_eq!(svc, expected);

    // What was stored is what came back.
    assert_eq!(api.get("/services/svc").await.expect(200), svc);
    let id = svc["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/services/{id}")).await.expect(200), svc);

    // Scheme defaults: no port means the scheme's, no path means null.
    let plain = api
        .form(
            Method::POST,
            "/services",
            &[("name", "plain"), ("url", "http://plain.test")],
        )
        .await
        .expect(201);
    assert_eq!(
        (
            &plain["protocol"],
            &plain["host"],
            &plain["port"],
            &plain["path"]
        ),
        (
            &json!("http"),
            &json!("plain.test"),
            &json!(80),
            &Value::Null
        )
    );
    // An explicit port wins.
    let ported = api
        .form(
            Method::POST,
            "/services",
            &[("name", "ported"), ("url", "https://p.test:8443/a/b")],
        )
        .await
        .expect(201);
    assert_eq!(
        (&ported["protocol"], &ported["port"], &ported["path"]),
        (&json!("https"), &json!(8443), &json!("/a/b"))
    );

    // Form values are coerced by the schema; repeated keys build arrays.
    let coerced = api
        .form(
            Method::POST,
            "/services",
            &[
                ("name", "coerced"),
                ("host", "c.test"),
                ("port", "8080"),
                ("retries", "0"),
                ("enabled", "false"),
                ("tags", "a"),
                ("tags", "b"),
                ("path", ""),
            ],
        )
        .await
        .expect(201);
    assert_eq!(coerced["port"], 8080);
    assert_eq!(coerced["retries"], 0);
    assert_eq!(coerced["enabled"], false);
    assert_eq!(coerced["tags"], json!(["a", "b"]));
    assert_eq!(coerced["path"], Value::Null);

    // A single value for a set field is a one-element set; commas are not split.
    let one_tag = api
        .form(
            Method::POST,
            "/services",
            &[("name", "one-tag"), ("host", "t.test"), ("tags", "x,y")],
        )
        .await;
    // `x,y` is one tag, and commas are not allowed in tags.
    assert_eq!(one_tag.status, 400, "{}", one_tag.body);
    assert_eq!(
        one_tag["fields"]["tags"],
        json!([
            "invalid tag 'x,y': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        ])
    );
    let one_tag = api
        .form(
            Method::POST,
            "/services",
            &[("name", "one-tag"), ("host", "t.test"), ("tags", "x")],
        )
        .await
        .expect(201);
    assert_eq!(one_tag["tags"], json!(["x"]));
}

async fn case_service_from_multipart(api: &AdminApi) {
    let svc = api
        .multipart(
            Method::POST,
            "/services",
            &[
                ("name", "mp"),
                ("host", "mp.test"),
                ("port", "8081"),
                ("tags[1]", "first"),
                ("tags[2]", "second"),
            ],
        )
        .await
        .expect(201);
    let mut expected = service_defaults("mp", "mp.test");
    expected["port"] = json!(8081);
    expected["tags"] = json!(["first", "second"]);
    assert_eq!(
        svc,
        with_generated(expected, &svc, &["id", "created_at", "updated_at"])
    );
    // Multipart works for PATCH too.
    let patched = api
        .multipart(Method::PATCH, "/services/mp", &[("retries", "9")])
        .await
        .expect(200);
    assert_eq!(patched["retries"], 9);
    assert_eq!(patched["port"], 8081);
}

async fn case_put_by_name_creates_and_replaces(api: &AdminApi) {
    // PUT to a name that does not exist creates it: 200, not 201. The URL's name wins over the
    // body's.
    let created = api
        .put(
            "/services/svc",
            &json!({"name": "ignored", "host": "a.test", "port": 8080, "retries": 1,
                    "tags": ["t"], "path": "/p"}),
        )
        .await
        .expect(200);
    assert_eq!(created["name"], "svc");
    assert_eq!(created["port"], 8080);
    assert!(is_uuid(&created["id"]));
    assert_eq!(api.get("/services/svc").await.expect(200), created);

    // PUT again: a full replace. Same id and created_at; omitted fields back to defaults.
    let replaced = api
        .put("/services/svc", &json!({"host": "b.test"}))
        .await
        .expect(200);
    let expected = with_generated(
        service_defaults("svc", "b.test"),
        &created,
        &["id", "created_at"],
    );
    let expected = with_generated(expected, &replaced, &["updated_at"]);
    assert_eq!(replaced, expected);
    assert!(replaced["updated_at"].as_i64() >= created["updated_at"].as_i64());
    assert_eq!(api.get("/services/svc").await.expect(200), replaced);
    assert_eq!(api.list_all("/services").await.len(), 1);

    // PUT by id creates with that id; a name in the body is kept.
    let id = uuid::Uuid::new_v4().to_string();
    let by_id = api
        .put(
            &format!("/services/{id}"),
            &json!({"name": "by-id", "host": "c.test"}),
        )
        .await
        .expect(200);
    assert_eq!(by_id["id"], json!(id));
    assert_eq!(by_id["name"], "by-id");
    // And replaces by id.
    let again = api
        .put(
            &format!("/services/{id}"),
            &json!({"name": "renamed", "host": "c.test"}),
        )
        .await
        .expect(200);
    assert_eq!(again["id"], json!(id));
    assert_eq!(again["name"], "renamed");
    assert_eq!(api.get("/services/by-id").await.status, 404);
    assert_eq!(
        api.get("/services/renamed").await.expect(200)["id"],
        json!(id)
    );

    // Form-encoded PUT by username for consumers.
    let bob = api
        .form(Method::PUT, "/consumers/bob", &[("custom_id", "7")])
        .await
        .expect(200);
    assert_eq!(bob["username"], "bob");
    assert_eq!(bob["custom_id"], "7");
    let bob2 = api
        .form(Method::PUT, "/consumers/bob", &[("tags", "x")])
        .await
        .expect(200);
    assert_eq!(bob2["id"], bob["id"]);
    assert_eq!(
        bob2["custom_id"],
        Value::Null,
        "PUT replaces: custom_id reset"
    );
    assert_eq!(bob2["tags"], json!(["x"]));

    // A PUT that fails validation changes nothing.
    let bad = api.put("/services/svc", &json!({"port": 1})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(api.get("/services/svc").await.expect(200), replaced);
}

async fn case_patch_merges_records_and_replaces_arrays(api: &AdminApi) {
    let up = api
        .post(
            "/upstreams",
            &json!({
                "name": "up.test",
                "tags": ["a", "b"],
                "healthchecks": {"active": {"healthy": {"interval": 5, "successes": 2}}},
            }),
        )
        .await
        .expect(201);
    assert_eq!(up["healthchecks"]["active"]["healthy"]["interval"], 5);
    assert_eq!(up["healthchecks"]["active"]["healthy"]["successes"], 2);
    assert_eq!(
        up["healthchecks"]["active"]["healthy"]["http_statuses"],
        json!([200, 302])
    );

    // A nested record merges field by field.
    let patched = api
        .patch(
            "/upstreams/up.test",
            &json!({"healthchecks": {"active": {"unhealthy": {"http_failures": 3}}}}),
        )
        .await
        .expect(200);
    let hc = &patched["healthchecks"];
    assert_eq!(hc["active"]["healthy"]["interval"], 5, "{hc}");
    assert_eq!(hc["active"]["healthy"]["successes"], 2);
    assert_eq!(hc["active"]["unhealthy"]["http_failures"], 3);
    assert_eq!(
        hc["active"]["unhealthy"]["http_statuses"],
        json!([429, 404, 500, 501, 502, 503, 504, 505])
    );
    assert_eq!(patched["id"], up["id"]);
    assert_eq!(patched["created_at"], up["created_at"]);
    assert_eq!(patched["name"], "up.test");
    assert_eq!(patched["tags"], json!(["a", "b"]), "untouched fields stay");

    // Arrays are replaced wholesale, inside records too.
    let patched = api
        .patch(
            "/upstreams/up.test",
            &json!({"tags": ["c"],
                    "healthchecks": {"active": {"unhealthy": {"http_statuses": [500]}}}}),
        )
        .await
        .expect(200);
    assert_eq!(patched["tags"], json!(["c"]));
    assert_eq!(
        patched["healthchecks"]["active"]["unhealthy"]["http_statuses"],
        json!([500])
    );
    assert_eq!(
        patched["healthchecks"]["active"]["unhealthy"]["http_failures"],
        3
    );
    assert_eq!(api.get("/upstreams/up.test").await.expect(200), patched);

    // Form-encoded PATCH with dotted keys.
    let patched = api
        .form(
            Method::PATCH,
            "/upstreams/up.test",
            &[
                ("healthchecks.active.healthy.successes", "4"),
                ("slots", "100"),
            ],
        )
        .await
        .expect(200);
    assert_eq!(patched["healthchecks"]["active"]["healthy"]["successes"], 4);
    assert_eq!(patched["healthchecks"]["active"]["healthy"]["interval"], 5);
    assert_eq!(patched["slots"], 100);

    // A form empty string unsets a field.
    api.patch("/upstreams/up.test", &json!({"host_header": "h.test"}))
        .await
        .expect(200);
    let patched = api
        .form(Method::PATCH, "/upstreams/up.test", &[("host_header", "")])
        .await
        .expect(200);
    assert_eq!(patched["host_header"], Value::Null);

    // PATCH of a service keeps what the patch does not name.
    api.post(
        "/services",
        &json!({"name": "svc", "url": "http://x.test:81/p"}),
    )
    .await
    .expect(201);
    let svc = api
        .patch("/services/svc", &json!({"retries": 2}))
        .await
        .expect(200);
    assert_eq!(
        (&svc["retries"], &svc["host"], &svc["port"], &svc["path"]),
        (&json!(2), &json!("x.test"), &json!(81), &json!("/p"))
    );

    // Kong's write-time coupling of hash_on and algorithm applies to the merged result.
    let hashed = api
        .patch("/upstreams/up.test", &json!({"hash_on": "ip"}))
        .await
        .expect(200);
    assert_eq!(hashed["algorithm"], "consistent-hashing");
    let r = api
        .patch("/upstreams/up.test", &json!({"hash_on": "header"}))
        .await;
    r.expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": "2 schema violations (failed conditional validation given value of field 'hash_on'; hash_on_header: required field missing)",
                "fields": {"@entity": ["failed conditional validation given value of field 'hash_on'"],
                           "hash_on_header": "required field missing"}}),
    );

    let lc = api
        .patch(
            "/upstreams/up.test",
            &json!({"algorithm": "least-connections"}),
        )
        .await
        .expect(200);
    assert_eq!(
        (&lc["algorithm"], &lc["hash_on"]),
        (&json!("least-connections"), &json!("none"))
    );

    // PATCH of something missing is 404; an invalid PATCH changes nothing.
    api.patch("/upstreams/nope.test", &json!({"slots": 100}))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    let before = api.get("/upstreams/up.test").await.expect(200);
    let bad = api.patch("/upstreams/up.test", &json!({"slots": 1})).await;
    bad.expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": "schema violation (slots: value should be between 10 and 65536)",
                "fields": {"slots": "value should be between 10 and 65536"}}),
    );
    assert_eq!(api.get("/upstreams/up.test").await.expect(200), before);
}

async fn case_delete_is_idempotent(api: &AdminApi) {
    let gone = api.delete("/services/never-existed").await;
    assert_eq!(gone.status, 204);
    assert_eq!(gone.body, Value::Null, "204 has no body");
    let id = uuid::Uuid::new_v4();
    assert_eq!(api.delete(&format!("/services/{id}")).await.status, 204);
    assert_eq!(api.delete(&format!("/consumers/{id}")).await.status, 204);

    api.post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    assert_eq!(api.delete("/services/svc").await.status, 204);
    api.get("/services/svc")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    assert_eq!(api.delete("/services/svc").await.status, 204);
    assert_eq!(api.list_all("/services").await, Vec::<Value>::new());
}

async fn case_duplicate_name_is_409(api: &AdminApi) {
    let first = api
        .post("/services", &json!({"name": "svc", "host": "a.test"}))
        .await
        .expect(201);
    api.post("/services", &json!({"name": "svc", "host": "b.test"}))
        .await
        .expect_json(
            409,
            &json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": "UNIQUE violation detected on '{name=\"svc\"}'",
                "fields": {"name": "svc"},
            }),
        );
    // Renaming another service onto the name is a conflict too.
    api.post("/services", &json!({"name": "other", "host": "c.test"}))
        .await
        .expect(201);
    let r = api.patch("/services/other", &json!({"name": "svc"})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r["code"], 5);
    // Nothing changed.
    assert_eq!(api.get("/services/svc").await.expect(200), first);
    assert_eq!(api.list_all("/services").await.len(), 2);

    // A client-chosen id is kept.
    let chosen = uuid::Uuid::new_v4().to_string();
    let mine = api
        .post(
            "/services",
            &json!({"id": chosen, "name": "mine", "host": "m.test"}),
        )
        .await
        .expect(201);
    assert_eq!(mine["id"], json!(chosen));
    assert_eq!(
        api.get(&format!("/services/{chosen}")).await.expect(200),
        mine
    );
    // Renaming frees the old name.
    api.patch("/services/mine", &json!({"name": "yours"}))
        .await
        .expect(200);
    assert_eq!(api.get("/services/mine").await.status, 404);
    assert_eq!(
        api.get("/services/yours").await.expect(200)["id"],
        json!(chosen)
    );
    api.post("/services", &json!({"name": "mine", "host": "m.test"}))
        .await
        .expect(201);
    // An id that exists is a primary key violation (code 3).
    let r = api
        .post(
            "/services",
            &json!({"id": first["id"], "name": "third", "host": "d.test"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r["code"], 3);
    assert_eq!(r["name"], "primary key violation");
}

async fn case_schema_violations(api: &AdminApi) {
    // Missing host: Kong's exact body.
    api.post("/services", &json!({"name": "svc"}))
        .await
        .expect_json(
            400,
            &json!({
                "code": 2,
                "name": "schema violation",
                "message": "schema violation (host: required field missing)",
                "fields": {"host": "required field missing"},
            }),
        );
    // Two errors: counted, sorted by field.
    api.post("/services", &json!({"port": 70000}))
        .await
        .expect_json(
            400,
            &json!({
                "code": 2,
                "name": "schema violation",
                "message": "2 schema violations (host: required field missing; port: value should be between 0 and 65535)",
                "fields": {"host": "required field missing", "port": "value should be between 0 and 65535"},
            }),
        );
    // Entity-level errors live under `@entity`.
    api.post("/consumers", &json!({}))
        .await
        .expect_json(
            400,
            &json!({
                "code": 2,
                "name": "schema violation",
                "message": "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')",
                "fields": {"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]},
            }),
        );
    api.post("/routes", &json!({"protocols": ["http"]}))
        .await
        .expect_json(
            400,
            &json!({
                "code": 2,
                "name": "schema violation",
                "message": "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http')",
                "fields": {"@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]},
            }),
        );
    // Nested record errors are nested in `fields` and dotted in the message.
    api.post(
        "/upstreams",
        &json!({"name": "u.test", "healthchecks": {"active": {"timeout": -1}}}),
    )
    .await
    .expect_json(
        400,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (healthchecks.active.timeout: value should be between 0 and 65535)",
            "fields": {"healthchecks": {"active": {"timeout": "value should be between 0 and 65535"}}},
        }),
    );
    // Names follow Kong's charset rule.
    let r = api
        .post("/services", &json!({"name": "bad name", "host": "x.test"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r["fields"]["name"],
        "invalid value 'bad name': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    );
    assert_eq!(api.list_all("/services").await, Vec::<Value>::new());
    assert_eq!(api.list_all("/consumers").await, Vec::<Value>::new());
}

async fn case_service_with_routes_cannot_be_deleted(api: &AdminApi) {
    let svc = api
        .post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    api.post(
        "/routes",
        &json!({"name": "r", "paths": ["/r"], "service": {"id": svc["id"]}}),
    )
    .await
    .expect(201);
    api.delete("/services/svc").await.expect_json(
        400,
        &json!({
            "code": 4,
            "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"},
        }),
    );
    assert_eq!(api.get("/services/svc").await.expect(200), svc);
    assert_eq!(api.delete("/routes/r").await.status, 204);
    assert_eq!(api.delete("/services/svc").await.status, 204);
    assert_eq!(api.get("/services/svc").await.status, 404);
}

// ---------------------------------------------------------------------------------------------
// Listing: pagination and filters.

async fn case_pagination(api: &AdminApi) {
    // An empty collection: `data` is an array, `next` null, no `offset`.
    api.get("/upstreams")
        .await
        .expect_json(200, &json!({"data": [], "next": null, "total": 0}));
    api.get("/services/nope/routes").await.expect(404);

    let mut created = Vec::new();
    for i in 0..5 {
        let c = api
            .post("/consumers", &json!({"username": format!("user{i}")}))
            .await
            .expect(201);
        created.push(c);
    }
    let want = ids(&created);

    // size=1: five pages, each with `offset` and `next` except the last.
    let mut seen = Vec::new();
    let mut next = Some("/consumers?size=1".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        pages += 1;
        assert!(pages <= 5, "more pages than rows");
        let body = api.get(&path).await.expect(200);
        let data = body["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{body}");
        seen.push(data[0].clone());
        next = body["next"].as_str().map(str::to_owned);
        match &next {
            Some(n) => {
                let offset = body["offset"].as_str().expect("offset with next");
                assert!(n.starts_with("/consumers?"), "{n}");
                assert!(n.contains("size=1"), "next carries size: {n}");
                assert!(
                    n.contains(&format!("offset={offset}"))
                        || n.contains(&format!(
                            "offset={}",
                            form_urlencoded::byte_serialize(offset.as_bytes()).collect::<String>()
                        )),
                    "next carries the offset: {n} / {offset}"
                );
            }
            None => {
                assert_eq!(body["next"], Value::Null);
                assert!(
                    body.get("offset").is_none(),
                    "no offset on the last page: {body}"
                );
            }
        }
    }
    assert_eq!(pages, 5);
    // Every row exactly once.
    assert_eq!(ids(&seen), want);

    // size=2: 2 + 2 + 1.
    let mut sizes = Vec::new();
    let mut next = Some("/consumers?size=2".to_owned());
    while let Some(path) = next {
        let body = api.get(&path).await.expect(200);
        sizes.push(body["data"].as_array().unwrap().len());
        next = body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(sizes, vec![2, 2, 1]);

    // The default page holds everything; gwctl adds `total`.
    let body = api.get("/consumers").await.expect(200);
    assert_eq!(data_ids(&body), want);
    assert_eq!(body["next"], Value::Null);
    assert_eq!(body["total"], 5);
    assert!(body.get("offset").is_none());
    let body = api.get("/consumers?size=1000").await.expect(200);
    assert_eq!(data_ids(&body), want);

    // The cursor is stable: rows deleted between pages are skipped, none is repeated.
    let first = api.get("/consumers?size=2").await.expect(200);
    let first_ids = data_ids(&first);
    let rest: Vec<&String> = want.iter().filter(|id| !first_ids.contains(id)).collect();
    assert_eq!(
        api.delete(&format!("/consumers/{}", rest[0])).await.status,
        204
    );
    let mut seen = first_ids.clone();
    let mut next = first["next"].as_str().map(str::to_owned);
    while let Some(path) = next {
        let body = api.get(&path).await.expect(200);
        seen.extend(data_ids(&body));
        next = body["next"].as_str().map(str::to_owned);
    }
    seen.sort();
    let mut remaining: Vec<String> = want.iter().filter(|id| *id != rest[0]).cloned().collect();
    remaining.sort();
    assert_eq!(seen, remaining);

    // Size errors: code 9.
    for (q, msg) in [
        ("size=abc", "size must be a number"),
        ("size=0", "size must be an integer between 1 and 1000"),
        ("size=1001", "size must be an integer between 1 and 1000"),
        ("size=-1", "size must be an integer between 1 and 1000"),
    ] {
        api.get(&format!("/consumers?{q}")).await.expect_json(
            400,
            &json!({"code": 9, "name": "invalid size", "message": msg}),
        );
    }
    // Offset errors: code 7.
    api.get("/consumers?offset=%21%21%21").await.expect_json(
        400,
        &json!({"code": 7, "name": "invalid offset",
                "message": "'!!!' is not a valid offset: bad base64 encoding"}),
    );
    // Valid base64 of something that is not a JSON key.
    api.get("/consumers?offset=aGVsbG8").await.expect_json(
        400,
        &json!({"code": 7, "name": "invalid offset",
                "message": "'aGVsbG8' is not a valid offset: bad json encoding"}),
    );

    // Nested collections page the same way.
    api.post("/upstreams", &json!({"name": "u.test"}))
        .await
        .expect(201);
    for i in 1..=3 {
        api.post(
            "/upstreams/u.test/targets",
            &json!({"target": format!("10.0.0.{i}:80")}),
        )
        .await
        .expect(201);
    }
    let mut count = 0;
    let mut next = Some("/upstreams/u.test/targets?size=1".to_owned());
    while let Some(path) = next {
        let body = api.get(&path).await.expect(200);
        count += body["data"].as_array().unwrap().len();
        next = body["next"].as_str().map(str::to_owned);
        assert!(count <= 3);
    }
    assert_eq!(count, 3);
}

async fn case_tag_filters(api: &AdminApi) {
    let mut by_name = std::collections::HashMap::new();
    for (name, tags) in [
        ("ab", json!(["a", "b"])),
        ("a", json!(["a"])),
        ("b", json!(["b"])),
        ("c", json!(["c"])),
        ("none", Value::Null),
    ] {
        let s = api
            .post(
                "/services",
                &json!({"name": name, "host": "x.test", "tags": tags}),
            )
            .await
            .expect(201);
        by_name.insert(name, s["id"].as_str().unwrap().to_owned());
    }
    let names = |list: &[&str]| {
        let mut v: Vec<String> = list.iter().map(|n| by_name[n].clone()).collect();
        v.sort();
        v
    };

    // `,` = all of them.
    let body = api.get("/services?tags=a,b").await.expect(200);
    assert_eq!(data_ids(&body), names(&["ab"]));
    // `/` = any of them.
    let body = api.get("/services?tags=a/b").await.expect(200);
    assert_eq!(data_ids(&body), names(&["ab", "a", "b"]));
    let body = api.get("/services?tags=c").await.expect(200);
    assert_eq!(data_ids(&body), names(&["c"]));
    let body = api.get("/services?tags=zzz").await.expect(200);
    assert_eq!(body["data"], json!([]));

    // Paging through a filter keeps the filter in `next`.
    let mut seen = Vec::new();
    let mut next = Some("/services?tags=a/b&size=1".to_owned());
    while let Some(path) = next {
        let body = api.get(&path).await.expect(200);
        seen.extend(body["data"].as_array().unwrap().iter().cloned());
        next = body["next"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.contains("tags=a%2Fb") || n.contains("tags=a/b"), "{n}");
        }
        assert!(seen.len() <= 3);
    }
    assert_eq!(ids(&seen), names(&["ab", "a", "b"]));

    // More than 5 tags: code 11 with `options`.
    api.get("/services?tags=a/b/c/d/e/f").await.expect_json(
        400,
        &json!({"code": 11, "name": "invalid options",
                "message": "invalid option (tags: cannot query more than 5 tags)",
                "options": {"tags": "cannot query more than 5 tags"}}),
    );
    // `,` and `/` together: invalid filter syntax.
    api.get("/services?tags=a,b/c").await.expect_json(
        400,
        &json!({"code": 11, "name": "invalid options",
                "message": "invalid option (tags: invalid filter syntax)",
                "options": {"tags": "invalid filter syntax"}}),
    );
    // Five is fine.
    let body = api.get("/services?tags=a/b/c/d/e").await.expect(200);
    assert_eq!(data_ids(&body), names(&["ab", "a", "b", "c"]));
}

// ---------------------------------------------------------------------------------------------
// Nested endpoints.

async fn case_nested_routes(api: &AdminApi) {
    let svc = api
        .post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    let other = api
        .post("/services", &json!({"name": "other", "host": "y.test"}))
        .await
        .expect(201);

    // Nested create sets `service`.
    let r1 = api
        .post(
            "/services/svc/routes",
            &json!({"name": "r1", "paths": ["/r1"]}),
        )
        .await
        .expect(201);
    assert_eq!(r1["service"], json!({"id": svc["id"]}));
    let expected = json!({
        "name": "r1",
        "protocols": ["http", "https"],
        "methods": null,
        "hosts": null,
        "paths": ["/r1"],
        "headers": null,
        "snis": null,
        "sources": null,
        "destinations": null,
        "https_redirect_status_code": 426,
        "regex_priority": 0,
        "strip_path": true,
        "path_handling": "v0",
        "preserve_host": false,
        "request_buffering": true,
        "response_buffering": true,
        "service": {"id": svc["id"]},
        "tags": null,
    });
    assert_eq!(
        r1,
        with_generated(expected, &r1, &["id", "created_at", "updated_at"])
    );
    // By the parent's id too, and form-encoded with `paths[]`.
    let svc_id = svc["id"].as_str().unwrap();
    let r2 = api
        .form(
            Method::POST,
            &format!("/services/{svc_id}/routes"),
            &[("name", "r2"), ("paths[]", "/r2"), ("methods", "GET")],
        )
        .await
        .expect(201);
    assert_eq!(r2["service"], json!({"id": svc["id"]}));
    assert_eq!(r2["paths"], json!(["/r2"]));
    assert_eq!(r2["methods"], json!(["GET"]));
    // The parent in the URL wins over a service in the body.
    let r3 = api
        .post(
            "/services/svc/routes",
            &json!({"name": "r3", "paths": ["/r3"], "service": {"id": other["id"]}}),
        )
        .await
        .expect(201);
    assert_eq!(r3["service"], json!({"id": svc["id"]}));

    // Nested reads see only the parent's children.
    let body = api.get("/services/svc/routes").await.expect(200);
    assert_eq!(data_ids(&body), ids(&[r1.clone(), r2.clone(), r3.clone()]));
    let body = api.get("/services/other/routes").await.expect(200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(api.get("/services/svc/routes/r1").await.expect(200), r1);
    let r1_id = r1["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/services/svc/routes/{r1_id}"))
            .await
            .expect(200),
        r1
    );
    // A route of another service through this one's URL: 404.
    api.get("/services/other/routes/r1")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.get(&format!("/services/other/routes/{r1_id}"))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.patch("/services/other/routes/r1", &json!({"paths": ["/x"]}))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // Nested PATCH and DELETE.
    let r1b = api
        .patch("/services/svc/routes/r1", &json!({"paths": ["/r1b"]}))
        .await
        .expect(200);
    assert_eq!(r1b["paths"], json!(["/r1b"]));
    assert_eq!(r1b["service"], json!({"id": svc["id"]}));
    assert_eq!(api.delete("/services/svc/routes/r3").await.status, 204);
    assert_eq!(api.get("/routes/r3").await.status, 404);
    // Nested DELETE checks the parent: a missing child, or another parent's, is 404 (Kong's
    // nested endpoints select before deleting), and nothing is deleted.
    api.delete("/services/svc/routes/r3")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.delete("/services/other/routes/r1")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.delete(&format!("/services/other/routes/{r1_id}"))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    assert_eq!(api.get("/routes/r1").await.status, 200);
    api.delete("/services/nope/routes/r1")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // Nested PUT creates under the parent.
    let r4 = api
        .put("/services/other/routes/r4", &json!({"paths": ["/r4"]}))
        .await
        .expect(200);
    assert_eq!(r4["name"], "r4");
    assert_eq!(r4["service"], json!({"id": other["id"]}));
    // POST to an entity URL is not a method it has.
    api.post("/services/svc", &json!({}))
        .await
        .expect_json(405, &json!({"message": "Method not allowed"}));
    // Unknown parent: 404.
    api.get("/services/nope/routes")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.post("/services/nope/routes", &json!({"paths": ["/n"]}))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
}

async fn case_route_service(api: &AdminApi) {
    let svc = api
        .post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    api.post(
        "/services/svc/routes",
        &json!({"name": "r", "paths": ["/r"]}),
    )
    .await
    .expect(201);
    api.post("/routes", &json!({"name": "lonely", "paths": ["/l"]}))
        .await
        .expect(201);

    assert_eq!(api.get("/routes/r/service").await.expect(200), svc);
    // PATCH operates on the referenced service.
    let patched = api
        .patch("/routes/r/service", &json!({"retries": 1}))
        .await
        .expect(200);
    assert_eq!(patched["id"], svc["id"]);
    assert_eq!(patched["retries"], 1);
    assert_eq!(api.get("/services/svc").await.expect(200)["retries"], 1);
    // DELETE is not allowed there.
    api.delete("/routes/r/service")
        .await
        .expect_json(405, &json!({"message": "Method not allowed"}));
    assert_eq!(api.get("/services/svc").await.status, 200);
    // A route without a service, a missing route: 404, whatever the method.
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        for path in ["/routes/lonely/service", "/routes/nope/service"] {
            api.send(api.request(method.clone(), path))
                .await
                .expect_json(404, &json!({"message": "Not found"}));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consumers and credentials.

async fn case_consumers(api: &AdminApi) {
    let bob = api
        .post("/consumers", &json!({"username": "bob", "custom_id": "42"}))
        .await
        .expect(201);
    let expected = json!({"username": "bob", "custom_id": "42", "tags": null});
    assert_eq!(
        bob,
        with_generated(expected, &bob, &["id", "created_at", "updated_at"])
    );
    assert_timestamp(&bob["created_at"]);
    api.post("/consumers", &json!({"custom_id": "only-custom"}))
        .await
        .expect(201);

    assert_eq!(api.get("/consumers/bob").await.expect(200), bob);
    let id = bob["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/consumers/{id}")).await.expect(200), bob);

    // `?custom_id=` is an exact lookup.
    api.get("/consumers?custom_id=42")
        .await
        .expect_json(200, &json!({"data": [bob], "next": null, "total": 1}));
    api.get("/consumers?custom_id=4")
        .await
        .expect_json(200, &json!({"data": [], "next": null, "total": 0}));
    api.get("/consumers?custom_id=").await.expect_json(
        400,
        &json!({"message": "custom_id must be an unempty string"}),
    );

    // Both keys are unique.
    api.post("/consumers", &json!({"username": "bob"}))
        .await
        .expect_json(
            409,
            &json!({"code": 5, "name": "unique constraint violation",
                    "message": "UNIQUE violation detected on '{username=\"bob\"}'",
                    "fields": {"username": "bob"}}),
        );
    api.post("/consumers", &json!({"username": "ann", "custom_id": "42"}))
        .await
        .expect_json(
            409,
            &json!({"code": 5, "name": "unique constraint violation",
                    "message": "UNIQUE violation detected on '{custom_id=\"42\"}'",
                    "fields": {"custom_id": "42"}}),
        );
    // Usernames are free text; URL keys are percent-decoded.
    let odd = api
        .post("/consumers", &json!({"username": "john doe@example.com"}))
        .await
        .expect(201);
    assert_eq!(
        api.get("/consumers/john%20doe%40example.com")
            .await
            .expect(200),
        odd
    );
    let renamed = api
        .patch(
            "/consumers/john%20doe%40example.com",
            &json!({"username": "jd"}),
        )
        .await
        .expect(200);
    assert_eq!(renamed["id"], odd["id"]);
    assert_eq!(
        api.get("/consumers/john%20doe%40example.com").await.status,
        404
    );
    assert_eq!(api.get("/consumers/jd").await.expect(200), renamed);
    assert_eq!(api.list_all("/consumers").await.len(), 3);
}

async fn case_plugins_are_not_enabled(api: &AdminApi) {
    api.post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    let msg = "plugin 'post-function' not enabled; add it to the 'plugins' configuration property";
    let body = json!({
        "code": 2,
        "name": "schema violation",
        "message": format!("schema violation (name: {msg})"),
        "fields": {"name": msg},
    });
    api.post("/plugins", &json!({"name": "post-function"}))
        .await
        .expect_json(400, &body);
    api.post("/services/svc/plugins", &json!({"name": "post-function"}))
        .await
        .expect_json(400, &body);
    api.form(Method::POST, "/plugins", &[("name", "post-function")])
        .await
        .expect_json(400, &body);
    assert_eq!(api.list_all("/plugins").await, Vec::<Value>::new());
    // /plugins/enabled lists what this node runs: the built-in plugins, never post-function.
    let enabled = api.get("/plugins/enabled").await.expect(200);
    let names: Vec<&str> = enabled["enabled_plugins"]
        .as_array()
        .expect("enabled_plugins")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"correlation-id"), "{names:?}");
    assert!(!names.contains(&"post-function"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted");
}

async fn case_key_auth(api: &AdminApi) {
    let bob = api
        .post("/consumers", &json!({"username": "bob"}))
        .await
        .expect(201);
    let alice = api
        .post("/consumers", &json!({"username": "alice"}))
        .await
        .expect(201);

    // No key given: a generated 32-character alphanumeric key.
    let reply = api
        .raw(Method::POST, "/consumers/bob/key-auth", None, Vec::new())
        .await;
    let cred = reply.expect(201);
    let key = cred["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 32, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    assert!(is_uuid(&cred["id"]));
    assert_eq!(cred["consumer"], json!({"id": bob["id"]}));
    assert_eq!(cred["tags"], Value::Null);
    assert_timestamp(&cred["created_at"]);

    // Lookups by key and by id, top-level and nested.
    assert_eq!(
        api.get(&format!("/key-auths/{key}")).await.expect(200),
        cred
    );
    let cid = cred["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/key-auths/{cid}")).await.expect(200),
        cred
    );
    assert_eq!(
        api.get(&format!("/consumers/bob/key-auth/{key}"))
            .await
            .expect(200),
        cred
    );
    assert_eq!(
        api.get(&format!("/key-auths/{key}/consumer"))
            .await
            .expect(200),
        bob
    );
    // Another consumer's key through this one's URL: 404.
    api.get(&format!("/consumers/alice/key-auth/{key}"))
        .await
        .expect_json(404, &json!({"message": "Not found"}));

    // A chosen key, form-encoded; a duplicate key is 409 (keys are globally unique).
    let k1 = api
        .form(Method::POST, "/consumers/bob/key-auth", &[("key", "k1")])
        .await
        .expect(201);
    assert_eq!(k1["key"], "k1");
    api.post("/consumers/alice/key-auth", &json!({"key": "k1"}))
        .await
        .expect_json(
            409,
            &json!({"code": 5, "name": "unique constraint violation",
                    "message": "UNIQUE violation detected on '{key=\"k1\"}'",
                    "fields": {"key": "k1"}}),
        );
    api.post("/consumers/alice/key-auth", &json!({"key": "k2"}))
        .await
        .expect(201);

    let body = api.get("/consumers/bob/key-auth").await.expect(200);
    assert_eq!(data_ids(&body), ids(&[cred.clone(), k1.clone()]));
    assert_eq!(api.list_all("/key-auths").await.len(), 3);
    assert_eq!(api.get("/key-auths/k2/consumer").await.expect(200), alice);
    // Top-level create needs a consumer.
    api.post("/key-auths", &json!({"key": "orphan"}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (consumer: required field missing)",
                    "fields": {"consumer": "required field missing"}}),
        );
    // Unknown consumer: 404.
    api.post("/consumers/nobody/key-auth", &json!({}))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // Delete by key; a key that is not this consumer's is 404 and stays.
    api.delete("/consumers/alice/key-auth/k1")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    assert_eq!(api.delete("/consumers/bob/key-auth/k1").await.status, 204);
    assert_eq!(api.get("/key-auths/k1").await.status, 404);
    api.delete("/consumers/bob/key-auth/k1")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // Keys are URL-decoded path segments.
    let odd = api
        .post(
            "/consumers/bob/key-auth",
            &json!({"key": "with space+plus/slash"}),
        )
        .await
        .expect(201);
    assert_eq!(
        api.get("/key-auths/with%20space%2Bplus%2Fslash")
            .await
            .expect(200),
        odd
    );
    // A top-level DELETE of something missing stays 204.
    assert_eq!(api.delete("/key-auths/never-was").await.status, 204);
}

async fn case_jwt(api: &AdminApi) {
    let bob = api
        .post("/consumers", &json!({"username": "bob"}))
        .await
        .expect(201);
    let cred = api.post("/consumers/bob/jwt", &json!({})).await.expect(201);
    assert_eq!(cred["algorithm"], "HS256");
    assert_eq!(cred["consumer"], json!({"id": bob["id"]}));
    assert_eq!(cred["rsa_public_key"], Value::Null);
    assert_eq!(cred["tags"], Value::Null);
    assert_timestamp(&cred["created_at"]);
    let key = cred["key"].as_str().expect("generated key").to_owned();
    let secret = cred["secret"]
        .as_str()
        .expect("generated secret")
        .to_owned();
    for s in [&key, &secret] {
        assert_eq!(s.len(), 32, "{s}");
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
    }
    assert_ne!(key, secret);

    assert_eq!(api.get(&format!("/jwts/{key}")).await.expect(200), cred);
    assert_eq!(
        api.get(&format!("/jwts/{key}/consumer")).await.expect(200),
        bob
    );
    assert_eq!(
        api.get(&format!("/consumers/bob/jwt/{key}"))
            .await
            .expect(200),
        cred
    );

    // Chosen key and secret; duplicate key 409.
    let mine = api
        .form(
            Method::POST,
            "/consumers/bob/jwt",
            &[
                ("key", "iss-1"),
                ("secret", "s3cr3t"),
                ("algorithm", "HS512"),
            ],
        )
        .await
        .expect(201);
    assert_eq!(
        (&mine["key"], &mine["secret"], &mine["algorithm"]),
        (&json!("iss-1"), &json!("s3cr3t"), &json!("HS512"))
    );
    let dup = api
        .post("/consumers/bob/jwt", &json!({"key": "iss-1"}))
        .await;
    assert_eq!(dup.status, 409, "{}", dup.body);
    assert_eq!(dup["fields"], json!({"key": "iss-1"}));

    // Asymmetric algorithms take a PEM public key.
    let pem = rcgen::KeyPair::generate().unwrap().public_key_pem();
    let es = api
        .post(
            "/consumers/bob/jwt",
            &json!({"algorithm": "ES256", "key": "es-iss", "rsa_public_key": pem}),
        )
        .await
        .expect(201);
    assert_eq!(es["rsa_public_key"], json!(pem));
    api.post(
        "/consumers/bob/jwt",
        &json!({"algorithm": "RS256", "rsa_public_key": "not a key"}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": "schema violation (rsa_public_key: invalid key)",
                "fields": {"rsa_public_key": "invalid key"}}),
    );
    // RS256 needs a public key.
    api.post("/consumers/bob/jwt", &json!({"algorithm": "RS256"}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "2 schema violations (failed conditional validation given value of field 'algorithm'; rsa_public_key: required field missing)",
                    "fields": {"@entity": ["failed conditional validation given value of field 'algorithm'"],
                               "rsa_public_key": "required field missing"}}),
        );
    let r = api
        .post("/consumers/bob/jwt", &json!({"algorithm": "HS1024"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r["fields"]["algorithm"]
            .as_str()
            .is_some_and(|m| m.starts_with("expected one of: HS256, HS384, HS512")),
        "{}",
        r.body
    );
    assert_eq!(api.list_all("/jwts").await.len(), 3);
}

async fn case_acls(api: &AdminApi) {
    let bob = api
        .post("/consumers", &json!({"username": "bob"}))
        .await
        .expect(201);
    let acl = api
        .post("/consumers/bob/acls", &json!({"group": "admins"}))
        .await
        .expect(201);
    assert_eq!(acl["group"], "admins");
    assert_eq!(acl["consumer"], json!({"id": bob["id"]}));
    assert_eq!(acl["tags"], Value::Null);
    let r = api
        .post("/consumers/bob/acls", &json!({"group": "admins"}))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r["code"], 5);
    api.form(Method::POST, "/consumers/bob/acls", &[("group", "ops")])
        .await
        .expect(201);
    api.post("/consumers/bob/acls", &json!({}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (group: required field missing)",
                    "fields": {"group": "required field missing"}}),
        );

    assert_eq!(api.list_all("/acls").await.len(), 2);
    assert_eq!(api.list_all("/consumers/bob/acls").await.len(), 2);
    let id = acl["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/acls/{id}")).await.expect(200), acl);
    assert_eq!(
        api.get(&format!("/acls/{id}/consumer")).await.expect(200),
        bob
    );
    assert_eq!(api.get("/consumers/bob/acls/admins").await.expect(200), acl);
    assert_eq!(api.delete(&format!("/acls/{id}")).await.status, 204);
    assert_eq!(api.list_all("/acls").await.len(), 1);
}

async fn case_ca_certificates(api: &AdminApi) {
    let pem = ca_pem("ca.test");
    let ca = api
        .post("/ca_certificates", &json!({"cert": pem, "tags": ["ca"]}))
        .await
        .expect(201);
    assert!(is_uuid(&ca["id"]));
    assert_eq!(ca["cert"], json!(pem));
    assert_eq!(ca["tags"], json!(["ca"]));
    assert_timestamp(&ca["created_at"]);
    // Kong stores the SHA-256 of the certificate (hex) as the unique `cert_digest`.
    let digest = ca["cert_digest"].as_str().expect("cert_digest").to_owned();
    assert_eq!(digest.len(), 64, "{digest}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));

    let id = ca["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/ca_certificates/{id}")).await.expect(200),
        ca
    );
    assert_eq!(api.list_all("/ca_certificates").await, vec![ca.clone()]);

    // The same certificate twice: a unique violation on the digest.
    api.post("/ca_certificates", &json!({"cert": pem}))
        .await
        .expect_json(
            409,
            &json!({"code": 5, "name": "unique constraint violation",
                    "message": format!("UNIQUE violation detected on '{{cert_digest=\"{digest}\"}}'"),
                    "fields": {"cert_digest": digest}}),
        );
    // Not a certificate.
    let r = api
        .post("/ca_certificates", &json!({"cert": "not a pem"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r["code"], 2);
    assert!(r["fields"]["cert"].is_string(), "{}", r.body);
    api.post("/ca_certificates", &json!({})).await.expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (cert: required field missing)",
                    "fields": {"cert": "required field missing"}}),
    );

    // A service may reference it.
    let svc = api
        .post(
            "/services",
            &json!({"name": "tls", "url": "https://x.test", "ca_certificates": [id], "tls_verify": true}),
        )
        .await
        .expect(201);
    assert_eq!(svc["ca_certificates"], json!([id]));
    // A second, different CA.
    let other = api
        .post("/ca_certificates", &json!({"cert": ca_pem("other.test")}))
        .await
        .expect(201);
    assert_ne!(other["cert_digest"], ca["cert_digest"]);
    // PUT keeps the digest in step with the certificate.
    let oid = other["id"].as_str().unwrap();
    let replaced = api
        .put(&format!("/ca_certificates/{oid}"), &json!({"cert": pem}))
        .await;
    assert_eq!(
        replaced.status, 409,
        "same cert as another row: {}",
        replaced.body
    );
    assert_eq!(
        api.delete(&format!("/ca_certificates/{oid}")).await.status,
        204
    );
    assert_eq!(api.list_all("/ca_certificates").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Upstreams and targets.

async fn case_targets(api: &AdminApi) {
    let up = api
        .post("/upstreams", &json!({"name": "up.test"}))
        .await
        .expect(201);
    let expected = json!({
        "name": "up.test",
        "algorithm": "round-robin",
        "hash_on": "none",
        "hash_fallback": "none",
        "hash_on_header": null,
        "hash_fallback_header": null,
        "hash_on_cookie": null,
        "hash_on_cookie_path": "/",
        "hash_on_query_arg": null,
        "hash_fallback_query_arg": null,
        "hash_on_uri_capture": null,
        "hash_fallback_uri_capture": null,
        "slots": 10000,
        "healthchecks": {
            "threshold": 0,
            "active": {
                "type": "http",
                "timeout": 1,
                "concurrency": 10,
                "http_path": "/",
                "https_sni": null,
                "https_verify_certificate": true,
                "headers": null,
                "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
                "unhealthy": {"interval": 0,
                              "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                              "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
            },
            "passive": {
                "type": "http",
                "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                              300, 301, 302, 303, 304, 305, 306, 307, 308],
                            "successes": 0},
                "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0,
                              "timeouts": 0, "http_failures": 0},
            },
        },
        "host_header": null,
        "client_certificate": null,
        "use_srv_name": false,
        "tags": null,
    });
    // Exactly Kong's defaults; number fields print like Kong's (`1`, not `1.0`).
    assert_eq!(
        up,
        with_generated(expected, &up, &["id", "created_at", "updated_at"])
    );
    let up_id = up["id"].as_str().unwrap().to_owned();
    api.post("/upstreams", &json!({"name": "other.test"}))
        .await
        .expect(201);

    // The port defaults to 8000 and the target is stored normalized.
    let t1 = api
        .post("/upstreams/up.test/targets", &json!({"target": "10.0.0.1"}))
        .await
        .expect(201);
    assert_eq!(t1["target"], "10.0.0.1:8000");
    assert_eq!(t1["weight"], 100);
    assert_eq!(t1["upstream"], json!({"id": up_id}));
    assert_eq!(t1["tags"], Value::Null);
    // Targets' timestamps are seconds with milliseconds.
    let created = t1["created_at"].as_f64().expect("numeric created_at");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - created).abs() < 120.0, "{created}");
    assert_eq!(t1["updated_at"], t1["created_at"]);
    let t2 = api
        .form(
            Method::POST,
            "/upstreams/up.test/targets",
            &[("target", "10.0.0.2:81"), ("weight", "5")],
        )
        .await
        .expect(201);
    assert_eq!(t2["weight"], 5);
    let t3 = api
        .post(
            &format!("/upstreams/{up_id}/targets"),
            &json!({"target": "[::1]"}),
        )
        .await
        .expect(201);
    assert_eq!(t3["target"], "[::1]:8000");

    // The same target twice (with or without the default port): 409.
    for again in ["10.0.0.1:8000", "10.0.0.1"] {
        api.post("/upstreams/up.test/targets", &json!({"target": again}))
            .await
            .expect_json(
                409,
                &json!({"code": 5, "name": "unique constraint violation",
                        "message": format!("UNIQUE violation detected on '{{target=\"10.0.0.1:8000\",upstream={{id=\"{up_id}\"}}}}'"),
                        "fields": {"target": "10.0.0.1:8000", "upstream": {"id": up_id}}}),
            );
    }
    // The same target in another upstream is fine.
    api.post(
        "/upstreams/other.test/targets",
        &json!({"target": "10.0.0.1"}),
    )
    .await
    .expect(201);
    let r = api
        .post(
            "/upstreams/up.test/targets",
            &json!({"target": "not a host!"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r["fields"]["target"].is_string(), "{}", r.body);

    // Lookups by host:port (normalized), by id.
    assert_eq!(
        api.get("/upstreams/up.test/targets/10.0.0.1:8000")
            .await
            .expect(200),
        t1
    );
    assert_eq!(
        api.get("/upstreams/up.test/targets/10.0.0.1")
            .await
            .expect(200),
        t1
    );
    let t1_id = t1["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/upstreams/up.test/targets/{t1_id}"))
            .await
            .expect(200),
        t1
    );
    api.get(&format!("/upstreams/other.test/targets/{t1_id}"))
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // IPv6 targets by their bracketed address, raw or percent-encoded.
    for key in ["[::1]:8000", "%5B%3A%3A1%5D%3A8000", "[::1]"] {
        assert_eq!(
            api.get(&format!("/upstreams/up.test/targets/{key}"))
                .await
                .expect(200),
            t3,
            "{key}"
        );
    }
    let body = api.get("/upstreams/up.test/targets").await.expect(200);
    assert_eq!(data_ids(&body), ids(&[t1.clone(), t2.clone(), t3.clone()]));
    let body = api.get("/upstreams/up.test/targets/all").await.expect(200);
    assert_eq!(data_ids(&body), ids(&[t1.clone(), t2.clone(), t3.clone()]));

    // PUT on a target behaves like PATCH: the target must exist.
    api.put(
        "/upstreams/up.test/targets/10.9.9.9:80",
        &json!({"weight": 1}),
    )
    .await
    .expect_json(404, &json!({"message": "Not found"}));
    let t1b = api
        .put(
            "/upstreams/up.test/targets/10.0.0.1:8000",
            &json!({"weight": 7}),
        )
        .await
        .expect(200);
    assert_eq!(t1b["weight"], 7);
    assert_eq!(t1b["id"], t1["id"]);
    assert_eq!(t1b["target"], "10.0.0.1:8000");
    let t1c = api
        .patch("/upstreams/up.test/targets/10.0.0.1", &json!({"weight": 0}))
        .await
        .expect(200);
    assert_eq!(t1c["weight"], 0);

    // Delete by host:port.
    assert_eq!(
        api.delete("/upstreams/up.test/targets/10.0.0.2:81")
            .await
            .status,
        204
    );
    assert_eq!(api.list_all("/upstreams/up.test/targets").await.len(), 2);
    api.delete("/upstreams/up.test/targets/10.0.0.2:81")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    // Changing a target's address onto another one's: 409.
    let r = api
        .patch(
            "/upstreams/up.test/targets/10.0.0.1:8000",
            &json!({"target": "[::1]:8000"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Unknown upstream: 404.
    api.post(
        "/upstreams/nope.test/targets",
        &json!({"target": "10.0.0.1"}),
    )
    .await
    .expect_json(404, &json!({"message": "Not found"}));
}

/// Poll `/upstreams/{u}/health` until the target's `health` is `want` and the balancer reports
/// its addresses (bounded).
async fn wait_health(api: &AdminApi, upstream: &str, target: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = api
            .get(&format!("/upstreams/{upstream}/health"))
            .await
            .expect(200);
        let row = body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|r| r["target"] == target)
            .cloned();
        let resolved = |r: &Value| {
            r["data"]["addresses"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        };
        if row
            .as_ref()
            .is_some_and(|r| r["health"] == want && resolved(r))
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{target} not {want} within 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn case_target_health(api: &AdminApi) {
    let echo = Echo::start("hc").await;
    let target = echo.authority();
    api.post("/upstreams", &json!({"name": "hc.test"}))
        .await
        .expect(201);
    api.post("/upstreams/hc.test/targets", &json!({"target": target}))
        .await
        .expect(201);

    api.post("/services", &json!({"name": "hc", "host": "hc.test"}))
        .await
        .expect(201);
    api.post("/services/hc/routes", &json!({"paths": ["/hc"]}))
        .await
        .expect(201);
    wait_proxy(api, "/hc", 200).await;

    // Health checks are off: the balancer reports HEALTHCHECKS_OFF once it has the target.
    let body = wait_health(api, "hc.test", &target, "HEALTHCHECKS_OFF").await;
    assert_eq!(body["next"], Value::Null);
    assert!(is_uuid(&body["node_id"]), "{body}");
    let row = &body["data"][0];
    assert_eq!(row["target"], json!(target));
    assert_eq!(row["weight"], 100);
    let addr = &row["data"]["addresses"][0];
    assert_eq!(addr["ip"], "127.0.0.1");
    assert_eq!(addr["port"], echo.addr.port());
    assert_eq!(addr["health"], "HEALTHCHECKS_OFF");

    // Manual override: 204, then the balancer says UNHEALTHY.
    let r = api
        .raw(
            Method::PUT,
            &format!("/upstreams/hc.test/targets/{target}/unhealthy"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.body, Value::Null);
    wait_health(api, "hc.test", &target, "UNHEALTHY").await;
    // The override outlives a republished configuration (an unrelated write). DB-less
    // `/status` shows when the data plane has republished: its configuration_hash changes.
    if api.backend == Backend::Memory {
        let hash = |s: Value| s["configuration_hash"].clone();
        let before = hash(api.get("/status").await.expect(200));
        api.post("/consumers", &json!({"username": "unrelated"}))
            .await
            .expect(201);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hash(api.get("/status").await.expect(200)) == before {
            assert!(tokio::time::Instant::now() < deadline, "no republish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    wait_health(api, "hc.test", &target, "UNHEALTHY").await;
    let body = api
        .get("/upstreams/hc.test/health?balancer_health=1")
        .await
        .expect(200);
    assert_eq!(body["data"]["health"], "UNHEALTHY", "{body}");
    // The proxy has no target left to pick.
    wait_proxy(api, "/hc", 503).await;

    // And back.
    let r = api
        .raw(
            Method::PUT,
            &format!("/upstreams/hc.test/targets/{target}/healthy"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_health(api, "hc.test", &target, "HEALTHCHECKS_OFF").await;
    wait_proxy(api, "/hc", 200).await;

    // An override sent right after the target was created (before the data plane has the
    // new configuration) is not lost.
    let second = Echo::start("hc2").await;
    let target2 = second.authority();
    api.post("/upstreams/hc.test/targets", &json!({"target": target2}))
        .await
        .expect(201);
    let r = api
        .raw(
            Method::PUT,
            &format!("/upstreams/hc.test/targets/{target2}/unhealthy"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_health(api, "hc.test", &target2, "UNHEALTHY").await;

    // Unknown target or upstream: 404.
    api.raw(
        Method::PUT,
        "/upstreams/hc.test/targets/10.9.9.9:1/unhealthy",
        None,
        Vec::new(),
    )
    .await
    .expect_json(404, &json!({"message": "Not found"}));
    api.get("/upstreams/nope.test/health")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
}

async fn case_cascades(api: &AdminApi) {
    // Deleting a consumer deletes its credentials.
    api.post("/consumers", &json!({"username": "bob"}))
        .await
        .expect(201);
    api.post("/consumers", &json!({"username": "keep"}))
        .await
        .expect(201);
    api.post("/consumers/bob/key-auth", &json!({"key": "bob-key"}))
        .await
        .expect(201);
    api.post("/consumers/bob/jwt", &json!({"key": "bob-iss"}))
        .await
        .expect(201);
    api.post("/consumers/bob/acls", &json!({"group": "g"}))
        .await
        .expect(201);
    let kept = api
        .post("/consumers/keep/key-auth", &json!({"key": "keep-key"}))
        .await
        .expect(201);
    assert_eq!(api.delete("/consumers/bob").await.status, 204);
    assert_eq!(api.get("/consumers/bob").await.status, 404);
    assert_eq!(api.get("/key-auths/bob-key").await.status, 404);
    assert_eq!(api.get("/jwts/bob-iss").await.status, 404);
    assert_eq!(api.list_all("/key-auths").await, vec![kept]);
    assert_eq!(api.list_all("/jwts").await, Vec::<Value>::new());
    assert_eq!(api.list_all("/acls").await, Vec::<Value>::new());
    // The key is free again.
    api.post("/consumers/keep/key-auth", &json!({"key": "bob-key"}))
        .await
        .expect(201);

    // Deleting an upstream deletes its targets.
    api.post("/upstreams", &json!({"name": "up.test"}))
        .await
        .expect(201);
    for t in ["10.0.0.1:80", "10.0.0.2:80"] {
        api.post("/upstreams/up.test/targets", &json!({"target": t}))
            .await
            .expect(201);
    }
    assert_eq!(api.delete("/upstreams/up.test").await.status, 204);
    api.get("/upstreams/up.test/targets")
        .await
        .expect_json(404, &json!({"message": "Not found"}));
    api.post("/upstreams", &json!({"name": "up.test"}))
        .await
        .expect(201);
    api.get("/upstreams/up.test/targets")
        .await
        .expect_json(200, &json!({"data": [], "next": null, "total": 0}));
    // The same targets can be added again.
    api.post(
        "/upstreams/up.test/targets",
        &json!({"target": "10.0.0.1:80"}),
    )
    .await
    .expect(201);
}

async fn case_tags_endpoint(api: &AdminApi) {
    let svc = api
        .post(
            "/services",
            &json!({"name": "svc", "host": "x.test", "tags": ["t1", "t2"]}),
        )
        .await
        .expect(201);
    let bob = api
        .post("/consumers", &json!({"username": "bob", "tags": ["t1"]}))
        .await
        .expect(201);
    api.post("/consumers", &json!({"username": "untagged"}))
        .await
        .expect(201);
    let row = |name: &str, e: &Value, tag: &str| json!({"entity_name": name, "entity_id": e["id"], "tag": tag});
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|r| r.to_string());
        v
    };

    let all = api.list_all("/tags").await;
    assert_eq!(
        sorted(all),
        sorted(vec![
            row("services", &svc, "t1"),
            row("services", &svc, "t2"),
            row("consumers", &bob, "t1"),
        ])
    );
    // Paging through /tags: each row once.
    let paged = api.list_all("/tags?size=1").await;
    assert_eq!(paged.len(), 3);
    assert_eq!(
        sorted(paged),
        sorted(vec![
            row("services", &svc, "t1"),
            row("services", &svc, "t2"),
            row("consumers", &bob, "t1"),
        ])
    );
    let t1 = api.list_all("/tags/t1").await;
    assert_eq!(
        sorted(t1),
        sorted(vec![
            row("services", &svc, "t1"),
            row("consumers", &bob, "t1")
        ])
    );
    assert_eq!(api.list_all("/tags/none").await, Vec::<Value>::new());
    // Tags follow updates and deletes.
    api.patch("/services/svc", &json!({"tags": ["t3"]}))
        .await
        .expect(200);
    assert_eq!(
        api.list_all("/tags/t3").await,
        vec![row("services", &svc, "t3")]
    );
    assert_eq!(api.delete("/consumers/bob").await.status, 204);
    assert_eq!(api.list_all("/tags/t1").await, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// /config (DB-less).

async fn case_declarative_config(api: &AdminApi) {
    if api.backend == Backend::Postgres {
        api.post("/config", &json!({"_format_version": "3.0"}))
            .await
            .expect_json(
                400,
                &json!({"message": "this endpoint is only available when Kong is configured to not use a database"}),
            );
        return;
    }
    let echo = Echo::start("cfg").await;
    let hash = |api: &AdminApi| {
        let api = api.clone();
        async move {
            let status = api.get("/status").await.expect(200);
            let h = status["configuration_hash"]
                .as_str()
                .expect("configuration_hash in DB-less mode")
                .to_owned();
            assert_eq!(h.len(), 32);
            h
        }
    };
    let hash0 = hash(api).await;

    // JSON: the document itself.
    let doc = json!({
        "_format_version": "3.0",
        "services": [{"name": "from-json", "url": echo.url(),
                      "routes": [{"name": "json-route", "paths": ["/json"]}]}],
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]}],
    });
    let flat = api.post("/config", &doc).await.expect(201);
    // The answer maps entity kinds to entities by id.
    let services = flat["services"].as_object().expect("services map");
    assert_eq!(services.len(), 1);
    let (sid, s) = services.iter().next().unwrap();
    assert_eq!(s["id"], json!(sid));
    assert_eq!(s["name"], "from-json");
    assert_eq!(flat["routes"].as_object().unwrap().len(), 1);
    assert_eq!(flat["keyauth_credentials"].as_object().unwrap().len(), 1);
    // GET lists what was loaded.
    let listed = api.list_all("/services").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "from-json");
    assert_eq!(
        api.get("/key-auths/alice-key/consumer").await.expect(200)["username"],
        "alice"
    );
    // The data plane picks the new configuration up (bounded wait) ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hash(api).await == hash0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "configuration_hash did not change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and routes traffic.
    let body = wait_proxy(api, "/json", 200).await;
    assert!(body.contains("\"instance\":\"cfg\""), "{body}");

    // YAML, raw.
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: from-yaml\n    url: {}\n    routes:\n      - name: yaml-route\n        paths: [\"/yaml\"]\n",
        echo.url()
    );
    let flat = api
        .raw(
            Method::POST,
            "/config",
            Some("application/yaml"),
            yaml.clone(),
        )
        .await
        .expect(201);
    assert_eq!(flat["services"].as_object().unwrap().len(), 1);
    let listed = api.list_all("/services").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "from-yaml");
    assert_eq!(api.list_all("/consumers").await, Vec::<Value>::new());
    wait_proxy(api, "/yaml", 200).await;
    wait_proxy(api, "/json", 404).await;
    // The hash is the MD5 of the configuration text (what `check_hash` compares).
    let loaded_hash = hash(api).await;
    assert_eq!(loaded_hash, md5_hex(&yaml));

    // check_hash=1 with the same text: 304, nothing reloaded.
    let r = api
        .raw(
            Method::POST,
            "/config?check_hash=1",
            Some("application/yaml"),
            yaml.clone(),
        )
        .await;
    assert_eq!(r.status, 304, "{}", r.body);
    assert_eq!(hash(api).await, loaded_hash);
    // The same text as a form field has the same hash.
    let r = api
        .form(
            Method::POST,
            "/config?check_hash=1",
            &[("config", yaml.as_str())],
        )
        .await;
    assert_eq!(r.status, 304, "{}", r.body);

    // Form `config=` (the `http :8001/config config=@kong.yml` idiom), with a different text.
    let form_yaml = yaml.replace("from-yaml", "from-form");
    let flat = api
        .form(
            Method::POST,
            "/config?check_hash=1",
            &[("config", form_yaml.as_str())],
        )
        .await
        .expect(201);
    assert_eq!(flat["services"].as_object().unwrap().len(), 1);
    assert_eq!(api.list_all("/services").await[0]["name"], "from-form");
    // Multipart `config=`.
    let mp_yaml = yaml.replace("from-yaml", "from-multipart");
    api.multipart(Method::POST, "/config", &[("config", mp_yaml.as_str())])
        .await
        .expect(201);
    assert_eq!(api.list_all("/services").await[0]["name"], "from-multipart");
    // JSON with the text in `config`.
    let json_yaml = yaml.replace("from-yaml", "from-json-field");
    api.post("/config", &json!({"config": json_yaml}))
        .await
        .expect(201);
    let before = api.list_all("/services").await;
    assert_eq!(before[0]["name"], "from-json-field");
    let before_hash = md5_hex(&json_yaml);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hash(api).await != before_hash {
        assert!(
            tokio::time::Instant::now() < deadline,
            "configuration_hash is not the loaded text's"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Invalid: 400 code 14, nothing changed.
    let r = api
        .post(
            "/config",
            &json!({"_format_version": "3.0", "services": [{"name": "no-host"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.content_type(), "application/json; charset=utf-8");
    assert_eq!(r["code"], 14);
    assert_eq!(r["name"], "invalid declarative configuration");
    assert_eq!(
        r["fields"],
        json!({"services": [{"host": "required field missing"}]}),
        "{}",
        r.body
    );
    assert_eq!(
        r["message"],
        "declarative config is invalid: {services={{host=\"required field missing\"}}}"
    );
    // `_format_version` is required.
    let r = api
        .post(
            "/config",
            &json!({"services": [{"name": "x", "host": "x.test"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r["code"], 14, "{}", r.body);
    // Unparseable: 400 with a message.
    let r = api
        .raw(
            Method::POST,
            "/config",
            Some("application/yaml"),
            "services: [\n  - {name: x",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.content_type(), "application/json; charset=utf-8");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("failed parsing declarative configuration")),
        "{}",
        r.body
    );
    // No configuration at all.
    api.raw(Method::POST, "/config", None, Vec::new())
        .await
        .expect_json(
            400,
            &json!({"message": "expected a declarative configuration"}),
        );
    assert_eq!(api.list_all("/services").await, before);
    assert_eq!(hash(api).await, before_hash);

    // GET /config: the current configuration as a YAML string.
    let cfg = api.get("/config").await.expect(200);
    let text = cfg["config"].as_str().expect("config string");
    let parsed: serde_yaml::Value = serde_yaml::from_str(text).expect("GET /config is YAML");
    assert_eq!(parsed["_format_version"], serde_yaml::Value::from("3.0"));
    assert!(text.contains("from-json-field"), "{text}");
    // ... which loads back unchanged.
    api.raw(
        Method::POST,
        "/config",
        Some("application/yaml"),
        text.to_owned(),
    )
    .await
    .expect(201);
    assert_eq!(api.list_all("/services").await, before);

    // An empty configuration clears everything.
    api.post("/config", &json!({"_format_version": "3.0"}))
        .await
        .expect(201);
    assert_eq!(api.list_all("/services").await, Vec::<Value>::new());
    assert_eq!(api.list_all("/routes").await, Vec::<Value>::new());
    wait_proxy(api, "/yaml", 404).await;
}

// ---------------------------------------------------------------------------------------------
// Node information, schemas.

async fn case_node_info_and_schemas(api: &AdminApi) {
    let r = api.get("/").await;
    assert_eq!(r.content_type(), "application/json; charset=utf-8");
    let info = r.expect(200);
    assert_eq!(info["tagline"], "Welcome to gwctl");
    assert_eq!(info["version"], "3.9.0");
    assert_eq!(info["edition"], "community");
    assert!(is_uuid(&info["node_id"]), "{info}");
    assert!(info["hostname"].is_string());
    assert!(info["plugins"]["available_on_server"].is_object(), "{info}");
    assert_eq!(info["plugins"]["enabled_in_cluster"], json!([]));
    assert_eq!(
        info["configuration"]["database"],
        match api.backend {
            Backend::Memory => "off",
            Backend::Postgres => "postgres",
        }
    );
    assert_eq!(
        info["configuration"]["router_flavor"],
        "traditional_compatible"
    );
    assert!(info["timers"].is_object());
    assert!(info["pids"]["master"].is_number());

    let status = api.get("/status").await.expect(200);
    assert!(status["server"]["total_requests"].is_number(), "{status}");
    assert!(status["server"]["connections_active"].is_number());
    match api.backend {
        Backend::Memory => {
            assert!(status.get("database").is_none(), "{status}");
            assert!(status["configuration_hash"].is_string(), "{status}");
        }
        Backend::Postgres => {
            assert_eq!(status["database"]["reachable"], true, "{status}");
        }
    }
    // /plugins/enabled and GET /'s available_on_server name the same plugins, with priorities.
    let enabled = api.get("/plugins/enabled").await.expect(200);
    let available = info["plugins"]["available_on_server"]
        .as_object()
        .expect("available_on_server");
    let mut names: Vec<&String> = available.keys().collect();
    names.sort();
    assert_eq!(enabled["enabled_plugins"], json!(names), "{info}");
    assert_eq!(
        available["correlation-id"]["priority"], 100_001,
        "{available:?}"
    );

    // Every endpoint template.
    let endpoints = api.get("/endpoints").await.expect(200);
    let list: Vec<&str> = endpoints["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for e in [
        "/services",
        "/services/{services}",
        "/services/{services}/routes",
        "/consumers/{consumers}/key-auth",
        "/upstreams/{upstreams}/targets",
        "/upstreams/{upstreams}/health",
    ] {
        assert!(list.contains(&e), "{e} missing from {list:?}");
    }

    // Entity schemas.
    let schema = api.get("/schemas/services").await.expect(200);
    let fields = schema["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find_map(|f| f.get(name))
            .unwrap_or_else(|| panic!("no field {name} in {schema}"))
            .clone()
    };
    assert_eq!(field("host")["type"], "string");
    assert_eq!(field("host")["required"], true);
    assert_eq!(field("port")["default"], 80);
    assert_eq!(field("retries")["default"], 5);
    assert_eq!(field("protocol")["default"], "http");
    assert!(api.get("/schemas/routes").await.expect(200)["fields"].is_array());
    api.get("/schemas/nope")
        .await
        .expect_json(404, &json!({"message": "No entity named 'nope'"}));

    // A plugin this node does not have (Kong's Lua plugins never are).
    api.get("/schemas/plugins/post-function")
        .await
        .expect_json(404, &json!({"message": "No plugin named 'post-function'"}));
    let msg = "plugin 'post-function' not enabled; add it to the 'plugins' configuration property";
    api.post(
        "/schemas/plugins/validate",
        &json!({"name": "post-function"}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                    "message": format!("schema violation (name: {msg})"),
                    "fields": {"name": msg}}),
    );

    // Validation without writing.
    api.post("/schemas/routes/validate", &json!({"paths": ["/v"]}))
        .await
        .expect_json(200, &json!({"message": "schema validation successful"}));
    api.post("/schemas/routes/validate", &json!({"paths": ["v"]}))
        .await
        .expect(400);
    api.post("/schemas/services/validate", &json!({"name": "x"}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (host: required field missing)",
                    "fields": {"host": "required field missing"}}),
        );
    assert_eq!(api.list_all("/routes").await, Vec::<Value>::new());
    assert_eq!(api.list_all("/services").await, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// Errors.

async fn case_http_errors(api: &AdminApi) {
    let not_found = json!({"message": "Not found"});
    let not_allowed = json!({"message": "Method not allowed"});
    api.get("/nope").await.expect_json(404, &not_found);
    api.get("/services/x/nope")
        .await
        .expect_json(404, &not_found);
    api.get("/services/x/routes/y/z")
        .await
        .expect_json(404, &not_found);
    api.get("/services/nope").await.expect_json(404, &not_found);

    api.delete("/services").await.expect_json(405, &not_allowed);
    api.send(api.request(Method::PUT, "/consumers"))
        .await
        .expect_json(405, &not_allowed);
    api.post("/status", &json!({}))
        .await
        .expect_json(405, &not_allowed);
    api.post("/", &json!({}))
        .await
        .expect_json(405, &not_allowed);

    // Bodies.
    api.raw(
        Method::POST,
        "/services",
        Some("application/json"),
        "{\"name\": \"svc\",",
    )
    .await
    .expect_json(400, &json!({"message": "Cannot parse JSON body"}));
    api.raw(
        Method::POST,
        "/services",
        Some("application/json"),
        "[1, 2]",
    )
    .await
    .expect_json(400, &json!({"message": "Cannot parse JSON body"}));
    let r = api
        .raw(
            Method::POST,
            "/services",
            Some("text/csv"),
            "name,host\nsvc,x.test\n",
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(r.body, Value::Null, "415 has an empty body");
    // Two Content-Type headers: 400.
    let r = api
        .send(
            api.request(Method::POST, "/services")
                .header("content-type", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("{\"host\": \"x.test\"}"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.content_type(), "application/json; charset=utf-8");
    assert!(r["message"].is_string(), "{}", r.body);
    // Form arrays are never split on commas: one (invalid) host.
    let r = api
        .form(Method::POST, "/routes", &[("hosts", "a.com,b.com")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r["code"], 2);
    assert!(r["fields"]["hosts"][0].is_string(), "{}", r.body);
    // YAML is only for /config.
    let r = api
        .raw(
            Method::POST,
            "/services",
            Some("application/yaml"),
            "host: x.test\n",
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.body);

    // Unknown fields and wrong types (JSON is not coerced).
    api.post("/services", &json!({"host": "x.test", "foo": 1}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (foo: unknown field)",
                    "fields": {"foo": "unknown field"}}),
        );
    api.post(
        "/services",
        &json!({"host": "x.test", "port": "8080", "enabled": "yes", "tags": "t",
                "retries": 1.5, "name": 7}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": "5 schema violations (enabled: expected a boolean; name: expected a string; port: expected an integer; retries: expected an integer; tags: expected a set)",
                "fields": {"enabled": "expected a boolean", "name": "expected a string",
                           "port": "expected an integer", "retries": "expected an integer",
                           "tags": "expected a set"}}),
    );
    api.post("/routes", &json!({"paths": "/x", "headers": ["a"]}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "2 schema violations (headers: expected a map; paths: expected an array)",
                    "fields": {"headers": "expected a map", "paths": "expected an array"}}),
        );
    // Form values that do not coerce.
    api.form(
        Method::POST,
        "/services",
        &[("host", "x.test"), ("port", "eighty")],
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": "schema violation (port: expected an integer)",
                "fields": {"port": "expected an integer"}}),
    );
    // Array element errors name the element (1-based in the message).
    api.post("/routes", &json!({"paths": ["/ok", "bad"]}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (paths.2: should start with: / (fixed path) or ~/ (regex path))",
                    "fields": {"paths": [null, "should start with: / (fixed path) or ~/ (regex path)"]}}),
        );
    assert_eq!(api.list_all("/services").await, Vec::<Value>::new());
    assert_eq!(api.list_all("/routes").await, Vec::<Value>::new());
}

async fn case_body_too_large(api: &AdminApi) {
    let svc = api
        .post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);
    // 20 MB of JSON. Sent raw: the gateway may answer before reading it all.
    let padding = "x".repeat(20 * 1024 * 1024);
    let body = format!("{{\"name\":\"big\",\"host\":\"x.test\",\"tags\":[\"{padding}\"]}}");
    let mut request = format!(
        "POST /services HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        api.addr,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    let resp = crate::support::raw::exchange(api.addr, &request).await;
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let msg: Value = serde_json::from_slice(&resp.body).expect("JSON 413 body");
    assert!(msg["message"].is_string(), "{msg}");
    // Nothing was created, and the API still answers.
    assert_eq!(api.list_all("/services").await, vec![svc.clone()]);
    // Also through PATCH.
    let patch = format!("{{\"tags\":[\"{padding}\"]}}");
    let mut request = format!(
        "PATCH /services/svc HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        api.addr,
        patch.len()
    )
    .into_bytes();
    request.extend_from_slice(patch.as_bytes());
    let resp = crate::support::raw::exchange(api.addr, &request).await;
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(api.list_all("/services").await, vec![svc]);

    // Kong's admin accepts up to 10 MiB (nginx_admin_client_max_body_size): 9 MiB is fine.
    let tag = "t".repeat(9 * 1024 * 1024);
    let big = api
        .post(
            "/services",
            &json!({"name": "big", "host": "x.test", "tags": [tag]}),
        )
        .await
        .expect(201);
    assert_eq!(big["tags"][0].as_str().map(str::len), Some(9 * 1024 * 1024));
    assert_eq!(api.delete("/services/big").await.status, 204);
}

async fn case_foreign_references(api: &AdminApi) {
    let svc = api
        .post("/services", &json!({"name": "svc", "host": "x.test"}))
        .await
        .expect(201);

    // A reference to nothing: code 4.
    let ghost = uuid::Uuid::new_v4().to_string();
    api.post(
        "/routes",
        &json!({"paths": ["/g"], "service": {"id": ghost}}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 4, "name": "foreign key violation",
                "message": format!("the foreign key '{{id=\"{ghost}\"}}' does not reference an existing 'services' entity."),
                "fields": {"service": {"id": ghost}}}),
    );
    // Same through form's dotted keys.
    let r = api
        .form(
            Method::POST,
            "/routes",
            &[("paths", "/g"), ("service.id", ghost.as_str())],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r["code"], 4);
    // A malformed id: a schema violation on the reference.
    api.post(
        "/routes",
        &json!({"paths": ["/g"], "service": {"id": "nope"}}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                    "message": "schema violation (service.id: expected a valid UUID)",
                    "fields": {"service": {"id": "expected a valid UUID"}}}),
    );

    // By the referenced entity's name.
    let r1 = api
        .post(
            "/routes",
            &json!({"name": "by-name", "paths": ["/n"], "service": {"name": "svc"}}),
        )
        .await
        .expect(201);
    assert_eq!(r1["service"], json!({"id": svc["id"]}));
    let r2 = api
        .form(
            Method::POST,
            "/routes",
            &[
                ("name", "by-form-name"),
                ("paths", "/f"),
                ("service.name", "svc"),
            ],
        )
        .await
        .expect(201);
    assert_eq!(r2["service"], json!({"id": svc["id"]}));
    // Credentials by consumer username.
    let bob = api
        .post("/consumers", &json!({"username": "bob"}))
        .await
        .expect(201);
    let cred = api
        .post(
            "/key-auths",
            &json!({"key": "k", "consumer": {"username": "bob"}}),
        )
        .await
        .expect(201);
    assert_eq!(cred["consumer"], json!({"id": bob["id"]}));

    // An unresolvable name: code 13.
    let msg = "the foreign key cannot be resolved with '{name=\"nope\"}' for an existing 'services' entity";
    api.post(
        "/routes",
        &json!({"paths": ["/u"], "service": {"name": "nope"}}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 13, "name": "foreign keys unresolved",
                "message": format!("foreign key unresolved (service.name: {msg})"),
                "fields": {"service": {"name": msg}}}),
    );
    let body = api.get("/routes").await.expect(200);
    assert_eq!(data_ids(&body), ids(&[r1, r2]));
}

async fn case_bad_input_loses_nothing(api: &AdminApi) {
    // A populated store.
    api.post(
        "/services",
        &json!({"name": "svc", "host": "x.test", "tags": ["keep"]}),
    )
    .await
    .expect(201);
    api.post(
        "/services/svc/routes",
        &json!({"name": "r", "paths": ["/r"]}),
    )
    .await
    .expect(201);
    api.post("/consumers", &json!({"username": "bob", "custom_id": "b"}))
        .await
        .expect(201);
    api.post("/consumers/bob/key-auth", &json!({"key": "bob-key"}))
        .await
        .expect(201);
    api.post("/upstreams", &json!({"name": "up.test"}))
        .await
        .expect(201);
    api.post(
        "/upstreams/up.test/targets",
        &json!({"target": "10.0.0.1:80"}),
    )
    .await
    .expect(201);
    let collections = [
        "/services",
        "/routes",
        "/consumers",
        "/key-auths",
        "/upstreams",
        "/upstreams/up.test/targets",
        "/plugins",
    ];
    let mut before = Vec::new();
    for c in collections {
        before.push(api.list_all(c).await);
    }

    let ghost = uuid::Uuid::new_v4().to_string();
    let attempts: Vec<(Method, &str, Option<&str>, String)> = vec![
        (
            Method::POST,
            "/services",
            Some("application/json"),
            "{".into(),
        ),
        (
            Method::POST,
            "/services",
            Some("application/json"),
            json!({"name": "svc", "host": "y"}).to_string(),
        ),
        (
            Method::POST,
            "/services",
            Some("application/json"),
            json!({"name": "n"}).to_string(),
        ),
        (
            Method::PUT,
            "/services/svc",
            Some("application/json"),
            json!({"port": 1}).to_string(),
        ),
        (
            Method::PATCH,
            "/services/svc",
            Some("application/json"),
            json!({"port": -1}).to_string(),
        ),
        (
            Method::PATCH,
            "/services/svc",
            Some("application/json"),
            json!({"unknown": 1}).to_string(),
        ),
        (
            Method::PATCH,
            "/services/svc",
            Some("text/csv"),
            "a,b".into(),
        ),
        (Method::DELETE, "/services/svc", None, String::new()),
        (
            Method::POST,
            "/routes",
            Some("application/json"),
            json!({"paths": ["/x"], "service": {"id": ghost}}).to_string(),
        ),
        (
            Method::POST,
            "/routes",
            Some("application/json"),
            json!({"paths": ["/x"], "service": {"name": "nope"}}).to_string(),
        ),
        (
            Method::PATCH,
            "/routes/r",
            Some("application/json"),
            json!({"service": {"id": ghost}}).to_string(),
        ),
        (
            Method::POST,
            "/consumers",
            Some("application/json"),
            json!({"username": "bob"}).to_string(),
        ),
        (
            Method::PATCH,
            "/consumers/bob",
            Some("application/json"),
            json!({"custom_id": 5}).to_string(),
        ),
        (
            Method::POST,
            "/consumers/bob/key-auth",
            Some("application/json"),
            json!({"key": "bob-key"}).to_string(),
        ),
        (
            Method::POST,
            "/upstreams/up.test/targets",
            Some("application/json"),
            json!({"target": "10.0.0.1:80"}).to_string(),
        ),
        (
            Method::PUT,
            "/upstreams/up.test/targets/10.0.0.9:80",
            Some("application/json"),
            json!({"weight": 1}).to_string(),
        ),
        (
            Method::POST,
            "/plugins",
            Some("application/json"),
            json!({"name": "post-function"}).to_string(),
        ),
        (
            Method::POST,
            "/services?size=0",
            Some("application/x-www-form-urlencoded"),
            "name=svc&host=z".into(),
        ),
    ];
    for (method, path, ctype, body) in attempts {
        let r = api.raw(method.clone(), path, ctype, body.clone()).await;
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} {body}: {} {}",
            r.status,
            r.body
        );
        if r.status != 415 {
            assert_eq!(
                r.content_type(),
                "application/json; charset=utf-8",
                "{method} {path}: {}",
                r.body
            );
            assert!(r.body.is_object(), "{method} {path}: {}", r.body);
        }
    }
    for (c, b) in collections.iter().zip(&before) {
        assert_eq!(&api.list_all(c).await, b, "{c} changed");
    }
}

// ---------------------------------------------------------------------------------------------
// The data plane follows admin writes.

async fn case_admin_writes_change_routing(api: &AdminApi) {
    let echo = Echo::start("live").await;
    wait_proxy(api, "/live", 404).await;
    api.post("/services", &json!({"name": "live", "url": echo.url()}))
        .await
        .expect(201);
    api.post(
        "/services/live/routes",
        &json!({"name": "live-route", "paths": ["/live"]}),
    )
    .await
    .expect(201);
    let body = wait_proxy(api, "/live", 200).await;
    assert!(body.contains("\"instance\":\"live\""), "{body}");

    // Through an upstream with targets.
    let other = Echo::start("via-upstream").await;
    api.post("/upstreams", &json!({"name": "live.up"}))
        .await
        .expect(201);
    api.post(
        "/upstreams/live.up/targets",
        &json!({"target": other.authority()}),
    )
    .await
    .expect(201);
    api.patch("/services/live", &json!({"host": "live.up", "port": 80}))
        .await
        .expect(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = wait_proxy(api, "/live", 200).await;
        if body.contains("\"instance\":\"via-upstream\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still routed to the old host: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Deleting the route stops the traffic.
    assert_eq!(api.delete("/routes/live-route").await.status, 204);
    wait_proxy(api, "/live", 404).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency: unique keys hold under parallel writers.

async fn case_concurrent_writes(api: &AdminApi) {
    // The same username eight times at once: one 201, seven 409s.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.post("/consumers", &json!({"username": "race"})).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => created += 1,
            _ => r.expect_json(
                409,
                &json!({"code": 5, "name": "unique constraint violation",
                        "message": "UNIQUE violation detected on '{username=\"race\"}'",
                        "fields": {"username": "race"}}),
            ),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(api.list_all("/consumers").await.len(), 1);

    // Upserts of one name at once: all 200, one row.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.put("/services/upsert", &json!({"host": format!("h{i}.test")}))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        // Kong upserts by name with ON CONFLICT: concurrent PUTs never conflict.
        ids.push(r.expect(200)["id"].clone());
    }
    ids.sort_by_key(Value::to_string);
    ids.dedup();
    assert_eq!(ids.len(), 1, "one row for one name: {ids:?}");
    let rows = api.list_all("/services").await;
    assert_eq!(rows.len(), 1, "{rows:?}");

    // Many distinct writers: every row lands.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.post("/consumers", &json!({"username": format!("u{i}")}))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    assert_eq!(api.list_all("/consumers?size=7").await.len(), 21);
}

// ---------------------------------------------------------------------------------------------
// Admin token.

async fn case_admin_token(api: &AdminApi) {
    let r = api.get("/").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.content_type(), "application/json; charset=utf-8");
    assert!(r["message"].is_string(), "{}", r.body);
    let r = api.post("/services", &json!({"host": "x.test"})).await;
    assert_eq!(r.status, 401);

    for (name, value) in [
        ("kong-admin-token", "wrong"),
        ("authorization", "Bearer wrong"),
        ("authorization", "Bearer "),
        ("authorization", "Basic czNjcmV0"),
        ("kong-admin-token", "s3cre"),
        ("kong-admin-token", "S3CRET"),
    ] {
        let r = api
            .send(api.request(Method::GET, "/services").header(name, value))
            .await;
        assert_eq!(r.status, 401, "{name}: {value}");
        assert!(r["message"].is_string());
    }

    let r = api
        .send(
            api.request(Method::GET, "/")
                .header("Kong-Admin-Token", "s3cret"),
        )
        .await;
    assert_eq!(r.expect(200)["version"], "3.9.0");
    let r = api
        .send(
            api.request(Method::GET, "/services")
                .header("Authorization", "Bearer s3cret"),
        )
        .await;
    r.expect(200);
    let r = api
        .send(
            api.request(Method::POST, "/services")
                .header("Kong-Admin-Token", "s3cret")
                .json(&json!({"name": "svc", "host": "x.test"})),
        )
        .await;
    r.expect(201);
    // A refused write changed nothing.
    let r = api
        .send(
            api.request(Method::GET, "/services")
                .header("Kong-Admin-Token", "s3cret"),
        )
        .await;
    assert_eq!(r.expect(200)["data"].as_array().unwrap().len(), 1);
}
