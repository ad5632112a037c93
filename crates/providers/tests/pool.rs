//! Endpoint pools, simulated on virtual time (no sleeps, fully
//! deterministic): a busy pool queues requests first come first served and
//! shares them over its endpoints; peak-EWMA favours the faster endpoint.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use providers::pool::{PickStrategy, Pool, PoolConfig, PoolGuard};

/// Virtual service time of one call.
const SERVICE_MS: u64 = 100;

#[derive(Debug, Default)]
struct Outcome {
    served: usize,
    max_queue: usize,
    max_in_flight_per_endpoint: u32,
    endpoint_picks: Vec<u64>,
    finished_at_ms: u64,
}

/// Two replicas, two requests in flight each.
fn two_replicas() -> Pool {
    Pool::new(PoolConfig {
        name: "cheap".to_owned(),
        strategy: PickStrategy::LeastOutstanding,
        endpoints: vec![
            "http://small-0:8000".to_owned(),
            "http://small-1:8000".to_owned(),
        ],
        max_outstanding: Some(2),
        ewma_alpha: 0.3,
    })
}

/// Runs `n` requests arriving every `gap_ms`, each served in
/// [`SERVICE_MS`]. A request finding the pool full waits, first come first
/// served, for the next freed slot (what `Pool::pick().await` does).
fn simulate(pool: &Pool, n: usize, gap_ms: u64) -> Outcome {
    // (time, sequence, kind 0 = arrive / 1 = finish, call id)
    let mut events: BinaryHeap<Reverse<(u64, u64, u8, u64)>> = BinaryHeap::new();
    let mut seq = 0u64;
    for i in 0..n {
        seq += 1;
        events.push(Reverse((i as u64 * gap_ms, seq, 0, 0)));
    }
    let mut in_flight: HashMap<u64, PoolGuard> = HashMap::new();
    let mut queued = 0usize;
    let mut next_call = 0u64;
    let mut out = Outcome::default();
    let mut start = |now: u64,
                     guard: PoolGuard,
                     events: &mut BinaryHeap<_>,
                     in_flight: &mut HashMap<u64, PoolGuard>,
                     out: &mut Outcome| {
        next_call += 1;
        seq += 1;
        out.served += 1;
        let busiest = pool
            .endpoints()
            .iter()
            .map(|e| e.outstanding)
            .max()
            .unwrap_or(0);
        out.max_in_flight_per_endpoint = out.max_in_flight_per_endpoint.max(busiest);
        events.push(Reverse((now + SERVICE_MS, seq, 1, next_call)));
        in_flight.insert(next_call, guard);
    };
    while let Some(Reverse((now, _, kind, call))) = events.pop() {
        if kind == 0 {
            match pool.try_pick() {
                Some(guard) if queued == 0 => {
                    start(now, guard, &mut events, &mut in_flight, &mut out);
                }
                _ => {
                    queued += 1;
                    out.max_queue = out.max_queue.max(queued);
                }
            }
        } else {
            let guard = in_flight.remove(&call).expect("a call in flight");
            guard.record(Duration::from_millis(SERVICE_MS));
            out.finished_at_ms = now;
            while queued > 0 {
                let Some(guard) = pool.try_pick() else { break };
                queued -= 1;
                start(now, guard, &mut events, &mut in_flight, &mut out);
            }
        }
    }
    assert_eq!(queued, 0, "every queued request was served");
    assert!(in_flight.is_empty());
    out.endpoint_picks = pool.endpoints().iter().map(|e| e.picks).collect();
    out
}

