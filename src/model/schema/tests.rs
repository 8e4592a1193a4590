#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use super::*;

const NOW_MS: i64 = 1_700_000_000_123;

fn ctx() -> Ctx<'static> {
    Ctx::new(NOW_MS, &NoPlugins)
}

fn err_of(kind: EntityKind, v: Value) -> FieldErrors {
    match validate(kind, &v, &ctx()) {
        Ok(e) => panic!("expected an error for {v}, got {e:?}"),
        Err(e) => e,
    }
}

fn msg(kind: EntityKind, v: Value) -> String {
    err_of(kind, v).message()
}

/// Compare JSON numerically (f64 0.0 == integer 0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn assert_json(actual: &Value, expected: &Value) {
    assert!(
        same(actual, expected),
        "actual:\n{actual:#}\nexpected:\n{expected:#}"
    );
}

const ID: &str = "3d1a5f3e-4b51-4c5c-9d5b-8b7a0f2b1c11";
const ID2: &str = "9b0c2f6e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";

#[test]
fn service_defaults_match_kong() {
    let s = validate_service(&json!({"id": ID, "host": "example.com"}), &ctx()).unwrap();
    assert_json(
        &serde_json::to_value(&s).unwrap(),
        &json!({
            "id": ID, "name": null, "protocol": "http", "host": "example.com", "port": 80,
            "path": null, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
            "read_timeout": 60000, "tags": null, "client_certificate": null, "tls_verify": null,
            "tls_verify_depth": null, "ca_certificates": null, "enabled": true,
            "created_at": 1_700_000_000, "updated_at": 1_700_000_000
        }),
    );
}

#[test]
fn generated_id_is_v4() {
    let s = validate_service(&json!({"host": "example.com"}), &ctx()).unwrap();
    assert_eq!(s.id.get_version_num(), 4);
}

#[test]
fn service_url_shorthand() {
    let cases = [
        (
            "https://api.example.com/v2",
            "https",
            "api.example.com",
            443,
            Some("/v2"),
        ),
        (
            "http://orders.internal:8080/api",
            "http",
            "orders.internal",
            8080,
            Some("/api"),
        ),
        ("http://example.com", "http", "example.com", 80, None),
        ("example.com:443", "https", "example.com", 443, None),
        ("example.com", "http", "example.com", 80, None),
        ("grpcs://g.example.com", "grpcs", "g.example.com", 443, None),
        ("http://[::1]:9000/x?q=1", "http", "::1", 9000, Some("/x")),
        (
            "https://h.example.com:8443/",
            "https",
            "h.example.com",
            8443,
            Some("/"),
        ),
    ];
    for (url, proto, host, port, path) in cases {
        let s = validate_service(&json!({"url": url}), &ctx())
            .unwrap_or_else(|e| panic!("{url}: {}", e.message()));
        assert_eq!(s.protocol.as_str(), proto, "{url}");
        assert_eq!(s.host, host, "{url}");
        assert_eq!(s.port, port, "{url}");
        assert_eq!(s.path.as_deref(), path, "{url}");
        let out = serde_json::to_value(&s).unwrap();
        assert!(out.get("url").is_none());
    }
    assert_eq!(
        msg(EntityKind::Services, json!({"url": "http:///x"})),
        "schema violation (host: required field missing)"
    );
    assert_eq!(
        msg(EntityKind::Services, json!({"url": 5, "host": "a.com"})),
        "schema violation (url: expected a string)"
    );
}

