//! Learning from feedback: the bandit converges on a seeded stream where
//! only the chosen model's outcome is revealed, exploration keeps to its
//! share, its cost cap, privacy and the quality floor, frozen tenants do not
//! learn, and a cold start routes as the static priors do.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

mod policy_common;

use std::time::SystemTime;

use policy_common::*;
use proptest::prelude::*;
use routing_core::api::QualitySource;
use routing_core::chat::Locality;
use routing_core::policy::{
    ArmKey, ArmStats, BudgetTracker, BudgetView, Learned, Learner, LearningConfig, LearningContext,
    LiveStats, Policy, Rng, SelectionInput, explore,
};
use routing_core::{Difficulty, Task};

/// Drives a future that never waits (the in-memory store's).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-memory store never waits"),
    }
}

/// Three generate models with the same static quality (0.7), price and
/// speed, ranked by quality alone: the prior cannot tell them apart.
fn three_models(learning: &str) -> Policy {
    let mut text = format!("version = 1\n[learning]\n{learning}\n");
    for i in 0..3 {
        text.push_str(&format!(
            "[[model]]\nid = \"m{i}\"\nprovider = \"p{i}\"\nmodel = \"model-{i}\"\n\
             locality = \"external\"\ntasks = [\"generate\"]\ncontext_window = 32768\n\
             ttft_ms = 100\ntokens_per_s = 100\n\
             quality = {{ simple = 0.7, medium = 0.7, hard = 0.7 }}\n\
             price = {{ input = {p}, output = {p}, as_of = \"t\", source = \"t\" }}\n",
            p = 0.1 + f64::from(i) * 0.01,
        ));
    }
    text.push_str(
        "[[rule]]\nname = \"all\"\nweights = { quality = 1.0, cost = 0.0, latency = 0.0 }\n",
    );
    Policy::parse(&text, "three").expect("valid policy")
}

fn input(tenant: Option<&str>) -> SelectionInput {
    let mut input = SelectionInput::new(Task::Generate, 30_000, false);
    input.difficulty = Some(Difficulty::Medium);
    input.input_tokens = 200;
    input.tenant = tenant.map(str::to_owned);
    input
}

/// Routes `events` requests, revealing only the chosen model's outcome
/// (Bernoulli with its true quality); returns the learner.
fn run_stream(policy: &Policy, truth: &[(&str, f64)], events: usize, seed: u64) -> Learner {
    let learner = Learner::in_memory(seed);
    let live = LiveStats::new(policy.live_config());
    let tracker = BudgetTracker::new();
    let view = BudgetView::new(&tracker, SystemTime::now());
    let input = input(None);
    let context = LearningContext::for_input(&input);
    let mut outcomes = Rng::new(seed.wrapping_add(1));
    for event in 0..events {
        let learned = ready(learner.view(policy, &context)).unwrap();
        let mut decision = policy
            .select_learned(&input, &live, &view, &learned)
            .unwrap();
        learner.explore(
            policy.learning(),
            &input,
            &mut decision,
            &learned,
            &format!("call-{event}"),
        );
        let chosen = decision.primary.model.id.clone();
        let p = truth.iter().find(|(m, _)| *m == chosen).unwrap().1;
        let reward = if outcomes.uniform() < p { 1.0 } else { 0.0 };
        let key = ArmKey {
            model: chosen,
            context,
        };
        ready(learner.learn(policy.learning(), None, &key, reward)).unwrap();
    }
    learner
}

#[test]
fn a_seeded_stream_converges_on_the_best_model() {
    let policy = three_models("explore_share = 0.2\nmin_observations = 5");
    let truth = [("m0", 0.4), ("m1", 0.9), ("m2", 0.6)];
    for seed in [1, 2, 3] {
        let learner = run_stream(&policy, &truth, 1500, seed);
        let context = LearningContext::for_input(&input(None));
        let learned = ready(learner.view(&policy, &context)).unwrap();
        let tracker = BudgetTracker::new();
        let decision = policy
            .select_learned(
                &input(None),
                &LiveStats::new(policy.live_config()),
                &BudgetView::new(&tracker, SystemTime::now()),
                &learned,
            )
            .unwrap();
        assert_eq!(decision.primary.model.id, "m1", "seed {seed}: {decision:?}");
        assert_eq!(decision.primary.quality_source, QualitySource::Learned);
        let m1 = learned.predict("m1", 0.7).quality;
        for other in ["m0", "m2"] {
            assert!(
                learned.predict(other, 0.7).quality < m1,
                "seed {seed}: {other} ranks above m1"
            );
        }
        // The best model was served most of the time.
        assert!(
            learned.stats("m1").n > 1000,
            "seed {seed}: {:?}",
            learned.stats("m1")
        );
        // The explanation says where each prediction comes from.
        let explanation = decision.explanation();
        assert_eq!(explanation.predicted_quality[0].model, "m1");
        assert_eq!(
            explanation.predicted_quality[0].source,
            QualitySource::Learned
        );
    }
}

