//! The compose files, validated and inspected with the real Docker Compose CLI (v2, `config`:
//! no engine needed; tests/run.sh's `compose` component): the base stack on gwctl and the
//! override on real Kong 3.9. Checks the topology issue 7 asks for on the resolved model, not on
//! the text: the start-up chain and its conditions, one network per service, the Admin API on
//! the host's loopback only, secrets only from the env file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{TempDir, component};

fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compose")
}

/// `docker-compose -f FILE... --env-file ENV config --format json`: (exit ok, stdout, stderr).
fn config(cli: &str, files: &[&Path], env_file: Option<&Path>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(cli);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    if let Some(e) = env_file {
        cmd.arg("--env-file").arg(e);
    }
    // Only what the env file says: nothing from the test's environment.
    for var in [
        "POSTGRES_PASSWORD",
        "GWCTL_ADMIN_TOKEN",
        "JWT_KEY",
        "JWT_SECRET",
        "OPENOBSERVE_USER",
        "OPENOBSERVE_PASSWORD",
        "OPENOBSERVE_ORG",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["config", "--format", "json"])
        .output()
        .unwrap_or_else(|e| panic!("run {cli}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resolved(cli: &str, files: &[&Path]) -> Value {
    let env = compose_dir().join(".env.example");
    let (ok, out, err) = config(cli, files, Some(&env));
    assert!(ok, "compose config rejected {files:?}: {err}");
    serde_json::from_str(&out).expect("config --format json")
}

fn env_example() -> Vec<(String, String)> {
    std::fs::read_to_string(compose_dir().join(".env.example"))
        .expect(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("k=v");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn depends(svc: &Value, on: &str) -> String {
    svc["depends_on"][on]["condition"]
        .as_str()
        .unwrap_or_else(|| panic!("no depends_on {on}: {svc}"))
        .to_owned()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn networks(svc: &Value) -> Vec<String> {
    let mut n: Vec<String> = svc["networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    n.sort();
    n
}

/// (host_ip, published, target) of each published port.
fn ports(svc: &Value) -> Vec<(String, String, u64)> {
    svc["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["host_ip"].as_str().unwrap_or("").to_owned(),
                        p["published"].as_str().unwrap_or("").to_owned(),
                        p["target"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_base_stack_has_the_original_topology_on_gwctl() {
    let Some(cli) = component("GWCTL_TEST_COMPOSE", "compose") else {
        return;
    };
    let base = compose_dir().join("docker-compose.yml");
    let c = resolved(&cli, &[&base]);
    let s = &c["services"];
    assert_eq!(c["name"], "gwctl");

    // The start-up chain and its conditions.
    assert_eq!(depends(&s["migrate"], "postgres"), "service_healthy");
    assert_eq!(
        depends(&s["gateway"], "migrate"),
        "service_completed_successfully"
    );
    assert_eq!(depends(&s["gateway-setup"], "gateway"), "service_healthy");
    for svc in ["auth", "monitor"] {
        assert_eq!(
            depends(&s[svc], "gateway-setup"),
            "service_completed_successfully"
        );
        assert_eq!(s[svc]["deploy"]["replicas"], 2, "{svc}");
    }
    assert_eq!(
        depends(&s["obs-setup"], "obs-config"),
        "service_completed_successfully"
    );
    assert_eq!(
        depends(&s["otel-collector"], "obs-setup"),
        "service_completed_successfully"
    );
    assert!(
        strs(&s["postgres"]["healthcheck"]["test"])
            .join(" ")
            .contains("pg_isready")
    );

    // gwctl's entrypoints.
    assert_eq!(strs(&s["migrate"]["command"])[..2], ["migrate", "up"]);
    assert_eq!(strs(&s["gateway"]["command"]), ["serve"]);
    assert_eq!(
        strs(&s["gateway"]["healthcheck"]["test"])[..3],
        ["CMD", "gwctl", "health"]
    );
    let setup = strs(&s["gateway-setup"]["command"]);
    assert_eq!(setup[..2], ["setup", "kong"], "{setup:?}");
    assert!(setup.contains(&"/etc/gwctl/gateway.yml".to_owned()));
    assert!(
        strs(&s["obs-setup"]["command"])[..2] == ["setup", "obs"],
        "{}",
        s["obs-setup"]
    );

    // One network per service; each replica registers the address of its own network.
    for (svc, net, binary) in [
        ("auth", "auth", "auth-service"),
        ("monitor", "monitor", "monitor-service"),
    ] {
        assert_eq!(networks(&s[svc]), [net.to_owned(), "otel".to_owned()]);
        let cmd = strs(&s[svc]["command"]);
        assert_eq!(cmd[0], "register", "{cmd:?}");
        assert_eq!(cmd.last().map(String::as_str), Some(binary), "{cmd:?}");
        let cidr = &cmd[cmd.iter().position(|a| a == "--cidr").expect("--cidr") + 1];
        assert_eq!(
            c["networks"][net]["ipam"]["config"][0]["subnet"].as_str(),
            Some(cidr.as_str()),
            "{svc} registers an address outside its network"
        );
        assert!(!cmd.iter().any(|a| a == "--reload"), "{cmd:?}");
    }
    assert_eq!(
        networks(&s["gateway"]),
        ["auth", "db", "gateway", "monitor", "otel"]
    );
    assert_eq!(networks(&s["postgres"]), ["db"]);

    // Published ports: the proxy on every interface, the Admin, status and OpenObserve APIs on
    // the host's loopback only; nothing else is published.
    let gw = ports(&s["gateway"]);
    assert!(gw.contains(&(String::new(), "8000".into(), 8000)), "{gw:?}");
    assert!(
        gw.contains(&("127.0.0.1".into(), "8001".into(), 8001)),
        "{gw:?}"
    );
    assert!(
        gw.contains(&("127.0.0.1".into(), "8007".into(), 8007)),
        "{gw:?}"
    );
    assert_eq!(gw.len(), 3, "{gw:?}");
    assert_eq!(
        ports(&s["openobserve"]),
        [("127.0.0.1".into(), "5080".into(), 5080)]
    );
    for (name, svc) in s.as_object().expect("services") {
        if !["gateway", "openobserve"].contains(&name.as_str()) {
            assert!(ports(svc).is_empty(), "{name} publishes ports: {svc}");
        }
    }

    // Secrets come from the env file: the resolved values are the env file's, and none of the
    // env file's values is written in the compose file itself.
    let text = std::fs::read_to_string(&base).expect("compose file");
    let env = env_example();
    let value = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        s["gateway-setup"]["environment"]["JWT_SECRET"].as_str(),
        value("JWT_SECRET").as_deref()
    );
    assert_eq!(
        s["gateway"]["environment"]["GWCTL_ADMIN_TOKEN"].as_str(),
        value("GWCTL_ADMIN_TOKEN").as_deref()
    );
    for (k, v) in &env {
        if k != "OPENOBSERVE_ORG" {
            assert!(
                !text.contains(v.as_str()),
                "{k}'s value is written in docker-compose.yml"
            );
        }
    }
    assert_eq!(
        c["secrets"]["auth_users"]["file"].as_str(),
        compose_dir().join("auth_users.txt").to_str()
    );
}

#[test]
fn the_kong_override_runs_real_kong_with_the_same_setup() {
    let Some(cli) = component("GWCTL_TEST_COMPOSE", "compose") else {
        return;
    };
    let base = compose_dir().join("docker-compose.yml");
    let kong = compose_dir().join("docker-compose.kong.yml");
    let c = resolved(&cli, &[&base, &kong]);
    let s = &c["services"];
    for svc in ["migrate", "gateway"] {
        assert_eq!(s[svc]["image"], "kong:3.9", "{svc}");
        assert!(s[svc].get("build").is_none(), "{svc} still builds gwctl");
        let env = s[svc]["environment"].as_object().expect("environment");
        assert!(env.keys().all(|k| k.starts_with("KONG_")), "{svc}: {env:?}");
        assert_eq!(env["KONG_DATABASE"], "postgres");
        assert_eq!(env["KONG_PG_HOST"], "postgres");
    }
    assert!(
        strs(&s["migrate"]["command"])
            .join(" ")
            .contains("kong migrations bootstrap")
    );
    assert!(
        s["gateway"]["command"].is_null(),
        "Kong's image command is overridden: {}",
        s["gateway"]
    );
    assert_eq!(
        strs(&s["gateway"]["healthcheck"]["test"]),
        ["CMD", "kong", "health"]
    );
    assert_eq!(
        s["gateway"]["environment"]["KONG_ADMIN_LISTEN"],
        "0.0.0.0:8001"
    );
    // The same setup and services, the same loopback-only Admin API.
    let gw = ports(&s["gateway"]);
    assert!(
        gw.contains(&("127.0.0.1".into(), "8001".into(), 8001)),
        "{gw:?}"
    );
    assert_eq!(strs(&s["gateway-setup"]["command"])[..2], ["setup", "kong"]);
    assert_eq!(depends(&s["gateway-setup"], "gateway"), "service_healthy");
    assert_eq!(strs(&s["auth"]["command"])[0], "register");
}

#[test]
fn compose_refuses_a_stack_without_its_secrets_or_with_a_broken_file() {
    let Some(cli) = component("GWCTL_TEST_COMPOSE", "compose") else {
        return;
    };
    let base = compose_dir().join("docker-compose.yml");
    // No env file: the required secrets are named.
    let dir = TempDir::new();
    let empty = dir.write("empty.env", "");
    let (ok, _, err) = config(&cli, &[&base], Some(&empty));
    assert!(!ok, "accepted without secrets");
    assert!(
        err.contains("is missing a value: set ") && err.contains(" in .env"),
        "{err}"
    );
    // A structurally broken override is rejected too (so the accepting runs above mean it).
    let broken = dir.write("broken.yml", "services:\n  gateway:\n    ports: 8000\n");
    let env = compose_dir().join(".env.example");
    let (ok, _, err) = config(&cli, &[&base, &broken], Some(&env));
    assert!(!ok, "accepted a broken override");
    assert!(err.contains("ports"), "{err}");
}
