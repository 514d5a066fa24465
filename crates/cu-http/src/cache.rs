//! The dry-run result cache and the per-client rate limiter. Both use the host's monotonic clock, which only
//! decides whether an answer is reused or a request refused; nothing of it reaches a module.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::RateLimit;

/// A cache key: process, position of its schedule when the dry-run was asked, canonical body JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DryRunKey {
    pub process: String,
    pub position: String,
    pub body: String,
}

/// Answers of recent dry-runs (`V`: the serialized JSON and what signing it needs), bounded by age and count
/// (oldest evicted first).
pub(crate) struct DryRunCache<V> {
    max_age: Duration,
    capacity: usize,
    inner: Mutex<CacheInner<V>>,
}

struct CacheInner<V> {
    map: HashMap<DryRunKey, (Instant, V)>,
    order: VecDeque<(Instant, DryRunKey)>,
}

impl<V: Clone> DryRunCache<V> {
    pub fn new(max_age: Duration, capacity: usize) -> Self {
        DryRunCache {
            max_age,
            capacity,
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.max_age.is_zero() && self.capacity > 0
    }

    /// The cached answer, if younger than the max age.
    pub fn get(&self, key: &DryRunKey, now: Instant) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (at, body) = inner.map.get(key)?;
        (now.saturating_duration_since(*at) < self.max_age).then(|| body.clone())
    }

    pub fn insert(&self, key: DryRunKey, answer: V, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Drop expired entries and, beyond capacity, the oldest ones. An entry whose key was re-inserted
        // later has a newer time in the map than in `order`: its stale order slot is skipped.
        while let Some((at, _)) = inner.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.max_age;
            if !expired && inner.map.len() < self.capacity {
                break;
            }
            if let Some((at, k)) = inner.order.pop_front()
                && inner.map.get(&k).is_some_and(|(t, _)| *t == at)
            {
                inner.map.remove(&k);
            }
        }
        inner.order.push_back((now, key.clone()));
        inner.map.insert(key, (now, answer));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).map.len()
    }
}

/// Fixed-window request counts per client.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Records a request from `client`; false when it is over the limit.
    pub fn check(&self, client: &str, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            let window = self.limit.window;
            windows.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let entry = windows.entry(client.to_owned()).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.limit.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit.max_requests {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> DryRunKey {
        DryRunKey {
            process: "p".into(),
            position: "1".into(),
            body: body.into(),
        }
    }

    #[test]
    fn cache_expires_and_evicts_oldest() {
        let cache = DryRunCache::<String>::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        cache.insert(key("a"), "A".into(), t0);
        cache.insert(key("b"), "B".into(), t0 + Duration::from_secs(1));
        assert_eq!(
            cache.get(&key("a"), t0 + Duration::from_secs(9)).as_deref(),
            Some("A")
        );
        assert_eq!(cache.get(&key("a"), t0 + Duration::from_secs(10)), None);
        cache.insert(key("c"), "C".into(), t0 + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key("a"), t0 + Duration::from_secs(2)), None);
        assert_eq!(
            cache.get(&key("b"), t0 + Duration::from_secs(2)).as_deref(),
            Some("B")
        );
        let mut other = key("b");
        other.position = "2".into();
        assert_eq!(cache.get(&other, t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let cache = DryRunCache::<String>::new(Duration::ZERO, 10);
        let t0 = Instant::now();
        cache.insert(key("a"), "A".into(), t0);
        assert_eq!(cache.get(&key("a"), t0), None);
    }

    #[test]
    fn rate_limit_window() {
        let limiter = RateLimiter::new(RateLimit {
            window: Duration::from_secs(60),
            max_requests: 2,
        });
        let t0 = Instant::now();
        assert!(limiter.check("a", t0));
        assert!(limiter.check("a", t0));
        assert!(!limiter.check("a", t0 + Duration::from_secs(59)));
        assert!(limiter.check("b", t0));
        assert!(limiter.check("a", t0 + Duration::from_secs(60)));
    }
}