#[test]
fn a_busy_pool_queues_requests_and_shares_them_over_its_endpoints() {
    let pool = two_replicas();
    // 200 requests, one every 10 ms (100/s) against a pool that serves 40/s.
    let out = simulate(&pool, 200, 10);
    assert_eq!(out.served, 200);
    assert!(
        out.max_queue > 50,
        "the pool was busy: queue {}",
        out.max_queue
    );
    assert!(out.max_in_flight_per_endpoint <= 2);
    // The two replicas shared the load.
    assert_eq!(out.endpoint_picks.iter().sum::<u64>(), 200);
    assert!(
        out.endpoint_picks.iter().all(|&p| p == 100),
        "{:?}",
        out.endpoint_picks
    );
    // Four slots, busy from the first four arrivals (0–30 ms) on, serve 50
    // requests of 100 ms each back to back: the last ends at 30 + 5000 ms.
    assert_eq!(out.finished_at_ms, 5030);
    assert_eq!(pool.outstanding(), 0);
}

#[test]
fn a_light_load_never_queues() {
    let out = simulate(&two_replicas(), 50, 40);
    assert_eq!(out.served, 50);
    assert_eq!(out.max_queue, 0);
}

/// Two endpoints, one five times slower; requests arrive faster than the
/// slow one alone could serve. Returns the fast endpoint's share of picks.
fn fast_share(strategy: PickStrategy) -> f64 {
    let pool = Pool::new(PoolConfig {
        name: "p".to_owned(),
        strategy,
        endpoints: vec!["slow".to_owned(), "fast".to_owned()],
        max_outstanding: None,
        ewma_alpha: 0.3,
    });
    let latency = |endpoint: &str| if endpoint == "slow" { 250 } else { 50 };
    let mut finishing: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut guards: HashMap<u64, PoolGuard> = HashMap::new();
    for i in 0..400u64 {
        let now = i * 20;
        while finishing.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, id))) = finishing.pop() {
                if let Some(g) = guards.remove(&id) {
                    let ms = latency(g.endpoint());
                    g.record(Duration::from_millis(ms));
                }
            }
        }
        let guard = pool.try_pick().expect("an unlimited pool always has room");
        finishing.push(Reverse((now + latency(guard.endpoint()), i)));
        guards.insert(i, guard);
    }
    let picks = pool.endpoints();
    picks[1].picks as f64 / (picks[0].picks + picks[1].picks) as f64
}

#[test]
fn peak_ewma_prefers_the_faster_endpoint() {
    let least = fast_share(PickStrategy::LeastOutstanding);
    let peak = fast_share(PickStrategy::PeakEwma);
    assert!(least > 0.5, "least outstanding: {least}");
    assert!(
        peak > least,
        "peak-EWMA {peak} vs least outstanding {least}"
    );
    assert!(peak > 0.8, "peak-EWMA: {peak}");
}

#[test]
fn pick_waits_for_a_slot_first_come_first_served() {
    let pool = Pool::new(PoolConfig {
        name: "one".to_owned(),
        strategy: PickStrategy::LeastOutstanding,
        endpoints: vec!["only".to_owned()],
        max_outstanding: Some(1),
        ewma_alpha: 0.3,
    });
    let held = pool.try_pick().expect("a free slot");
    assert!(pool.is_full());
    assert!(pool.try_pick().is_none());
    let mut first = Box::pin(pool.pick());
    let mut second = Box::pin(pool.pick());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    drop(held);
    let Poll::Ready(got) = first.as_mut().poll(&mut cx) else {
        panic!("the first waiter gets the freed slot");
    };
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!(pool.outstanding(), 1);
    drop(got);
    assert!(matches!(second.as_mut().poll(&mut cx), Poll::Ready(_)));
}

#[test]
fn dropping_a_guard_frees_its_slot() {
    let pool = Pool::new(PoolConfig {
        name: "two".to_owned(),
        strategy: PickStrategy::LeastOutstanding,
        endpoints: vec!["a".to_owned(), "b".to_owned()],
        max_outstanding: Some(1),
        ewma_alpha: 0.3,
    });
    let a = pool.try_pick().unwrap();
    let b = pool.try_pick().unwrap();
    assert_ne!(a.endpoint(), b.endpoint(), "least outstanding spreads");
    assert!(pool.try_pick().is_none());
    drop(a);
    let c = pool.try_pick().unwrap();
    assert_eq!(pool.outstanding(), 2);
    drop((b, c));
    assert_eq!(pool.outstanding(), 0);
}
