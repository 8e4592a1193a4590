//! Network namespaces made by a test with `ip netns` (machine-recipes.md §4), as a container on
//! compose networks sees the world: its own `lo`, and one veth per network whose other end stays
//! in the host namespace (where the "bridge", i.e. the gateway, lives).
//!
//! Everything is removed on drop, even when the test fails: the namespace, the host ends of its
//! veths, and the claims on the subnets. Names carry the test process's pid and a counter, so
//! parallel tests (nextest runs each in its own process) never collide. Host-side addresses come
//! from [`HostSubnet::claim`], which reserves a `10.x.y.0/24` across processes (an atomic
//! `mkdir`) and skips any subnet the host already routes.
//!
//! Availability follows `tests/run.sh`: it exports `GWCTL_TEST_NETNS=1` after checking that
//! namespaces work. With it set, a namespace that cannot be made fails the test with the reason;
//! without it, the test prints why it is skipped and passes (not root, no `ip`).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e}", args.join(" ")))
}

/// Run `ip ARGS`, panicking with its stderr when it fails.
#[track_caller]
pub fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Whether the run asked for namespaces (`tests/run.sh` with the `netns` component).
fn required() -> bool {
    std::env::var_os("GWCTL_TEST_NETNS").is_some_and(|v| !v.is_empty())
}

/// A component the namespace tests need is missing: fail under `tests/run.sh`, skip otherwise.
/// Returns `None` so callers can `let Some(..) = .. else { return };`.
pub fn unavailable<T>(test: &str, why: &str) -> Option<T> {
    if required() {
        panic!(
            "{test}: GWCTL_TEST_NETNS is set but {why}. The `netns` component of tests/run.sh \
             needs root and iproute2 (`ip netns`)."
        );
    }
    eprintln!(
        "SKIPPED {test}: {why} (network namespaces need root and `ip`; tests/run.sh sets \
         GWCTL_TEST_NETNS=1 and then requires them)"
    );
    None
}

/// A network namespace, deleted on drop with the veths made for it.
pub struct Netns {
    pub name: String,
    /// Host ends of the veths, deleted explicitly (a process still inside would otherwise keep
    /// the namespace, and so the pair, alive).
    host_links: Vec<String>,
    /// Subnets reserved for this namespace's veths.
    claims: Vec<HostSubnet>,
    /// Interfaces inside, in creation order: `eth0`, `eth1`, ...
    devices: u32,
}

/// One veth between the host and a namespace.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The name inside the namespace (`eth0`, ...).
    pub inside: String,
    /// The name in the host namespace.
    pub host: String,
    /// The namespace's address.
    pub addr: Ipv4Addr,
    /// The host's address on it, when it has one.
    pub host_addr: Option<Ipv4Addr>,
    /// `a.b.c.0/24`.
    pub cidr: String,
}

