//! `gwctl register` (CONTRACT.md "gwctl register"): the real binary inside network namespaces the
//! tests make (a "container" with one veth per compose network, the gateway on the host side of
//! a veth), and the library against an in-process gateway.
//!
//! Covered: the address chosen for each `--prefix` and `--cidr` (whole-octet prefixes, loopback
//! and link-local only when asked, the first of several with a warning, none -> exit 1 listing
//! every address); registration over a veth, twice without duplicates, a changed weight updated;
//! waiting for an upstream created late, and giving up at the deadline; admin tokens (never
//! printed); exec mode: registered only once healthy, deregistered when the child exits or is
//! stopped by a forwarded SIGTERM or SIGINT, gwctl exiting with the child's status.

use std::net::Ipv4Addr;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gwctl::ops::progress::{Event, Outcome, Recorder};
use gwctl::ops::register::{self, Deregistered, RegisterOptions, Registered};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::support::admin::{AdminApi, Backend, start_admin_with, wait_proxy};
use crate::support::netns::{self, Netns, Veth};
use crate::support::{Gateway, TempDir, refused_addr};

const GWCTL: &str = env!("CARGO_BIN_EXE_gwctl");

/// Bound on any one gwctl run (registration waits are shorter).
const RUN_BOUND: Duration = Duration::from_secs(60);

// ---- helpers ----------------------------------------------------------------------------------

fn clean(cmd: &mut tokio::process::Command) {
    cmd.env_remove("GWCTL_ADMIN_URL")
        .env_remove("GWCTL_ADMIN_TOKEN")
        .env_remove("GWCTL_LOG")
        .env_remove("RUST_LOG")
        .env("GWCTL_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
}

/// `gwctl register ARGS` in the host namespace.
fn on_host(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(GWCTL);
    cmd.arg("register").args(args);
    clean(&mut cmd);
    cmd
}

/// `gwctl register ARGS` inside `ns`.
fn inside(ns: &Netns, args: &[&str]) -> tokio::process::Command {
    let mut cmd = ns.command(GWCTL);
    cmd.arg("register").args(args);
    clean(&mut cmd);
    cmd
}

async fn output(mut cmd: tokio::process::Command) -> Output {
    let child = cmd.spawn().expect("spawn gwctl");
    tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .expect("gwctl register finishes in time")
        .expect("wait for gwctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout lines that are not JSON log lines: the command's results.
fn results(o: &Output) -> Vec<String> {
    text(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

/// A gwctl still running, its output collected line by line.
struct Running {
    child: tokio::process::Child,
    pid: i32,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Running {
    fn start(mut cmd: tokio::process::Command) -> Self {
        let mut child = cmd.spawn().expect("spawn gwctl");
        let pid = i32::try_from(child.id().expect("pid")).unwrap();
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Self {
            child,
            pid,
            stdout,
            stderr,
        }
    }

    fn stdout_has(&self, needle: &str) -> bool {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    fn count(&self, needle: &str) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).expect("signal gwctl");
    }

    /// Wait (bounded) for the exit code; the pipes are drained by then.
    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("gwctl did not exit within {within:?}\n{}", self.output()))
            .expect("wait");
        // Let the readers reach EOF.
        tokio::time::sleep(Duration::from_millis(50)).await;
        status.code()
    }

    fn results(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with('{'))
            .cloned()
            .collect()
    }
}

/// `(target, weight)` of every target of `upstream`.
async fn targets(api: &AdminApi, upstream: &str) -> Vec<(String, u64)> {
    api.list_all(&format!("/upstreams/{upstream}/targets"))
        .await
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn create_upstream(api: &AdminApi, name: &str) {
    api.post("/upstreams", &json!({ "name": name }))
        .await
        .expect(201);
}

/// A gateway whose Admin API listens on the host side of `veth` (as Kong on a compose network).
async fn gateway_on(veth: &Veth) -> (Gateway, AdminApi) {
    let host = veth.host_addr.expect("a routed veth");
    start_admin_with(Backend::Memory, |o| o.admin_listen = format!("{host}:0"))
        .await
        .expect("memory backend")
}

/// The namespace tests' service: answers `/health` 503 until `marker` exists, 200 with
/// `child saw PATH` otherwise; `/quit` answers then exits 7; SIGINT exits 42; SIGTERM keeps
/// Python's default (death by signal).
const CHILD: &str = r#"
import http.server, os, signal, sys
port, marker = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, lambda *a: os._exit(42))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and marker != "-" and not os.path.exists(marker):
            self.send_response(503); self.send_header("content-length", "0"); self.end_headers()
            return
        body = ("child saw " + self.path).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.path == "/quit":
            os._exit(7)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", port), H).serve_forever()
"#;

/// The service's port inside the namespace: a fresh namespace has nothing listening, so a fixed
/// number cannot collide with anything.
const SERVICE_PORT: u16 = 8080;

fn python(test: &str) -> Option<String> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        Some("python3".to_owned())
    } else {
        netns::unavailable(
            test,
            "python3 (the exec-mode tests' child service) is not installed",
        )
    }
}

