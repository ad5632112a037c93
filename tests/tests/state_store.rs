//! The Redis state store against a real `redis-server`: two stores on one
//! server stand for two replicas.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fleet_tests::redis::RedisServer;
use prometheus::{IntCounterVec, IntGauge, Opts};
use routing_core::calls::{CallRecord, CallRecords, ClaimError};
use routing_core::policy::{
    ArmKey, ArmStats, ArmStore, BudgetStore, LearningContext, ScopeKey, ScoreWindows, Spend,
    WindowLimits,
};
use routing_core::{Difficulty, Task};
use state::{RedisBudgets, RedisConfig, RedisState, StateMetrics};

const TTL: Duration = Duration::from_secs(600);

fn errors() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new("state_errors_total", "failed store calls"),
        &["op"],
    )
    .unwrap()
}

/// A store as a replica opens it. Timeouts are generous (a loaded CI
/// machine must not fail them); nothing here asserts on time.
fn store(url: &str, errors: IntCounterVec) -> RedisState {
    store_up(
        url,
        errors,
        IntGauge::new("state_up", "store reachable").unwrap(),
    )
}

fn store_up(url: &str, errors: IntCounterVec, up: IntGauge) -> RedisState {
    RedisState::open(
        &RedisConfig {
            url: url.to_owned(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            key_prefix: "test:".to_owned(),
            fail_fast: Duration::ZERO,
        },
        TTL,
        StateMetrics { errors, up },
    )
    .unwrap()
}

fn context() -> LearningContext {
    LearningContext {
        task: Task::Generate,
        tier: Some(Difficulty::Simple),
        length: 1,
    }
}

fn record(id: &str, tenant: Option<&str>, model: &str) -> CallRecord {
    CallRecord {
        call_id: id.to_owned(),
        tenant: tenant.map(str::to_owned),
        model: model.to_owned(),
        tier: Some(Difficulty::Simple),
        candidates: vec![model.to_owned(), "other/model".to_owned()],
        context: context(),
        explored: false,
        private: false,
    }
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_records_are_shared_claimed_once_and_expire() {
    let server = RedisServer::start().await;
    let a = store(&server.url(), errors());
    let b = store(&server.url(), errors());

    let first = record("call-1", Some("acme"), "groq/llama-3.1-8b-instant");
    a.put(first.clone()).await.unwrap();
    // Another replica sees it; only its tenant may claim it, once.
    assert_eq!(
        b.claim("call-1", Some("globex")).await,
        Err(ClaimError::OtherTenant("call-1".to_owned()))
    );
    assert_eq!(
        b.claim("call-1", None).await,
        Err(ClaimError::OtherTenant("call-1".to_owned()))
    );
    assert_eq!(
        b.claim("no-such-call", Some("acme")).await,
        Err(ClaimError::Unknown("no-such-call".to_owned()))
    );
    assert_eq!(b.claim("call-1", Some("acme")).await.unwrap(), first);
    assert_eq!(
        a.claim("call-1", Some("acme")).await,
        Err(ClaimError::AlreadyRated("call-1".to_owned()))
    );

    // A reused call id keeps its first record, rated.
    b.put(record("call-1", Some("mallory"), "vertex/gemini-2.5-pro"))
        .await
        .unwrap();
    assert_eq!(
        a.claim("call-1", Some("mallory")).await,
        Err(ClaimError::OtherTenant("call-1".to_owned()))
    );
    assert_eq!(
        a.claim("call-1", Some("acme")).await,
        Err(ClaimError::AlreadyRated("call-1".to_owned()))
    );

    // No tenant and the empty tenant are different tenants.
    a.put(record("call-2", None, "m")).await.unwrap();
    assert_eq!(
        a.claim("call-2", Some("")).await,
        Err(ClaimError::OtherTenant("call-2".to_owned()))
    );
    assert_eq!(a.claim("call-2", None).await.unwrap().model, "m");

    // Records expire with the records' time to live.
    let mut conn = raw(&server).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("test:call:call-1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= i64::try_from(TTL.as_millis()).unwrap(),
        "{ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_shared_and_trimmed() {
    let server = RedisServer::start().await;
    let a = store(&server.url(), errors());
    let b = store(&server.url(), errors());
    let limits = WindowLimits {
        capacity: 3,
        max_tenant_windows: 2,
    };
    let global = ScopeKey::Global;
    assert!(ScoreWindows::get(&a, &global).await.unwrap().is_empty());
    assert_eq!(
        a.merge(&global, &[0.1, 0.2], limits).await.unwrap(),
        vec![0.1, 0.2]
    );
    // The other replica's merge returns both replicas' scores, the oldest
    // past the capacity dropped.
    assert_eq!(
        b.merge(&global, &[0.3, 0.4], limits).await.unwrap(),
        vec![0.2, 0.3, 0.4]
    );
    assert_eq!(
        ScoreWindows::get(&a, &global).await.unwrap(),
        vec![0.2, 0.3, 0.4]
    );
    // Scores round-trip exactly; a non-finite one is not stored.
    let exact = [0.1 + 0.2, 1.0 / 3.0, f64::NAN];
    let rule = ScopeKey::Rule("reasoning".to_owned());
    assert_eq!(
        a.merge(&rule, &exact, limits).await.unwrap(),
        vec![0.1 + 0.2, 1.0 / 3.0]
    );

    // Tenant windows past the cap: the least recently used goes.
    for tenant in ["t1", "t2", "t3"] {
        let scope = ScopeKey::Tenant(tenant.to_owned());
        a.merge(&scope, &[0.5], limits).await.unwrap();
    }
    let mut kept = Vec::new();
    for tenant in ["t1", "t2", "t3"] {
        let scope = ScopeKey::Tenant(tenant.to_owned());
        kept.push(ScoreWindows::get(&b, &scope).await.unwrap().len());
    }
    assert_eq!(kept, vec![0, 1, 1]);
    // Global and rule windows are never evicted.
    assert_eq!(ScoreWindows::get(&b, &global).await.unwrap().len(), 3);
    assert_eq!(ScoreWindows::get(&b, &rule).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arms_add_atomically_across_replicas() {
    let server = RedisServer::start().await;
    let a = Arc::new(store(&server.url(), errors()));
    let b = Arc::new(store(&server.url(), errors()));
    let key = ArmKey {
        model: "groq/llama-3.1-8b-instant".to_owned(),
        context: context(),
    };
    let unseen = ArmKey {
        model: "vertex/gemini-2.5-pro".to_owned(),
        context: context(),
    };
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (store, reward) = if i % 2 == 0 {
            (a.clone(), 0.5)
        } else {
            (b.clone(), 0.25)
        };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            ArmStore::add(&*store, &key, reward).await.unwrap()
        }));
    }
    let mut counts: Vec<u64> = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap().n);
    }
    // Each add saw its own count: none was lost or doubled.
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    let stats = ArmStore::get(&*b, &[key.clone(), unseen.clone()])
        .await
        .unwrap();
    assert_eq!(
        stats,
        vec![
            ArmStats {
                n: 100,
                reward_sum: 50.0 * 0.5 + 50.0 * 0.25
            },
            ArmStats::default()
        ]
    );
    // Rewards are clamped to [0, 1], as in memory.
    let after = ArmStore::add(&*a, &unseen, 7.0).await.unwrap();
    assert_eq!(
        after,
        ArmStats {
            n: 1,
            reward_sum: 1.0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_calls_counted_then_reconnects() {
    let mut server = RedisServer::start().await;
    let port = server.port();
    let errors = errors();
    let up = IntGauge::new("state_up", "store reachable").unwrap();
    let a = store_up(&server.url(), errors.clone(), up.clone());
    assert_eq!(up.get(), 0, "unknown until a first call");
    a.ping().await.unwrap();
    assert_eq!(up.get(), 1);
    a.put(record("kept", None, "m")).await.unwrap();

    server.kill().await;
    assert!(a.put(record("lost", None, "m")).await.is_err());
    assert!(matches!(
        a.claim("kept", None).await,
        Err(ClaimError::Store(_))
    ));
    assert!(ScoreWindows::get(&a, &ScopeKey::Global).await.is_err());
    assert_eq!(errors.with_label_values(&["calls_put"]).get(), 1);
    assert_eq!(errors.with_label_values(&["calls_claim"]).get(), 1);
    assert_eq!(errors.with_label_values(&["windows_get"]).get(), 1);
    assert_eq!(up.get(), 0);

    // A new server on the same address: the store reconnects by itself
    // (the first calls may still see the broken connection).
    let _server = RedisServer::start_on(port).await.unwrap();
    let mut attempts = 0;
    while a.ping().await.is_err() {
        attempts += 1;
        assert!(attempts < 20, "the store did not reconnect");
    }
    assert_eq!(up.get(), 1);
    a.put(record("after", Some("acme"), "m")).await.unwrap();
    assert_eq!(a.claim("after", Some("acme")).await.unwrap().model, "m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_is_shared_by_utc_day_and_month() {
    let server = RedisServer::start().await;
    let a = RedisBudgets::new(Arc::new(store(&server.url(), errors())));
    let b = RedisBudgets::new(Arc::new(store(&server.url(), errors())));
    // 2026-11-30T12:00:00Z, the next day (another month) and 2026-11-29.
    let nov_30 = UNIX_EPOCH + Duration::from_secs(1_796_040_000);
    let dec_1 = nov_30 + Duration::from_secs(86_400);
    let nov_29 = nov_30 - Duration::from_secs(86_400);

    // Recorded on A: A sees it at once, B once it refreshes.
    a.record("acme", 0.25, nov_30);
    assert_eq!(
        a.spent("acme", nov_30),
        Spend {
            day_usd: 0.25,
            month_usd: 0.25
        }
    );
    a.flushed().await;
    assert_eq!(b.spent("acme", nov_30), Spend::default());
    b.refresh("acme", nov_30).await.unwrap();
    assert_eq!(a.spent("acme", nov_30), b.spent("acme", nov_30));

    // B's spend adds to A's: the same month, another day.
    let after = b.add("acme", 0.5, nov_29).await.unwrap();
    assert_eq!(
        after,
        Spend {
            day_usd: 0.5,
            month_usd: 0.75
        }
    );
    a.refresh("acme", nov_30).await.unwrap();
    assert_eq!(
        a.spent("acme", nov_30),
        Spend {
            day_usd: 0.25,
            month_usd: 0.75
        }
    );
    // A new month starts from nothing; other tenants are apart.
    a.refresh("acme", dec_1).await.unwrap();
    assert_eq!(a.spent("acme", dec_1), Spend::default());
    b.refresh("globex", nov_30).await.unwrap();
    assert_eq!(b.spent("globex", nov_30), Spend::default());

    // The keys expire once their period is well past.
    let mut conn = raw(&server).await;
    for key in ["test:spend:acme:2026-11-30", "test:spend:acme:2026-11"] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 86_400, "{key}: {ttl}");
    }
}
