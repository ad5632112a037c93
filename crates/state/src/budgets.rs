//! Tenant spend shared in Redis: `spend:{tenant}:{yyyy-mm-dd}` and
//! `spend:{tenant}:{yyyy-mm}` (USD, added to with `INCRBYFLOAT`, expiring
//! after their period is well past).
//!
//! The policy reads spend synchronously on the decision path, so each
//! replica keeps a copy per tenant: [`BudgetStore::refresh`] (awaited
//! before a decision) takes up what every replica spent; `record` adds to
//! the copy at once and writes through in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use civil_date::{civil_from_days, day_number};
use routing_core::policy::{BudgetStore, Spend, StoreError, StoreFuture};

use tokio::sync::watch;

use crate::{RedisState, StateError};

/// A day's key outlives the day by this much (seconds).
const DAY_KEY_TTL_SECS: i64 = 3 * 86_400;
/// A month's key outlives the longest month by this much (seconds).
const MONTH_KEY_TTL_SECS: i64 = 40 * 86_400;
/// Tenants whose spend is kept locally; past it the copy restarts empty
/// (and is refreshed before the next decision).
const MAX_TENANTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    day: i64,
    month: (i64, u32),
}

impl Period {
    fn at(at: SystemTime) -> Self {
        let day = day_number(at);
        let (year, month, _) = civil_from_days(day);
        Self {
            day,
            month: (year, month),
        }
    }

    fn day_name(&self) -> String {
        let (y, m, d) = civil_from_days(self.day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    fn month_name(&self) -> String {
        format!("{:04}-{:02}", self.month.0, self.month.1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Copy {
    period: Period,
    spend: Spend,
}

/// [`BudgetStore`] on a [`RedisState`], shared by every replica.
#[derive(Debug, Clone)]
pub struct RedisBudgets {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: Arc<RedisState>,
    copies: Mutex<HashMap<String, Copy>>,
    /// Writes through still under way.
    in_flight: watch::Sender<usize>,
}

impl RedisBudgets {
    /// Spend kept in `redis`.
    pub fn new(redis: Arc<RedisState>) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                copies: Mutex::new(HashMap::new()),
                in_flight: watch::Sender::new(0),
            }),
        }
    }

    /// Adds `usd` spent by `tenant` at `at` in the shared store; what every
    /// replica has spent in that day and month after it.
    pub async fn add(&self, tenant: &str, usd: f64, at: SystemTime) -> Result<Spend, StateError> {
        let period = Period::at(at);
        let redis = &self.inner.redis;
        let (day_key, month_key) = keys(redis, tenant, period);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .incr(&day_key, usd)
            .expire(&day_key, DAY_KEY_TTL_SECS)
            .ignore()
            .incr(&month_key, usd)
            .expire(&month_key, MONTH_KEY_TTL_SECS)
            .ignore();
        let mut conn = redis.conn();
        let (day_usd, month_usd): (f64, f64) = redis
            .run("budgets_record", async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let spend = Spend { day_usd, month_usd };
        self.inner.set(tenant, Copy { period, spend });
        Ok(spend)
    }

    /// Waits until every spend recorded so far is written through.
    pub async fn flushed(&self) {
        let mut in_flight = self.inner.in_flight.subscribe();
        // The sender lives in `self`: the wait ends when the count is 0.
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }
}

fn keys(redis: &RedisState, tenant: &str, period: Period) -> (String, String) {
    (
        redis.key("spend", &format!("{tenant}:{}", period.day_name())),
        redis.key("spend", &format!("{tenant}:{}", period.month_name())),
    )
}

impl Inner {
    fn set(&self, tenant: &str, copy: Copy) {
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        if copies.len() >= MAX_TENANTS && !copies.contains_key(tenant) {
            copies.clear();
        }
        copies.insert(tenant.to_owned(), copy);
    }
}

impl BudgetStore for RedisBudgets {
    fn record(&self, tenant: &str, usd: f64, at: SystemTime) {
        if !usd.is_finite() || usd <= 0.0 {
            return;
        }
        let period = Period::at(at);
        {
            let mut copies = self
                .inner
                .copies
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let copy = copies.entry(tenant.to_owned()).or_insert(Copy {
                period,
                spend: Spend::default(),
            });
            if copy.period != period {
                *copy = Copy {
                    period,
                    spend: Spend::default(),
                };
            }
            copy.spend.day_usd += usd;
            copy.spend.month_usd += usd;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.in_flight.send_modify(|n| *n += 1);
        let this = self.clone();
        let tenant = tenant.to_owned();
        runtime.spawn(async move {
            if let Err(e) = this.add(&tenant, usd, at).await {
                tracing::warn!(tenant, usd, error = %e, "spend not recorded in the shared store");
            }
            this.inner
                .in_flight
                .send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    fn spent(&self, tenant: &str, at: SystemTime) -> Spend {
        let period = Period::at(at);
        self.inner
            .copies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .filter(|c| c.period == period)
            .map_or_else(Spend::default, |c| c.spend)
    }

    fn refresh<'a>(&'a self, tenant: &'a str, at: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let period = Period::at(at);
            let redis = &self.inner.redis;
            let (day_key, month_key) = keys(redis, tenant, period);
            let mut conn = redis.conn();
            let (day, month): (Option<f64>, Option<f64>) = redis
                .run("budgets_refresh", async move {
                    redis::cmd("MGET")
                        .arg(&day_key)
                        .arg(&month_key)
                        .query_async(&mut conn)
                        .await
                })
                .await
                .map_err(|e| StoreError(e.to_string()))?;
            let finite = |v: Option<f64>| v.filter(|v| v.is_finite()).unwrap_or(0.0).max(0.0);
            self.inner.set(
                tenant,
                Copy {
                    period,
                    spend: Spend {
                        day_usd: finite(day),
                        month_usd: finite(month),
                    },
                },
            );
            Ok(())
        })
    }
}
