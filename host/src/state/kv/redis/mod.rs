//! The shared backend: every service's rows in one Redis, so that gateway
//! nodes act as one (`[kv] type = "redis"`, the default of a clustered
//! node). Same contract and errNos as redb; what differs is said here.
//!
//! # Keys
//!
//! A service's keys all start with `wasmgate:kv:<n>:<service>:`, where `<n>`
//! is the byte length of the service's name:
//!
//! | key | type | what |
//! |---|---|---|
//! | `…:v:<key>` | string, expiring with the row | the value of `<key>` |
//! | `…:keys` | sorted set, score 0 | every row's key, for listing in byte order |
//! | `…:expiry` | sorted set, key → ms | rows with a time to live, by expiry |
//! | `…:lengths` | hash, key → bytes | the value length of each row with a time to live |
//! | `…:usage` | hash `keys`, `bytes` | what the service holds, for its quota |
//! | `…:scratch` | string, inside a script only | where `increment` adds |
//!
//! No two services can share a key, whatever their names or keys hold
//! (`:`, `*`, anything): read from the left, the digits up to the first `:`
//! after `wasmgate:kv:` give `<n>`, and the next `<n>` bytes are the
//! service, so every key names exactly one service. After the service's
//! prefix, user keys sit behind `v:`, which none of the service's own five
//! names starts with. Keys are never matched by pattern (no `KEYS`, no
//! `SCAN MATCH`), so `*` or `?` in a key is plain text.
//!
//! # Atomicity and quotas
//!
//! Every write is one Lua script ([`scripts`]), which Redis runs alone:
//! `set`, `delete`, `increment` and `compare-and-swap` read the row, check
//! the quota against the usage hash, write the row and its index entries
//! and update the usage together, whichever node sends them. Reads of one
//! key are plain `GET` and `EXISTS`; `list-keys`, `list-entries` and
//! `get-many` are scripts too, so each reads one snapshot.
//!
//! # Expiry
//!
//! A row with a time to live is a value key expiring at an absolute time
//! (`PXAT`) on Redis's clock, so every node agrees on when it expires and
//! it reads as absent at once. Its key stays in the index and its bytes in
//! the usage until it is removed: every write first removes up to
//! [`SWEEP_BATCH`](scripts::SWEEP_BATCH) of its own service's rows whose
//! expiry has passed (found by time in the expiry index, never by a scan),
//! and a write to an expired key removes its old row. Listing skips rows
//! whose value has expired. So expired rows stop counting at the service's
//! next write; a service that writes no more keeps at most its `kv_max_keys`
//! index entries.
//!
//! # Fairness
//!
//! All of a node's commands share one connection, which Redis serves in
//! order. A service may have at most [`IN_FLIGHT_PER_SERVICE`] commands in
//! flight from one node; the rest wait for their turn in the node, first
//! come first served, so another service's command is queued behind at
//! most that many of each busy service's, as with redb's writer groups.
//!
//! # Failures and durability
//!
//! Each command waits at most [`COMMAND_TIMEOUT`]. Redis unreachable, busy
//! or loading: errNo 2410 (503). A write answered so may or may not have
//! been applied (its answer was lost): read before retrying an `increment`.
//! Other Redis errors (out of memory under `noeviction`) are 2405. A write
//! acknowledged to a handler is in Redis's memory; it survives a Redis
//! restart as far as Redis's persistence promises (`appendonly yes` with
//! `appendfsync everysec` loses at most about a second of writes).

mod reply;
mod scripts;
mod settings;
#[cfg(test)]
mod tests;
mod turns;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation, Value};

use self::reply::{bytes, failed, integer, status, text, unexpected};
use self::scripts::Scripts;
use self::settings::report_settings;
use self::turns::Turns;
use super::{
    counter_overflow, not_a_counter, EntryPage, KeyPage, KvBackend, KvQuota, KvUsage,
    LIST_PAGE_KEYS, READ_MANY_BYTES,
};
use crate::protocol::{ApiError, ErrNo};

/// How long one Redis command (or script) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Commands of one service in flight at once from one node.
pub const IN_FLIGHT_PER_SERVICE: usize = 16;

/// Most index entries one page of `list-keys` or `list-entries` looks at:
/// Redis serves nothing else while the script runs.
const LIST_LOOK_UP_BUDGET: usize = 10 * LIST_PAGE_KEYS;

/// Longest time to live, 100 years: expiry times stay exact in Lua's
/// doubles.
const MAX_TTL_MS: u64 = 100 * 366 * 24 * 3600 * 1000;

