//! Role credentials kept until shortly before they expire, per run and role settings.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;

use super::settings::RoleSettings;
use super::sts::{RoleCredentials, StsError};

/// Credentials are renewed this long before they expire, so a client never gets ones about to
/// lapse (the AWS SDKs themselves refresh about 5 minutes ahead).
pub(crate) const RENEW_BEFORE: TimeDelta = TimeDelta::minutes(5);

/// What one cached entry is for: a run's session of a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub run_id: String,
    pub settings: RoleSettings,
}

/// The cache. One fetch at a time: concurrent requests of a starting container wait for the
/// first one's answer instead of each calling STS.
#[derive(Debug, Default)]
pub(crate) struct CredentialCache {
    entries: Mutex<HashMap<CacheKey, RoleCredentials>>,
}

/// Whether `credentials` may still be handed out at `now`.
pub(crate) fn fresh(credentials: &RoleCredentials, now: DateTime<Utc>) -> bool {
    now + RENEW_BEFORE < credentials.expiration
}

impl CredentialCache {
    /// The cached credentials for `key` if still fresh at `now`, else `fetch`'s (kept when it
    /// succeeds). Entries no longer fresh are dropped on the way.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: CacheKey,
        now: DateTime<Utc>,
        fetch: F,
    ) -> Result<RoleCredentials, StsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<RoleCredentials, StsError>>,
    {
        let mut entries = self.entries.lock().await;
        entries.retain(|_, credentials| fresh(credentials, now));
        if let Some(credentials) = entries.get(&key) {
            return Ok(credentials.clone());
        }
        let credentials = fetch().await?;
        if fresh(&credentials, now) {
            entries.insert(key, credentials.clone());
        }
        Ok(credentials)
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) async fn len(&self) -> usize {
        self.entries.lock().await.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use moat_plugin_sdk::Secret;

    use super::*;
    use crate::providers::aws::sts::StsFailure;

    fn key(run: &str) -> CacheKey {
        CacheKey {
            run_id: run.into(),
            settings: RoleSettings {
                role_arn: "arn:aws:iam::123456789012:role/agent".into(),
                region: "us-east-1".into(),
                duration: Duration::from_secs(900),
                external_id: None,
                profile: None,
            },
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn credentials(serial: usize, expiration: DateTime<Utc>) -> RoleCredentials {
        RoleCredentials {
            access_key_id: format!("ASIA{serial}"),
            secret_access_key: Secret::new(format!("secret{serial}")),
            session_token: Secret::new(format!("token{serial}")),
            expiration,
        }
    }

    /// Fetches numbered credentials valid 15 minutes from `t0`, counting calls.
    async fn get(
        cache: &CredentialCache,
        calls: &AtomicUsize,
        run: &str,
        now: DateTime<Utc>,
    ) -> String {
        cache
            .get_or_fetch(key(run), now, || async {
                let serial = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(credentials(serial, now + TimeDelta::minutes(15)))
            })
            .await
            .unwrap()
            .access_key_id
    }

    #[tokio::test]
    async fn kept_until_five_minutes_before_expiry() {
        let cache = CredentialCache::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(get(&cache, &calls, "run_a", t0()).await, "ASIA1");
        // Expires at t0+15m: fresh until t0+10m (exclusive).
        let almost = t0() + TimeDelta::minutes(10) - TimeDelta::seconds(1);
        assert_eq!(get(&cache, &calls, "run_a", almost).await, "ASIA1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let renew = t0() + TimeDelta::minutes(10);
        assert_eq!(get(&cache, &calls, "run_a", renew).await, "ASIA2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn each_run_has_its_own_session() {
        let cache = CredentialCache::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(get(&cache, &calls, "run_a", t0()).await, "ASIA1");
        assert_eq!(get(&cache, &calls, "run_b", t0()).await, "ASIA2");
        assert_eq!(get(&cache, &calls, "run_a", t0()).await, "ASIA1");
        assert_eq!(cache.len().await, 2);
        // Later, both stale: dropped, and only the asked one fetched again.
        let later = t0() + TimeDelta::hours(1);
        assert_eq!(get(&cache, &calls, "run_b", later).await, "ASIA3");
        assert_eq!(cache.len().await, 1);
    }

    #[tokio::test]
    async fn failures_and_short_lived_answers_are_not_kept() {
        let cache = CredentialCache::default();
        let err = cache
            .get_or_fetch(key("run_a"), t0(), || async {
                Err(StsError::new(StsFailure::AccessDenied, "no"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.failure, StsFailure::AccessDenied);
        assert_eq!(cache.len().await, 0);
        let short = cache
            .get_or_fetch(key("run_a"), t0(), || async {
                Ok(credentials(7, t0() + TimeDelta::minutes(4)))
            })
            .await
            .unwrap();
        assert_eq!(short.access_key_id, "ASIA7");
        assert_eq!(cache.len().await, 0);
    }
}
