//! jwt (kong-compat §4.1) with tokens minted by PyJWT and keys made by the openssl CLI, and
//! gwctl's jwt-claim-headers. Needs `GWCTL_TEST_PYTHON` (tests/run.sh `pyjwt`); skipped with a
//! note otherwise.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin};
use crate::support::{Echo, Echoed, Gateway, TempDir, client};

fn python() -> Option<String> {
    let py = std::env::var("GWCTL_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    if py.is_none() {
        eprintln!(
            "skipped jwt tests: GWCTL_TEST_PYTHON is not set (run them with \
             GWCTL_TEST_SERVICES=pyjwt bash tests/run.sh plugins::jwt)"
        );
    }
    py
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One token to mint: PyJWT's `jwt.encode(payload, key, algorithm=alg, headers=headers)`.
struct Mint {
    alg: &'static str,
    /// The HMAC secret, or the path of a PEM private key.
    key: String,
    payload: Value,
    headers: Value,
}

fn mint(py: &str, specs: &[Mint]) -> Vec<String> {
    let input: Vec<Value> = specs
        .iter()
        .map(|m| json!({"alg": m.alg, "key": m.key, "payload": m.payload, "headers": m.headers}))
        .collect();
    let script = r#"
import json, sys, warnings, jwt
warnings.simplefilter("ignore")
out = []
for s in json.load(sys.stdin):
    key = s["key"]
    if key.startswith("/"):
        key = open(key).read()
    out.append(jwt.encode(s["payload"], key, algorithm=s["alg"], headers=s["headers"] or None))
print(json.dumps(out))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pyjwt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A key pair made by the openssl CLI: (private key path, public key PEM).
fn keypair(dir: &TempDir, name: &str, genpkey_args: &[&str]) -> (String, String) {
    let private = dir.0.join(format!("{name}.pem"));
    let st = Command::new("openssl")
        .arg("genpkey")
        .args(genpkey_args)
        .arg("-out")
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl genpkey {genpkey_args:?}");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(out.status.success());
    (
        private.to_string_lossy().into_owned(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];

struct Keys {
    /// alg -> (signing key, credential fields)
    algs: Vec<(&'static str, String, Value)>,
    /// alg -> another signing key of the same kind (for bad signatures)
    other: Vec<(&'static str, String)>,
}

fn keys(dir: &TempDir) -> Keys {
    let rsa = keypair(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let rsa2 = keypair(
        dir,
        "rsa2",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ec = |n: &str, c: &str| {
        keypair(
            dir,
            n,
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{c}"),
            ],
        )
    };
    let (p256, p256b) = (ec("p256", "P-256"), ec("p256b", "P-256"));
    let (p384, p384b) = (ec("p384", "P-384"), ec("p384b", "P-384"));
    let (p521, p521b) = (ec("p521", "P-521"), ec("p521b", "P-521"));
    let ed = keypair(dir, "ed", &["-algorithm", "ED25519"]);
    let ed2 = keypair(dir, "ed2", &["-algorithm", "ED25519"]);
    let mut algs = Vec::new();
    let mut other = Vec::new();
    for alg in HMAC {
        let secret = format!("{alg}-secret-of-at-least-64-bytes-0123456789abcdef0123456789abcdef");
        algs.push((alg, secret.clone(), json!({"secret": secret})));
        other.push((alg, format!("{secret}-but-wrong")));
    }
    let mut asym = |alg: &'static str, kp: &(String, String), wrong: &(String, String)| {
        algs.push((alg, kp.0.clone(), json!({"rsa_public_key": kp.1})));
        other.push((alg, wrong.0.clone()));
    };
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        asym(alg, &rsa, &rsa2);
    }
    asym("ES256", &p256, &p256b);
    asym("ES384", &p384, &p384b);
    asym("ES512", &p521, &p521b);
    asym("EdDSA", &ed, &ed2);
    Keys { algs, other }
}

fn config(echo: &Echo, keys: &Keys) -> String {
    let mut secrets = Vec::new();
    for (alg, _, fields) in &keys.algs {
        let mut s = json!({"key": format!("iss-{alg}"), "algorithm": alg});
        s.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        secrets.push(s);
    }
    let hs = |key: &str, secret: &str| json!({"key": key, "algorithm": "HS256", "secret": secret});
    let doc = json!({
        "_format_version": "3.0",
        "consumers": [
            {"username": "alice", "custom_id": "c-alice", "jwt_secrets": secrets},
            {"username": "bob", "jwt_secrets": [
                hs("b64", "c2VjcmV0LWJ5dGVzLWZvci1iYXNlNjQtdGVzdA"),
                hs("rot", "rot-plain-secret-0123456789abcdef0123"),
                hs("rot#k1", "rot-k1-secret-0123456789abcdef012345"),
                hs("rot#k2", "rot-k2-secret-0123456789abcdef012345"),
            ]},
            {"username": "anon"}
        ],
        "services": [{"name": "s", "url": echo.url(), "routes": [
            {"name": "plain", "paths": ["/plain"], "plugins": [{"name": "jwt"}]},
            {"name": "strict", "paths": ["/strict"], "plugins": [
                {"name": "jwt", "config": {"claims_to_verify": ["exp", "nbf"]}}]},
            {"name": "maxexp", "paths": ["/maxexp"], "plugins": [
                {"name": "jwt", "config": {"claims_to_verify": ["exp"], "maximum_expiration": 600}}]},
            {"name": "b64", "paths": ["/b64"], "plugins": [
                {"name": "jwt", "config": {"secret_is_base64": true}}]},
            {"name": "anon", "paths": ["/anon"], "plugins": [
                {"name": "jwt", "config": {"anonymous": "anon"}}]},
            {"name": "anon-missing", "paths": ["/anon-missing"], "plugins": [
                {"name": "jwt", "config": {"anonymous": "nobody"}}]},
            {"name": "preflight", "paths": ["/preflight"], "plugins": [
                {"name": "jwt", "config": {"run_on_preflight": false}}]},
            {"name": "realm", "paths": ["/realm"], "plugins": [
                {"name": "jwt", "config": {"realm": "gw", "claims_to_verify": ["exp"]}}]},
            {"name": "places", "paths": ["/places"], "plugins": [
                {"name": "jwt", "config": {"uri_param_names": ["t", "token"],
                  "cookie_names": ["jc"], "header_names": ["authorization", "x-jwt"]}}]},
            {"name": "kidclaim", "paths": ["/kidclaim"], "plugins": [
                {"name": "jwt", "config": {"key_claim_name": "kid"}}]},
            {"name": "claims", "paths": ["/claims"], "plugins": [
                {"name": "jwt"},
                {"name": "jwt-claim-headers", "config": {"claims": {
                    "sub": "x-auth-user", "roles": "x-roles", "admin": "x-admin",
                    "n": "x-n", "obj": "x-obj", "missing": "x-missing"}}}]},
            {"name": "claims-nojwt", "paths": ["/claims-nojwt"], "plugins": [
                {"name": "jwt-claim-headers", "config": {"claims": {"sub": "x-auth-user"}}}]},
            {"name": "claims-anon", "paths": ["/claims-anon"], "plugins": [
                {"name": "jwt", "config": {"anonymous": "anon"}},
                {"name": "jwt-claim-headers", "config": {"claims": {"sub": "x-auth-user"}}}]}
        ]}]
    });
    serde_json::to_string(&doc).unwrap()
}

/// A request's outcome: status, body, WWW-Authenticate, echoed request (on 200).
struct Got {
    status: u16,
    body: Value,
    www: Option<String>,
    echoed: Option<Echoed>,
}

async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let echoed = (status == 200).then(|| serde_json::from_value(body.clone()).unwrap());
    Got {
        status,
        body,
        www,
        echoed,
    }
}

const INVALID: &str = r#"Bearer error="invalid_token""#;

fn assert_refused(got: &Got, body: Value, www: Option<&str>, what: &str) {
    assert_eq!(
        (got.status, &got.body, got.www.as_deref()),
        (401, &body, www),
        "{what}"
    );
}

fn msg(m: &str) -> Value {
    json!({"message": m})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_like_kong() {
    let Some(py) = python() else { return };
    let dir = TempDir::new();
    let keys = keys(&dir);
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo, &keys)).await;
    let c = client();
    let t = now();

    // Per algorithm: valid, expired, not yet valid, bad signature, unknown issuer, no issuer,
    // empty issuer, alg of another credential.
    let mut specs = Vec::new();
    for ((alg, key, _), (_, wrong)) in keys.algs.iter().zip(&keys.other) {
        let iss = format!("iss-{alg}");
        let m = |key: &str, payload: Value| Mint {
            alg,
            key: key.to_owned(),
            payload,
            headers: Value::Null,
        };
        specs.push(m(
            key,
            json!({"iss": iss, "exp": t + 300, "nbf": t - 10, "sub": "u1"}),
        ));
        specs.push(m(key, json!({"iss": iss, "exp": t - 1, "nbf": t - 10})));
        specs.push(m(key, json!({"iss": iss, "exp": t + 300, "nbf": t + 100})));
        specs.push(m(wrong, json!({"iss": iss, "exp": t + 300})));
        specs.push(m(key, json!({"iss": "nobody", "exp": t + 300})));
        specs.push(m(key, json!({"exp": t + 300})));
        specs.push(m(key, json!({"iss": "", "exp": t + 300})));
        let other_alg = if *alg == "HS256" {
            "iss-HS384"
        } else {
            "iss-HS256"
        };
        specs.push(m(key, json!({"iss": other_alg, "exp": t + 300})));
    }
    let tokens = mint(&py, &specs);
    for (i, (alg, _, _)) in keys.algs.iter().enumerate() {
        let tok = &tokens[i * 8..i * 8 + 8];
        let get = |path: &str, token: &str| {
            c.get(format!("{}{path}", gw.proxy_url()))
                .header("authorization", format!("Bearer {token}"))
        };
        let ok = send(get("/strict", &tok[0])).await;
        assert_eq!(ok.status, 200, "{alg} valid: {}", ok.body);
        let e = ok.echoed.unwrap();
        assert_eq!(e.header("x-consumer-username"), "alice", "{alg}");
        assert_eq!(e.header("x-consumer-custom-id"), "c-alice", "{alg}");
        assert_eq!(e.header("x-credential-identifier"), format!("iss-{alg}"));
        assert!(uuid::Uuid::parse_str(e.header("x-consumer-id")).is_ok());
        assert!(!e.has("x-anonymous-consumer"));
        assert_eq!(
            e.header("authorization"),
            format!("Bearer {}", tok[0]),
            "token kept"
        );

        let what = |w: &str| format!("{alg}: {w}");
        assert_refused(
            &send(get("/strict", &tok[1])).await,
            json!({"exp": "token expired"}),
            Some(INVALID),
            &what("expired"),
        );
        // Without claims_to_verify an expired token passes (Kong checks only what it is told).
        assert_eq!(send(get("/plain", &tok[1])).await.status, 200, "{alg}");
        assert_refused(
            &send(get("/strict", &tok[2])).await,
            json!({"nbf": "token not valid yet"}),
            Some(INVALID),
            &what("nbf"),
        );
        assert_refused(
            &send(get("/plain", &tok[3])).await,
            msg("Invalid signature"),
            Some(INVALID),
            &what("bad signature"),
        );
        assert_refused(
            &send(get("/plain", &tok[4])).await,
            msg("No credentials found for given 'iss'"),
            Some(INVALID),
            &what("unknown iss"),
        );
        assert_refused(
            &send(get("/plain", &tok[5])).await,
            msg("No mandatory 'iss' in claims"),
            Some(INVALID),
            &what("no iss"),
        );
        assert_refused(
            &send(get("/plain", &tok[6])).await,
            msg("Invalid 'iss' in claims"),
            Some(INVALID),
            &what("empty iss"),
        );
        assert_refused(
            &send(get("/plain", &tok[7])).await,
            msg("Invalid algorithm"),
            Some(INVALID),
            &what("alg mismatch"),
        );
    }
    // Several claim errors at once, and wrong claim types.
    let hs = &keys.algs[0].1;
    let m = |payload: Value| Mint {
        alg: "HS256",
        key: hs.clone(),
        payload,
        headers: Value::Null,
    };
    let tokens = mint(
        &py,
        &[
            m(json!({"iss": "iss-HS256", "exp": t - 5, "nbf": t + 50})),
            m(json!({"iss": "iss-HS256", "exp": "soon", "nbf": "later"})),
        ],
    );
    let get = |token: &str| {
        c.get(format!("{}/strict", gw.proxy_url()))
            .header("authorization", format!("bearer {token}"))
    };
    assert_refused(
        &send(get(&tokens[0])).await,
        json!({"exp": "token expired", "nbf": "token not valid yet"}),
        Some(INVALID),
        "both claims",
    );
    assert_refused(
        &send(get(&tokens[1])).await,
        json!({"exp": "must be a number", "nbf": "must be a number"}),
        Some(INVALID),
        "claim types",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_places_options_and_claim_headers() {
    let Some(py) = python() else { return };
    let dir = TempDir::new();
    let keys = keys(&dir);
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo, &keys)).await;
    let c = client();
    let t = now();
    let hs = keys.algs[0].1.clone();
    let m = |key: &str, payload: Value, headers: Value| Mint {
        alg: "HS256",
        key: key.to_owned(),
        payload,
        headers,
    };
    let tokens = mint(
        &py,
        &[
            /* 0 */ m(&hs, json!({"iss": "iss-HS256", "sub": "u-1"}), Value::Null),
            /* 1 */ m(&hs, json!({"iss": "iss-HS256", "sub": "u-2"}), Value::Null),
            /* 2 */
            m(
                &hs,
                json!({"iss": "iss-HS256", "exp": t + 300}),
                Value::Null,
            ),
            /* 3 */
            m(
                &hs,
                json!({"iss": "iss-HS256", "exp": t + 6000}),
                Value::Null,
            ),
            /* 4 */
            m(
                "secret-bytes-for-base64-test",
                json!({"iss": "b64"}),
                Value::Null,
            ),
            /* 5 */
            m(
                "rot-k1-secret-0123456789abcdef012345",
                json!({"iss": "rot"}),
                json!({"kid": "k1"}),
            ),
            /* 6 */
            m(
                "rot-k2-secret-0123456789abcdef012345",
                json!({"iss": "rot"}),
                json!({"kid": "k2"}),
            ),
            /* 7 */
            m(
                "rot-plain-secret-0123456789abcdef0123",
                json!({"iss": "rot"}),
                json!({"kid": "k9"}),
            ),
            /* 8 */
            m(
                "rot-plain-secret-0123456789abcdef0123",
                json!({"iss": "rot"}),
                Value::Null,
            ),
            /* 9 */
            m(
                "rot-k1-secret-0123456789abcdef012345",
                json!({"iss": "rot"}),
                json!({"kid": "k2"}),
            ),
            /* 10 */ m(&hs, json!({"sub": "u-3"}), json!({"kid": "iss-HS256"})),
            /* 11 */
            m(
                &hs,
                json!({"iss": "iss-HS256", "sub": "u-4", "roles": ["a", "b"],
                    "admin": true, "n": 42, "obj": {"k": "v"}}),
                Value::Null,
            ),
            /* 12 */ m(&hs, json!({"iss": "iss-HS256"}), Value::Null),
        ],
    );
    let url = |p: &str| format!("{}{p}", gw.proxy_url());
    let bearer = |p: &str, tok: &str| {
        c.get(url(p))
            .header("authorization", format!("Bearer {tok}"))
    };

    // No token at all; a query flag; garbage tokens.
    assert_refused(
        &send(c.get(url("/plain"))).await,
        msg("Unauthorized"),
        Some("Bearer"),
        "none",
    );
    assert_refused(
        &send(c.get(url("/plain?jwt"))).await,
        msg("Unrecognizable token"),
        Some(INVALID),
        "flag",
    );
    for (tok, err) in [
        ("abc", "invalid JSON"),
        ("a.b", "invalid JSON"),
        ("eyJhbGciOiJub25lIn0.e30.", "invalid alg"),
        ("eyJhbGciOiJIUzI1NiJ9.MQ.x", "invalid claims"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.a.b", "invalid signature"),
    ] {
        assert_refused(
            &send(bearer("/plain", tok)).await,
            msg(&format!("Bad token; {err}")),
            Some(INVALID),
            tok,
        );
    }
    // The Authorization header must say Bearer.
    assert_refused(
        &send(
            c.get(url("/plain"))
                .header("authorization", format!("Basic {}", tokens[0])),
        )
        .await,
        msg("Unauthorized"),
        Some("Bearer"),
        "basic",
    );

    // Query, cookie, custom header; the same token twice is one token, two are refused.
    for req in [
        c.get(url(&format!("/places?t={}", tokens[0]))),
        c.get(url(&format!("/places?x=1&token={}", tokens[0]))),
        c.get(url("/places"))
            .header("cookie", format!("a=b; jc={}", tokens[0])),
        c.get(url("/places"))
            .header("x-jwt", format!("  Bearer {}", tokens[0])),
        c.get(url(&format!("/places?t={0}&token={0}", tokens[0])))
            .header("cookie", format!("jc={}", tokens[0]))
            .header("authorization", format!("Bearer {}", tokens[0])),
    ] {
        let got = send(req).await;
        assert_eq!(got.status, 200, "{}", got.body);
    }
    for req in [
        c.get(url(&format!("/places?t={}&token={}", tokens[0], tokens[1]))),
        c.get(url(&format!("/places?t={}&t={}", tokens[0], tokens[1]))),
        c.get(url(&format!("/places?t={}", tokens[0])))
            .header("cookie", format!("jc={}", tokens[1])),
        c.get(url("/places"))
            .header("cookie", format!("jc={}", tokens[0]))
            .header("x-jwt", format!("Bearer {}", tokens[1])),
        bearer("/plain", &tokens[0]).query(&[("jwt", &tokens[1])]),
    ] {
        assert_refused(
            &send(req).await,
            msg("Multiple tokens provided"),
            Some(INVALID),
            "multi",
        );
    }
    // A cookie the route does not name is not searched.
    assert_refused(
        &send(
            c.get(url("/plain"))
                .header("cookie", format!("jc={}", tokens[0])),
        )
        .await,
        msg("Unauthorized"),
        Some("Bearer"),
        "cookie not configured",
    );

    // maximum_expiration.
    assert_eq!(send(bearer("/maxexp", &tokens[2])).await.status, 200);
    assert_refused(
        &send(bearer("/maxexp", &tokens[3])).await,
        json!({"exp": "exceeds maximum allowed expiration"}),
        Some(INVALID),
        "maxexp",
    );
    assert_refused(
        &send(bearer("/maxexp", &tokens[0])).await,
        json!({"exp": "must be a number"}),
        Some(INVALID),
        "maxexp without exp",
    );

    // secret_is_base64: the credential's secret is base64 of what signed the token.
    let got = send(bearer("/b64", &tokens[4])).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_refused(
        &send(bearer("/plain", &tokens[4])).await,
        msg("Invalid signature"),
        Some(INVALID),
        "b64 off",
    );

    // Key rotation by kid.
    for (i, cred) in [(5, "rot#k1"), (6, "rot#k2"), (7, "rot"), (8, "rot")] {
        let got = send(bearer("/plain", &tokens[i])).await;
        assert_eq!(got.status, 200, "token {i}: {}", got.body);
        assert_eq!(got.echoed.unwrap().header("x-credential-identifier"), cred);
    }
    assert_refused(
        &send(bearer("/plain", &tokens[9])).await,
        msg("Invalid signature"),
        Some(INVALID),
        "kid of another key",
    );

    // The key claim can come from the JOSE header (key_claim_name = kid).
    let got = send(bearer("/kidclaim", &tokens[10])).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_refused(
        &send(bearer("/kidclaim", &tokens[0])).await,
        msg("No mandatory 'kid' in claims"),
        Some(INVALID),
        "kid claim",
    );

    // anonymous: failures fall through to the anonymous consumer; a valid token still wins.
    let e = send(c.get(url("/anon")).header("x-consumer-username", "forged"))
        .await
        .echoed
        .unwrap();
    assert_eq!(e.header("x-consumer-username"), "anon");
    assert_eq!(e.header("x-anonymous-consumer"), "true");
    assert!(!e.has("x-credential-identifier"));
    let e = send(bearer("/anon", "garbage")).await.echoed.unwrap();
    assert_eq!(e.header("x-consumer-username"), "anon");
    let e = send(bearer("/anon", &tokens[0])).await.echoed.unwrap();
    assert_eq!(e.header("x-consumer-username"), "alice");
    assert!(!e.has("x-anonymous-consumer"));
    let got = send(c.get(url("/anon-missing"))).await;
    assert_eq!(got.status, 500);
    assert_eq!(
        got.body["message"],
        "anonymous consumer nobody is configured but doesn't exist"
    );

    // run_on_preflight=false lets OPTIONS through unauthenticated (not other methods).
    let got = send(c.request(reqwest::Method::OPTIONS, url("/preflight"))).await;
    assert_eq!(got.status, 200);
    assert!(!got.echoed.unwrap().has("x-consumer-id"));
    assert_eq!(send(c.get(url("/preflight"))).await.status, 401);
    assert_eq!(
        send(c.request(reqwest::Method::OPTIONS, url("/plain")))
            .await
            .status,
        401
    );

    // realm goes into every challenge (Kong 3.9: space-separated).
    assert_refused(
        &send(c.get(url("/realm"))).await,
        msg("Unauthorized"),
        Some(r#"Bearer realm="gw""#),
        "realm none",
    );
    assert_refused(
        &send(bearer("/realm", "abc")).await,
        msg("Bad token; invalid JSON"),
        Some(r#"Bearer realm="gw" error="invalid_token""#),
        "realm bad",
    );
    assert_refused(
        &send(bearer("/realm", &tokens[0])).await,
        json!({"exp": "must be a number"}),
        Some(r#"Bearer realm="gw" error="invalid_token""#),
        "realm claims",
    );

    // jwt-claim-headers: verified claims to headers, forged ones dropped, missing ones absent.
    let forge = |req: reqwest::RequestBuilder| {
        req.header("x-auth-user", "forged")
            .header("x-missing", "forged")
            .header("x-roles", "forged")
    };
    let e = send(forge(bearer("/claims", &tokens[11])))
        .await
        .echoed
        .unwrap();
    assert_eq!(e.header("x-auth-user"), "u-4");
    assert_eq!(e.header("x-roles"), r#"["a","b"]"#);
    assert_eq!(e.header("x-admin"), "true");
    assert_eq!(e.header("x-n"), "42");
    assert_eq!(e.header("x-obj"), r#"{"k":"v"}"#);
    assert!(!e.has("x-missing"));
    let e = send(forge(bearer("/claims", &tokens[12])))
        .await
        .echoed
        .unwrap();
    assert!(!e.has("x-auth-user") && !e.has("x-roles") && !e.has("x-missing"));
    let e = send(forge(bearer("/claims-nojwt", &tokens[11])))
        .await
        .echoed
        .unwrap();
    assert!(
        !e.has("x-auth-user"),
        "no jwt ran: the header is only removed"
    );
    assert_eq!(
        e.header("x-roles"),
        "forged",
        "headers not configured are left alone"
    );
    let e = send(forge(c.get(url("/claims-anon"))))
        .await
        .echoed
        .unwrap();
    assert!(!e.has("x-auth-user"), "anonymous: no verified claims");
    // A forged (unverified) token never reaches the headers.
    let bad = format!("{}x", &tokens[11][..tokens[11].len() - 1]);
    assert_eq!(send(forge(bearer("/claims", &bad))).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_schema_violations() {
    let (_gw, api) = start_admin(Backend::Memory).await.unwrap();
    let r = api
        .post(
            "/plugins",
            &json!({"name": "jwt", "config": {"maximum_expiration": 31_536_001}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"code": 2, "name": "schema violation",
               "message": "schema violation (config.maximum_expiration: value should be between 0 and 31536000)",
               "fields": {"config": {"maximum_expiration": "value should be between 0 and 31536000"}}})
    );
    let r = api
        .post("/plugins", &json!({"name": "jwt", "config": {"claims_to_verify": ["iat"], "realm": 1, "nope": true}}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["name"], "schema violation");
    assert_eq!(
        r.body["fields"]["config"]["claims_to_verify"],
        json!(["expected one of: exp, nbf"])
    );
    assert_eq!(r.body["fields"]["config"]["realm"], "expected a string");
    assert_eq!(r.body["fields"]["config"]["nope"], "unknown field");
    // Kong's conditional: maximum_expiration > 0 needs exp in claims_to_verify (when it is set:
    // Kong's conditional lets a null list pass).
    let r = api
        .post(
            "/plugins",
            &json!({"name": "jwt", "config": {"maximum_expiration": 60, "claims_to_verify": ["nbf"]}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    eprintln!("conditional violation: {}", r.body);
    let text = r.body.to_string();
    assert!(text.contains("expected to contain: exp"), "{text}");
    assert!(
        text.contains(
            "failed conditional validation given value of field 'config.maximum_expiration'"
        ),
        "{text}"
    );
    let route = api
        .post("/routes", &json!({"name": "r-maxexp", "paths": ["/m"]}))
        .await
        .expect(201);
    api.post(
        &format!("/routes/{}/plugins", route["id"].as_str().unwrap()),
        &json!({"name": "jwt", "config": {"maximum_expiration": 60}}),
    )
    .await
    .expect(201);
    api.post(
        "/plugins",
        &json!({"name": "jwt", "config": {"maximum_expiration": 60, "claims_to_verify": ["exp"]}}),
    )
    .await
    .expect(201);
    // jwt cannot be scoped to a consumer.
    api.post("/consumers", &json!({"username": "c"}))
        .await
        .expect(201);
    let r = api
        .post("/consumers/c/plugins", &json!({"name": "jwt"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // jwt-claim-headers: header names must be valid.
    let r = api
        .post(
            "/plugins",
            &json!({"name": "jwt-claim-headers", "config": {"claims": {"sub": "bad header"}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["fields"]["config"]["claims"]["sub"],
        "bad header name, allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    );
    let r = api
        .post(
            "/plugins",
            &json!({"name": "jwt-claim-headers", "config": {}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["fields"]["config"]["claims"],
        "required field missing"
    );
    api.post(
        "/plugins",
        &json!({"name": "jwt-claim-headers", "config": {"claims": {"sub": "x-user"}}}),
    )
    .await
    .expect(201);

    // Asymmetric credentials need a PEM that really is a public key.
    let not_a_key = "-----BEGIN PUBLIC KEY-----\naGVsbG8gd29ybGQ=\n-----END PUBLIC KEY-----\n";
    for alg in ["RS256", "PS512", "ES512", "EdDSA"] {
        api.post(
            "/consumers/c/jwt",
            &json!({"algorithm": alg, "rsa_public_key": not_a_key}),
        )
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                        "message": "schema violation (rsa_public_key: invalid key)",
                        "fields": {"rsa_public_key": "invalid key"}}),
        );
        let r = api
            .post("/consumers/c/jwt", &json!({"algorithm": alg}))
            .await;
        assert_eq!(r.status, 400, "{alg}: {}", r.body);
        assert_eq!(r.body["fields"]["rsa_public_key"], "required field missing");
    }
}