/// The Redis backend. Cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    redis: ConnectionManager,
    scripts: Arc<Scripts>,
    turns: Arc<Turns>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

/// The Redis keys of one service's rows (see the module docs).
struct Keys {
    /// `wasmgate:kv:<n>:<service>:`
    prefix: String,
}

impl Keys {
    fn of(service: &str) -> Self {
        Self {
            prefix: format!("wasmgate:kv:{}:{service}:", service.len()),
        }
    }

    fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The prefix of the service's value keys.
    fn values(&self) -> String {
        self.named("v:")
    }

    fn value(&self, key: &str) -> String {
        format!("{}v:{key}", self.prefix)
    }
}

/// The `ZRANGEBYLEX` bounds of the keys starting with `prefix` after
/// `cursor`. UTF-8 never holds the byte 0xFF, so every key starting with
/// `prefix` sorts before `prefix` + 0xFF.
fn lex_range(prefix: &str, cursor: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let low = match cursor {
        Some(cursor) if cursor >= prefix => [b"(", cursor.as_bytes()].concat(),
        _ => [b"[", prefix.as_bytes()].concat(),
    };
    let high = if prefix.is_empty() {
        b"+".to_vec()
    } else {
        [b"(", prefix.as_bytes(), b"\xff"].concat()
    };
    (low, high)
}

impl RedisBackend {
    /// A store on the Redis at `url`; it connects at its first command, and
    /// again by itself after Redis was lost.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|error| anyhow::anyhow!("key-value store on Redis: {error}"))?;
        // Fail fast, as the cluster's connection does: one quick
        // reconnection attempt per failed command.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(COMMAND_TIMEOUT / 2))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let redis = client
            .get_connection_manager_lazy(config)
            .map_err(|error| anyhow::anyhow!("key-value store on Redis: {error}"))?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(report_settings(redis.clone()));
        }
        Ok(Self {
            redis,
            scripts: Arc::new(Scripts::new()),
            turns: Arc::default(),
        })
    }

    /// Runs one command of `service` in its turn, within [`COMMAND_TIMEOUT`].
    async fn run<T>(
        &self,
        service: &str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ApiError> {
        let _turn = self.turns.take(service).await;
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(failed(&error)),
            Err(_) => Err(ErrNo::STORE_UNAVAILABLE.with(format_args!(
                "no answer from Redis within {COMMAND_TIMEOUT:?}"
            ))),
        }
    }

    /// Runs a script of `service` (`EVALSHA`, loading it first where Redis
    /// lost it) in its turn.
    async fn script(
        &self,
        service: &str,
        invocation: ScriptInvocation<'_>,
    ) -> Result<Vec<Value>, ApiError> {
        self.run(service, async {
            let mut redis = self.redis.clone();
            invocation.invoke_async(&mut redis).await
        })
        .await
    }

    /// A call of the write `script` on `key` of `service`, with the keys and
    /// arguments every write script takes (see `scripts::PRELUDE`).
    fn write<'s>(
        script: &'s Script,
        service: &str,
        key: &str,
        quota: KvQuota,
    ) -> ScriptInvocation<'s> {
        let keys = Keys::of(service);
        let mut call = script.prepare_invoke();
        call.key(keys.named("keys"))
            .key(keys.named("expiry"))
            .key(keys.named("lengths"))
            .key(keys.named("usage"))
            .key(keys.value(key))
            .arg(keys.values())
            .arg(key)
            .arg(quota.max_keys)
            .arg(quota.max_bytes);
        call
    }

    /// One page of `list-keys` (`with_values` false) or `list-entries`:
    /// the keys, each followed by its value when `with_values`, and the
    /// cursor.
    async fn list(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
        with_values: bool,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let keys = Keys::of(service);
        let (low, high) = lex_range(prefix, cursor);
        let mut call = self.scripts.list.prepare_invoke();
        call.key(keys.named("keys"))
            .arg(keys.values())
            .arg(low)
            .arg(high)
            .arg(if with_values { "1" } else { "0" })
            .arg(LIST_PAGE_KEYS)
            .arg(READ_MANY_BYTES)
            .arg(LIST_LOOK_UP_BUDGET);
        let mut reply = self.script(service, call).await?.into_iter();
        let cursor = match reply.next() {
            Some(Value::Nil) => None,
            Some(value) => Some(text(value).ok_or_else(|| unexpected(&[]))?),
            None => return Err(unexpected(&[])),
        };
        Ok((reply.collect(), cursor))
    }
}