#[test]
fn a_cold_start_routes_as_the_static_priors() {
    let policy = Policy::builtin().unwrap();
    let live = LiveStats::new(policy.live_config());
    let tracker = BudgetTracker::new();
    let view = BudgetView::new(&tracker, SystemTime::now());
    for difficulty in [Difficulty::Simple, Difficulty::Medium, Difficulty::Hard] {
        let mut input = input(None);
        input.difficulty = Some(difficulty);
        let learner = Learner::in_memory(7);
        let learned = ready(learner.view(&policy, &LearningContext::for_input(&input))).unwrap();
        let with = policy
            .select_learned(&input, &live, &view, &learned)
            .unwrap();
        let without = policy.select(&input, &live, &view).unwrap();
        assert_eq!(with, without);
        assert!(
            with.chain()
                .all(|c| c.quality_source == QualitySource::Prior && c.quality == c.prior_quality)
        );
    }
}

/// A weak and a strong generate model whose static quality differs by
/// tier, ranked by quality alone.
fn weak_and_strong() -> Policy {
    let mut text = String::from("version = 1\n[learning]\nmin_observations = 10\n");
    for (id, q) in [
        ("w", "0.72, medium = 0.5, hard = 0.3"),
        ("s", "0.9, medium = 0.8, hard = 0.65"),
    ] {
        text.push_str(&format!(
            "[[model]]\nid = \"{id}\"\nprovider = \"p{id}\"\nmodel = \"{id}\"\n\
             locality = \"external\"\ntasks = [\"generate\"]\ncontext_window = 32768\n\
             ttft_ms = 100\ntokens_per_s = 100\nquality = {{ simple = {q} }}\n\
             price = {{ input = 0.1, output = 0.1, as_of = \"t\", source = \"t\" }}\n",
        ));
    }
    text.push_str(
        "[[rule]]\nname = \"all\"\nweights = { quality = 1.0, cost = 0.0, latency = 0.0 }\n",
    );
    Policy::parse(&text, "pair").expect("valid policy")
}

#[test]
fn a_learned_cell_predicts_one_quality_whatever_the_confidence() {
    let policy = weak_and_strong();
    let learner = Learner::in_memory(5);
    let live = LiveStats::new(policy.live_config());
    let tracker = BudgetTracker::new();
    let view = BudgetView::new(&tracker, SystemTime::now());
    let mut sure = input(None);
    sure.difficulty = Some(Difficulty::Simple);
    sure.confidence = Some(0.95);
    let mut unsure = sure.clone();
    unsure.confidence = Some(0.4);
    let context = LearningContext::for_input(&sure);
    assert_eq!(context, LearningContext::for_input(&unsure));
    let key = ArmKey {
        model: "w".to_owned(),
        context,
    };
    let quality = |input: &SelectionInput, learned: &Learned, model: &str| {
        let decision = policy.select_learned(input, &live, &view, learned).unwrap();
        let c = decision
            .chain()
            .find(|c| c.model.id == model)
            .unwrap()
            .clone();
        (c.quality, c.prior_quality, c.quality_source)
    };
    // Below min_observations: each request's own prior, blended by its
    // confidence toward the adjacent tier, as without learning.
    for _ in 0..9 {
        ready(learner.learn(policy.learning(), None, &key, 1.0)).unwrap();
    }
    let learned = ready(learner.view(&policy, &context)).unwrap();
    let (q_sure, prior_sure, source) = quality(&sure, &learned, "w");
    let (q_unsure, prior_unsure, _) = quality(&unsure, &learned, "w");
    assert_eq!(source, QualitySource::Prior);
    assert_eq!((q_sure, q_unsure), (prior_sure, prior_unsure));
    assert!(prior_sure > prior_unsure, "{prior_sure} {prior_unsure}");
    // Learned: one prediction for the cell, from the tier's own prior
    // (0.72, worth 20 observations) and the 30 rewards of 1.
    for _ in 9..30 {
        ready(learner.learn(policy.learning(), None, &key, 1.0)).unwrap();
    }
    let learned = ready(learner.view(&policy, &context)).unwrap();
    let (q_sure, _, source) = quality(&sure, &learned, "w");
    let (q_unsure, _, _) = quality(&unsure, &learned, "w");
    assert_eq!(source, QualitySource::Learned);
    assert_eq!(q_sure, q_unsure);
    let expected = (20.0 * 0.72 + 30.0) / 50.0;
    assert!((f64::from(q_sure) - expected).abs() < 1e-6, "{q_sure}");
    // The model never observed keeps each request's blended prior.
    let (s_sure, _, source) = quality(&sure, &learned, "s");
    let (s_unsure, _, _) = quality(&unsure, &learned, "s");
    assert_eq!(source, QualitySource::Prior);
    assert!(s_sure > s_unsure, "{s_sure} {s_unsure}");
}

