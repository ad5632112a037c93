//! Capacity-aware pools, simulated on virtual time (no sleeps, fully
//! deterministic): a busy cheap pool keeps simple requests in the cheap pool
//! (queueing), never sending them to the premium model, unless the policy
//! allows a spill, and then only where it says.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use routing_core::policy::{
    BudgetView, Decision, LiveStats, PickStrategy, Placement, Policy, Pool, PoolConfig, PoolGuard,
    Pools, SelectionInput,
};
use routing_core::{Difficulty, Task};

const CHEAP: &str = "local/small";
const MID: &str = "groq/llama-3.1-8b-instant";
const PREMIUM: &str = "vertex/gemini-2.5-pro";

/// A cheap in-cluster model served by a pool of two replicas (two requests
/// in flight each), a cheap external model and a premium one.
fn policy(spill_to: &str) -> Policy {
    let text = format!(
        r#"
version = 1

[[pool]]
name = "cheap"
strategy = "least_outstanding"
endpoints = ["http://small-0:8000", "http://small-1:8000"]
max_outstanding = 2
spill_to = [{spill_to}]

[[model]]
id = "{CHEAP}"
provider = "vllm"
model = "small"
locality = "in_cluster"
tasks = ["generate"]
context_window = 32768
ttft_ms = 50
tokens_per_s = 100
quality = {{ simple = 0.8, medium = 0.5, hard = 0.3 }}
pool = "cheap"

[[model]]
provider = "groq"
model = "llama-3.1-8b-instant"
locality = "external"
tasks = ["generate"]
context_window = 131072
ttft_ms = 100
tokens_per_s = 700
quality = {{ simple = 0.8, medium = 0.5, hard = 0.3 }}

[[model]]
provider = "vertex"
model = "gemini-2.5-pro"
locality = "external"
tasks = ["generate"]
context_window = 1048576
ttft_ms = 1500
tokens_per_s = 150
quality = {{ simple = 0.95, medium = 0.9, hard = 0.85 }}

[[rule]]
name = "simple_cheap"
when = {{ difficulty = ["simple"] }}
models = ["{CHEAP}", "{MID}", "{PREMIUM}"]
weights = {{ quality = 0.0, cost = 1.0, latency = 0.0 }}

[[rule]]
name = "strong"
models = ["{PREMIUM}"]
"#
    );
    Policy::parse(&text, "sim").unwrap()
}

fn simple_request(private: bool) -> SelectionInput {
    let mut input = SelectionInput::new(Task::Generate, 60_000, private);
    input.difficulty = Some(Difficulty::Simple);
    input.input_tokens = 300;
    input
}

/// Virtual service time of one call, by model.
fn service_ms(model: &str) -> u64 {
    match model {
        CHEAP => 100,
        MID => 60,
        _ => 2500,
    }
}

#[derive(Debug, Default)]
struct Outcome {
    served_by: BTreeMap<String, usize>,
    max_queue: usize,
    max_in_flight_per_endpoint: u32,
    endpoint_picks: Vec<u64>,
    finished_at_ms: u64,
}

enum Event {
    Arrive(usize),
    Finish(u64),
}

/// Runs `n` simple requests arriving every `gap_ms` through select → place,
/// completing each after its model's service time. Requests told to queue
/// wait, first come first served, for the cheap pool.
fn simulate(policy: &Policy, n: usize, gap_ms: u64, private: bool) -> Outcome {
    let pools = Pools::from_policy(policy);
    let live = LiveStats::default();
    let mut events: BinaryHeap<Reverse<(u64, u64, usize, u64)>> = BinaryHeap::new();
    // (time, sequence, kind 0 = arrive / 1 = finish, payload)
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at: u64, ev: Event| {
        seq += 1;
        let (kind, payload) = match ev {
            Event::Arrive(i) => (0usize, i as u64),
            Event::Finish(id) => (1usize, id),
        };
        events.push(Reverse((at, seq, kind, payload)));
    };
    for i in 0..n {
        push(&mut events, i as u64 * gap_ms, Event::Arrive(i));
    }
    let mut in_flight: HashMap<u64, (String, Option<PoolGuard>)> = HashMap::new();
    let mut queue: VecDeque<Decision> = VecDeque::new();
    let mut next_call = 0u64;
    let mut out = Outcome::default();
    let cheap = pools.get("cheap").expect("the cheap pool").clone();

    let mut start = |now: u64,
                     model: String,
                     guard: Option<PoolGuard>,
                     events: &mut BinaryHeap<_>,
                     in_flight: &mut HashMap<u64, (String, Option<PoolGuard>)>,
                     out: &mut Outcome| {
        next_call += 1;
        *out.served_by.entry(model.clone()).or_default() += 1;
        let busiest = cheap
            .endpoints()
            .iter()
            .map(|e| e.outstanding)
            .max()
            .unwrap_or(0);
        out.max_in_flight_per_endpoint = out.max_in_flight_per_endpoint.max(busiest);
        push(events, now + service_ms(&model), Event::Finish(next_call));
        in_flight.insert(next_call, (model, guard));
    };

    while let Some(Reverse((now, _, kind, payload))) = events.pop() {
        if kind == 0 {
            let decision = policy
                .select(&simple_request(private), &live, &BudgetView::unlimited())
                .expect("a simple request has a route");
            match pools.place(&decision) {
                Placement::Direct(c) => {
                    let model = c.model.id.clone();
                    start(now, model, None, &mut events, &mut in_flight, &mut out);
                }
                Placement::Pooled { candidate, guard } => {
                    let model = candidate.model.id.clone();
                    start(
                        now,
                        model,
                        Some(guard),
                        &mut events,
                        &mut in_flight,
                        &mut out,
                    );
                }
                Placement::Spilled {
                    candidate, guard, ..
                } => {
                    let model = candidate.model.id.clone();
                    start(now, model, guard, &mut events, &mut in_flight, &mut out);
                }
                Placement::Queue { .. } => {
                    queue.push_back(decision.clone());
                    out.max_queue = out.max_queue.max(queue.len());
                }
            }
        } else {
            let (model, guard) = in_flight.remove(&payload).expect("a call in flight");
            if let Some(guard) = guard {
                guard.record(Duration::from_millis(service_ms(&model)));
            }
            out.finished_at_ms = now;
            // A slot freed: the head of the queue takes it (what
            // `Pool::pick().await` does in the router).
            while let Some(head) = queue.front() {
                let Some(guard) = cheap.try_pick() else { break };
                let model = head.primary.model.id.clone();
                queue.pop_front();
                start(
                    now,
                    model,
                    Some(guard),
                    &mut events,
                    &mut in_flight,
                    &mut out,
                );
            }
        }
    }
    assert!(queue.is_empty(), "every queued request was served");
    assert!(in_flight.is_empty());
    out.endpoint_picks = cheap.endpoints().iter().map(|e| e.picks).collect();
    out
}

