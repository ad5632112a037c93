//! Live latency and circuit breakers, alone and as selection sees them.

use std::sync::Arc;
use std::time::Duration;

use routing_core::Task;
use routing_core::policy::{
    BreakerState, BudgetView, LiveConfig, LiveStats, ManualClock, Policy, RejectReason,
    SelectionInput,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn live(config: LiveConfig) -> (LiveStats, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (LiveStats::with_clock(config, clock.clone()), clock)
}

#[test]
fn ewma_and_percentile_follow_the_samples() {
    let (live, _) = live(LiveConfig {
        ewma_alpha: 0.5,
        window: 10,
        percentile: 0.9,
        min_samples: 3,
        ..LiveConfig::default()
    });
    assert!(live.latency("m").is_none());
    live.observe("m", ms(100), true);
    let l = live.latency("m").unwrap();
    assert_eq!((l.samples, l.ewma_ms, l.percentile_ms), (1, 100.0, 100.0));
    assert!(
        live.trusted_latency("m").is_none(),
        "one sample is not enough"
    );
    live.observe("m", ms(300), true);
    live.observe("m", ms(200), true);
    let l = live.trusted_latency("m").unwrap();
    // 100 → 0.5·300 + 0.5·100 = 200 → 0.5·200 + 0.5·200 = 200.
    assert_eq!(l.ewma_ms, 200.0);
    assert_eq!(l.percentile_ms, 300.0);
    // Failures do not feed latency.
    live.observe("m", ms(5), false);
    assert_eq!(live.latency("m").unwrap().samples, 3);
    // The window slides: ten fast samples push the slow ones out.
    for _ in 0..10 {
        live.observe("m", ms(50), true);
    }
    let l = live.latency("m").unwrap();
    assert_eq!((l.samples, l.percentile_ms), (10, 50.0));
}

#[test]
fn the_percentile_sees_a_slow_tail_the_average_hides() {
    let (live, _) = live(LiveConfig {
        window: 100,
        percentile: 0.9,
        ..LiveConfig::default()
    });
    for i in 0..100 {
        live.observe("m", ms(if i % 5 == 0 { 2000 } else { 100 }), true);
    }
    let l = live.latency("m").unwrap();
    assert_eq!(l.percentile_ms, 2000.0);
    assert!(l.ewma_ms < 1000.0);
}

#[test]
fn breaker_opens_after_consecutive_failures_and_recovers_through_half_open() {
    let (live, clock) = live(LiveConfig {
        breaker_failures: 3,
        breaker_cooldown_ms: 1000,
        ..LiveConfig::default()
    });
    assert_eq!(live.breaker("m"), BreakerState::Closed);
    live.observe("m", ms(10), false);
    live.observe("m", ms(10), false);
    // A success in between resets the count.
    live.observe("m", ms(10), true);
    live.observe("m", ms(10), false);
    live.observe("m", ms(10), false);
    assert_eq!(live.breaker("m"), BreakerState::Closed);
    live.observe("m", ms(10), false);
    assert_eq!(live.breaker("m"), BreakerState::Open { retry_in_ms: 1000 });
    clock.advance(ms(400));
    assert_eq!(live.breaker("m"), BreakerState::Open { retry_in_ms: 600 });
    // A late success from before it opened changes nothing.
    live.observe("m", ms(10), true);
    assert!(matches!(live.breaker("m"), BreakerState::Open { .. }));
    clock.advance(ms(600));
    assert_eq!(live.breaker("m"), BreakerState::HalfOpen);
    // The trial fails: open again for a full cool-down.
    live.observe("m", ms(10), false);
    assert_eq!(live.breaker("m"), BreakerState::Open { retry_in_ms: 1000 });
    clock.advance(ms(1000));
    assert_eq!(live.breaker("m"), BreakerState::HalfOpen);
    // The trial succeeds: closed.
    live.observe("m", ms(10), true);
    assert_eq!(live.breaker("m"), BreakerState::Closed);
    // Other models are unaffected.
    assert_eq!(live.breaker("other"), BreakerState::Closed);
}

#[test]
fn selection_skips_an_open_breaker_and_returns_after_the_cool_down() {
    let policy = Policy::builtin().unwrap();
    let (live, clock) = live(policy.live_config());
    let input = SelectionInput::new(Task::Classify, 250, false);
    let select = |live: &LiveStats| {
        policy
            .select(&input, live, &BudgetView::unlimited())
            .unwrap()
    };
    assert_eq!(select(&live).primary.model.id, "groq/llama-3.1-8b-instant");
    for _ in 0..policy.live_config().breaker_failures {
        live.observe("groq/llama-3.1-8b-instant", ms(50), false);
    }
    let d = select(&live);
    assert_eq!(d.primary.model.id, "groq/openai/gpt-oss-20b");
    assert!(
        d.rejected
            .iter()
            .any(|r| r.model == "groq/llama-3.1-8b-instant"
                && matches!(r.reason, RejectReason::BreakerOpen { .. }))
    );
    assert!(d.chain().all(|c| c.model.id != "groq/llama-3.1-8b-instant"));
    clock.advance(Duration::from_millis(
        policy.live_config().breaker_cooldown_ms,
    ));
    assert_eq!(select(&live).primary.model.id, "groq/llama-3.1-8b-instant");
}

#[test]
fn every_breaker_open_is_a_503() {
    let policy = Policy::builtin().unwrap();
    let (live, _) = live(policy.live_config());
    for _ in 0..policy.live_config().breaker_failures {
        live.observe("ollama/local", ms(50), false);
    }
    let input = SelectionInput::new(Task::Generate, 30_000, true);
    let e = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap_err();
    assert_eq!(e.status, 503, "{}", e.message);
}

#[test]
fn the_budget_check_uses_live_latency_once_there_are_enough_samples() {
    let policy = Policy::builtin().unwrap();
    let config = policy.live_config();
    let (live, _) = live(config);
    // Groq's prior for a 16-token label is ~141 ms: within 250 ms.
    let input = SelectionInput::new(Task::Classify, 250, false);
    let d = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "groq/llama-3.1-8b-instant");
    assert!(!d.primary.live_latency);
    // Measured slower than the budget, but not enough samples yet.
    for _ in 1..config.min_samples {
        live.observe("groq/llama-3.1-8b-instant", ms(900), true);
    }
    let d = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "groq/llama-3.1-8b-instant");
    // Enough: the measured latency rules it out.
    live.observe("groq/llama-3.1-8b-instant", ms(900), true);
    let d = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "groq/openai/gpt-oss-20b");
    let rejection = d
        .rejected
        .iter()
        .find(|r| r.model == "groq/llama-3.1-8b-instant")
        .unwrap();
    assert_eq!(
        rejection.reason,
        RejectReason::Latency {
            expected_ms: 900.0,
            budget_ms: 250,
            live: true
        }
    );
    // And measured fast, a model whose prior is too slow becomes eligible.
    let input = SelectionInput::new(Task::Generate, 1000, false);
    let before = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap();
    assert!(before.latency_relaxed);
    for _ in 0..config.min_samples {
        live.observe("vertex/gemini-2.5-flash", ms(400), true);
    }
    let after = policy
        .select(&input, &live, &BudgetView::unlimited())
        .unwrap();
    assert_eq!(after.primary.model.id, "vertex/gemini-2.5-flash");
    assert!(!after.latency_relaxed);
    assert!(after.primary.live_latency);
    assert_eq!(after.primary.expected_latency_ms, 400.0);
}