#[test]
fn service_errors() {
    use EntityKind::Services as S;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "schema violation (host: required field missing)"),
        (
            json!({"host": "a.com", "port": 70000}),
            "schema violation (port: value should be between 0 and 65535)",
        ),
        (
            json!({"host": "a.com:80"}),
            "schema violation (host: must not have a port)",
        ),
        (
            json!({"host": "a b"}),
            "schema violation (host: invalid value: a b)",
        ),
        (
            json!({"host": "a.com", "path": "api"}),
            "schema violation (path: should start with: /)",
        ),
        (
            json!({"host": "a.com", "path": "/a//b"}),
            "schema violation (path: must not have empty segments)",
        ),
        (
            json!({"host": "a.com", "retries": 40000}),
            "schema violation (retries: value should be between 0 and 32767)",
        ),
        (
            json!({"host": "a.com", "read_timeout": 0}),
            "schema violation (read_timeout: value should be between 1 and 2147483646)",
        ),
        (
            json!({"host": "a.com", "port": "80"}),
            "schema violation (port: expected an integer)",
        ),
        (
            json!({"host": "a.com", "port": 80.5}),
            "schema violation (port: expected an integer)",
        ),
        (
            json!({"host": "a.com", "enabled": "yes"}),
            "schema violation (enabled: expected a boolean)",
        ),
        (
            json!({"host": "a.com", "foo": 1}),
            "schema violation (foo: unknown field)",
        ),
        (
            json!({"host": "a.com", "id": "nope"}),
            "schema violation (id: expected a valid UUID)",
        ),
        (
            json!({"host": "a.com", "tags": "x"}),
            "schema violation (tags: expected a set)",
        ),
        (
            json!({"host": "a.com", "protocol": "ftp"}),
            "schema violation (protocol: expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp)",
        ),
        (
            json!({"host": "a.com", "name": "my svc"}),
            "schema violation (name: invalid value 'my svc': the only accepted ascii characters are alphanumerics or ., -, _, and ~)",
        ),
        (
            json!({"host": "a.com", "protocol": "tcp", "path": "/x"}),
            "2 schema violations (failed conditional validation given value of field 'protocol'; path: value must be null)",
        ),
        (
            json!({"host": "a.com", "tls_verify": true}),
            "2 schema violations (failed conditional validation given value of field 'protocol'; tls_verify: value must be null)",
        ),
        (
            json!({"port": 99999, "retries": -1}),
            "3 schema violations (host: required field missing; port: value should be between 0 and 65535; retries: value should be between 0 and 32767)",
        ),
        (
            json!({"host": "a.com", "tags": ["a", "b,c"]}),
            "schema violation (tags.2: invalid tag 'b,c': expected printable ascii (except `,` and `/`) or valid utf-8 sequences)",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(msg(S, input.clone()), expected, "input {input}");
    }
    assert!(validate_service(&json!({"host": "ñandú.example", "name": "café~1"}), &ctx()).is_err());
    assert!(validate_service(&json!({"host": "10.0.0.1", "name": "café~1.x_y-z"}), &ctx()).is_ok());
    assert!(
        validate_service(
            &json!({"host": "a.com", "protocol": "https", "tls_verify": true}),
            &ctx()
        )
        .is_ok()
    );
}

