//! Property tests of selection: privacy, hard constraints, cheapest-wins and
//! budget gates, over the built-in policy and random catalogues.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

mod policy_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy_common::*;
use proptest::prelude::*;
use routing_core::chat::Locality;
use routing_core::policy::{
    BreakerState, BudgetLevel, BudgetStore, BudgetTracker, BudgetView, LiveConfig, LiveStats,
    ManualClock, OnBudget, Policy, SelectionInput,
};

fn builtin() -> Policy {
    Policy::builtin().expect("the built-in policy is valid")
}

/// A request with arbitrary constraints.
fn any_input() -> impl Strategy<Value = SelectionInput> {
    (
        any_task(),
        any_difficulty(),
        prop::option::of(0.0f32..=1.0),
        prop::sample::select(vec![50u64, 150, 299, 300, 1000, 5000, 30_000, 600_000]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1.0])),
        prop::option::of(prop::sample::select(vec![0.0f32, 0.3, 0.5, 0.7, 0.9])),
        prop::sample::select(vec![0u32, 10, 500, 5_000, 30_000, 200_000, 2_000_000]),
        prop::option::of(prop::sample::select(vec![1u32, 64, 512, 4096, 100_000])),
    )
        .prop_map(
            |(task, difficulty, confidence, budget, private, cap, floor, tokens, max_out)| {
                let mut input = SelectionInput::new(task, budget, private);
                input.difficulty = difficulty;
                input.confidence = difficulty.and(confidence);
                input.max_cost_usd = cap;
                input.quality_floor = floor;
                input.input_tokens = tokens;
                input.max_output_tokens = max_out;
                input
            },
        )
}