#[test]
fn live_stats_are_shared_across_threads() {
    let live = LiveStats::default();
    std::thread::scope(|s| {
        for t in 0..4 {
            let live = &live;
            s.spawn(move || {
                for i in 0..250 {
                    live.observe(&format!("m{}", i % 3), ms(10 + t), true);
                }
            });
        }
    });
    let total: usize = (0..3)
        .map(|i| live.latency(&format!("m{i}")).map_or(0, |l| l.samples))
        .sum();
    // Each model's window holds its last 100 of ~333 samples.
    assert_eq!(total, 300);
}

#[test]
fn reconfiguring_keeps_the_newest_samples_of_the_new_window() {
    let (live, _) = live(LiveConfig {
        window: 5,
        percentile: 1.0,
        min_samples: 1,
        ..LiveConfig::default()
    });
    // 10..70 ms: the ring holds 30..70, its oldest slot in the middle.
    for n in 1..=7 {
        live.observe("m", ms(n * 10), true);
    }
    assert_eq!(live.latency("m").unwrap().percentile_ms, 70.0);
    live.reconfigure(LiveConfig {
        window: 3,
        percentile: 0.0,
        min_samples: 1,
        ..LiveConfig::default()
    });
    assert_eq!(live.config().window, 3);
    let l = live.latency("m").unwrap();
    // The newest three (50, 60, 70): the smallest is 50.
    assert_eq!((l.samples, l.percentile_ms), (3, 50.0));
    // The next sample replaces the oldest kept one (50).
    live.observe("m", ms(80), true);
    let l = live.latency("m").unwrap();
    assert_eq!((l.samples, l.percentile_ms), (3, 60.0));
    // A larger window grows from there.
    live.reconfigure(LiveConfig {
        window: 10,
        percentile: 0.0,
        min_samples: 1,
        ..LiveConfig::default()
    });
    live.observe("m", ms(5), true);
    let l = live.latency("m").unwrap();
    assert_eq!((l.samples, l.percentile_ms), (4, 5.0));
    for _ in 0..6 {
        live.observe("m", ms(90), true);
    }
    live.observe("m", ms(100), true);
    // Ten samples kept: the oldest (60) went out first.
    let l = live.latency("m").unwrap();
    assert_eq!((l.samples, l.percentile_ms), (10, 5.0));
}
