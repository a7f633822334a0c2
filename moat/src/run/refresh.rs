//! Keeping a run's credentials fresh while it lasts.
//!
//! A grant whose provider has the refresh capability (and says this credential can be refreshed)
//! is renewed before it expires and at least once per the provider's interval, whichever comes
//! first. A renewed credential's rules replace the run's rules in place (requests see the old set
//! or the new one, never a mix), and the credential is stored, so the next run starts from it.
//! A failed refresh is reported and retried; the old credential stays in use until it expires,
//! since a provider that is briefly unreachable should not cut a run off. A provider that answers
//! `refresh_not_supported` is not asked again for that credential during the run.
//!
//! Nothing here names a provider: it drives [`RefreshableProvider`] through the contract.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moat_plugin_sdk::{Credential, CredentialProvider, ErrorKind, ProviderError, ProxyRules};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A refresh is due this long before expiry at most...
const MAX_MARGIN: Duration = Duration::from_secs(5 * 60);
/// ...and at least this long (a credential that lives a few seconds, as in tests).
const MIN_MARGIN: Duration = Duration::from_secs(1);
/// The first retry after a failure; doubled each time, up to the provider's interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// One grant of a run, as the refresher sees it.
pub struct RefreshTarget {
    /// The grant's canonical provider name.
    pub grant: String,
    /// Its provider.
    pub provider: Arc<dyn CredentialProvider>,
    /// The credential in use now.
    pub credential: Credential,
    /// The rules in use now.
    pub rules: ProxyRules,
}

/// What happened, for the user.
#[derive(Debug)]
pub enum RefreshEvent {
    /// `grant` was renewed.
    Refreshed { grant: String },
    /// A refresh failed; the old credential stays in use until it expires, and the next try is
    /// in `retry_in`.
    Failed {
        grant: String,
        error: ProviderError,
        expires_at: Option<DateTime<Utc>>,
        retry_in: Duration,
    },
}

/// Where a refresh's results go: the proxy's rules, the credential store, the user.
pub trait RefreshSink: Send + Sync + 'static {
    /// Every grant's rules, in grant order, one of them renewed.
    fn apply_rules(&self, rules: Vec<ProxyRules>);
    /// Keep the renewed credential.
    fn store(&self, grant: &str, credential: &Credential);
    /// Tell the user.
    fn report(&self, event: RefreshEvent);
}

/// The refresh task of one run; [`Refresher::stop`] ends it.
pub struct Refresher {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Refresher {
    /// Starts refreshing the targets that can be refreshed. With none, no task is started.
    pub fn start(targets: Vec<RefreshTarget>, sink: Arc<dyn RefreshSink>) -> Refresher {
        let (stop, stopped) = watch::channel(false);
        let refreshable = targets.iter().any(|target| {
            target
                .provider
                .as_refreshable()
                .is_some_and(|provider| provider.can_refresh(&target.credential))
        });
        let task = refreshable.then(|| tokio::spawn(refresh_loop(targets, sink, stopped)));
        Refresher { stop, task }
    }

    /// Whether a refresh task runs at all.
    #[cfg(test)]
    pub fn is_active(&self) -> bool {
        self.task.is_some()
    }