#[test]
fn field_errors_json_and_message() {
    let e = err_of(EntityKind::Services, json!({"port": 99999}));
    assert_eq!(
        e.to_json(),
        json!({"host": "required field missing", "port": "value should be between 0 and 65535"})
    );
    assert_eq!(
        e.to_admin_body(),
        json!({"code": 2, "name": "schema violation",
               "message": "2 schema violations (host: required field missing; port: value should be between 0 and 65535)",
               "fields": {"host": "required field missing", "port": "value should be between 0 and 65535"}})
    );
    let e = err_of(
        EntityKind::Routes,
        json!({"protocols": ["http"], "paths": ["/ok", "bad"]}),
    );
    assert_eq!(
        e.to_json(),
        json!({"paths": [null, "should start with: / (fixed path) or ~/ (regex path)"]})
    );
    assert_eq!(
        e.message(),
        "schema violation (paths.2: should start with: / (fixed path) or ~/ (regex path))"
    );
    let e = err_of(EntityKind::Consumers, json!({}));
    assert_eq!(
        e.to_json(),
        json!({"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]})
    );
    assert_eq!(e.count(), 1);
}

#[test]
fn route_defaults_match_kong() {
    let r = validate_route(
        &json!({"id": ID, "paths": ["/orders"], "service": {"id": ID2}}),
        &ctx(),
    )
    .unwrap();
    assert_json(
        &serde_json::to_value(&r).unwrap(),
        &json!({
            "id": ID, "name": null, "protocols": ["http", "https"], "methods": null, "hosts": null,
            "paths": ["/orders"], "headers": null, "snis": null, "sources": null, "destinations": null,
            "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": true,
            "path_handling": "v0", "preserve_host": false, "request_buffering": true,
            "response_buffering": true, "service": {"id": ID2}, "tags": null,
            "created_at": 1_700_000_000, "updated_at": 1_700_000_000
        }),
    );
}

#[test]
fn route_errors() {
    use EntityKind::Routes as R;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({}),
            "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')",
        ),
        (
            json!({"protocols": ["http"]}),
            "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http')",
        ),
        (
            json!({"paths": ["orders"]}),
            "schema violation (paths.1: should start with: / (fixed path) or ~/ (regex path))",
        ),
        (
            json!({"paths": ["/a/../b"]}),
            "schema violation (paths.1: non-normalized path, consider use '/b' instead)",
        ),
        (
            json!({"paths": ["/%7Euser"]}),
            "schema violation (paths.1: non-normalized path, consider use '/~user' instead)",
        ),
        (
            json!({"paths": ["/a//b"]}),
            "schema violation (paths.1: must not have empty segments)",
        ),
        (
            json!({"hosts": ["a.*.com"]}),
            "schema violation (hosts.1: wildcard must be leftmost or rightmost character)",
        ),
        (
            json!({"hosts": ["*.a.*"]}),
            "schema violation (hosts.1: only one wildcard must be specified)",
        ),
        (
            json!({"hosts": ["a b"]}),
            "schema violation (hosts.1: invalid value: a b)",
        ),
        (
            json!({"headers": {"Host": ["x"]}}),
            "schema violation (headers.Host: cannot contain 'host' header, which must be specified in the 'hosts' attribute)",
        ),
        (
            json!({"paths": ["/"], "https_redirect_status_code": 300}),
            "schema violation (https_redirect_status_code: expected one of: 426, 301, 302, 307, 308)",
        ),
        (
            json!({"paths": ["/"], "path_handling": "v2"}),
            "schema violation (path_handling: expected one of: v0, v1)",
        ),
        (
            json!({"paths": ["/"], "protocols": []}),
            "schema violation (protocols: length must be at least 1)",
        ),
        (
            json!({"paths": ["/"], "methods": ["get"]}),
            "schema violation (methods.1: invalid value: get)",
        ),
        (
            json!({"paths": ["/"], "service": {"id": "x"}}),
            "schema violation (service.id: expected a valid UUID)",
        ),
        (
            json!({"paths": ["/"], "service": "svc"}),
            "schema violation (service: expected a record)",
        ),
        (
            json!({"paths": ["/"], "protocols": ["grpc"]}),
            "2 schema violations (failed conditional validation given value of field 'protocols'; strip_path: value must be false)",
        ),
        (
            json!({"paths": ["/"], "protocols": ["http"], "snis": ["a.com"]}),
            "schema violation (snis: 'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough')",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(msg(R, input.clone()), expected, "input {input}");
    }
    let e = msg(R, json!({"paths": ["~/api/(?<v>[0-9]+"]}));
    assert!(
        e.starts_with("schema violation (paths.1: invalid regex: '/api/(?<v>[0-9]+'"),
        "{e}"
    );
    for ok in [
        json!({"paths": ["~/api/(?<version>v[0-9]+)/x$"]}),
        json!({"paths": ["/orders/", "/"]}),
        json!({"hosts": ["*.example.com", "example.*", "a.com:8080", "*.b.com:443"]}),
        json!({"snis": ["a.com"]}),
        json!({"headers": {"x-version": ["v1", "~*v[0-9]"]}}),
        json!({"methods": ["GET", "POST"], "protocols": ["https"]}),
        json!({"paths": ["/"], "protocols": ["grpc"], "strip_path": false}),
    ] {
        validate_route(&ok, &ctx()).unwrap_or_else(|e| panic!("{ok}: {}", e.message()));
    }
}

fn kong_healthchecks() -> Value {
    json!({
        "threshold": 0,
        "active": {
            "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/",
            "https_sni": null, "https_verify_certificate": true, "headers": null,
            "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
            "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                          "tcp_failures": 0, "timeouts": 0, "http_failures": 0}
        },
        "passive": {
            "type": "http",
            "healthy": {"http_statuses": [200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308],
                        "successes": 0},
            "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0}
        }
    })
}

#[test]
fn upstream_defaults_match_kong() {
    let u = validate_upstream(&json!({"id": ID, "name": "orders.internal"}), &ctx()).unwrap();
    assert_json(
        &serde_json::to_value(&u).unwrap(),
        &json!({
            "id": ID, "name": "orders.internal", "algorithm": "round-robin", "hash_on": "none",
            "hash_fallback": "none", "hash_on_header": null, "hash_fallback_header": null,
            "hash_on_cookie": null, "hash_on_cookie_path": "/", "hash_on_query_arg": null,
            "hash_fallback_query_arg": null, "hash_on_uri_capture": null,
            "hash_fallback_uri_capture": null, "slots": 10000, "healthchecks": kong_healthchecks(),
            "host_header": null, "client_certificate": null, "use_srv_name": false, "tags": null,
            "created_at": 1_700_000_000, "updated_at": 1_700_000_000
        }),
    );
    // A partial healthchecks record gets the rest of the tree filled.
    let u = validate_upstream(
        &json!({"name": "u", "healthchecks": {"active": {"healthy": {"interval": 5, "successes": 1}}}}),
        &ctx(),
    )
    .unwrap();
    assert!((u.healthchecks.active.healthy.interval - 5.0).abs() < f64::EPSILON);
    assert_eq!(u.healthchecks.active.healthy.successes, 1);
    assert_eq!(u.healthchecks.active.healthy.http_statuses, vec![200, 302]);
    assert_eq!(
        u.healthchecks.passive.unhealthy.http_statuses,
        vec![429, 500, 503]
    );
}

#[test]
fn upstream_coupling_and_errors() {
    let u = validate_upstream(&json!({"name": "u", "hash_on": "ip"}), &ctx()).unwrap();
    assert_eq!(u.algorithm, crate::model::Algorithm::ConsistentHashing);
    let u = validate_upstream(
        &json!({"name": "u", "hash_on": "none", "algorithm": "consistent-hashing"}),
        &ctx(),
    )
    .unwrap();
    assert_eq!(u.algorithm, crate::model::Algorithm::RoundRobin);
    let u = validate_upstream(
        &json!({"name": "u", "hash_on": "ip", "algorithm": "least-connections"}),
        &ctx(),
    )
    .unwrap();
    assert_eq!(u.hash_on, crate::model::HashOn::None);
    assert_eq!(u.algorithm, crate::model::Algorithm::LeastConnections);

    use EntityKind::Upstreams as U;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "schema violation (name: required field missing)"),
        (
            json!({"name": "10.0.0.1"}),
            "schema violation (name: Invalid name ('10.0.0.1'); no ip addresses allowed)",
        ),
        (
            json!({"name": "u:80"}),
            "schema violation (name: Invalid name ('u:80'); no port allowed)",
        ),
        (
            json!({"name": "a b"}),
            "schema violation (name: Invalid name ('a b'); must be a valid hostname)",
        ),
        (
            json!({"name": "u", "slots": 5}),
            "schema violation (slots: value should be between 10 and 65536)",
        ),
        (
            json!({"name": "u", "hash_on": "header"}),
            "2 schema violations (failed conditional validation given value of field 'hash_on'; hash_on_header: required field missing)",
        ),
        (
            json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"}),
            "2 schema violations (failed conditional validation given value of field 'hash_on'; hash_fallback: expected one of: none)",
        ),
        (
            json!({"name": "u", "hash_on": "ip", "hash_fallback": "ip"}),
            "schema violation (values of these fields must be distinct: 'hash_on', 'hash_fallback')",
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"healthy": {"successes": 300}}, "threshold": 101}}),
            "2 schema violations (healthchecks.active.healthy.successes: value should be between 0 and 255; healthchecks.threshold: value should be between 0 and 100)",
        ),
        (
            json!({"name": "u", "healthchecks": {"bogus": 1}}),
            "schema violation (healthchecks.bogus: unknown field)",
        ),
        (
            json!({"name": "u", "healthchecks": null}),
            "schema violation (healthchecks: required field missing)",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(msg(U, input.clone()), expected, "input {input}");
    }
    let e = err_of(
        U,
        json!({"name": "u", "healthchecks": {"active": {"healthy": {"successes": 300}}}}),
    );
    assert_eq!(
        e.to_json(),
        json!({"healthchecks": {"active": {"healthy": {"successes": "value should be between 0 and 255"}}}})
    );
}

