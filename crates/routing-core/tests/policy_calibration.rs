//! The calibrated operating point: tier shares follow the policy's target on
//! any score distribution, a cold start uses the static cut-offs, the
//! `[calibration]` table is validated strictly, tenant windows are bounded
//! and the cut-offs are monotone.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use routing_core::policy::{
    CalibrationConfig, CalibrationScope, Calibrator, Cutoffs, DEFAULT_POLICY, MemoryWindows,
    Policy, PolicyError, ScopeKey, SelectionInput, TargetShare, quantile_cutoffs, window_key,
};
use routing_core::{Difficulty, Task};

/// Drives a future that never waits (the in-memory store's).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// A seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rounded to three decimals, as the classifier sends it.
fn wire(p: f64) -> f32 {
    ((p.clamp(0.0, 1.0) * 1000.0).round() / 1000.0) as f32
}

/// Score distributions seen in practice.
#[derive(Debug, Clone, Copy)]
enum Dist {
    /// MMLU-like: logits around the base rate.
    Mmlu,
    /// Collapsed: every prompt scores 0.001–0.04 (heavy ties once rounded).
    Collapsed,
    /// Uniform over [0, 1].
    Uniform,
    /// Two clusters: easy chit-chat and hard proofs.
    Bimodal,
}

impl Dist {
    fn sample(self, rng: &mut Rng) -> f64 {
        match self {
            Dist::Mmlu => sigmoid(-1.6 + 0.9 * rng.normal()),
            Dist::Collapsed => sigmoid(-5.5 + 0.6 * rng.normal()),
            Dist::Uniform => rng.unit(),
            Dist::Bimodal => {
                if rng.unit() < 0.7 {
                    sigmoid(-4.0 + 0.5 * rng.normal())
                } else {
                    sigmoid(0.5 + 0.8 * rng.normal())
                }
            }
        }
    }
}

fn global(target: TargetShare) -> CalibrationScope {
    CalibrationScope {
        key: ScopeKey::Global,
        target,
    }
}

/// Runs `scores` through a calibrator as the router does (refreshing when
/// told) and returns the tiers.
fn run(
    calibrator: &Calibrator,
    config: &CalibrationConfig,
    scope: &CalibrationScope,
    scores: impl IntoIterator<Item = (usize, f32)>,
) -> Vec<Difficulty> {
    scores
        .into_iter()
        .map(|(i, score)| {
            let c = calibrator.calibrate(config, scope, score, &format!("prompt {i}"));
            if let Some(key) = c.refresh {
                now(calibrator.refresh(&key, config)).unwrap();
            }
            c.difficulty
        })
        .collect()
}

fn shares(tiers: &[Difficulty]) -> (f64, f64, f64) {
    let n = tiers.len() as f64;
    let count = |d: Difficulty| tiers.iter().filter(|t| **t == d).count() as f64 / n;
    (
        count(Difficulty::Simple),
        count(Difficulty::Medium),
        count(Difficulty::Hard),
    )
}

fn assert_near(tiers: &[Difficulty], target: TargetShare, what: &str) {
    let (simple, medium, hard) = shares(tiers);
    for (tier, got, want) in [
        ("simple", simple, target.simple()),
        ("medium", medium, target.medium),
        ("hard", hard, target.hard),
    ] {
        assert!(
            (got - want).abs() <= 0.05,
            "{what}: {tier} share {got:.3}, target {want:.3} (simple/medium/hard \
             {simple:.3}/{medium:.3}/{hard:.3})"
        );
    }
}

const TARGET: TargetShare = TargetShare {
    medium: 0.25,
    hard: 0.10,
};

#[test]
fn tier_shares_follow_the_target_on_every_distribution() {
    let config = CalibrationConfig::default();
    for (seed, dist) in [Dist::Mmlu, Dist::Collapsed, Dist::Uniform, Dist::Bimodal]
        .into_iter()
        .enumerate()
    {
        for target in [
            TARGET,
            TargetShare {
                medium: 0.5,
                hard: 0.3,
            },
            TargetShare {
                medium: 0.05,
                hard: 0.02,
            },
        ] {
            let mut rng = Rng(20_261_201 + seed as u64);
            let calibrator = Calibrator::default();
            let scope = global(target);
            let scores: Vec<(usize, f32)> = (0..8000)
                .map(|i| (i, wire(dist.sample(&mut rng))))
                .collect();
            let tiers = run(&calibrator, &config, &scope, scores);
            // After the window filled once, shares hold the target.
            assert_near(
                &tiers[config.window..],
                target,
                &format!("{dist:?} {target:?}"),
            );
        }
    }
}

