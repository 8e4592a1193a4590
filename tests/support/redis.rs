//! Redis for tests: the server tests/run.sh started (`GWCTL_TEST_REDIS_URL`), and
//! [`PrivateRedis`], a `redis-server` of the test's own that it can stop and start again (for
//! "Redis went away" tests).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The URL tests/run.sh exports (`redis://127.0.0.1:PORT`), if any.
pub fn url() -> Option<String> {
    std::env::var("GWCTL_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Print the note a test leaves when there is no Redis to test against.
pub fn skip_note(test: &str) {
    eprintln!(
        "skipped {test}: GWCTL_TEST_REDIS_URL is not set (run the tests with tests/run.sh, \
         e.g. GWCTL_TEST_SERVICES=redis bash tests/run.sh {test})"
    );
}

/// Host and port of a `redis://host:port[/db]` URL.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("not a redis:// URL: {url}"));
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {url}"));
    (host.to_owned(), port.parse().expect("port"))
}

/// A client connection for checking what the gateway wrote.
pub async fn connect(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A `redis-server` on a free loopback port, without persistence. Killed on drop.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Start `redis-server` (from PATH) on a free port and wait until it answers.
    pub fn start() -> PrivateRedis {
        for attempt in 1..=3 {
            let mut r = PrivateRedis {
                port: free_port(),
                child: None,
            };
            if r.spawn() {
                return r;
            }
            eprintln!(
                "private redis did not start on port {} (attempt {attempt})",
                r.port
            );
        }
        panic!("private redis-server did not start (is redis-server on PATH?)");
    }

    /// The port (kept across [`stop`](Self::stop) and [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: clients see the connection drop, counters are lost).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Until the port refuses connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis still accepting after kill"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start it again on the same port after [`stop`](Self::stop) (empty).
    pub fn start_again(&mut self) {
        for _ in 0..20 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("private redis did not start again on port {}", self.port);
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: the port was taken
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