/// Live statistics with some models slow and some breakers open.
fn live_with(slow: &[(usize, u64)], broken: &[usize], policy: &Policy) -> LiveStats {
    let clock = std::sync::Arc::new(ManualClock::new());
    let live = LiveStats::with_clock(LiveConfig::default(), clock);
    let ids: Vec<String> = policy.models().map(|m| m.id.clone()).collect();
    for &(i, ms) in slow {
        let id = &ids[i % ids.len()];
        for _ in 0..20 {
            live.observe(id, Duration::from_millis(ms), true);
        }
    }
    for &i in broken {
        let id = &ids[i % ids.len()];
        for _ in 0..5 {
            live.observe(id, Duration::from_millis(10), false);
        }
    }
    live
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Private requests only ever get in-cluster models: primary,
    /// fallbacks and escalation target.
    #[test]
    fn private_requests_only_select_in_cluster_models(mut input in any_input()) {
        input.private = true;
        let policy = builtin();
        if let Ok(d) = policy.select(&input, &LiveStats::default(), &BudgetView::unlimited()) {
            for c in d.chain() {
                prop_assert_eq!(c.model.locality, Locality::InCluster, "{} in {:?}", c.model.id, d.rule);
            }
            if let Some(e) = &d.escalation {
                prop_assert_eq!(e.to.model.locality, Locality::InCluster);
            }
        }
    }

    /// The same over random catalogues: whatever the catalogue, a private
    /// request never leaves the cluster, and it is refused only when no
    /// in-cluster model could serve it.
    #[test]
    fn private_requests_stay_in_cluster_in_any_catalogue(
        models in prop::collection::vec(gen_model(), 1..10),
        mut input in any_input(),
    ) {
        input.private = true;
        input.confidence = None;
        let policy = Policy::parse(&policy_text(&models, (0.5, 0.3, 0.2), ""), "generated").unwrap();
        let outcome = policy.select(&input, &LiveStats::default(), &BudgetView::unlimited());
        let floor = input.quality_floor.unwrap_or(0.0);
        let servable = policy.models().any(|m| hard_constraints(m, &input, floor).is_ok());
        match outcome {
            Ok(d) => {
                for c in d.chain() {
                    prop_assert_eq!(c.model.locality, Locality::InCluster);
                }
            }
            Err(e) => prop_assert!(!servable, "refused although servable: {}", e.message),
        }
    }

    /// No decision breaks a hard constraint, with live latencies and open
    /// breakers in play. Latency holds unless the decision says it was
    /// relaxed, and then no model of the catalogue met it.
    #[test]
    fn no_selection_violates_a_hard_constraint(
        input in any_input(),
        slow in prop::collection::vec((0usize..40, 1u64..60_000), 0..6),
        broken in prop::collection::vec(0usize..40, 0..6),
    ) {
        let policy = builtin();
        let live = live_with(&slow, &broken, &policy);
        let Ok(d) = policy.select(&input, &live, &BudgetView::unlimited()) else {
            return Ok(());
        };
        let floor = input.quality_floor.unwrap_or(0.0);
        let mut chain: Vec<_> = d.chain().collect();
        if let Some(e) = &d.escalation {
            chain.push(&e.to);
        }
        for c in chain {
            let m = &c.model;
            if let Err(why) = hard_constraints(m, &input, floor) {
                prop_assert!(false, "{} breaks {why} (rule {})", m.id, d.rule);
            }
            prop_assert!(!matches!(live.breaker(&m.id), BreakerState::Open { .. }), "{} breaker open", m.id);
            let expected = budget_latency(m, &input, &live);
            if d.latency_relaxed {
                // Relaxed only when no candidate met the budget.
                prop_assert!(expected > input.max_latency_ms as f64,
                    "latency relaxed but {} is expected in {expected} ms", m.id);
            } else {
                prop_assert!(expected <= input.max_latency_ms as f64,
                    "{} expected {expected} ms over {} ms", m.id, input.max_latency_ms);
            }
        }
    }

    /// With cost-first weights the cheapest model satisfying the hard
    /// constraints and the quality floor wins (brute force over the
    /// catalogue); with none satisfying them, there is no route.
    #[test]
    fn cheapest_satisfying_model_wins_when_cost_first(
        models in prop::collection::vec(gen_model(), 1..12),
        mut input in any_input(),
    ) {
        input.confidence = None;
        let policy = Policy::parse(&policy_text(&models, (0.0, 1.0, 0.0), ""), "generated").unwrap();
        let floor = input.quality_floor.unwrap_or(0.0);
        let live = LiveStats::default();
        let eligible: Vec<_> = policy.models().filter(|m| hard_constraints(m, &input, floor).is_ok()).collect();
        let in_budget: Vec<_> = eligible.iter().copied()
            .filter(|m| budget_latency(m, &input, &live) <= input.max_latency_ms as f64)
            .collect();
        // Best effort: only when nothing meets the latency budget.
        let pool = if in_budget.is_empty() { &eligible } else { &in_budget };
        let outcome = policy.select(&input, &live, &BudgetView::unlimited());
        match pool.iter().map(|m| cost(m, &input)).min_by(f64::total_cmp) {
            None => prop_assert!(outcome.is_err(), "routed {:?} with nothing eligible", outcome.map(|d| d.primary.model.id.clone())),
            Some(cheapest) => {
                let d = outcome.map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert!(pool.iter().any(|m| m.id == d.primary.model.id), "{} not eligible", d.primary.model.id);
                let got = cost(&d.primary.model, &input);
                prop_assert!((got - cheapest).abs() <= 1e-15, "chose {} at {got}, cheapest {cheapest}", d.primary.model.id);
                prop_assert_eq!(d.latency_relaxed, in_budget.is_empty());
                // The fallback chain is ordered by cost too.
                let costs: Vec<f64> = d.chain().map(|c| cost(&c.model, &input)).collect();
                prop_assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
            }
        }
    }

    /// A budget over its limit is refused with the configured status; near
    /// it, the request is downgraded to a model no dearer than it would get
    /// otherwise.
    #[test]
    fn a_budget_breach_downgrades_or_rejects_as_configured(
        input in any_input(),
        spent_share in 0.0f64..1.5,
        status in prop::sample::select(vec![402u16, 429]),
        on_over in prop::sample::select(vec!["reject", "downgrade"]),
    ) {
        let mut input = input;
        input.tenant = Some("acme".to_owned());
        let limits = format!(
            "[budgets]\nnear_at = 0.8\non_near = \"downgrade\"\non_over = \"{on_over}\"\nreject_status = {status}\n\
             [budgets.downgrade]\nweights = {{ quality = 0.0, cost = 1.0, latency = 0.0 }}\nquality_floor = 0.0\n\
             [[budgets.limit]]\ntenant = \"*\"\ndaily_usd = 10.0\n"
        );
        let policy = Policy::parse(&with_budgets(&limits), "budgets").unwrap();
        let tracker = BudgetTracker::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        tracker.record("acme", 10.0 * spent_share, now);
        let view = BudgetView::new(&tracker, now);
        let live = LiveStats::default();
        let free = policy.select(&input, &live, &BudgetView::unlimited());
        let gated = policy.select(&input, &live, &view);
        let spent = 10.0 * spent_share;
        if spent >= 10.0 && on_over == "reject" {
            let e = gated.expect_err("over budget must be refused");
            prop_assert_eq!(e.status, status);
            let b = e.budget.expect("the refusal names the budget");
            prop_assert_eq!(b.level, BudgetLevel::Over);
            prop_assert_eq!(b.action, OnBudget::Reject);
        } else if spent >= 8.0 {
            if let Ok(d) = &gated {
                let b = d.budget.as_ref().expect("the decision names the budget");
                prop_assert_eq!(b.action, OnBudget::Downgrade);
                prop_assert_eq!(b.level, if spent >= 10.0 { BudgetLevel::Over } else { BudgetLevel::Near });
                if let Ok(f) = &free {
                    prop_assert!(d.primary.expected_cost_usd <= f.primary.expected_cost_usd,
                        "downgraded to {} (${}) from {} (${})", d.primary.model.id, d.primary.expected_cost_usd,
                        f.primary.model.id, f.primary.expected_cost_usd);
                }
                // Nothing chosen costs more than what is left of the budget.
                if spent < 10.0 {
                    for c in d.chain() {
                        prop_assert!(c.expected_cost_usd <= 10.0 - spent + 1e-12);
                    }
                }
            }
        } else {
            // Under the near threshold: the budget changes nothing unless a
            // model costs more than what is left.
            if let (Ok(d), Ok(f)) = (&gated, &free) {
                prop_assert!(d.budget.is_none());
                if f.primary.expected_cost_usd <= 10.0 - spent {
                    prop_assert_eq!(&d.primary.model.id, &f.primary.model.id);
                }
            }
        }
    }
}