#[test]
fn target_defaults_and_normalization() {
    let t = validate_target(
        &json!({"id": ID, "upstream": {"id": ID2}, "target": "10.0.0.11"}),
        &ctx(),
    )
    .unwrap();
    assert_json(
        &serde_json::to_value(&t).unwrap(),
        &json!({"id": ID, "upstream": {"id": ID2}, "target": "10.0.0.11:8000", "weight": 100,
                "tags": null, "created_at": 1_700_000_000.123, "updated_at": 1_700_000_000.123}),
    );
    for (input, norm) in [
        ("example.com", "example.com:8000"),
        ("Example.COM:81", "example.com:81"),
        ("[::1]", "[::1]:8000"),
        ("::1", "[::1]:8000"),
        ("[fe80::1]:9000", "[fe80::1]:9000"),
        ("10.0.0.11:8080", "10.0.0.11:8080"),
    ] {
        let t =
            validate_target(&json!({"upstream": {"id": ID2}, "target": input}), &ctx()).unwrap();
        assert_eq!(t.target, norm);
    }
    assert_eq!(
        msg(EntityKind::Targets, json!({"target": "a b"})),
        "2 schema violations (target: Invalid target ('a b'); not a valid hostname or ip address; upstream: required field missing)"
    );
    assert_eq!(
        msg(
            EntityKind::Targets,
            json!({"upstream": {"id": ID2}, "target": "a", "weight": 70000})
        ),
        "schema violation (weight: value should be between 0 and 65535)"
    );
}

