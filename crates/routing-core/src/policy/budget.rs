//! Spend per tenant (or workflow tag) by UTC day and month, and the budget
//! gates the policy applies to it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use civil_date::{civil_from_days, day_number};

use serde::{Deserialize, Serialize};

use super::calibration::StoreFuture;

/// USD spent by one tenant in the current UTC day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Spent today (UTC).
    pub day_usd: f64,
    /// Spent this calendar month (UTC).
    pub month_usd: f64,
}

/// Where spend is kept.
///
/// [`BudgetTracker`] keeps it in memory (one router replica). A shared store
/// (e.g. Redis with `INCRBYFLOAT` on `spend:{tenant}:{yyyy-mm-dd}` and
/// `spend:{tenant}:{yyyy-mm}` keys) keeps a local copy that the two
/// synchronous calls use: `record` adds to it and writes through in the
/// background, and the caller awaits [`BudgetStore::refresh`] for a
/// tenant before reading its spend, which takes up what every replica
/// spent.
pub trait BudgetStore: Send + Sync {
    /// Adds `usd` spent by `tenant` at `at`.
    fn record(&self, tenant: &str, usd: f64, at: SystemTime);
    /// What `tenant` has spent in the UTC day and month containing `at`.
    fn spent(&self, tenant: &str, at: SystemTime) -> Spend;
    /// Brings `tenant`'s spend in the UTC day and month containing `at` up
    /// to date from a shared store (in memory: nothing to do).
    fn refresh<'a>(&'a self, tenant: &'a str, at: SystemTime) -> StoreFuture<'a, ()> {
        let _ = (tenant, at);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The (year, month) of a day number (days since 1970-01-01, UTC).
fn year_month(days: i64) -> (i64, u32) {
    let (year, month, _) = civil_from_days(days);
    (year, month)
}

/// The UTC month containing `at`, as `(year, month)`.
pub fn utc_month(at: SystemTime) -> (i64, u32) {
    year_month(day_number(at))
}

#[derive(Debug, Default, Clone, Copy)]
struct TenantSpend {
    day: i64,
    day_usd: f64,
    month: (i64, u32),
    month_usd: f64,
}

/// In-memory spend, rolled over at UTC midnight and at the first of the
/// month.
#[derive(Debug, Default)]
pub struct BudgetTracker {
    tenants: Mutex<HashMap<String, TenantSpend>>,
}

impl BudgetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BudgetStore for BudgetTracker {
    fn record(&self, tenant: &str, usd: f64, at: SystemTime) {
        if !usd.is_finite() || usd <= 0.0 {
            return;
        }
        let day = day_number(at);
        let month = year_month(day);
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let spend = tenants.entry(tenant.to_owned()).or_insert(TenantSpend {
            day,
            day_usd: 0.0,
            month,
            month_usd: 0.0,
        });
        // A later day or month starts afresh; spend recorded late for an
        // earlier period does not count against the current one.
        if day > spend.day {
            spend.day = day;
            spend.day_usd = 0.0;
        }
        if month > spend.month {
            spend.month = month;
            spend.month_usd = 0.0;
        }
        if day == spend.day {
            spend.day_usd += usd;
        }
        if month == spend.month {
            spend.month_usd += usd;
        }
    }

    fn spent(&self, tenant: &str, at: SystemTime) -> Spend {
        let day = day_number(at);
        let month = year_month(day);
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        match tenants.get(tenant) {
            None => Spend::default(),
            Some(s) => Spend {
                day_usd: if s.day == day { s.day_usd } else { 0.0 },
                month_usd: if s.month == month { s.month_usd } else { 0.0 },
            },
        }
    }
}

/// What a selection knows about spend: a store read at one instant, a
/// pre-fetched snapshot, or nothing (no budget applies).
#[derive(Clone, Copy)]
pub struct BudgetView<'a> {
    source: Source<'a>,
}

#[derive(Clone, Copy)]
enum Source<'a> {
    Unlimited,
    Store(&'a dyn BudgetStore, SystemTime),
    Snapshot(&'a str, Spend),
}

impl std::fmt::Debug for BudgetView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Source::Unlimited => f.write_str("BudgetView::Unlimited"),
            Source::Store(_, at) => write!(f, "BudgetView::Store({at:?})"),
            Source::Snapshot(tenant, spend) => {
                write!(f, "BudgetView::Snapshot({tenant:?}, {spend:?})")
            }
        }
    }
}

impl<'a> BudgetView<'a> {
    /// No spend is known: budgets never gate.
    pub fn unlimited() -> Self {
        Self {
            source: Source::Unlimited,
        }
    }

    /// Reads `store` as of `at`.
    pub fn new(store: &'a dyn BudgetStore, at: SystemTime) -> Self {
        Self {
            source: Source::Store(store, at),
        }
    }

    /// One tenant's spend, fetched beforehand (e.g. from a remote store).
    pub fn snapshot(tenant: &'a str, spend: Spend) -> Self {
        Self {
            source: Source::Snapshot(tenant, spend),
        }
    }

    /// What `tenant` has spent, if known.
    pub fn spent(&self, tenant: &str) -> Option<Spend> {
        match self.source {
            Source::Unlimited => None,
            Source::Store(store, at) => Some(store.spent(tenant, at)),
            Source::Snapshot(t, spend) => (t == tenant).then_some(spend),
        }
    }
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// The UTC day.
    Daily,
    /// The UTC calendar month.
    Monthly,
}

/// How close a tenant is to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLevel {
    /// At or past the `near_at` share of a limit.
    Near,
    /// At or past a limit.
    Over,
}

/// What the policy does at a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudget {
    /// Route as usual (the decision still reports the level).
    Allow,
    /// Rank cost-first and cap the cost per request.
    Downgrade,
    /// Refuse the request with the configured status.
    Reject,
}

/// The budget gate applied to one decision, for the explain output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetAction {
    /// The tenant or workflow tag.
    pub tenant: String,
    /// Near or over.
    pub level: BudgetLevel,
    /// The period whose limit is closest to being (or most) exceeded.
    pub period: Period,
    /// Spent in that period, in USD.
    pub spent_usd: f64,
    /// That period's limit, in USD.
    pub limit_usd: f64,
    /// What the policy did.
    pub action: OnBudget,
    /// The HTTP status for a rejection (402 or 429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Daily and monthly limits for one tenant (the policy file's
/// `[[budgets.limit]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimit {
    /// Tenant or workflow tag; `*` applies to every tenant without its own
    /// entry (each tenant separately).
    pub tenant: String,
    /// USD per UTC day.
    #[serde(default)]
    pub daily_usd: Option<f64>,
    /// USD per UTC calendar month.
    #[serde(default)]
    pub monthly_usd: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn civil_months() {
        assert_eq!(utc_month(at(0)), (1970, 1));
        // 2024-02-29T23:59:59Z and the next second.
        assert_eq!(utc_month(at(1_709_251_199)), (2024, 2));
        assert_eq!(utc_month(at(1_709_251_200)), (2024, 3));
        // 2026-12-31T12:00:00Z
        assert_eq!(utc_month(at(1_798_718_400)), (2026, 12));
        assert_eq!(utc_month(UNIX_EPOCH - Duration::from_secs(1)), (1969, 12));
    }
}