#[async_trait::async_trait]
impl KvBackend for RedisBackend {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let value = Keys::of(service).value(key);
        self.run(service, async {
            let mut redis = self.redis.clone();
            redis::cmd("GET").arg(value).query_async(&mut redis).await
        })
        .await
    }

    async fn exists(&self, service: &str, key: &str) -> Result<bool, ApiError> {
        let value = Keys::of(service).value(key);
        self.run(service, async {
            let mut redis = self.redis.clone();
            redis::cmd("EXISTS")
                .arg(value)
                .query_async(&mut redis)
                .await
        })
        .await
    }

    async fn list_keys(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, ApiError> {
        let (keys, cursor) = self.list(service, prefix, cursor, false).await?;
        let keys = keys
            .into_iter()
            .map(|key| text(key).ok_or_else(|| unexpected(&[])))
            .collect::<Result<_, _>>()?;
        Ok(KeyPage { keys, cursor })
    }

    async fn list_entries(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<EntryPage, ApiError> {
        let (flat, cursor) = self.list(service, prefix, cursor, true).await?;
        let mut entries = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
            match (text(key), bytes(value)) {
                (Some(key), Some(value)) => entries.push((key, value)),
                _ => return Err(unexpected(&[])),
            }
        }
        Ok(EntryPage { entries, cursor })
    }

    async fn get_many(
        &self,
        service: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ApiError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names = Keys::of(service);
        let mut call = self.scripts.get_many.prepare_invoke();
        for key in keys {
            call.key(names.value(key));
        }
        call.arg(READ_MANY_BYTES);
        let mut reply = self.script(service, call).await?.into_iter();
        match integer(reply.next().as_ref()) {
            Some(0) => {}
            Some(1) => {
                return Err(ErrNo::READ_TOO_LARGE.with(format_args!(
                    "the values are larger than {READ_MANY_BYTES} bytes together"
                )))
            }
            _ => return Err(unexpected(&[])),
        }
        let values: Vec<Option<Vec<u8>>> = reply
            .map(|value| match value {
                Value::Nil => Ok(None),
                value => bytes(value).map(Some).ok_or_else(|| unexpected(&[])),
            })
            .collect::<Result<_, _>>()?;
        if values.len() != keys.len() {
            return Err(unexpected(&[]));
        }
        Ok(values)
    }

    async fn usage(&self, service: &str) -> Result<KvUsage, ApiError> {
        let usage = Keys::of(service).named("usage");
        let (keys, bytes): (Option<u64>, Option<u64>) = self
            .run(service, async {
                let mut redis = self.redis.clone();
                redis::cmd("HMGET")
                    .arg(usage)
                    .arg("keys")
                    .arg("bytes")
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        Ok(KvUsage {
            keys: keys.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
        })
    }

    async fn set(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), ApiError> {
        let ttl_ms = ttl.map_or_else(String::new, |ttl| {
            u64::try_from(ttl.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_TTL_MS)
                .to_string()
        });
        let mut call = Self::write(&self.scripts.set, service, &key, quota);
        call.arg(value).arg(ttl_ms);
        let reply = self.script(service, call).await?;
        status(&reply, quota)
    }

    async fn delete(&self, service: &Arc<str>, key: String) -> Result<bool, ApiError> {
        let call = Self::write(&self.scripts.delete, service, &key, KvQuota::UNLIMITED);
        let reply = self.script(service, call).await?;
        status(&reply, KvQuota::UNLIMITED)?;
        Ok(integer(reply.get(1)) == Some(1))
    }

    async fn increment(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        delta: i64,
    ) -> Result<i64, ApiError> {
        let mut call = Self::write(&self.scripts.increment, service, &key, quota);
        call.arg(delta).key(Keys::of(service).named("scratch"));
        let reply = self.script(service, call).await?;
        if integer(reply.first()) == Some(2404) {
            return Err(match reply.get(2).cloned().and_then(text) {
                Some(counter) => counter_overflow(&counter, delta),
                None => not_a_counter(&key),
            });
        }
        status(&reply, quota)?;
        integer(reply.get(1)).ok_or_else(|| unexpected(&reply))
    }

    async fn compare_and_swap(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, ApiError> {
        let mut call = Self::write(&self.scripts.compare_and_swap, service, &key, quota);
        match expected {
            Some(expected) => call.arg(1).arg(expected),
            None => call.arg(0).arg(""),
        };
        call.arg(value);
        let reply = self.script(service, call).await?;
        status(&reply, quota)?;
        Ok(integer(reply.get(1)) == Some(1))
    }
}