#[test]
fn static_cutoffs_collapse_where_the_window_does_not() {
    // The failure this guards against: on collapsed scores the static
    // cut-offs rate (nearly) everything simple.
    let mut rng = Rng(7);
    let scores: Vec<f32> = (0..4000)
        .map(|_| wire(Dist::Collapsed.sample(&mut rng)))
        .collect();
    let cold = Cutoffs::MMLU_FITTED;
    let tiers: Vec<Difficulty> = scores.iter().map(|s| cold.tier(f64::from(*s))).collect();
    let (simple, _, _) = shares(&tiers);
    assert!(simple > 0.95, "static simple share {simple}");
    let config = CalibrationConfig::default();
    let calibrator = Calibrator::default();
    let tiers = run(
        &calibrator,
        &config,
        &global(TARGET),
        scores.into_iter().enumerate(),
    );
    assert_near(&tiers[config.window..], TARGET, "collapsed");
}

#[test]
fn shares_recover_after_a_sudden_shift() {
    let config = CalibrationConfig::default();
    let calibrator = Calibrator::default();
    let scope = global(TARGET);
    let mut rng = Rng(99);
    let before: Vec<(usize, f32)> = (0..4000)
        .map(|i| (i, wire(Dist::Mmlu.sample(&mut rng))))
        .collect();
    let after: Vec<(usize, f32)> = (4000..12_000)
        .map(|i| (i, wire(Dist::Collapsed.sample(&mut rng))))
        .collect();
    let tiers_before = run(&calibrator, &config, &scope, before);
    assert_near(&tiers_before[config.window..], TARGET, "before the shift");
    let tiers_after = run(&calibrator, &config, &scope, after);
    // Right after the shift the old quantiles rate the new traffic simple;
    // once the window turned over, the target holds again.
    let (simple_at_shift, _, _) = shares(&tiers_after[..200]);
    assert!(simple_at_shift > 0.9, "{simple_at_shift}");
    assert_near(&tiers_after[config.window..], TARGET, "after the shift");
    // And the other way round: a jump up in scores.
    let up: Vec<(usize, f32)> = (12_000..20_000)
        .map(|i| (i, wire(Dist::Uniform.sample(&mut rng))))
        .collect();
    let tiers_up = run(&calibrator, &config, &scope, up);
    assert_near(&tiers_up[config.window..], TARGET, "after a jump up");
}

#[test]
fn a_cold_start_uses_the_static_cutoffs_until_the_window_fills() {
    let config = CalibrationConfig {
        cold_start: Some(Cutoffs {
            medium: 0.2,
            hard: 0.6,
        }),
        min_scores: 100,
        recompute_every: 10,
        ..CalibrationConfig::default()
    };
    let calibrator = Calibrator::default();
    let scope = global(TARGET);
    for (score, tier) in [
        (0.1, Difficulty::Simple),
        (0.2, Difficulty::Medium),
        (0.59, Difficulty::Medium),
        (0.6, Difficulty::Hard),
    ] {
        let c = calibrator.calibrate(&config, &scope, score, "cold");
        assert_eq!(c.difficulty, tier, "{score}");
        let e = &c.explanation;
        assert_eq!(e.source, "cold_start");
        assert_eq!(e.window, "global");
        assert_eq!(e.thresholds.medium, Some(0.2));
        assert_eq!(e.thresholds.hard, Some(0.6));
        assert_eq!(e.score, Some(f64::from(score)));
    }
    // Every prompt scores 0.9: the static cut-offs say hard; once the
    // window holds min_scores, 10% are hard and 25% medium.
    let tiers = run(&calibrator, &config, &scope, (0..96).map(|i| (i, 0.9)));
    assert!(tiers.iter().all(|t| *t == Difficulty::Hard));
    let c = calibrator.calibrate(&config, &scope, 0.9, "prompt x");
    assert_eq!(c.explanation.source, "window", "{:?}", c.explanation);
    assert_eq!(c.explanation.n, 100);
    // Distinct prompts with one score: spread over the rounding interval,
    // the ties still split by the target.
    let tiers = run(
        &calibrator,
        &config,
        &scope,
        (10_000..12_000).map(|i| (i, 0.9)),
    );
    assert_near(&tiers, TARGET, "ties spread by resolution");
}

