//! The `redis` policy: counters in a Redis shared by every node, checked and incremented by one
//! atomic Lua script (EVALSHA, EVAL when Redis does not know it yet).
//!
//! Kong reads the counters, proxies, and increments them afterwards, so N nodes under a burst
//! let through more than the limit. Here a single script checks every configured period and
//! increments all of them only when none is used up, so the total across nodes never exceeds
//! the limit. One multiplexed [`ConnectionManager`] per distinct Redis configuration is kept in
//! the plugin kind (it reconnects by itself); `config.redis.timeout` bounds every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use super::{Hit, Limit};

/// `config.redis` (Kong 3.6+; the flat `redis_*` names are mapped onto it by the schema).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct RedisConfig {
    /// Host name or address.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Connect and command timeout, milliseconds (0 or unset: the default, 2000).
    pub timeout: Option<u32>,
    /// ACL user name (Redis 6+).
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (`SELECT`; unset: 0).
    pub database: Option<i64>,
    /// TLS.
    pub ssl: Option<bool>,
    /// Verify the server certificate (and its name).
    pub ssl_verify: Option<bool>,
    /// SNI name; accepted for compatibility (the connection verifies and sends `host`).
    pub server_name: Option<String>,
}

/// Checks every period and increments all of them only if none is used up.
///
/// KEYS: one counter per configured period. ARGV: per key its limit and the expiry (ms) to set
/// when the key is created. Returns `{stop, used_1, ..., used_n}`: `stop` is the 1-based index
/// of the first used-up period (0: admitted), `used_i` the count before this request.
const SCRIPT: &str = r"
local stop = 0
local used = {}
for i = 1, #KEYS do
  local c = tonumber(redis.call('GET', KEYS[i])) or 0
  used[i] = c
  if stop == 0 and tonumber(ARGV[2 * i - 1]) - c <= 0 then
    stop = i
  end
end
if stop == 0 then
  for i = 1, #KEYS do
    if redis.call('INCR', KEYS[i]) == 1 then
      redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
    end
  end
end
table.insert(used, 1, stop)
return used
";

static HIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// Counters outlive their window by this much, so nodes with slightly different clocks still
/// share them.
const EXPIRY_SLACK_MS: i64 = 5_000;

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RedisFailure {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `config.redis.timeout`.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    /// The configuration cannot make a connection (no host).
    #[error("redis: {0}")]
    Config(String),
}

/// One Redis configuration's connection, shared by every instance that uses it.
pub(super) struct RedisConn {
    manager: ConnectionManager,
    timeout: Duration,
    last_warn_ms: AtomicI64,
    suppressed: AtomicU64,
}

/// The connections of this node, one per distinct `config.redis`.
#[derive(Default)]
pub(super) struct RedisPool {
    conns: Mutex<HashMap<RedisConfig, Arc<RedisConn>>>,
}

impl RedisPool {
    /// The connection for `conf`, created (lazily connecting) on first use.
    pub(super) fn get(&self, conf: &RedisConfig) -> Result<Arc<RedisConn>, RedisFailure> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = conns.get(conf) {
            return Ok(Arc::clone(c));
        }
        let conn = Arc::new(RedisConn::new(conf)?);
        conns.insert(conf.clone(), Arc::clone(&conn));
        Ok(conn)
    }
}

/// `redis[s]://[user][:password@]host:port/db[#insecure]` for `conf`.
fn url(conf: &RedisConfig) -> Result<String, RedisFailure> {
    let host = conf
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| RedisFailure::Config("config.redis.host is not set".into()))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let auth = match (&conf.username, &conf.password) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        (Some(u), None) => format!("{}@", enc(u)),
        (None, Some(p)) => format!(":{}@", enc(p)),
        (None, None) => String::new(),
    };
    let ssl = conf.ssl.unwrap_or(false);
    let scheme = if ssl { "rediss" } else { "redis" };
    let insecure = if ssl && !conf.ssl_verify.unwrap_or(false) {
        "#insecure"
    } else {
        ""
    };
    Ok(format!(
        "{scheme}://{auth}{host}:{}/{}{insecure}",
        conf.port.unwrap_or(6379),
        conf.database.unwrap_or(0)
    ))
}

impl RedisConn {
    fn new(conf: &RedisConfig) -> Result<Self, RedisFailure> {
        let timeout = Duration::from_millis(match conf.timeout {
            None | Some(0) => 2000,
            Some(t) => u64::from(t),
        });
        let client = redis::Client::open(url(conf)?)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect attempts are driven by requests; each one is bounded by the timeout.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            manager,
            timeout,
            last_warn_ms: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        })
    }

    /// Count one request under `prefix` for every limit, unless one is used up (atomically).
    pub(super) async fn hit(
        &self,
        prefix: &str,
        limits: &[Limit],
        now_ms: i64,
    ) -> Result<Hit, RedisFailure> {
        let mut inv = HIT.prepare_invoke();
        for l in limits {
            let (start, end) = l.period.window(now_ms);
            inv.key(format!("{prefix}:{start}:{}", l.period.name()));
            inv.arg(l.limit).arg(end - now_ms + EXPIRY_SLACK_MS);
        }
        let mut conn = self.manager.clone();
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisFailure::Timeout(self.timeout))??;
        let (stop, used) = reply
            .split_first()
            .ok_or_else(|| RedisFailure::Config("unexpected script reply".into()))?;
        let mut hit = Hit::default();
        for (i, l) in limits.iter().enumerate() {
            let u = used.get(i).copied().unwrap_or(0);
            hit.used.push((l.period, u64::try_from(u).unwrap_or(0)));
        }
        hit.stop = usize::try_from(*stop)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|s| limits.get(s))
            .map(|l| l.period);
        Ok(hit)
    }

    /// Log a failure at most once every 10 seconds per connection, with the number of failures
    /// left unlogged in between.
    pub(super) fn warn(&self, err: &RedisFailure, now_ms: i64, fault_tolerant: bool) {
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 10_000
            || self
                .last_warn_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if fault_tolerant {
            tracing::warn!(
                error = %err,
                suppressed,
                "rate-limiting: redis unavailable, requests pass without rate limiting (fault_tolerant)"
            );
        } else {
            tracing::error!(
                error = %err,
                suppressed,
                "rate-limiting: redis unavailable, answering 500 (fault_tolerant=false)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> RedisConfig {
        RedisConfig {
            host: Some("127.0.0.1".into()),
            port: Some(6380),
            timeout: Some(2000),
            username: None,
            password: None,
            database: Some(3),
            ssl: None,
            ssl_verify: Some(false),
            server_name: None,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(url(&conf()).unwrap(), "redis://127.0.0.1:6380/3");
        let mut c = conf();
        c.username = Some("u".into());
        c.password = Some("p@ss:w/rd".into());
        c.ssl = Some(true);
        c.host = Some("::1".into());
        assert_eq!(
            url(&c).unwrap(),
            "rediss://u:p%40ss%3Aw%2Frd@[::1]:6380/3#insecure"
        );
        c.ssl_verify = Some(true);
        c.username = None;
        assert!(url(&c).unwrap().starts_with("rediss://:p%40"));
        assert!(!url(&c).unwrap().ends_with("#insecure"));
        c.host = None;
        assert!(url(&c).is_err());
    }
}
