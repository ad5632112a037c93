//! Call records: what feedback on a routed call needs to know about it,
//! kept per call id for a while (a fixed capacity, oldest evicted first, and
//! a time to live), behind [`CallRecords`] so that a store shared by every
//! replica can stand in for [`MemoryCallRecords`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{Clock, LearningContext, StoreFuture, SystemClock};
use crate::task::Difficulty;

/// `CALL_RECORDS_CAPACITY`: most call records kept (oldest evicted first).
pub const ENV_CALL_RECORDS_CAPACITY: &str = "CALL_RECORDS_CAPACITY";
/// `CALL_RECORDS_TTL_SECS`: how long a call accepts feedback.
pub const ENV_CALL_RECORDS_TTL_SECS: &str = "CALL_RECORDS_TTL_SECS";
/// Default for [`ENV_CALL_RECORDS_CAPACITY`] (a few MB of memory).
pub const DEFAULT_CALL_RECORDS_CAPACITY: usize = 20_000;
/// Default for [`ENV_CALL_RECORDS_TTL_SECS`]: one day.
pub const DEFAULT_CALL_RECORDS_TTL_SECS: u64 = 86_400;

/// What feedback on one routed call needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call id.
    pub call_id: String,
    /// The tenant the call was made for.
    pub tenant: Option<String>,
    /// The catalogue id of the model that answered.
    pub model: String,
    /// The difficulty tier routed for.
    pub tier: Option<Difficulty>,
    /// The chain considered (primary first).
    pub candidates: Vec<String>,
    /// The bandit's context.
    pub context: LearningContext,
    /// Whether the call explored.
    pub explored: bool,
    /// Whether the request was private.
    pub private: bool,
}

/// Why feedback cannot be taken for a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// No such call, or its record expired or was evicted.
    #[error("no call {0:?} is known (unknown, expired or evicted)")]
    Unknown(String),
    /// The call was made for another tenant.
    #[error("call {0:?} was made for another tenant")]
    OtherTenant(String),
    /// Feedback for the call was already taken.
    #[error("feedback for call {0:?} was already given")]
    AlreadyRated(String),
    /// The store failed.
    #[error("call records unavailable: {0}")]
    Store(String),
}

/// Call records by call id.
pub trait CallRecords: Send + Sync {
    /// Keeps a record, unless a live one has the same call id: that first
    /// record stays. Call ids may come from the caller (`X-Call-Id`), so a
    /// later call reusing one must neither take over another tenant's record
    /// nor make a rated call rateable again.
    fn put(&self, record: CallRecord) -> StoreFuture<'_, ()>;

    /// The record of `call_id` for feedback on behalf of `tenant`, marked
    /// rated so that a second claim is refused: at most one feedback per
    /// call is learned from.
    fn claim<'a>(
        &'a self,
        call_id: &'a str,
        tenant: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<CallRecord, ClaimError>> + Send + 'a>>;
}

struct Entry {
    record: CallRecord,
    at: Duration,
    rated: bool,
}

#[derive(Default)]
struct Records {
    by_id: HashMap<String, Entry>,
    /// Call ids, oldest first (with the time each was put, so that a
    /// replaced record's older slot is skipped).
    order: VecDeque<(String, Duration)>,
}

/// [`CallRecords`] in this process's memory.
pub struct MemoryCallRecords {
    records: Mutex<Records>,
    capacity: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryCallRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCallRecords")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl MemoryCallRecords {
    /// At most `capacity` records (at least 1), each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self::with_clock(capacity, ttl, Arc::new(SystemClock::new()))
    }

    /// As [`MemoryCallRecords::new`], on `clock`.
    pub fn with_clock(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            records: Mutex::new(Records::default()),
            capacity: capacity.max(1),
            ttl,
            clock,
        }
    }

    /// Records kept (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, records: &mut Records, now: Duration) {
        while let Some((id, at)) = records.order.front() {
            let stale = records.by_id.get(id).is_none_or(|e| e.at != *at);
            let expired = now.saturating_sub(*at) >= self.ttl;
            if !(stale || expired || records.by_id.len() > self.capacity) {
                break;
            }
            if !stale {
                records.by_id.remove(id);
            }
            records.order.pop_front();
        }
    }
}