#[test]
fn without_calibration_the_static_cutoffs_apply() {
    let config = CalibrationConfig {
        enabled: false,
        ..CalibrationConfig::default()
    };
    let calibrator = Calibrator::default();
    let tiers = run(
        &calibrator,
        &config,
        &global(TARGET),
        (0..500).map(|i| (i, 0.01)),
    );
    assert!(tiers.iter().all(|t| *t == Difficulty::Simple));
    let c = calibrator.calibrate(&config, &global(TARGET), 0.5, "x");
    assert_eq!(c.explanation.source, "static");
    assert_eq!(c.difficulty, Difficulty::Hard);
    assert_eq!(calibrator.windows(), 0, "nothing is recorded");
}

#[test]
fn the_explanation_names_window_size_thresholds_and_source() {
    let config = CalibrationConfig {
        min_scores: 10,
        recompute_every: 10,
        window: 100,
        score_resolution: 0.0,
        ..CalibrationConfig::default()
    };
    let calibrator = Calibrator::default();
    let scope = global(TARGET);
    // Scores 0.01 .. 1.00: the top 10 are hard, the next 25 medium.
    run(
        &calibrator,
        &config,
        &scope,
        (1..=100).map(|i| (i, i as f32 / 100.0)),
    );
    let c = calibrator.calibrate(&config, &scope, 0.7, "q");
    let e = serde_json::to_value(&c.explanation).unwrap();
    assert_eq!(e["window"], "global");
    assert_eq!(e["n"], 100);
    assert_eq!(e["source"], "window");
    assert_eq!(e["target_share"]["hard"], 0.1);
    assert_eq!(e["target_share"]["medium"], 0.25);
    let hard = e["thresholds"]["hard"].as_f64().unwrap();
    let medium = e["thresholds"]["medium"].as_f64().unwrap();
    assert!((hard - 0.91).abs() < 1e-6, "{e}");
    assert!((medium - 0.66).abs() < 1e-6, "{e}");
    assert_eq!(c.difficulty, Difficulty::Medium);
    // A share of 0 is a threshold no score reaches: null.
    let none = global(TargetShare {
        medium: 0.3,
        hard: 0.0,
    });
    let c = calibrator.calibrate(&config, &none, 1.0, "q");
    assert_eq!(c.difficulty, Difficulty::Medium);
    let e = serde_json::to_value(&c.explanation).unwrap();
    assert!(e["thresholds"]["hard"].is_null(), "{e}");
    // The same status, without a score, for metrics.
    let status = calibrator.status(&config, &scope);
    assert_eq!(status.n, 100);
    assert_eq!(status.source, "window");
    assert!(status.score.is_none());
}

#[test]
fn a_cold_scoped_window_borrows_the_global_quantiles() {
    let config = CalibrationConfig {
        min_scores: 50,
        recompute_every: 10,
        window: 200,
        ..CalibrationConfig::default()
    };
    let calibrator = Calibrator::default();
    let mut rng = Rng(3);
    run(
        &calibrator,
        &config,
        &global(TARGET),
        (0..200).map(|i| (i, wire(rng.unit()))),
    );
    let tenant = CalibrationScope {
        key: ScopeKey::Tenant("acme".into()),
        target: TargetShare {
            medium: 0.3,
            hard: 0.3,
        },
    };
    let c = calibrator.calibrate(&config, &tenant, 0.5, "t");
    assert_eq!(c.explanation.window, "global");
    assert_eq!(c.explanation.source, "window");
    assert_eq!(c.explanation.target_share.hard, 0.3);
    let tiers = run(
        &calibrator,
        &config,
        &tenant,
        (0..2000).map(|i| (i, wire(rng.unit() * 0.1))),
    );
    let c = calibrator.calibrate(&config, &tenant, 0.05, "t");
    assert_eq!(c.explanation.window, "tenant:acme");
    assert_near(&tiers[200..], tenant.target, "tenant window");
}