#[test]
fn few_observations_keep_the_prior_then_blend_by_count() {
    let config = LearningConfig {
        prior_weight: 10.0,
        min_observations: 5,
        ..LearningConfig::default()
    };
    let mut learned = Learned::new(&config);
    learned.insert(
        "a",
        ArmStats {
            n: 4,
            reward_sum: 0.0,
        },
    );
    assert_eq!(learned.predict("a", 0.8).source, QualitySource::Prior);
    assert_eq!(learned.predict("a", 0.8).quality, 0.8);
    learned.insert(
        "a",
        ArmStats {
            n: 10,
            reward_sum: 0.0,
        },
    );
    let p = learned.predict("a", 0.8);
    assert_eq!(p.source, QualitySource::Learned);
    // (10·0.8 + 0) / (10 + 10)
    assert!((p.quality - 0.4).abs() < 1e-6, "{p:?}");
}

#[test]
fn exploration_keeps_to_its_share_and_cost_cap() {
    // m0..m2 cost about 0.1 + 0.01·i USD per 1M tokens: a call of 200 + 256
    // tokens costs ~4.6e-5..5.5e-5 USD. The cap lets m1 in, not m2.
    let policy = three_models("explore_share = 0.05\nexplore_max_cost_usd = 0.0000505");
    let config = policy.learning().clone();
    let live = LiveStats::new(policy.live_config());
    let tracker = BudgetTracker::new();
    let view = BudgetView::new(&tracker, SystemTime::now());
    let input = input(None);
    let learned = Learned::new(&config);
    let learner = Learner::in_memory(42);
    let n = 20_000u32;
    let mut explored = 0u32;
    for call in 0..n {
        let mut decision = policy
            .select_learned(&input, &live, &view, &learned)
            .unwrap();
        let top = decision.primary.model.id.clone();
        if learner.explore(
            &config,
            &input,
            &mut decision,
            &learned,
            &format!("c{call}"),
        ) {
            explored += 1;
            assert_ne!(decision.primary.model.id, top);
            assert!(decision.explored);
            assert!(
                decision.primary.expected_cost_usd <= config.explore_max_cost_usd,
                "{decision:?}"
            );
            assert_eq!(decision.fallbacks[0].model.id, top);
        }
    }
    // Within four standard deviations of a binomial(n, share).
    let (n, p) = (f64::from(n), config.explore_share);
    let sd = (n * p * (1.0 - p)).sqrt();
    let explored = f64::from(explored);
    assert!(explored <= n * p + 4.0 * sd, "explored {explored} of {n}");
    assert!(explored >= n * p - 4.0 * sd, "explored {explored} of {n}");
}

#[test]
fn frozen_tenants_do_not_learn_or_explore() {
    let policy = three_models("explore_share = 0.5\nfrozen_tenants = [\"frozen\"]");
    let config = policy.learning();
    let learner = Learner::in_memory(3);
    let context = LearningContext::for_input(&input(None));
    let key = ArmKey {
        model: "m0".to_owned(),
        context,
    };
    for _ in 0..50 {
        assert_eq!(
            ready(learner.learn(config, Some("frozen"), &key, 1.0)).unwrap(),
            None
        );
    }
    assert_eq!(ready(learner.stats(&key)).unwrap(), ArmStats::default());
    let learned = ready(learner.view(&policy, &context)).unwrap();
    assert_eq!(learned.stats("m0").n, 0);
    assert!(
        ready(learner.learn(config, Some("thawed"), &key, 1.0))
            .unwrap()
            .is_some()
    );
    assert_eq!(ready(learner.stats(&key)).unwrap().n, 1);

    let live = LiveStats::new(policy.live_config());
    let tracker = BudgetTracker::new();
    let view = BudgetView::new(&tracker, SystemTime::now());
    let frozen = input(Some("frozen"));
    for call in 0..200 {
        let mut decision = policy
            .select_learned(&frozen, &live, &view, &learned)
            .unwrap();
        assert!(!learner.explore(config, &frozen, &mut decision, &learned, &format!("{call}")));
    }
    // Learning disabled: nobody learns.
    let off = LearningConfig {
        enabled: false,
        ..config.clone()
    };
    assert_eq!(ready(learner.learn(&off, None, &key, 1.0)).unwrap(), None);
}