impl CallRecords for MemoryCallRecords {
    fn put(&self, record: CallRecord) -> StoreFuture<'_, ()> {
        let now = self.clock.now();
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        self.evict(&mut records, now);
        if records.by_id.contains_key(&record.call_id) {
            return Box::pin(std::future::ready(Ok(())));
        }
        records.order.push_back((record.call_id.clone(), now));
        records.by_id.insert(
            record.call_id.clone(),
            Entry {
                record,
                at: now,
                rated: false,
            },
        );
        self.evict(&mut records, now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim<'a>(
        &'a self,
        call_id: &'a str,
        tenant: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<CallRecord, ClaimError>> + Send + 'a>> {
        let now = self.clock.now();
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        self.evict(&mut records, now);
        let result = match records.by_id.get_mut(call_id) {
            None => Err(ClaimError::Unknown(call_id.to_owned())),
            Some(e) if e.record.tenant.as_deref() != tenant => {
                Err(ClaimError::OtherTenant(call_id.to_owned()))
            }
            Some(e) if e.rated => Err(ClaimError::AlreadyRated(call_id.to_owned())),
            Some(e) => {
                e.rated = true;
                Ok(e.record.clone())
            }
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ManualClock;
    use crate::task::Task;

    fn record(id: &str, tenant: Option<&str>) -> CallRecord {
        CallRecord {
            call_id: id.to_owned(),
            tenant: tenant.map(str::to_owned),
            model: "m".to_owned(),
            tier: None,
            candidates: vec!["m".to_owned()],
            context: LearningContext {
                task: Task::Generate,
                tier: None,
                length: 0,
            },
            explored: false,
            private: false,
        }
    }

    fn block<F: Future>(f: F) -> F::Output {
        // Memory futures are ready at once.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a memory store future was pending"),
        }
    }

    #[test]
    fn claims_once_for_the_same_tenant() {
        let calls = MemoryCallRecords::new(10, Duration::from_secs(60));
        block(calls.put(record("a", Some("acme")))).unwrap();
        assert_eq!(
            block(calls.claim("b", Some("acme"))),
            Err(ClaimError::Unknown("b".to_owned()))
        );
        assert_eq!(
            block(calls.claim("a", Some("other"))),
            Err(ClaimError::OtherTenant("a".to_owned()))
        );
        assert_eq!(
            block(calls.claim("a", None)),
            Err(ClaimError::OtherTenant("a".to_owned()))
        );
        assert_eq!(block(calls.claim("a", Some("acme"))).unwrap().model, "m");
        assert_eq!(
            block(calls.claim("a", Some("acme"))),
            Err(ClaimError::AlreadyRated("a".to_owned()))
        );
    }

    #[test]
    fn a_reused_call_id_keeps_its_first_record() {
        let clock = Arc::new(ManualClock::new());
        let calls = MemoryCallRecords::with_clock(10, Duration::from_secs(60), clock.clone());
        block(calls.put(record("a", Some("acme")))).unwrap();
        block(calls.claim("a", Some("acme"))).unwrap();
        // Another caller sends the same X-Call-Id: acme's record stays,
        // rated, and is not handed to the newcomer.
        block(calls.put(record("a", Some("mallory")))).unwrap();
        assert_eq!(
            block(calls.claim("a", Some("mallory"))),
            Err(ClaimError::OtherTenant("a".to_owned()))
        );
        assert_eq!(
            block(calls.claim("a", Some("acme"))),
            Err(ClaimError::AlreadyRated("a".to_owned()))
        );
        assert_eq!(calls.len(), 1);
        // Once the first has expired, the id may be recorded afresh.
        clock.advance(Duration::from_secs(60));
        block(calls.put(record("a", Some("mallory")))).unwrap();
        assert_eq!(block(calls.claim("a", Some("mallory"))).unwrap().model, "m");
    }

    #[test]
    fn capacity_evicts_the_oldest_and_ttl_expires() {
        let clock = Arc::new(ManualClock::new());
        let calls = MemoryCallRecords::with_clock(3, Duration::from_secs(60), clock.clone());
        for id in ["a", "b", "c", "d"] {
            block(calls.put(record(id, None))).unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(calls.len(), 3);
        assert!(matches!(
            block(calls.claim("a", None)),
            Err(ClaimError::Unknown(_))
        ));
        assert!(block(calls.claim("b", None)).is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(matches!(
            block(calls.claim("c", None)),
            Err(ClaimError::Unknown(_))
        ));
        assert!(calls.is_empty());
    }
}
