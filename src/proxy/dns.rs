//! A small DNS cache for services that name a host directly (no upstream entity).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a successful lookup is reused.
const TTL: Duration = Duration::from_secs(30);

/// Cached answers: `(host, port)` -> (addresses, when resolved).
type Cache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// Resolves `host:port`, caching answers for [`TTL`] and rotating over multiple addresses.
#[derive(Default)]
pub(crate) struct Resolver {
    cache: RwLock<Cache>,
    next: AtomicUsize,
}

impl Resolver {
    /// One address for `host:port`, preferring one not in `exclude`.
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
        exclude: &[SocketAddr],
    ) -> std::io::Result<SocketAddr> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(SocketAddr::new(ip, port));
        }
        let cached = self.cache.read().ok().and_then(|c| {
            c.get(&(host.to_owned(), port))
                .filter(|(_, at)| at.elapsed() < TTL)
                .map(|(addrs, _)| addrs.clone())
        });
        let addrs = match cached {
            Some(a) => a,
            None => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no addresses"),
                    ));
                }
                if let Ok(mut c) = self.cache.write() {
                    c.insert((host.to_owned(), port), (addrs.clone(), Instant::now()));
                }
                addrs
            }
        };
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = addrs.len();
        (0..n)
            .map(|i| addrs[(start + i) % n])
            .find(|a| !exclude.contains(a))
            .or_else(|| addrs.get(start % n).copied())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
    }
}