/// The built-in policy with its `[budgets]` tables replaced by `budgets`.
fn with_budgets(budgets: &str) -> String {
    let text = routing_core::policy::DEFAULT_POLICY;
    let start = text
        .find("[budgets]\n")
        .expect("the built-in policy has [budgets]");
    let end = text[start..]
        .find("[escalation.default]")
        .map(|i| start + i)
        .expect("[escalation.default] follows [budgets]");
    format!("{}{}\n{}", &text[..start], budgets, &text[end..])
}

#[test]
fn a_spent_budget_resets_the_next_utc_day() {
    let tracker = BudgetTracker::new();
    let day = 86_400;
    let noon = UNIX_EPOCH + Duration::from_secs(20_000 * day + day / 2);
    tracker.record("acme", 5.0, noon);
    tracker.record("acme", 2.0, noon + Duration::from_secs(3600));
    let spent = tracker.spent("acme", noon);
    assert_eq!(spent.day_usd, 7.0);
    let tomorrow = noon + Duration::from_secs(day);
    let next = tracker.spent("acme", tomorrow);
    assert_eq!(next.day_usd, 0.0);
    // 20000 days after 1970-01-01 is 2024-10-04: the month goes on.
    assert_eq!(next.month_usd, 7.0);
    tracker.record("acme", 1.0, tomorrow);
    assert_eq!(tracker.spent("acme", tomorrow).day_usd, 1.0);
    assert_eq!(tracker.spent("acme", tomorrow).month_usd, 8.0);
    // A late record for yesterday counts for the month only.
    tracker.record("acme", 0.5, noon);
    assert_eq!(tracker.spent("acme", tomorrow).day_usd, 1.0);
    assert_eq!(tracker.spent("acme", tomorrow).month_usd, 8.5);
    // Next month starts afresh.
    let next_month = UNIX_EPOCH + Duration::from_secs(20_028 * day);
    assert_eq!(routing_core::policy::utc_month(next_month), (2024, 11));
    assert_eq!(tracker.spent("acme", next_month).month_usd, 0.0);
    tracker.record("acme", 3.0, next_month);
    assert_eq!(tracker.spent("acme", next_month).month_usd, 3.0);
    assert_eq!(tracker.spent("other", next_month).month_usd, 0.0);
}

#[test]
fn budget_gates_apply_per_tenant() {
    let text = with_budgets(
        "[budgets]\non_over = \"reject\"\nreject_status = 429\n\
         [[budgets.limit]]\ntenant = \"acme\"\nmonthly_usd = 100.0\n\
         [[budgets.limit]]\ntenant = \"*\"\ndaily_usd = 1.0\n",
    );
    let policy = Policy::parse(&text, "t").unwrap();
    let tracker = BudgetTracker::new();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    tracker.record("acme", 2.0, now);
    tracker.record("beta", 2.0, now);
    let view = BudgetView::new(&tracker, now);
    let mut input = SelectionInput::new(routing_core::Task::Generate, 30_000, false);
    input.tenant = Some("acme".to_owned());
    // acme has only a monthly limit, far away.
    let d = policy.select(&input, &LiveStats::default(), &view).unwrap();
    assert!(d.budget.is_none());
    // beta falls under `*`: one dollar a day, spent twice over.
    input.tenant = Some("beta".to_owned());
    let e = policy
        .select(&input, &LiveStats::default(), &view)
        .unwrap_err();
    assert_eq!(e.status, 429);
    assert!(e.message.contains("beta"), "{}", e.message);
    // No tenant: no budget.
    input.tenant = None;
    assert!(policy.select(&input, &LiveStats::default(), &view).is_ok());
}
