//! The `[cascade]` table: read from the policy file, and refused with the
//! field and line when it does not hold.

use routing_core::policy::{CascadeSignal, Combine, DEFAULT_POLICY, Policy, PolicyError, ScopeKey};

fn edit(from: &str, to: &str) -> String {
    assert!(DEFAULT_POLICY.contains(from), "{from:?} not in the policy");
    DEFAULT_POLICY.replacen(from, to, 1)
}

fn error(text: &str) -> PolicyError {
    match Policy::parse(text, "test.toml") {
        Ok(_) => panic!("the edit must be refused"),
        Err(e) => e,
    }
}

#[test]
fn the_built_in_policy_ships_the_cascade_off() {
    let policy = Policy::parse(DEFAULT_POLICY, "policy.toml").unwrap_or_else(|e| panic!("{e}"));
    let cascade = policy.cascade();
    assert!(!cascade.enabled);
    assert_eq!(
        cascade.signals,
        [CascadeSignal::Logprobs, CascadeSignal::Agreement]
    );
    assert_eq!(cascade.combine, Combine::Mean);
    assert_eq!(cascade.scope("simple_cheap"), None);
}

#[test]
fn a_rule_may_turn_it_on_with_a_target_of_its_own() {
    let text = edit(
        "# [[cascade.rule]]\n# rule = \"simple_cheap\"\n# enabled = true\n# target_escalation_share = 0.3",
        "[[cascade.rule]]\nrule = \"simple_cheap\"\nenabled = true\ntarget_escalation_share = 0.3",
    );
    let policy = Policy::parse(&text, "policy.toml").unwrap_or_else(|e| panic!("{e}"));
    let scope = policy.cascade().scope("simple_cheap");
    assert_eq!(
        scope.map(|s| (s.key, s.target)),
        Some((ScopeKey::Rule("simple_cheap".to_owned()), 0.3))
    );
    assert_eq!(policy.cascade().scope("medium_flash"), None);
}

#[test]
fn bad_cascade_edits_name_the_field_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "target_escalation_share = 0.2",
            "target_escalation_share = 1.2",
            "cascade.target_escalation_share",
            "between 0 and 1",
        ),
        (
            "samples = 2",
            "samples = 1",
            "cascade.samples",
            "between 2 and 5",
        ),
        (
            "signals = [\"logprobs\", \"agreement\"]",
            "signals = []",
            "cascade.signals",
            "at least one",
        ),
        (
            "signals = [\"logprobs\", \"agreement\"]",
            "signals = [\"vibes\"]",
            "cascade.signals",
            "unknown variant",
        ),
        (
            "min_scores = 100",
            "min_scores = 5000",
            "cascade.min_scores",
            "between 1 and the window",
        ),
        (
            "cold_start_threshold = 0.5",
            "cold_start_threshold = -0.5",
            "cascade.cold_start_threshold",
            "between 0 and 1",
        ),
        (
            "sample_temperature = 0.8",
            "sample_temperature = 0.8\njudge_model = \"groq/llama-3.1-8b-instant\"",
            "cascade.judge_model",
            "must run in the cluster",
        ),
        (
            "signals = [\"logprobs\", \"agreement\"]",
            "signals = [\"judge\"]",
            "cascade.judge_model",
            "needs a judge_model",
        ),
        (
            "sample_temperature = 0.8",
            "sample_temperature = 0.8\njudge_model = \"embed/local\"",
            "cascade.judge_model",
            "does not generate",
        ),
        (
            "# [[cascade.rule]]\n# rule = \"simple_cheap\"",
            "[[cascade.rule]]\nrule = \"no_such_rule\"",
            "cascade.rule[0].rule",
            "no [[rule]]",
        ),
    ];
    for (from, to, field, message) in cases {
        let e = error(&edit(from, to));
        let shown = e.to_string();
        assert!(shown.contains(field), "{to}: {shown}");
        assert!(shown.contains(message), "{to}: {shown}");
    }
}
