//! Request counters and the bodies of the most recent requests, so a test
//! can assert what reached a provider (and what never did).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::faults::Fault;

/// How many request bodies an emulator keeps by default.
pub const DEFAULT_RECORD_LIMIT: usize = 256;

/// One request as the emulator received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1 for the first request after start or reset.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query string (a query may carry an API key).
    pub path: String,
    /// The body, as text (invalid UTF-8 replaced).
    pub body: String,
    /// The status sent, once known (`None` while in flight, for a hang or a reset).
    pub status: Option<u16>,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
}

/// A copy of an emulator's counters. Admin requests are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Every provider request received.
    pub total_requests: u64,
    /// Requests per path (query string removed).
    pub by_path: BTreeMap<String, u64>,
    /// Responses per HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Faults injected, by name.
    pub faults: BTreeMap<String, u64>,
    /// The most recent requests, oldest first.
    pub recent: Vec<RecordedRequest>,
}

impl StatsSnapshot {
    /// Whether any recorded request body contains `needle`.
    pub fn any_body_contains(&self, needle: &str) -> bool {
        self.recent.iter().any(|r| r.body.contains(needle))
    }

    /// The count for one path.
    pub fn path_count(&self, path: &str) -> u64 {
        self.by_path.get(path).copied().unwrap_or(0)
    }
}

/// The live counters of one emulator.
#[derive(Debug)]
pub(crate) struct Stats {
    limit: usize,
    total: u64,
    by_path: BTreeMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
    faults: BTreeMap<String, u64>,
    recent: VecDeque<RecordedRequest>,
}

impl Stats {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            by_path: BTreeMap::new(),
            by_status: BTreeMap::new(),
            faults: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Counts a request on arrival and returns its sequence number.
    pub(crate) fn record(&mut self, method: &str, path: &str, body: &[u8]) -> u64 {
        self.total += 1;
        *self.by_path.entry(path.to_owned()).or_default() += 1;
        if self.limit > 0 {
            if self.recent.len() >= self.limit {
                self.recent.pop_front();
            }
            self.recent.push_back(RecordedRequest {
                seq: self.total,
                method: method.to_owned(),
                path: path.to_owned(),
                body: String::from_utf8_lossy(body).into_owned(),
                status: None,
                fault: None,
            });
        }
        self.total
    }

    /// Notes the fault given to request `seq`.
    pub(crate) fn note_fault(&mut self, seq: u64, fault: Fault) {
        *self.faults.entry(fault.name().to_owned()).or_default() += 1;
        if let Some(r) = self.recent.iter_mut().rev().find(|r| r.seq == seq) {
            r.fault = Some(fault);
        }
    }

    /// Notes the status sent for request `seq`.
    pub(crate) fn note_status(&mut self, seq: u64, status: u16) {
        *self.by_status.entry(status).or_default() += 1;
        if let Some(r) = self.recent.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = Some(status);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            total_requests: self.total,
            by_path: self.by_path.clone(),
            by_status: self.by_status.clone(),
            faults: self.faults.clone(),
            recent: self.recent.iter().cloned().collect(),
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::new(self.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_n_bodies_but_counts_all() {
        let mut stats = Stats::new(2);
        for i in 0..3 {
            let seq = stats.record("POST", "/v1/x", format!("body {i}").as_bytes());
            stats.note_status(seq, 200);
        }
        let snap = stats.snapshot();
        assert_eq!(snap.total_requests, 3);
        assert_eq!(snap.path_count("/v1/x"), 3);
        assert_eq!(snap.by_status.get(&200), Some(&3));
        assert_eq!(snap.recent.len(), 2);
        assert_eq!(snap.recent[0].body, "body 1");
        assert!(snap.any_body_contains("body 2"));
        assert!(!snap.any_body_contains("body 0"));
        stats.clear();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
    }
}