#[test]
fn tenant_windows_are_bounded() {
    let config = CalibrationConfig {
        max_tenant_windows: 3,
        recompute_every: 1,
        ..CalibrationConfig::default()
    };
    let store = Arc::new(MemoryWindows::new());
    let calibrator = Calibrator::new(store.clone());
    for t in 0..50 {
        let scope = CalibrationScope {
            key: ScopeKey::Tenant(format!("t{t}")),
            target: TARGET,
        };
        run(&calibrator, &config, &scope, (0..3).map(|i| (i, 0.5)));
        run(&calibrator, &config, &global(TARGET), [(0, 0.5)]);
        assert!(calibrator.windows() <= 4, "{}", calibrator.windows());
        assert!(store.len() <= 4, "{}", store.len());
    }
    // The most recent tenants are the ones kept.
    let c = calibrator.calibrate(
        &config,
        &CalibrationScope {
            key: ScopeKey::Tenant("t49".into()),
            target: TARGET,
        },
        0.5,
        "x",
    );
    assert_eq!(c.explanation.n, 3);
}

/// The built-in policy with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(DEFAULT_POLICY.contains(from), "{from:?} not in the policy");
    DEFAULT_POLICY.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    text[..at].matches('\n').count() + 1
}

fn error(text: &str) -> PolicyError {
    Policy::parse(text, "test.toml").expect_err("the edit must be refused")
}

const TARGET_LINE: &str = "target_share = { medium = 0.25, hard = 0.10 }";