impl Netns {
    /// A fresh namespace with `lo` up; see the module header for `None`.
    pub fn create(test: &str) -> Option<Self> {
        let name = format!("gwt-{}-{}", std::process::id(), next());
        let out = match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) => out,
            Err(e) => return unavailable(test, &format!("`ip` cannot be run ({e})")),
        };
        if !out.status.success() {
            return unavailable(
                test,
                &format!(
                    "`ip netns add` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
        }
        let ns = Self {
            name,
            host_links: Vec::new(),
            claims: Vec::new(),
            devices: 0,
        };
        ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        Some(ns)
    }

    /// A veth whose inside end is `ethN` with `addr/24`; the host end is up without an address
    /// (a network the host does not route: any subnet is fine, none is claimed).
    pub fn isolated_veth(&mut self, addr: Ipv4Addr) -> Veth {
        self.veth(addr, None)
    }

    /// A veth on a claimed `10.x.y.0/24`: the host end gets `.1`, the namespace `.2`, so the
    /// host (the gateway) and the namespace (the service) reach each other over it.
    pub fn routed_veth(&mut self) -> Veth {
        let subnet = HostSubnet::claim();
        let [a, b, c, _] = subnet.base.octets();
        let veth = self.veth(Ipv4Addr::new(a, b, c, 2), Some(Ipv4Addr::new(a, b, c, 1)));
        self.claims.push(subnet);
        veth
    }

    fn veth(&mut self, addr: Ipv4Addr, host_addr: Option<Ipv4Addr>) -> Veth {
        let k = next();
        let pid = std::process::id();
        let host = format!("gw{pid}h{k}");
        let temp = format!("gw{pid}n{k}");
        let inside = format!("eth{}", self.devices);
        self.devices += 1;
        ip_ok(&["link", "add", &host, "type", "veth", "peer", "name", &temp]);
        self.host_links.push(host.clone());
        ip_ok(&["link", "set", &temp, "netns", &self.name]);
        ip_ok(&["-n", &self.name, "link", "set", &temp, "name", &inside]);
        let [a, b, c, _] = addr.octets();
        let cidr = format!("{a}.{b}.{c}.0/24");
        ip_ok(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inside,
        ]);
        if let Some(h) = host_addr {
            ip_ok(&["addr", "add", &format!("{h}/24"), "dev", &host]);
        }
        ip_ok(&["link", "set", &host, "up"]);
        ip_ok(&["-n", &self.name, "link", "set", &inside, "up"]);
        Veth {
            inside,
            host,
            addr,
            host_addr,
            cidr,
        }
    }

    /// `ip netns exec NAME program`: a command run inside the namespace (the program replaces
    /// `ip`, so the child's pid is the program's).
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// The `ip -br addr` listing inside, for failure messages.
    pub fn addresses(&self) -> String {
        let out = ip(&["-n", &self.name, "-br", "addr"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for link in &self.host_links {
            let _ = ip(&["link", "del", link]);
        }
        let out = ip(&["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!(
                "warning: `ip netns del {}` failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // The claims drop after this, once nothing uses their subnets.
    }
}

/// A `10.x.y.0/24` reserved by this process until drop.
pub struct HostSubnet {
    pub base: Ipv4Addr,
    marker: PathBuf,
}

impl HostSubnet {
    /// Reserve a subnet no other test holds and the host does not route. Claims are directories
    /// under the temp dir (created atomically); one left by a killed run is skipped, not reused.
    pub fn claim() -> Self {
        let dir = std::env::temp_dir().join("gwctl-test-netns-subnets");
        std::fs::create_dir_all(&dir).expect("create the subnet claims directory");
        // 10.200.0.0 - 10.254.255.0: 14080 subnets; start somewhere that depends on the pid so
        // parallel processes rarely even contend.
        const N: u32 = 55 * 256;
        let start = std::process::id().wrapping_mul(7919) % N;
        for i in 0..N {
            let idx = (start + i) % N;
            let b = u8::try_from(200 + idx / 256).expect("second octet");
            let c = u8::try_from(idx % 256).expect("third octet");
            let base = Ipv4Addr::new(10, b, c, 0);
            let marker = dir.join(base.to_string());
            if std::fs::create_dir(&marker).is_err() {
                continue;
            }
            if routed_by_host(base) {
                let _ = std::fs::remove_dir(&marker);
                continue;
            }
            let _ = std::fs::write(marker.join("pid"), std::process::id().to_string());
            return Self { base, marker };
        }
        panic!("no free 10.x.y.0/24 subnet for a test namespace");
    }
}

impl Drop for HostSubnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.marker);
    }
}

/// Whether the host has a route overlapping `base/24` (other than the default route).
fn routed_by_host(base: Ipv4Addr) -> bool {
    let net = format!("{base}/24");
    ["match", "root"].iter().any(|how| {
        let out = ip(&["-4", "-o", "route", "show", "table", "all", how, &net]);
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("default")
                && !l.starts_with("broadcast")
                && !l.starts_with("local")
        })
    })
}
