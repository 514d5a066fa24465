//! Where a process's SU is (ao-scheduler-utils `locate`): the process's `Scheduler` tag (gateway GraphQL)
//! → the newest `Scheduler-Location` record that address signed → its `Url`. Answers are cached for the
//! record's `Time-To-Live` (an hour when it has none); an operator may pin one SU URL instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::UpstreamError;
use crate::gateway::Gateway;
use crate::wire::tag;

/// Most processes whose SU location is cached (the cache is emptied when full).
const CACHE_MAX: usize = 100_000;
/// How long a location is trusted when its record has no `Time-To-Live`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

pub(crate) struct Locator {
    pinned: Option<String>,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl Locator {
    pub(crate) fn new(pinned: Option<String>) -> Locator {
        Locator {
            pinned: pinned.map(|u| u.trim_end_matches('/').to_owned()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The SU URL every process is pinned to (`--su-url`), if any.
    pub(crate) fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// The SU URL of `process_id`.
    pub(crate) fn locate(&self, gateway: &Gateway, process_id: &str) -> Result<String, UpstreamError> {
        if let Some(url) = &self.pinned {
            return Ok(url.clone());
        }
        if let Ok(cache) = self.cache.lock()
            && let Some((url, until)) = cache.get(process_id)
            && *until > Instant::now()
        {
            return Ok(url.clone());
        }
        let process = gateway.transaction(process_id).map_err(|e| match e {
            UpstreamError::NotFound(_) => {
                UpstreamError::NotFound(format!("Process {process_id} was not found on the gateway"))
            }
            e => e,
        })?;
        let scheduler = tag(&process.tags, "Scheduler").ok_or_else(|| {
            UpstreamError::NotFound(format!(
                "Process {process_id} has no Scheduler tag: its SU cannot be located"
            ))
        })?;
        let (url, ttl) = gateway.scheduler_location(scheduler)?;
        let ttl = if ttl == 0 {
            DEFAULT_TTL
        } else {
            Duration::from_millis(ttl)
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(process_id.to_owned(), (url.clone(), Instant::now() + ttl));
        }
        Ok(url)
    }
}