#[test]
fn the_learning_table_is_validated_strictly() {
    for (table, field) in [
        ("explore_share = 0.9", "learning.explore_share"),
        ("explore_share = -0.1", "learning.explore_share"),
        (
            "explore_max_cost_usd = -1.0",
            "learning.explore_max_cost_usd",
        ),
        ("prior_weight = 0.0", "learning.prior_weight"),
        ("frozen_tenants = [\"\"]", "learning.frozen_tenants[0]"),
        (
            "frozen_tenants = [\"a\", \"a\"]",
            "learning.frozen_tenants[1]",
        ),
        ("explore = 0.1", "learning.explore"),
    ] {
        let text = format!(
            "version = 1\n[learning]\n{table}\n[[model]]\nid = \"m\"\nprovider = \"p\"\n\
             model = \"x\"\nlocality = \"external\"\ntasks = [\"generate\"]\n\
             context_window = 1000\nttft_ms = 1\ntokens_per_s = 1\n\
             quality = {{ simple = 0.5, medium = 0.5, hard = 0.5 }}\n\
             price = {{ input = 1, output = 1, as_of = \"t\", source = \"t\" }}\n\
             [[rule]]\nname = \"all\"\n"
        );
        let err = Policy::parse(&text, "t").expect_err(table);
        assert_eq!(err.field.as_deref(), Some(field), "{table}: {err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the catalogue, request and learned state, an explored
    /// primary is in-cluster for a private request, reaches the caller's
    /// quality floor and stays within every cost cap.
    #[test]
    fn exploration_never_crosses_privacy_or_the_floor(
        models in prop::collection::vec(gen_model(), 2..8),
        private in any::<bool>(),
        difficulty in any_difficulty(),
        floor in prop::option::of(prop::sample::select(vec![0.0f32, 0.3, 0.5, 0.7])),
        cap in prop::option::of(prop::sample::select(vec![1e-4, 1e-3, 1e-2])),
        stats in prop::collection::vec((0u64..50, 0.0f64..1.0), 8),
        seed in any::<u64>(),
    ) {
        let text = policy_text(
            &models,
            (0.6, 0.3, 0.1),
            "[learning]\nexplore_share = 0.5\nexplore_max_cost_usd = 0.005\nmin_observations = 1",
        );
        let policy = Policy::parse(&text, "generated").unwrap();
        let config = policy.learning();
        let mut input = SelectionInput::new(Task::Generate, 600_000, private);
        input.difficulty = difficulty;
        input.quality_floor = floor;
        input.max_cost_usd = cap;
        input.input_tokens = 100;
        let mut learned = Learned::new(config);
        for (i, (n, mean)) in stats.iter().enumerate() {
            learned.insert(format!("m{i}"), ArmStats { n: *n, reward_sum: *n as f64 * mean });
        }
        let live = LiveStats::new(policy.live_config());
        let tracker = BudgetTracker::new();
        let view = BudgetView::new(&tracker, SystemTime::now());
        let Ok(decision) = policy.select_learned(&input, &live, &view, &learned) else {
            return Ok(());
        };
        let mut rng = Rng::new(seed);
        for _ in 0..8 {
            let mut d = decision.clone();
            if explore(config, &input, &mut d, &learned, &mut rng) {
                let p = &d.primary;
                prop_assert!(!private || p.model.locality == Locality::InCluster, "{d:?}");
                prop_assert!(p.quality >= floor.unwrap_or(0.0), "{d:?}");
                prop_assert!(p.expected_cost_usd <= config.explore_max_cost_usd);
                prop_assert!(cap.is_none_or(|c| p.expected_cost_usd <= c));
                prop_assert!(d.chain().any(|c| c.model.id == decision.primary.model.id));
            }
            if private {
                prop_assert!(d.chain().all(|c| c.model.locality == Locality::InCluster));
            }
        }
    }
}
