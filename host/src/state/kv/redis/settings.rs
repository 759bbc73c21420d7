//! The Redis settings the store relies on, looked at once at start.

use std::collections::HashMap;

use redis::aio::ConnectionManager;

use super::COMMAND_TIMEOUT;

/// Logs, once at start, the Redis settings the store relies on, with a
/// warning for each that is not as the README recommends: version 7,
/// `appendonly yes`, `maxmemory-policy noeviction`. A Redis that hides
/// `CONFIG` (a managed service) is not checked.
pub(super) async fn report_settings(mut redis: ConnectionManager) {
    let asked = tokio::time::timeout(COMMAND_TIMEOUT * 2, async {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut redis)
            .await?;
        let settings: HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("maxmemory-policy")
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        redis::RedisResult::Ok((info, settings))
    })
    .await;
    let (info, settings) = match asked {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            tracing::warn!(%error, "key-value store on Redis: not reachable at start; key-value calls answer 2410 until it is");
            return;
        }
        Err(_) => {
            tracing::warn!("key-value store on Redis: no answer at start; key-value calls answer 2410 until it answers");
            return;
        }
    };
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let appendonly = settings.get("appendonly").map_or("unknown", String::as_str);
    let policy = settings
        .get("maxmemory-policy")
        .map_or("unknown", String::as_str);
    tracing::info!(
        version,
        appendonly,
        maxmemory_policy = policy,
        "key-value store on Redis"
    );
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0);
    if major < 7 {
        tracing::warn!(
            version,
            "key-value store on Redis: Redis 7 or later is needed"
        );
    }
    if appendonly == "no" {
        tracing::warn!("key-value store on Redis: appendonly is no, so a Redis restart loses the rows written since its last snapshot; set appendonly yes");
    }
    if !matches!(policy, "noeviction" | "unknown") {
        tracing::warn!(maxmemory_policy = policy, "key-value store on Redis: Redis may evict rows, losing writes and skewing quotas; set maxmemory-policy noeviction");
    }
}