/// A "container" on two compose networks (both routed from the host), the gateway's admin on
/// the host side of the first, and upstream `svc`. The service registers on the second.
struct Stack {
    ns: Netns,
    service_net: Veth,
    /// Kept running for the test's length.
    _gw: Gateway,
    api: AdminApi,
}

impl Stack {
    async fn start(test: &str) -> Option<Self> {
        let mut ns = Netns::create(test)?;
        let admin_net = ns.routed_veth();
        let service_net = ns.routed_veth();
        let (gw, api) = gateway_on(&admin_net).await;
        create_upstream(&api, "svc").await;
        Some(Self {
            ns,
            service_net,
            _gw: gw,
            api,
        })
    }

    fn admin_url(&self) -> String {
        self.api.base.clone()
    }

    fn target(&self) -> String {
        format!("{}:{SERVICE_PORT}", self.service_net.addr)
    }

    /// `register --upstream svc --port 8080 --cidr SERVICE_NET --admin-url ADMIN` + `extra`.
    fn register(&self, extra: &[&str]) -> tokio::process::Command {
        let port = SERVICE_PORT.to_string();
        let admin = self.admin_url();
        let mut args = vec![
            "--upstream",
            "svc",
            "--port",
            &port,
            "--cidr",
            &self.service_net.cidr,
            "--admin-url",
            &admin,
        ];
        args.extend_from_slice(extra);
        inside(&self.ns, &args)
    }

    /// Exec mode with the [`CHILD`] service; `marker` gates its health (`-`: always healthy).
    fn exec(&self, python: &str, marker: &str, extra: &[&str]) -> tokio::process::Command {
        let port = SERVICE_PORT.to_string();
        let mut args: Vec<&str> = extra.to_vec();
        args.extend_from_slice(&["--", python, "-c", CHILD, &port, marker]);
        self.register(&args)
    }

    async fn targets(&self) -> Vec<(String, u64)> {
        targets(&self.api, "svc").await
    }
}

