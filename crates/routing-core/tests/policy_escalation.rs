//! Cheap-first escalation: the answer checks and the escalation target a
//! decision carries.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use routing_core::chat::{FinishReason, Locality};
use routing_core::policy::{
    BudgetView, EscalationCheck, EscalationReason, LiveStats, Policy, SelectionInput,
    needs_escalation,
};
use routing_core::{Difficulty, Task};

#[test]
fn the_default_check() {
    let check = EscalationCheck::default();
    let refusal = |p: &str| {
        Some(EscalationReason::Refusal {
            phrase: p.to_owned(),
        })
    };
    let long = format!(
        "{} and so, while some say I can't help with that, here it is.",
        "Background. ".repeat(30)
    );
    let cases: Vec<(&str, FinishReason, Option<EscalationReason>)> = vec![
        ("Paris.", FinishReason::Stop, None),
        ("", FinishReason::Stop, Some(EscalationReason::Empty)),
        ("  \n\t ", FinishReason::Stop, Some(EscalationReason::Empty)),
        (
            "The answer is",
            FinishReason::Length,
            Some(EscalationReason::Truncated),
        ),
        (
            "I can't help with that request.",
            FinishReason::Stop,
            refusal("i can't help with"),
        ),
        // Typographic apostrophes and case do not hide a refusal.
        (
            "I’M SORRY, BUT I CAN’T do that.",
            FinishReason::Stop,
            refusal("i'm sorry, but i can't"),
        ),
        ("No.", FinishReason::Refusal, refusal("finish_reason")),
        // A refusal phrase deep inside a long answer is not a refusal.
        (&long, FinishReason::Stop, None),
        (
            "It might be 42, but I'm not sure.",
            FinishReason::Stop,
            Some(EscalationReason::LowConfidence {
                phrase: "i'm not sure".to_owned(),
            }),
        ),
        // The content filter is off by default.
        (
            "",
            FinishReason::ContentFilter,
            Some(EscalationReason::Empty),
        ),
        ("ok", FinishReason::ContentFilter, None),
        ("ok", FinishReason::ToolCalls, None),
    ];
    for (text, finish, expected) in cases {
        assert_eq!(
            needs_escalation(&check, text, finish),
            expected,
            "{text:?} {finish:?}"
        );
    }
}

#[test]
fn checks_are_configurable() {
    let check = EscalationCheck {
        empty: false,
        truncated: false,
        refusal: false,
        content_filter: true,
        refusal_phrases: vec!["nope".to_owned()],
        low_confidence_phrases: Vec::new(),
        min_chars: 10,
        ..EscalationCheck::default()
    };
    assert_eq!(needs_escalation(&check, "", FinishReason::Stop), None);
    assert_eq!(needs_escalation(&check, "cut", FinishReason::Length), None);
    assert_eq!(needs_escalation(&check, "nope", FinishReason::Stop), None);
    assert_eq!(
        needs_escalation(&check, "fine", FinishReason::ContentFilter),
        Some(EscalationReason::ContentFilter)
    );
    let short = EscalationCheck {
        min_chars: 10,
        ..EscalationCheck::default()
    };
    assert_eq!(
        needs_escalation(&short, "Yes.", FinishReason::Stop),
        Some(EscalationReason::Empty)
    );
    // A policy can define its own checks.
    let text = format!(
        "{}\n[escalation.strict]\nmin_chars = 20\nrefusal_phrases = [\"unfortunately\"]\n",
        routing_core::policy::DEFAULT_POLICY
            .replace("check = \"default\" }", "check = \"strict\" }")
    );
    let policy = Policy::parse(&text, "t").unwrap();
    let strict = policy.escalation_check("strict").unwrap();
    assert_eq!(strict.min_chars, 20);
    assert_eq!(
        needs_escalation(strict, "Unfortunately, no.", FinishReason::Stop),
        Some(EscalationReason::Empty)
    );
    assert_eq!(
        needs_escalation(
            strict,
            "Unfortunately, that is not possible.",
            FinishReason::Stop
        ),
        Some(EscalationReason::Refusal {
            phrase: "unfortunately".to_owned()
        })
    );
}

/// A rule that tries a local model first and escalates to an external one.
fn escalating_policy() -> Policy {
    let text = r#"
version = 1

[[model]]
id = "ollama/local"
provider = "ollama"
model = "llama3.2"
locality = "in_cluster"
tasks = ["generate"]
context_window = 131072
ttft_ms = 100
tokens_per_s = 100
quality = { simple = 0.7, medium = 0.5, hard = 0.3 }

[[model]]
id = "vllm/big"
provider = "vllm"
model = "big"
locality = "in_cluster"
tasks = ["generate"]
context_window = 131072
ttft_ms = 100
tokens_per_s = 100
quality = { simple = 0.8, medium = 0.7, hard = 0.6 }

[[model]]
provider = "vertex"
model = "gemini-2.5-flash"
locality = "external"
tasks = ["generate"]
context_window = 1048576
ttft_ms = 300
tokens_per_s = 250
quality = { simple = 0.9, medium = 0.8, hard = 0.65 }

[[rule]]
name = "cheap_first"
models = ["ollama/local"]
escalate = { to = ["vertex/gemini-2.5-flash", "vllm/big"] }
"#;
    Policy::parse(text, "t").unwrap()
}

#[test]
fn the_escalation_target_obeys_the_hard_constraints() {
    let policy = escalating_policy();
    let input = SelectionInput::new(Task::Generate, 30_000, false);
    let d = policy
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "ollama/local");
    let e = d.escalation.as_ref().unwrap();
    assert_eq!(e.to.model.id, "vertex/gemini-2.5-flash");
    assert_eq!(e.check, EscalationCheck::default());
    // Private: the external target is skipped for the in-cluster one.
    let private = SelectionInput::new(Task::Generate, 30_000, true);
    let d = policy
        .select(&private, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    let e = d.escalation.as_ref().unwrap();
    assert_eq!(e.to.model.id, "vllm/big");
    assert_eq!(e.to.model.locality, Locality::InCluster);
    // A cost cap the target exceeds: no escalation.
    let mut capped = SelectionInput::new(Task::Generate, 30_000, false);
    capped.difficulty = Some(Difficulty::Simple);
    capped.input_tokens = 1000;
    capped.max_cost_usd = Some(0.0);
    let d = policy
        .select(&capped, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert_eq!(
        d.escalation.as_ref().map(|e| e.to.model.id.as_str()),
        Some("vllm/big"),
        "free in-cluster model is within a zero cap"
    );
}