#[test]
fn consumer_rules() {
    let c = validate_consumer(&json!({"id": ID, "username": "alice"}), &ctx()).unwrap();
    assert_json(
        &serde_json::to_value(&c).unwrap(),
        &json!({"id": ID, "username": "alice", "custom_id": null, "tags": null,
                "created_at": 1_700_000_000, "updated_at": 1_700_000_000}),
    );
    assert!(validate_consumer(&json!({"custom_id": "42"}), &ctx()).is_ok());
    let expected = "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')";
    assert_eq!(msg(EntityKind::Consumers, json!({})), expected);
    assert_eq!(
        msg(EntityKind::Consumers, json!({"username": ""})),
        expected
    );
}

#[test]
fn keyauth_credentials() {
    let k =
        validate_keyauth_credential(&json!({"id": ID, "consumer": {"id": ID2}}), &ctx()).unwrap();
    assert_eq!(k.key.len(), 32);
    assert!(k.key.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_json(
        &serde_json::to_value(&k).unwrap(),
        &json!({"id": ID, "consumer": {"id": ID2}, "key": k.key, "ttl": null, "tags": null,
                "created_at": 1_700_000_000}),
    );
    let long = "k".repeat(2000);
    let k = validate_keyauth_credential(&json!({"consumer": {"id": ID2}, "key": long}), &ctx())
        .unwrap();
    assert_eq!(k.key.len(), 2000);
    assert_eq!(
        msg(EntityKind::KeyauthCredentials, json!({"key": "x"})),
        "schema violation (consumer: required field missing)"
    );
}

const PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAER9uP5tuxcNo3VVT/Bo9Sidu8gvg2
yumjvsuTZ9frI2edjcPf2xHPladzCNhru6QCrzj+RQPSi5dTUvTyrhXhCA==
-----END PUBLIC KEY-----
";

#[test]
fn jwt_secrets() {
    let j = validate_jwt_secret(&json!({"id": ID, "consumer": {"id": ID2}}), &ctx()).unwrap();
    assert_eq!(j.key.len(), 32);
    assert_eq!(j.secret.as_deref().map(str::len), Some(32));
    assert_json(
        &serde_json::to_value(&j).unwrap(),
        &json!({"id": ID, "consumer": {"id": ID2}, "key": j.key, "secret": j.secret,
                "rsa_public_key": null, "algorithm": "HS256", "tags": null, "created_at": 1_700_000_000}),
    );
    for alg in ["HS384", "HS512", "RS256", "ES512", "PS384", "EdDSA"] {
        validate_jwt_secret(
            &json!({"consumer": {"id": ID2}, "algorithm": alg, "rsa_public_key": PEM}),
            &ctx(),
        )
        .unwrap_or_else(|e| panic!("{alg}: {}", e.message()));
    }
    use EntityKind::JwtSecrets as J;
    assert_eq!(
        msg(J, json!({"consumer": {"id": ID2}, "algorithm": "HS999"})),
        "schema violation (algorithm: expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA)"
    );
    assert_eq!(
        msg(J, json!({"consumer": {"id": ID2}, "algorithm": "RS256"})),
        "2 schema violations (failed conditional validation given value of field 'algorithm'; rsa_public_key: required field missing)"
    );
    assert_eq!(
        msg(
            J,
            json!({"consumer": {"id": ID2}, "algorithm": "RS256", "rsa_public_key": "nope"})
        ),
        "schema violation (rsa_public_key: invalid key)"
    );
    // Base64 that is not a key (the truncated head of an EC key, then plain text).
    for body in ["MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", "aGVsbG8gd29ybGQ="] {
        for label in ["PUBLIC KEY", "RSA PUBLIC KEY"] {
            let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
            assert_eq!(
                msg(
                    J,
                    json!({"consumer": {"id": ID2}, "algorithm": "ES256", "rsa_public_key": pem})
                ),
                "schema violation (rsa_public_key: invalid key)",
                "{pem}"
            );
        }
    }
}

#[test]
fn plugins_hook() {
    assert_eq!(
        msg(EntityKind::Plugins, json!({"name": "cors"})),
        "schema violation (name: plugin 'cors' not enabled; add it to the 'plugins' configuration property)"
    );
    assert_eq!(
        msg(EntityKind::Plugins, json!({})),
        "schema violation (name: required field missing)"
    );

    struct Reg;
    impl PluginSchemas for Reg {
        fn config(&self, name: &str) -> Option<Field> {
            (name == "rate-limiting").then(|| {
                Field::record(Schema::new(
                    "config",
                    vec![
                        ("minute", Field::integer()),
                        (
                            "policy",
                            Field::string()
                                .required()
                                .default(json!("local"))
                                .one_of_str(&["local", "redis"]),
                        ),
                    ],
                ))
                .required()
            })
        }
        fn allows_consumer(&self, name: &str) -> bool {
            name != "rate-limiting"
        }
    }
    let reg = Reg;
    let c = Ctx::new(NOW_MS, &reg);
    let p = validate_plugin(
        &json!({"id": ID, "name": "rate-limiting", "config": {"minute": 5}}),
        &c,
    )
    .unwrap();
    assert_json(
        &serde_json::to_value(&p).unwrap(),
        &json!({"id": ID, "name": "rate-limiting", "instance_name": null, "route": null, "service": null,
                "consumer": null, "config": {"minute": 5, "policy": "local"},
                "protocols": ["grpc", "grpcs", "http", "https"], "enabled": true, "ordering": null,
                "tags": null, "created_at": 1_700_000_000, "updated_at": 1_700_000_000}),
    );
    let e = validate_plugin(
        &json!({"name": "rate-limiting", "config": {"minute": "x", "nope": 1}}),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "2 schema violations (config.minute: expected an integer; config.nope: unknown field)"
    );
    let e = validate_plugin(
        &json!({"name": "rate-limiting", "consumer": {"id": ID2}}),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (consumer: value must be null)"
    );
}

#[test]
fn acl_and_ca_certificate() {
    assert!(validate_acl(&json!({"consumer": {"id": ID2}, "group": "admins"}), &ctx()).is_ok());
    assert_eq!(
        msg(EntityKind::Acls, json!({"consumer": {"id": ID2}})),
        "schema violation (group: required field missing)"
    );
    let truncated =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    for bad in ["x", truncated] {
        assert_eq!(
            msg(EntityKind::CaCertificates, json!({"cert": bad})),
            "schema violation (cert: invalid certificate: x509.new: error:0680007B:asn1 encoding routines::header too long)"
        );
    }
}

/// A self-signed certificate: a CA or not, expired or not.
fn test_cert(ca: bool, expired: bool) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["gwctl.test".to_owned()]).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