// ---- address selection, inside a namespace -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_the_address_for_each_prefix_and_cidr() {
    let Some(mut ns) = Netns::create("picks_the_address_for_each_prefix_and_cidr") else {
        return;
    };
    // Two compose networks whose texts share a start: 172.28.4.x and 172.28.40.x.
    ns.isolated_veth(Ipv4Addr::new(172, 28, 4, 7));
    ns.isolated_veth(Ipv4Addr::new(172, 28, 40, 9));
    let listing = ns.addresses();

    let dry = |selector: &'static str, value: &'static str| {
        inside(
            &ns,
            &[
                "--upstream",
                "u",
                "--port",
                "8080",
                selector,
                value,
                "--dry-run",
            ],
        )
    };
    for (selector, value, want, warning) in [
        ("--prefix", "172.28.4", "172.28.4.7", None),
        ("--prefix", "172.28.40", "172.28.40.9", None),
        ("--prefix", "172.28.40.9", "172.28.40.9", None),
        ("--cidr", "172.28.4.0/24", "172.28.4.7", None),
        ("--cidr", "172.28.40.0/24", "172.28.40.9", None),
        ("--cidr", "172.28.40.9/32", "172.28.40.9", None),
        (
            "--prefix",
            "172.28.",
            "172.28.4.7",
            Some(
                "warning: several addresses match --prefix 172.28.: using 172.28.4.7 (eth0); also matching: 172.28.40.9 (eth1)",
            ),
        ),
        (
            "--cidr",
            "172.28.0.0/16",
            "172.28.4.7",
            Some(
                "warning: several addresses match --cidr 172.28.0.0/16: using 172.28.4.7 (eth0); also matching: 172.28.40.9 (eth1)",
            ),
        ),
        // lo comes first in interface order; a selector that does not ask for it skips it.
        (
            "--cidr",
            "0.0.0.0/0",
            "172.28.4.7",
            Some(
                "warning: several addresses match --cidr 0.0.0.0/0: using 172.28.4.7 (eth0); also matching: 172.28.40.9 (eth1)",
            ),
        ),
        ("--prefix", "127", "127.0.0.1", None),
        ("--cidr", "127.0.0.0/8", "127.0.0.1", None),
        ("--prefix", "::1", "::1", None),
    ] {
        let o = output(dry(selector, value)).await;
        assert_eq!(
            o.status.code(),
            Some(0),
            "{selector} {value}: {}\naddresses:\n{listing}",
            text(&o.stderr)
        );
        assert_eq!(text(&o.stdout), format!("{want}\n"), "{selector} {value}");
        let stderr = text(&o.stderr);
        match warning {
            Some(w) => assert_eq!(stderr.trim_end(), w, "{selector} {value}"),
            None => assert!(stderr.is_empty(), "{selector} {value}: unexpected {stderr}"),
        }
    }

    // Nothing matches: exit 1 listing every address seen (and no registration attempt).
    for (selector, value) in [
        ("--prefix", "192.168.99"),
        ("--prefix", "172.28.44"),
        ("--prefix", "172.2"),
        ("--cidr", "10.0.0.0/8"),
    ] {
        for dry_run in [true, false] {
            let mut args = vec![
                "--upstream",
                "u",
                "--port",
                "8080",
                selector,
                value,
                "--admin-url",
                "http://127.0.0.1:9",
            ];
            if dry_run {
                args.push("--dry-run");
            }
            let o = output(inside(&ns, &args)).await;
            assert_eq!(o.status.code(), Some(1), "{selector} {value}");
            assert!(
                results(&o).is_empty(),
                "{selector} {value}: {}",
                text(&o.stdout)
            );
            let err = text(&o.stderr);
            assert!(
                err.starts_with(&format!(
                    "error: no address of this host matches {selector} {value}; addresses seen: "
                )),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            for seen in [
                "127.0.0.1 (lo)",
                "172.28.4.7 (eth0)",
                "172.28.40.9 (eth1)",
                "::1 (lo)",
            ] {
                assert!(err.contains(seen), "{seen} missing from {err}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_local_is_picked_only_when_asked() {
    let Some(mut ns) = Netns::create("link_local_is_picked_only_when_asked") else {
        return;
    };
    let eth0 = ns.isolated_veth(Ipv4Addr::new(172, 28, 4, 7));
    ip_addr_add(&ns, "169.254.10.20/16", &eth0.inside);
    ip_addr_add(&ns, "fe80::aaaa:7/64", &eth0.inside);
    let dry = |selector: &'static str, value: &'static str| {
        inside(
            &ns,
            &[
                "--upstream",
                "u",
                "--port",
                "8080",
                selector,
                value,
                "--dry-run",
            ],
        )
    };
    for (selector, value, want) in [
        ("--prefix", "169.254", "169.254.10.20"),
        ("--cidr", "169.254.0.0/16", "169.254.10.20"),
        ("--prefix", "fe80::aaaa", "fe80::aaaa:7"),
        ("--cidr", "fe80::aaaa:0/112", "fe80::aaaa:7"),
        ("--prefix", "169.", "-"),
        ("--cidr", "128.0.0.0/1", "172.28.4.7"),
    ] {
        let o = output(dry(selector, value)).await;
        if want == "-" {
            assert_eq!(o.status.code(), Some(1), "{selector} {value}");
            let err = text(&o.stderr);
            assert!(
                err.contains("matching but not picked") && err.contains("169.254.10.20 (eth0)"),
                "{err}"
            );
        } else {
            assert_eq!(
                o.status.code(),
                Some(0),
                "{selector} {value}: {}",
                text(&o.stderr)
            );
            assert_eq!(text(&o.stdout), format!("{want}\n"), "{selector} {value}");
        }
    }
}

fn ip_addr_add(ns: &Netns, addr: &str, dev: &str) {
    netns::ip_ok(&["-n", &ns.name, "addr", "add", addr, "dev", dev, "nodad"]);
}

// ---- registration over a veth ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_a_veth_twice_without_duplicates() {
    let Some(s) = Stack::start("registers_over_a_veth_twice_without_duplicates").await else {
        return;
    };
    let target = s.target();

    let o = output(s.register(&[])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        results(&o),
        vec![format!(
            "registered {target} with upstream svc (weight 100)"
        )]
    );
    assert_eq!(s.targets().await, vec![(target.clone(), 100)]);

    // Again: a success, nothing duplicated.
    let o = output(s.register(&[])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        results(&o),
        vec![format!(
            "{target} was already registered with upstream svc (weight 100)"
        )]
    );
    assert_eq!(s.targets().await, vec![(target.clone(), 100)]);

    // A changed weight is updated in place.
    let o = output(s.register(&["--weight", "40"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        results(&o),
        vec![format!(
            "{target} was already registered with upstream svc; weight 100 -> 40"
        )]
    );
    assert_eq!(s.targets().await, vec![(target.clone(), 40)]);
    assert_eq!(
        s.api.list_all("/upstreams/svc/targets/all").await.len(),
        1,
        "no second row behind the listing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_upstream_created_late_then_gives_up_at_the_deadline() {
    let Some(mut ns) = Netns::create("waits_for_an_upstream_created_late") else {
        return;
    };
    let admin_net = ns.routed_veth();
    let service_net = ns.routed_veth();
    let (_gw, api) = gateway_on(&admin_net).await;
    let admin = api.base.clone();

    let mut run = Running::start(inside(
        &ns,
        &[
            "--upstream",
            "late",
            "--port",
            "9000",
            "--cidr",
            &service_net.cidr,
            "--admin-url",
            &admin,
            "--wait",
            "60",
        ],
    ));
    // It retries while the upstream does not exist...
    assert_eventually!(
        Duration::from_secs(20),
        run.count("upstream not found (404") >= 2,
        "no retries on the missing upstream:\n{}",
        run.output()
    );
    assert!(targets_or_404(&api, "late").await.is_none());
    // ...and finishes once it does.
    create_upstream(&api, "late").await;
    assert_eq!(
        run.exit_code(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        run.output()
    );
    let target = format!("{}:9000", service_net.addr);
    assert_eq!(
        run.results(),
        vec![format!(
            "registered {target} with upstream late (weight 100)"
        )]
    );
    assert_eq!(targets(&api, "late").await, vec![(target, 100)]);

    // An upstream that never comes: exit 1 at the deadline, saying which.
    let o = output(inside(
        &ns,
        &[
            "--upstream",
            "never",
            "--port",
            "9000",
            "--cidr",
            &service_net.cidr,
            "--admin-url",
            &admin,
            "--wait",
            "1",
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "error: upstream never does not exist on the Admin API at {admin}"
        )),
        "{err}"
    );
}

async fn targets_or_404(api: &AdminApi, upstream: &str) -> Option<Value> {
    let r = api.get(&format!("/upstreams/{upstream}/targets")).await;
    if r.status == 404 {
        None
    } else {
        Some(r.expect(200))
    }
}

// ---- exec mode ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_registers_once_healthy_and_deregisters_when_the_child_exits() {
    let test = "exec_registers_once_healthy_and_deregisters_when_the_child_exits";
    let Some(python) = python(test) else { return };
    let Some(s) = Stack::start(test).await else {
        return;
    };
    let target = s.target();
    let dir = TempDir::new();
    let marker = dir.0.join("healthy");
    let marker = marker.to_str().unwrap();
    // A service and route through the upstream, to see the gateway reach the child.
    s.api
        .post(
            "/services",
            &json!({"name": "svc", "host": "svc", "port": 80}),
        )
        .await
        .expect(201);
    s.api
        .post("/services/svc/routes", &json!({"paths": ["/svc"]}))
        .await
        .expect(201);

    let mut run = Running::start(s.exec(&python, marker, &["--health-path", "/health"]));
    // Unhealthy (503) for now: probed, not registered.
    assert_eventually!(
        Duration::from_secs(20),
        run.count("answered 503") >= 2,
        "no failing health probes:\n{}",
        run.output()
    );
    assert_eq!(
        s.targets().await,
        vec![],
        "registered before it was healthy"
    );
    std::fs::write(marker, "").unwrap();
    assert_eventually!(
        Duration::from_secs(20),
        s.targets().await == vec![(target.clone(), 100)],
        "not registered once healthy:\n{}",
        run.output()
    );
    assert_eq!(
        wait_proxy(&s.api, "/svc/hello", 200).await,
        "child saw /hello"
    );

    // The child exits 7 (asked over the service network): deregistered, gwctl exits 7.
    let quit = crate::support::client()
        .get(format!("http://{target}/quit"))
        .send()
        .await
        .expect("quit request");
    assert_eq!(quit.status(), 200);
    assert_eq!(
        run.exit_code(Duration::from_secs(20)).await,
        Some(7),
        "{}",
        run.output()
    );
    assert_eq!(
        s.targets().await,
        vec![],
        "still registered:\n{}",
        run.output()
    );
    assert_eq!(
        run.results(),
        vec![
            format!("registered {target} with upstream svc (weight 100)"),
            format!("deregistered {target} from upstream svc"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sigterm_and_deregisters() {
    let test = "exec_forwards_sigterm_and_deregisters";
    let Some(python) = python(test) else { return };
    let Some(s) = Stack::start(test).await else {
        return;
    };
    let target = s.target();
    // No --health-path: registered once the port accepts connections.
    let mut run = Running::start(s.exec(&python, "-", &[]));
    assert_eventually!(
        Duration::from_secs(20),
        s.targets().await == vec![(target.clone(), 100)],
        "not registered:\n{}",
        run.output()
    );
    assert_eventually!(
        Duration::from_secs(5),
        run.stdout_has("registered"),
        "{}",
        run.output()
    );
    run.signal(nix::sys::signal::Signal::SIGTERM);
    // Python dies of the forwarded SIGTERM: 128 + 15, as a shell says.
    assert_eq!(
        run.exit_code(Duration::from_secs(20)).await,
        Some(143),
        "{}",
        run.output()
    );
    assert!(
        run.stdout_has("forwarding signal to the child"),
        "{}",
        run.output()
    );
    assert_eq!(s.targets().await, vec![]);
    assert_eq!(
        run.results().last().map(String::as_str),
        Some(format!("deregistered {target} from upstream svc").as_str()),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sigint_and_deregisters() {
    let test = "exec_forwards_sigint_and_deregisters";
    let Some(python) = python(test) else { return };
    let Some(s) = Stack::start(test).await else {
        return;
    };
    let target = s.target();
    let mut run = Running::start(s.exec(&python, "-", &["--health-path", "health"]));
    assert_eventually!(
        Duration::from_secs(20),
        s.targets().await == vec![(target.clone(), 100)],
        "not registered:\n{}",
        run.output()
    );
    run.signal(nix::sys::signal::Signal::SIGINT);
    // The child's SIGINT handler exits 42: the signal reached it, and its status is ours.
    assert_eq!(
        run.exit_code(Duration::from_secs(20)).await,
        Some(42),
        "{}",
        run.output()
    );
    assert_eq!(s.targets().await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_child_exiting_before_healthy_is_not_registered() {
    let Some(s) = Stack::start("exec_child_exiting_before_healthy_is_not_registered").await else {
        return;
    };
    let o = output(s.register(&["--", "sh", "-c", "echo child ran; exit 3"])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        results(&o).contains(&"child ran".to_owned()),
        "{}",
        text(&o.stdout)
    );
    assert!(
        !results(&o).iter().any(|l| l.contains("registered")),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(s.targets().await, vec![]);

    // A command that cannot start: exit 1 naming it.
    let o = output(s.register(&["--", "/nonexistent/gwctl-test-program"])).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error: starting /nonexistent/gwctl-test-program failed"),
        "{}",
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_child_never_healthy_is_stopped_and_fails() {
    let Some(s) = Stack::start("exec_child_never_healthy_is_stopped_and_fails").await else {
        return;
    };
    let started = std::time::Instant::now();
    // `sleep` never listens: not healthy within --wait 2; gwctl stops it and fails.
    let o = output(s.register(&["--wait", "2", "--", "sleep", "300"])).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!("error: {} was not healthy after", s.target()))
            && err.contains("the child was stopped"),
        "{err}"
    );
    // SIGTERM ends `sleep` at once: no waiting out the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(s.targets().await, vec![]);
}

// ---- without namespaces: the library and the CLI on loopback -----------------------------------

fn options(api: &AdminApi, upstream: &str, weight: u32, wait: Duration) -> RegisterOptions {
    RegisterOptions {
        upstream: upstream.to_owned(),
        addr: "127.0.0.1".parse().unwrap(),
        port: 7001,
        admin_url: api.base.clone(),
        admin_token: None,
        weight,
        wait,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_retries_a_missing_upstream_and_converges() {
    let (_gw, api) = start_admin_with(Backend::Memory, |_| {}).await.unwrap();
    let recorder = Arc::new(Recorder::new());
    let opts = options(&api, "lib", 100, Duration::from_secs(30));
    let task = {
        let recorder = Arc::clone(&recorder);
        let opts = opts.clone();
        tokio::spawn(async move { register::register(&opts, recorder.as_ref()).await })
    };
    let step = format!(
        "registering 127.0.0.1:7001 with upstream lib at {}",
        api.base
    );
    assert_eventually!(
        Duration::from_secs(20),
        recorder.events().iter().any(|e| matches!(
            e,
            Event::Retrying { step: s, cause, .. } if *s == step && cause.starts_with("upstream not found (404")
        )),
        "no retry on the missing upstream: {:?}",
        recorder.events()
    );
    create_upstream(&api, "lib").await;
    let done = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.unwrap(), Registered::Created);
    let events = recorder.events();
    assert_eq!(events.first(), Some(&Event::Started(step.clone())));
    assert_eq!(events.last(), Some(&Event::Finished(step, Outcome::Ok)));

    let quiet = Recorder::new();
    assert_eq!(
        register::register(&opts, &quiet).await.unwrap(),
        Registered::Unchanged
    );
    let heavier = options(&api, "lib", 7, Duration::from_secs(5));
    assert_eq!(
        register::register(&heavier, &quiet).await.unwrap(),
        Registered::WeightUpdated { from: 100 }
    );
    assert_eq!(
        targets(&api, "lib").await,
        vec![("127.0.0.1:7001".to_owned(), 7)]
    );
    assert_eq!(
        register::deregister(&opts, &quiet).await.unwrap(),
        Deregistered::Deleted
    );
    assert_eq!(
        register::deregister(&opts, &quiet).await.unwrap(),
        Deregistered::AlreadyGone
    );
    assert_eq!(targets(&api, "lib").await, vec![]);

    // IPv6 targets travel in brackets through the URL paths too.
    let v6 = RegisterOptions {
        addr: "::1".parse().unwrap(),
        ..opts.clone()
    };
    assert_eq!(
        register::register(&v6, &quiet).await.unwrap(),
        Registered::Created
    );
    assert_eq!(
        register::register(&v6, &quiet).await.unwrap(),
        Registered::Unchanged
    );
    assert_eq!(
        targets(&api, "lib").await,
        vec![("[::1]:7001".to_owned(), 100)]
    );
    assert_eq!(
        register::deregister(&v6, &quiet).await.unwrap(),
        Deregistered::Deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_sent_and_never_printed() {
    let token = "s3cret-admin-token-4711";
    let (_gw, api) = start_admin_with(Backend::Memory, |o| o.admin_token = Some(token.into()))
        .await
        .unwrap();
    let authed = reqwest::Client::new();
    let r = authed
        .post(format!("{}/upstreams", api.base))
        .header("kong-admin-token", token)
        .json(&json!({"name": "tok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let base = [
        "--upstream",
        "tok",
        "--port",
        "7002",
        "--prefix",
        "127",
        "--admin-url",
    ];

    let wrong = "wrong-token-0815";
    let mut cmd = on_host(&base);
    cmd.args([api.base.as_str(), "--admin-token", wrong]);
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("refused the request (401"), "{err}");
    assert!(
        !err.contains(wrong) && !text(&o.stdout).contains(wrong),
        "token printed"
    );

    let mut cmd = on_host(&base);
    cmd.arg(api.base.as_str()).env("GWCTL_ADMIN_TOKEN", token);
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        results(&o),
        vec!["registered 127.0.0.1:7002 with upstream tok (weight 100)".to_owned()]
    );
    assert!(
        !text(&o.stdout).contains(token) && !text(&o.stderr).contains(token),
        "token printed"
    );
}

#[tokio::test]
async fn an_unreachable_admin_api_fails_at_the_deadline() {
    let dead = format!("http://{}", refused_addr());
    let started = std::time::Instant::now();
    let o = output(on_host(&[
        "--upstream",
        "u",
        "--port",
        "7003",
        "--prefix",
        "127",
        "--admin-url",
        &dead,
        "--wait",
        "1",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "error: registering 127.0.0.1:7003 at {dead} failed for "
        )),
        "{err}"
    );
    assert!(
        err.contains("giving up") && err.contains("Connection refused"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // It retried in between, with the progress on stdout (log lines, not a terminal).
    assert!(
        text(&o.stdout).contains("not yet, retrying"),
        "{}",
        text(&o.stdout)
    );
}

#[tokio::test]
async fn bad_input_is_one_error_line_and_exit_1() {
    for (args, want) in [
        (
            vec!["--prefix", "10.9/8"],
            "error: invalid --prefix \"10.9/8\": a prefix is address text like 172.28.4; use --cidr for a CIDR",
        ),
        (
            vec!["--prefix", "172.028"],
            "error: invalid --prefix \"172.028\": octet \"028\" is not 0-255 as an address writes it",
        ),
        (
            vec!["--cidr", "172.28.4"],
            "error: invalid --cidr \"172.28.4\": expected ADDRESS/LENGTH, e.g. 172.28.4.0/24",
        ),
        (
            vec!["--prefix", "127", "--weight", "70000"],
            "error: invalid --weight 70000: a target's weight is 0-65535",
        ),
        (
            vec!["--prefix", "127", "--admin-url", "localhost:8001"],
            "error: invalid --admin-url localhost:8001: the scheme must be http or https",
        ),
    ] {
        let mut all = vec!["--upstream", "u", "--port", "1"];
        all.extend(args.iter());
        let o = output(on_host(&all)).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&o.stderr), format!("{want}\n"), "{args:?}");
    }
    // Neither --prefix nor --cidr, or both: a usage error (clap), exit 2.
    for args in [
        vec!["--upstream", "u", "--port", "1"],
        vec![
            "--upstream",
            "u",
            "--port",
            "1",
            "--prefix",
            "10",
            "--cidr",
            "10.0.0.0/8",
        ],
    ] {
        let o = output(on_host(&args)).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
}

/// On a terminal: the registration is an indicatif spinner whose line shows each retry (here:
/// the upstream is created a moment late), left as a `✓ step` line; stdout has the result only.
#[tokio::test]
async fn on_a_terminal_the_wait_is_a_spinner_with_its_retries() {
    use crate::support::tty::run_on_tty;
    let (_gw, api) = start_admin_with(Backend::Memory, |_| {}).await.unwrap();
    let cmd = on_host(&[
        "--upstream",
        "late-tty",
        "--port",
        "7003",
        "--prefix",
        "127",
        "--wait",
        "30",
        "--admin-url",
        api.base.as_str(),
    ]);
    let run = tokio::spawn(run_on_tty(cmd, Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    create_upstream(&api, "late-tty").await;
    let o = run.await.unwrap();
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.terminal);
    let (logs, out): (Vec<&str>, Vec<&str>) = o.stdout.lines().partition(|l| l.starts_with('{'));
    assert_eq!(
        out,
        vec!["registered 127.0.0.1:7003 with upstream late-tty (weight 100)"],
        "the result on stdout"
    );
    assert!(
        !logs.iter().any(|l| l.contains("\"step\"")),
        "progress is the spinner's, not log lines: {logs:?}"
    );
    assert!(o.redrew(), "{:?}", o.terminal);
    assert!(
        o.terminal.contains("(attempt 1: "),
        "the retry is on the spinner line: {:?}",
        o.terminal
    );
    let base = api.base.trim_end_matches('/');
    assert_eq!(
        o.screen_lines(),
        vec![format!(
            "✓ registering 127.0.0.1:7003 with upstream late-tty at {base}"
        )],
        "{:?}",
        o.terminal
    );
    assert_eq!(
        targets(&api, "late-tty").await,
        vec![("127.0.0.1:7003".to_owned(), 100)]
    );
}