    /// Stops the task and waits for it (a refresh under way is abandoned).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// When `credential` should next be refreshed, from now: before it expires (by a fifth of its
/// lifetime, between [`MIN_MARGIN`] and [`MAX_MARGIN`]) and within `interval`.
pub fn next_refresh(credential: &Credential, interval: Duration, now: DateTime<Utc>) -> Duration {
    let Some(expires_at) = credential.expires_at else {
        return interval;
    };
    let lifetime = (expires_at - credential.created_at)
        .to_std()
        .unwrap_or_default();
    let margin = (lifetime / 5).clamp(MIN_MARGIN, MAX_MARGIN);
    let until_expiry = (expires_at - now).to_std().unwrap_or_default();
    until_expiry.saturating_sub(margin).min(interval)
}

struct Slot {
    target: RefreshTarget,
    due: Instant,
    retry: Duration,
}

async fn refresh_loop(
    targets: Vec<RefreshTarget>,
    sink: Arc<dyn RefreshSink>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut rules: Vec<ProxyRules> = targets.iter().map(|t| t.rules.clone()).collect();
    let now = Instant::now();
    let mut slots: Vec<(usize, Slot)> = targets
        .into_iter()
        .enumerate()
        .filter_map(|(index, target)| {
            let provider = target.provider.as_refreshable()?;
            if !provider.can_refresh(&target.credential) {
                return None;
            }
            let interval = provider.refresh_interval();
            let due = now + next_refresh(&target.credential, interval, Utc::now());
            Some((
                index,
                Slot {
                    target,
                    due,
                    retry: FIRST_RETRY,
                },
            ))
        })
        .collect();

    loop {
        let Some(position) = (0..slots.len()).min_by_key(|&i| slots[i].1.due) else {
            return;
        };
        let (index, slot) = {
            let next = &mut slots[position];
            (next.0, &mut next.1)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(slot.due) => {}
            _ = stopped.changed() => return,
        }
        let Some(provider) = slot.target.provider.as_refreshable() else {
            return;
        };
        let interval = provider.refresh_interval();
        let outcome = tokio::select! {
            outcome = provider.refresh(&slot.target.credential) => outcome,
            _ = stopped.changed() => return,
        };
        let grant = slot.target.grant.clone();
        match outcome {
            Ok(refreshed) => {
                rules[index] = refreshed.rules;
                sink.apply_rules(rules.clone());
                sink.store(&grant, &refreshed.credential);
                sink.report(RefreshEvent::Refreshed { grant });
                slot.due =
                    Instant::now() + next_refresh(&refreshed.credential, interval, Utc::now());
                slot.target.credential = refreshed.credential;
                slot.retry = FIRST_RETRY;
            }
            // This credential cannot be refreshed (a token from the environment): not an error,
            // and not worth asking again during this run.
            Err(error) if error.kind == ErrorKind::RefreshNotSupported => {
                tracing::debug!(grant = %grant, "not refreshed: {}", error.message);
                slots.swap_remove(position);
            }
            Err(error) => {
                let retry_in = slot.retry.min(interval).max(MIN_MARGIN);
                sink.report(RefreshEvent::Failed {
                    grant,
                    error,
                    expires_at: slot.target.credential.expires_at,
                    retry_in,
                });
                slot.due = Instant::now() + retry_in;
                slot.retry = (slot.retry * 2).min(interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use moat_plugin_sdk::{
        GrantRequest, GrantStep, ProviderInfo, ProviderResult, ProxyRule, RefreshableProvider,
        Refreshed, Secret,
    };

    use super::*;

    /// Hands out `token-1`, `token-2`, ... each living `lifetime`; fails the refreshes listed.
    struct Expiring {
        lifetime: chrono::Duration,
        count: AtomicUsize,
        fail: Vec<usize>,
        /// Every refresh answers `refresh_not_supported`.
        unsupported: bool,
    }

    impl Expiring {
        fn credential(&self, n: usize) -> Credential {
            let mut credential = Credential::new("expiring", format!("token-{n}"));
            credential.expires_at = Some(credential.created_at + self.lifetime);
            credential
        }
    }

    fn rules_for(credential: &Credential) -> ProxyRules {
        ProxyRules::new().with(ProxyRule::Credential {
            host: "api.example.test".into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: "expiring".into(),
        })
    }

    #[async_trait]
    impl CredentialProvider for Expiring {
        fn info(&self) -> ProviderInfo {
            ProviderInfo::new("expiring", "test")
        }
        async fn grant(&self, _: GrantRequest) -> ProviderResult<GrantStep> {
            unreachable!("not granted in these tests")
        }
        async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
            Ok(rules_for(credential))
        }
        fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
            Some(self)
        }
    }

    #[async_trait]
    impl RefreshableProvider for Expiring {
        fn refresh_interval(&self) -> Duration {
            Duration::from_secs(3600)
        }
        async fn refresh(&self, _: &Credential) -> ProviderResult<Refreshed> {
            let n = self.count.fetch_add(1, Ordering::SeqCst) + 2;
            if self.unsupported {
                return Err(ProviderError::new(
                    ErrorKind::RefreshNotSupported,
                    "this credential cannot be refreshed",
                ));
            }
            if self.fail.contains(&n) {
                return Err(ProviderError::new(ErrorKind::Network, "upstream is down"));
            }
            let credential = self.credential(n);
            Ok(Refreshed {
                rules: rules_for(&credential),
                credential,
            })
        }
    }

    #[derive(Default)]
    struct Recorder {
        applied: Mutex<Vec<String>>,
        stored: Mutex<Vec<String>>,
        events: Mutex<Vec<String>>,
    }

    impl RefreshSink for Recorder {
        fn apply_rules(&self, rules: Vec<ProxyRules>) {
            for rule in rules.iter().flat_map(|r| &r.rules) {
                if let ProxyRule::Credential { value, .. } = rule {
                    self.applied.lock().unwrap().push(value.expose().to_owned());
                }
            }
        }
        fn store(&self, grant: &str, credential: &Credential) {
            self.stored
                .lock()
                .unwrap()
                .push(format!("{grant}={}", credential.token.expose()));
        }
        fn report(&self, event: RefreshEvent) {
            let line = match event {
                RefreshEvent::Refreshed { grant, .. } => format!("refreshed {grant}"),
                RefreshEvent::Failed {
                    grant, retry_in, ..
                } => format!("failed {grant} retry {}s", retry_in.as_secs()),
            };
            self.events.lock().unwrap().push(line);
        }
    }

    fn target(provider: Arc<Expiring>) -> RefreshTarget {
        let credential = provider.credential(1);
        RefreshTarget {
            grant: "expiring".into(),
            rules: rules_for(&credential),
            credential,
            provider,
        }
    }

    #[test]
    fn due_before_expiry_and_within_the_interval() {
        let now = Utc::now();
        let mut credential = Credential::new("p", "t");
        credential.created_at = now;
        let hour = Duration::from_secs(3600);
        assert_eq!(
            next_refresh(&credential, hour, now),
            hour,
            "no expiry: the interval"
        );
        credential.expires_at = Some(now + chrono::Duration::hours(10));
        assert_eq!(
            next_refresh(&credential, hour, now),
            hour,
            "far expiry: the interval"
        );
        credential.expires_at = Some(now + chrono::Duration::minutes(30));
        // A fifth of 30 minutes is 6, capped at 5.
        assert_eq!(
            next_refresh(&credential, hour, now),
            Duration::from_secs(25 * 60)
        );
        credential.expires_at = Some(now + chrono::Duration::seconds(10));
        assert_eq!(next_refresh(&credential, hour, now), Duration::from_secs(8));
        credential.expires_at = Some(now - chrono::Duration::seconds(10));
        assert_eq!(
            next_refresh(&credential, hour, now),
            Duration::ZERO,
            "expired: now"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renews_before_expiry_and_swaps_the_rules() {
        let provider = Arc::new(Expiring {
            lifetime: chrono::Duration::seconds(10),
            count: AtomicUsize::new(0),
            fail: vec![],
            unsupported: false,
        });
        let sink = Arc::new(Recorder::default());
        let refresher = Refresher::start(vec![target(provider)], sink.clone());
        assert!(refresher.is_active());
        tokio::time::sleep(Duration::from_secs(17)).await;
        refresher.stop().await;
        // Due at 8 s, then 8 s after that: two refreshes in 17 s.
        assert_eq!(
            *sink.applied.lock().unwrap(),
            vec!["Bearer token-2", "Bearer token-3"]
        );
        assert_eq!(
            *sink.stored.lock().unwrap(),
            vec!["expiring=token-2", "expiring=token-3"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_reported_and_retried_and_the_old_rules_stay() {
        let provider = Arc::new(Expiring {
            lifetime: chrono::Duration::seconds(60),
            count: AtomicUsize::new(0),
            fail: vec![2],
            unsupported: false,
        });
        let sink = Arc::new(Recorder::default());
        let refresher = Refresher::start(vec![target(provider)], sink.clone());
        // Due at 48 s (fails), retried 5 s later.
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert!(sink.applied.lock().unwrap().is_empty(), "old rules kept");
        tokio::time::sleep(Duration::from_secs(5)).await;
        refresher.stop().await;
        assert_eq!(
            *sink.events.lock().unwrap(),
            vec!["failed expiring retry 5s", "refreshed expiring"]
        );
        assert_eq!(*sink.applied.lock().unwrap(), vec!["Bearer token-3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_not_supported_stops_refreshing_that_credential() {
        let provider = Arc::new(Expiring {
            lifetime: chrono::Duration::seconds(10),
            count: AtomicUsize::new(0),
            fail: vec![],
            unsupported: true,
        });
        let sink = Arc::new(Recorder::default());
        let refresher = Refresher::start(vec![target(provider.clone())], sink.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        refresher.stop().await;
        assert_eq!(provider.count.load(Ordering::SeqCst), 1, "asked once");
        assert!(
            sink.events.lock().unwrap().is_empty(),
            "no failure reported"
        );
        assert!(sink.applied.lock().unwrap().is_empty(), "old rules kept");
    }

    #[tokio::test]
    async fn nothing_refreshable_starts_nothing() {
        let mock = moat_plugin_sdk::testkit::MockProvider::new("plain");
        let target = RefreshTarget {
            grant: "plain".into(),
            provider: Arc::new(mock),
            credential: Credential::new("plain", "t"),
            rules: ProxyRules::new(),
        };
        let refresher = Refresher::start(vec![target], Arc::new(Recorder::default()));
        assert!(!refresher.is_active());
        refresher.stop().await;
    }
}