#[test]
fn ca_certificate_digest_and_entity_checks() {
    use sha2::Digest as _;
    let (pem, der) = test_cert(true, false);
    // cert_digest is computed from the certificate, whatever the input said.
    let ca =
        validate_ca_certificate(&json!({"cert": pem, "cert_digest": "forged"}), &ctx()).unwrap();
    let want: String = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(ca.cert_digest.as_deref(), Some(want.as_str()));

    let (leaf, _) = test_cert(false, false);
    let e = err_of(EntityKind::CaCertificates, json!({"cert": leaf}));
    assert_eq!(
        e.message(),
        "schema violation (certificate does not appear to be a CA because it is missing the \"CA\" basic constraint)"
    );
    assert_eq!(e.to_json()["@entity"].as_array().map(Vec::len), Some(1));
    let (old, _) = test_cert(true, true);
    assert_eq!(
        msg(EntityKind::CaCertificates, json!({"cert": old})),
        "schema violation (certificate expired, \"Not After\" time is in the past)"
    );
    assert_eq!(
        msg(
            EntityKind::CaCertificates,
            json!({"cert": format!("{pem}{leaf}")})
        ),
        "schema violation (please submit only one certificate at a time)"
    );
}

#[test]
fn form_coercion() {
    let mut c = ctx();
    c.coerce = true;
    let s = validate_service(
        &json!({"host": "a.com", "port": "8080", "enabled": "false", "path": "", "tags": "t1"}),
        &c,
    )
    .unwrap();
    assert_eq!(s.port, 8080);
    assert!(!s.enabled);
    assert_eq!(s.path, None);
    assert_eq!(s.tags, Some(vec!["t1".to_owned()]));
    let e = validate_service(&json!({"host": "a.com", "port": "eighty"}), &c).unwrap_err();
    assert_eq!(e.message(), "schema violation (port: expected an integer)");
}

#[test]
fn path_normalization() {
    use validators::normalize_path as n;
    assert_eq!(n("/a/./b/../c"), "/a/c");
    assert_eq!(n("/%41%2f"), "/A%2F");
    assert_eq!(n("/.."), "/");
    assert_eq!(n("/a/b/.."), "/a/");
    assert_eq!(n("/caf\u{e9}"), "/caf\u{e9}");
}