#[test]
fn bad_calibration_edits_name_the_field_and_line() {
    let tenant = "max_tenant_windows = 64\n[[calibration.tenant]]\ntenant = \"research\"\n";
    // (from, to, field, the line holds this text, message contains)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            TARGET_LINE,
            "target_share = { medium = 0.25, hard = 1.5 }",
            "calibration.target_share.hard",
            "hard = 1.5",
            "between 0 and 1",
        ),
        (
            TARGET_LINE,
            "target_share = { medium = 0.7, hard = 0.4 }",
            "calibration.target_share",
            "medium = 0.7",
            "at most 1",
        ),
        (
            TARGET_LINE,
            "target_share = { medium = 0.25, strong = 0.10 }",
            "calibration.target_share.strong",
            "strong = 0.10",
            "unknown field",
        ),
        (
            "window = 2000",
            "window = 2000\nwindows = 3",
            "calibration.windows",
            "windows = 3",
            "unknown field",
        ),
        (
            "min_scores = 200",
            "min_scores = 5000",
            "calibration.min_scores",
            "min_scores = 5000",
            "never be reached",
        ),
        (
            "recompute_every = 32",
            "recompute_every = 0",
            "calibration.recompute_every",
            "recompute_every = 0",
            "between 1 and",
        ),
        (
            "score_resolution = 0.001",
            "score_resolution = -1.0",
            "calibration.score_resolution",
            "score_resolution = -1.0",
            "between 0 and 0.1",
        ),
        (
            "# cold_start = { medium = 0.0888, hard = 0.2664 }",
            "cold_start = { medium = 0.3, hard = 0.2 }",
            "calibration.cold_start.hard",
            "cold_start = { medium = 0.3",
            "below the medium",
        ),
        (
            "max_tenant_windows = 64",
            "max_tenant_windows = 0",
            "calibration.max_tenant_windows",
            "max_tenant_windows = 0",
            "at least 1",
        ),
        (
            "max_tenant_windows = 64",
            "max_tenant_windows = 64\n[[calibration.tenant]]\ntenant = \"*\"\n\
             target_share = { medium = 0.1, hard = 0.1 }",
            "calibration.tenant[0].tenant",
            "tenant = \"*\"\ntarget_share",
            "name a tenant",
        ),
        (
            "max_tenant_windows = 64",
            "max_tenant_windows = 64\n[[calibration.tenant]]\ntenant = \"research\"\n\
             target_share = { medium = 0.1, hard = 0.1 }\n[[calibration.tenant]]\n\
             tenant = \"research\"\ntarget_share = { medium = 0.1, hard = 0.2 }",
            "calibration.tenant[1].tenant",
            "tenant = \"research\"\ntarget_share = { medium = 0.1, hard = 0.2 }",
            "two targets",
        ),
        (
            "max_tenant_windows = 64",
            &format!("{tenant}target_share = {{ medium = -0.1, hard = 0.1 }}"),
            "calibration.tenant[0].target_share.medium",
            "medium = -0.1",
            "between 0 and 1",
        ),
        (
            "when = { difficulty = [\"hard\"] }",
            "when = { difficulty = [\"hard\"] }\ntarget_share = { medium = 0.1, hard = 0.5 }",
            "rule[5].target_share",
            "target_share = { medium = 0.1, hard = 0.5 }",
            "matches on difficulty",
        ),
        (
            "when = { private = true }",
            "when = { private = true }\ntarget_share = { medium = 0.9, hard = 0.5 }",
            "rule[1].target_share",
            "target_share = { medium = 0.9, hard = 0.5 }",
            "at most 1",
        ),
    ];
    for (from, to, field, line_text, message) in cases {
        let text = edit(from, to);
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some(*field), "{e}");
        assert_eq!(e.line, Some(line_of(&text, line_text)), "{e}");
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn the_scope_is_the_matching_rule_then_the_tenant_then_global() {
    let text = edit(
        "max_tenant_windows = 64",
        "max_tenant_windows = 64\n[[calibration.tenant]]\ntenant = \"research\"\n\
         target_share = { medium = 0.3, hard = 0.3 }",
    );
    let text = text.replacen(
        "name = \"fast_budget\"",
        "name = \"reasoning\"\nwhen = { task = [\"reason\"] }\n\
         target_share = { medium = 0.2, hard = 0.5 }\n\n[[rule]]\nname = \"fast_budget\"",
        1,
    );
    let policy = Policy::parse(&text, "test.toml").unwrap();
    let mut input = SelectionInput::new(Task::Generate, 30_000, false);
    assert_eq!(policy.calibration_scope(&input).key, ScopeKey::Global);
    assert_eq!(policy.calibration_scope(&input).target, TARGET);
    // An invented tenant name gets no window of its own.
    input.tenant = Some("made-up".into());
    assert_eq!(policy.calibration_scope(&input).key, ScopeKey::Global);
    input.tenant = Some("research".into());
    let scope = policy.calibration_scope(&input);
    assert_eq!(scope.key, ScopeKey::Tenant("research".into()));
    assert_eq!(scope.target.hard, 0.3);
    // The rule comes first, whatever the (undecided) difficulty.
    input.task = Task::Reason;
    input.difficulty = Some(Difficulty::Simple);
    let scope = policy.calibration_scope(&input);
    assert_eq!(scope.key, ScopeKey::Rule("reasoning".into()));
    assert_eq!(scope.target.hard, 0.5);
}

proptest! {
    #[test]
    fn cutoffs_are_monotone_and_hit_the_target(
        mut window in prop::collection::vec(0.0f64..=1.0, 1..400),
        medium in 0.0f64..=1.0,
        hard in 0.0f64..=1.0,
    ) {
        let hard = hard.min(1.0 - medium);
        let target = TargetShare { medium, hard };
        window.sort_by(f64::total_cmp);
        let c = quantile_cutoffs(&window, target).unwrap();
        prop_assert!(c.hard >= c.medium, "{c:?}");
        // On the window itself, with distinct scores, the shares are the
        // target to within rounding.
        window.dedup();
        let c = quantile_cutoffs(&window, target).unwrap();
        let n = window.len() as f64;
        let hard_n = window.iter().filter(|s| **s >= c.hard).count() as f64;
        let upper_n = window.iter().filter(|s| **s >= c.medium).count() as f64;
        prop_assert!((hard_n - (n * hard).round()).abs() < 1.0 + 1e-9);
        prop_assert!((upper_n - (n * (hard + medium)).round()).abs() < 1.0 + 1e-9);
    }

    #[test]
    fn window_keys_stay_in_the_rounding_interval(score in 0.0f64..=1.0, unit in 0.0f64..1.0) {
        let s = (score * 1000.0).round() / 1000.0;
        let k = window_key(s, 0.001, unit);
        prop_assert!((0.0..=1.0).contains(&k));
        prop_assert!((k - s).abs() <= 0.0005 + 1e-12);
    }
}