/// The trap, for contrast: spread each request over its decision's chain by
/// fewest requests in flight, whatever the model costs.
fn least_connections_over_models(
    policy: &Policy,
    n: usize,
    gap_ms: u64,
) -> BTreeMap<String, usize> {
    let live = LiveStats::default();
    let mut finishing: BinaryHeap<Reverse<(u64, String)>> = BinaryHeap::new();
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut served = BTreeMap::new();
    for i in 0..n {
        let now = i as u64 * gap_ms;
        while let Some(Reverse((t, _))) = finishing.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((_, m))) = finishing.pop() {
                *in_flight.entry(m).or_default() -= 1;
            }
        }
        let d = policy
            .select(&simple_request(false), &live, &BudgetView::unlimited())
            .unwrap();
        let pick = d
            .chain()
            .min_by_key(|c| in_flight.get(&c.model.id).copied().unwrap_or(0))
            .map(|c| c.model.id.clone())
            .unwrap();
        *in_flight.entry(pick.clone()).or_default() += 1;
        *served.entry(pick.clone()).or_default() += 1;
        finishing.push(Reverse((now + service_ms(&pick), pick)));
    }
    served
}

#[test]
fn a_busy_cheap_pool_queues_simple_requests_and_never_sends_them_to_premium() {
    let policy = policy("");
    // 200 requests, one every 10 ms (100/s) against a pool that serves 40/s.
    let out = simulate(&policy, 200, 10, false);
    assert_eq!(out.served_by.get(CHEAP), Some(&200), "{:?}", out.served_by);
    assert_eq!(out.served_by.get(PREMIUM), None);
    assert_eq!(out.served_by.get(MID), None);
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

    // The same load balanced by least connections across models sends
    // simple requests to the premium model.
    let naive = least_connections_over_models(&policy, 200, 10);
    assert!(naive.get(PREMIUM).copied().unwrap_or(0) > 0, "{naive:?}");
}

#[test]
fn with_spill_allowed_overflow_goes_only_where_the_policy_says() {
    let policy = policy(&format!("\"{MID}\""));
    let out = simulate(&policy, 200, 10, false);
    let cheap = out.served_by.get(CHEAP).copied().unwrap_or(0);
    let mid = out.served_by.get(MID).copied().unwrap_or(0);
    assert_eq!(cheap + mid, 200, "{:?}", out.served_by);
    assert!(mid > 0 && cheap > mid / 2, "{:?}", out.served_by);
    assert_eq!(out.served_by.get(PREMIUM), None);
    assert_eq!(out.max_queue, 0);
    assert!(out.max_in_flight_per_endpoint <= 2);

    // Spilling to the premium model happens only when the policy says so.
    let policy = policy_to_premium();
    let out = simulate(&policy, 200, 10, false);
    assert!(out.served_by.get(PREMIUM).copied().unwrap_or(0) > 0);
    assert_eq!(out.served_by.get(MID), None);
}

fn policy_to_premium() -> Policy {
    policy(&format!("\"{PREMIUM}\""))
}

#[test]
fn a_private_request_never_spills_out_of_the_cluster() {
    // Spill to an external model is allowed, but a private request's
    // decision has no external fallback, so it queues instead.
    let policy = policy(&format!("\"{MID}\""));
    let out = simulate(&policy, 100, 10, true);
    assert_eq!(out.served_by.get(CHEAP), Some(&100), "{:?}", out.served_by);
    assert!(out.max_queue > 0);
}

#[test]
fn a_light_load_never_queues() {
    let out = simulate(&policy(""), 50, 40, false);
    assert_eq!(out.served_by.get(CHEAP), Some(&50));
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
        spill_to: Vec::new(),
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
        spill_to: Vec::new(),
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
        spill_to: Vec::new(),
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
