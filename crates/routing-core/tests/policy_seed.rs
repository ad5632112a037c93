//! The built-in policy: the seed rule it reproduces, its difficulty tiers,
//! pinning, the catalogue and the explain output.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use routing_core::api::RouteRequest;
use routing_core::chat::Locality;
use routing_core::env::Env;
use routing_core::policy::{
    BudgetStore, BudgetTracker, BudgetView, LiveStats, OnBudget, Policy, RejectReason,
    SelectionInput, ServingFunction, request_tokens,
};
use routing_core::pricing::Catalogue;
use routing_core::{Difficulty, Task};

fn policy() -> Policy {
    Policy::builtin().expect("the built-in policy is valid")
}

fn route(
    task: Task,
    budget: u64,
    private: bool,
    difficulty: Option<Difficulty>,
) -> routing_core::policy::Decision {
    let mut input = SelectionInput::new(task, budget, private);
    input.difficulty = difficulty;
    input.input_tokens = 200;
    policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap_or_else(|e| panic!("{task} {budget} {private}: {}", e.message))
}

#[test]
fn the_seed_table() {
    // (task, budget, private, provider, model, rule, target)
    let cases = [
        (
            Task::Generate,
            200,
            false,
            "groq",
            "llama-3.1-8b-instant",
            "fast_budget",
        ),
        (
            Task::Classify,
            299,
            false,
            "groq",
            "llama-3.1-8b-instant",
            "fast_budget",
        ),
        (
            Task::Classify,
            1,
            false,
            "groq",
            "llama-3.1-8b-instant",
            "fast_budget",
        ),
        (
            Task::Generate,
            300,
            false,
            "vertex",
            "gemini-2.5-flash",
            "default_strong",
        ),
        (
            Task::Classify,
            30_000,
            false,
            "vertex",
            "gemini-2.5-flash",
            "default_strong",
        ),
        (
            Task::Reason,
            100,
            false,
            "vertex",
            "gemini-2.5-flash",
            "default_strong",
        ),
        (
            Task::Reason,
            600_000,
            false,
            "vertex",
            "gemini-2.5-flash",
            "default_strong",
        ),
        (
            Task::Generate,
            200,
            true,
            "ollama",
            "llama3.2",
            "private_local",
        ),
        (
            Task::Generate,
            30_000,
            true,
            "ollama",
            "llama3.2",
            "private_local",
        ),
        (
            Task::Reason,
            5000,
            true,
            "ollama",
            "llama3.2",
            "private_local",
        ),
        (
            Task::Classify,
            100,
            true,
            "ollama",
            "llama3.2",
            "private_local",
        ),
        (
            Task::Embed,
            100,
            false,
            "ollama",
            "all-minilm",
            "embed_local",
        ),
        (
            Task::Embed,
            100,
            true,
            "ollama",
            "all-minilm",
            "embed_local",
        ),
    ];
    for (task, budget, private, provider, model, rule) in cases {
        let d = route(task, budget, private, None);
        assert_eq!(
            (
                d.primary.model.provider.as_str(),
                d.primary.model.model.as_str(),
                d.rule.as_str()
            ),
            (provider, model, rule),
            "{task} {budget} ms private={private}"
        );
        let expected_target = if task == Task::Embed {
            ServingFunction::Embed
        } else {
            ServingFunction::ProviderProxy
        };
        assert_eq!(d.primary.model.target, expected_target);
        if private || task == Task::Embed {
            assert!(d.chain().all(|c| c.model.locality == Locality::InCluster));
        }
    }
}

#[test]
fn the_seed_explanations_read_as_before() {
    let d = route(Task::Generate, 200, false, None);
    let e = d.explanation();
    assert_eq!(e.rule, "fast_budget");
    assert!(
        e.reason
            .starts_with("generate with a 200 ms budget (< 300 ms) goes to the fastest provider"),
        "{}",
        e.reason
    );
    let d = route(Task::Generate, 200, true, None);
    assert!(
        d.reason
            .starts_with("private requests are served only by in-cluster models")
    );
}

#[test]
fn difficulty_tiers() {
    // (task, difficulty, expected primary id, rule)
    let cases = [
        (
            Task::Generate,
            Difficulty::Simple,
            "groq/openai/gpt-oss-20b",
            "simple_cheap",
        ),
        (
            Task::Classify,
            Difficulty::Simple,
            "groq/openai/gpt-oss-20b",
            "simple_cheap",
        ),
        (
            Task::Generate,
            Difficulty::Medium,
            "vertex/gemini-2.5-flash",
            "medium_flash",
        ),
        (
            Task::Reason,
            Difficulty::Medium,
            "vertex/gemini-2.5-flash",
            "medium_flash",
        ),
        (
            Task::Reason,
            Difficulty::Hard,
            "vertex/gemini-2.5-pro",
            "hard_strongest",
        ),
        (
            Task::Generate,
            Difficulty::Hard,
            "vertex/gemini-2.5-pro",
            "hard_strongest",
        ),
    ];
    for (task, difficulty, id, rule) in cases {
        let d = route(task, 60_000, false, Some(difficulty));
        assert_eq!(
            (d.primary.model.id.as_str(), d.rule.as_str()),
            (id, rule),
            "{task} {difficulty:?}"
        );
        assert!(!d.latency_relaxed);
    }
    // Simple prompts are cheap; hard ones get the best quality available.
    let simple = route(Task::Generate, 60_000, false, Some(Difficulty::Simple));
    let hard = route(Task::Generate, 60_000, false, Some(Difficulty::Hard));
    assert!(simple.primary.expected_cost_usd * 10.0 < hard.primary.expected_cost_usd);
    let best_hard = policy()
        .models()
        .filter(|m| m.auto_route && m.supports(Task::Generate))
        .map(|m| m.quality.tiers(Task::Generate).hard)
        .fold(0.0f32, f32::max);
    assert_eq!(hard.primary.quality, best_hard);
    // The tiers apply under the seed's fast budget too: it comes first.
    let fast = route(Task::Generate, 250, false, Some(Difficulty::Hard));
    assert_eq!(fast.primary.model.id, "groq/llama-3.1-8b-instant");
    // Private stays private whatever the difficulty.
    for difficulty in [Difficulty::Simple, Difficulty::Medium, Difficulty::Hard] {
        let d = route(Task::Reason, 60_000, true, Some(difficulty));
        assert_eq!(d.primary.model.id, "ollama/local");
    }
}

#[test]
fn simple_prompts_escalate_to_gemini_flash() {
    let d = route(Task::Generate, 60_000, false, Some(Difficulty::Simple));
    let e = d.escalation.expect("the simple tier escalates");
    assert_eq!(e.to.model.id, "vertex/gemini-2.5-flash");
    assert_eq!(e.check_name, "default");
    assert!(e.to.quality > d.primary.quality);
    assert!(d.reason.contains("escalates to vertex/gemini-2.5-flash"));
}

#[test]
fn fallbacks_follow_the_rule_then_later_rules() {
    let d = route(Task::Generate, 200, false, None);
    let ids: Vec<&str> = d.chain().map(|c| c.model.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "groq/llama-3.1-8b-instant",
            "groq/openai/gpt-oss-20b",
            "vertex/gemini-2.5-flash"
        ]
    );
    let d = route(Task::Generate, 30_000, false, None);
    let ids: Vec<&str> = d.chain().map(|c| c.model.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vertex/gemini-2.5-flash",
            "gemini/gemini-2.5-flash",
            "vertex/gemini-2.5-flash-lite"
        ]
    );
}

#[test]
fn latency_budget_is_relaxed_only_when_nothing_meets_it() {
    // 256 tokens cannot come back from any model within 200 ms.
    assert!(route(Task::Generate, 200, false, None).latency_relaxed);
    // A 16-token label can, from Groq.
    assert!(!route(Task::Classify, 299, false, None).latency_relaxed);
    // With a small max_tokens Gemini Flash fits a 2 s budget.
    let mut input = SelectionInput::new(Task::Generate, 2000, false);
    input.max_output_tokens = Some(100);
    let d = policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert!(!d.latency_relaxed);
    assert!(d.primary.expected_latency_ms <= 2000.0);
}

#[test]
fn a_private_request_no_in_cluster_model_can_serve_is_refused() {
    // A 200k-token prompt fits no in-cluster chat model.
    let mut input = SelectionInput::new(Task::Generate, 30_000, true);
    input.input_tokens = 200_000;
    let e = policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap_err();
    assert_eq!(e.status, 422);
    assert!(
        e.rejected
            .iter()
            .any(|r| r.model == "ollama/local"
                && matches!(r.reason, RejectReason::ContextWindow { .. })),
        "{:?}",
        e.rejected
    );
    assert!(
        e.rejected
            .iter()
            .filter(|r| r.model != "ollama/local")
            .all(|r| r.reason == RejectReason::Private
                || matches!(r.reason, RejectReason::TaskUnsupported { .. }))
    );
    // The same prompt, not private, goes out to a long-context model.
    input.private = false;
    let d = policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert!(d.primary.model.context_window >= 200_256);
}

#[test]
fn pinning_by_catalogue_id_reaches_every_provider_kind() {
    let policy = policy();
    let providers: std::collections::BTreeSet<&str> =
        policy.models().map(|m| m.provider.as_str()).collect();
    for kind in [
        "ollama",
        "groq",
        "vertex",
        "gemini",
        "openai",
        "openrouter",
        "deepseek",
        "mistral",
        "vllm",
        "anthropic",
        "bedrock",
    ] {
        assert!(providers.contains(kind), "no {kind} model in the catalogue");
    }
    for m in policy
        .models()
        .filter(|m| m.target == ServingFunction::ProviderProxy)
    {
        let mut input = SelectionInput::new(Task::Generate, 600_000, false);
        input.pinned = Some(m.id.clone());
        let d = policy
            .select(&input, &LiveStats::default(), &BudgetView::unlimited())
            .unwrap_or_else(|e| panic!("{}: {}", m.id, e.message));
        assert_eq!(d.primary.model.id, m.id);
        assert_eq!(d.rule, "pinned");
        assert!(d.fallbacks.is_empty());
    }
    // A unique provider model name pins too.
    assert_eq!(
        policy
            .find_model("claude-sonnet-4-5")
            .map(|m| m.id.as_str()),
        Some("anthropic/claude-sonnet-4-5")
    );
    // Ambiguous (vertex and gemini both serve it) or unknown: not found.
    assert!(policy.find_model("gemini-2.5-flash").is_none());
    let mut input = SelectionInput::new(Task::Generate, 30_000, false);
    input.pinned = Some("nope/model".to_owned());
    let e = policy
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap_err();
    assert_eq!(e.status, 404);
}

#[test]
fn a_pinned_external_model_is_refused_for_a_private_request() {
    let mut input = SelectionInput::new(Task::Generate, 30_000, true);
    input.pinned = Some("openai/gpt-5".to_owned());
    let e = policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap_err();
    assert_eq!(e.status, 422);
    assert_eq!(e.rejected[0].reason, RejectReason::Private);
    assert!(e.message.contains("openai/gpt-5"), "{}", e.message);
}

#[test]
fn every_catalogue_price_agrees_with_the_price_catalogue() {
    let prices = Catalogue::builtin().unwrap();
    let policy = policy();
    let mut own = 0;
    for m in policy.models() {
        match prices.price(&m.provider, &m.model) {
            Some(p) => {
                assert_eq!(
                    (m.price.input, m.price.output),
                    (p.input, p.output),
                    "{}",
                    m.id
                );
            }
            None => own += 1,
        }
        assert!(m.price.input >= 0.0 && m.price.output >= 0.0);
    }
    // Every seed model is in the catalogue provider-proxy meters with.
    assert_eq!(own, 0);
}

#[test]
fn local_chat_model_comes_from_the_environment() {
    let env = Env::from_pairs([("LOCAL_CHAT_MODEL", "qwen2.5:7b")]);
    let policy = Policy::from_env(&env).unwrap();
    let mut input = SelectionInput::new(Task::Generate, 10, true);
    input.input_tokens = 10;
    let d = policy
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "ollama/local");
    assert_eq!(d.primary.model.model, "qwen2.5:7b");
    // Unset: the file's model.
    let d = Policy::from_env(&Env::default())
        .unwrap()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.model, "llama3.2");
}

#[test]
fn a_near_budget_downgrades_to_the_cheapest_model_of_the_rule() {
    let text = routing_core::policy::DEFAULT_POLICY.replace(
        "# [[budgets.limit]]\n# tenant = \"*\"\n# daily_usd = 20.0",
        "[[budgets.limit]]\ntenant = \"*\"\ndaily_usd = 20.0",
    );
    let policy = Policy::parse(&text, "t").unwrap();
    let tracker = BudgetTracker::new();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut input = SelectionInput::new(Task::Generate, 60_000, false);
    input.difficulty = Some(Difficulty::Medium);
    input.tenant = Some("acme".to_owned());
    let view = BudgetView::new(&tracker, now);
    let normal = policy.select(&input, &LiveStats::default(), &view).unwrap();
    assert_eq!(normal.primary.model.id, "vertex/gemini-2.5-flash");
    assert!(normal.budget.is_none());
    tracker.record("acme", 17.0, now);
    let near = policy
        .select(
            &input,
            &LiveStats::default(),
            &BudgetView::new(&tracker, now),
        )
        .unwrap();
    // gpt-5-mini is the cheapest of the medium tier's models.
    assert_eq!(near.primary.model.id, "openai/gpt-5-mini");
    let gate = near.budget.as_ref().unwrap();
    assert_eq!(gate.action, OnBudget::Downgrade);
    assert_eq!(gate.spent_usd, 17.0);
    assert!(near.reason.contains("downgraded"), "{}", near.reason);
    let costs: Vec<f64> = near.chain().map(|c| c.expected_cost_usd).collect();
    assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
    // Over the limit the built-in policy refuses with 402.
    tracker.record("acme", 3.0, now);
    let e = policy
        .select(
            &input,
            &LiveStats::default(),
            &BudgetView::new(&tracker, now),
        )
        .unwrap_err();
    assert_eq!(e.status, 402);
    // The next UTC day starts afresh.
    let tomorrow = now + Duration::from_secs(86_400);
    let d = policy
        .select(
            &input,
            &LiveStats::default(),
            &BudgetView::new(&tracker, tomorrow),
        )
        .unwrap();
    assert_eq!(d.primary.model.id, "vertex/gemini-2.5-flash");
    let _ = SystemTime::now();
}

#[test]
fn a_decision_serialises_for_the_explain_output() {
    let mut input = SelectionInput::new(Task::Generate, 200, true);
    input.input_tokens = 50;
    let d = policy()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["primary"]["model"]["id"], "ollama/local");
    assert_eq!(json["primary"]["model"]["locality"], "in_cluster");
    assert_eq!(json["rule"], "private_local");
    assert_eq!(json["latency_relaxed"], true);
    let d = route(Task::Reason, 60_000, false, Some(Difficulty::Simple));
    let json = serde_json::to_value(&d).unwrap();
    let rejected = json["rejected"].as_array().unwrap();
    assert!(rejected.iter().all(|r| r["reason"]["kind"].is_string()));
    // The catalogue serialises for GET /v1/models.
    let models: Vec<serde_json::Value> = policy()
        .models()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    assert!(models.iter().any(|m| m["id"] == "groq/llama-3.1-8b-instant"
        && m["price"]["input"] == 0.05
        && m["price"]["origin"] == "catalogue"));
}

#[test]
fn a_valid_request_carries_its_constraints_into_selection() {
    let req = RouteRequest::parse(
        r#"{"task":"generate","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}],
            "max_latency_ms":900,"private":true,"max_tokens":64,"tenant":"team-a",
            "max_cost_usd":0.5,"quality":0.7,"model":"groq/llama"}"#
            .as_bytes(),
    )
    .unwrap();
    let input = SelectionInput::for_request(&req, Task::Reason, Some(Difficulty::Hard), Some(0.25));
    assert_eq!(input.task, Task::Reason);
    assert_eq!(input.difficulty, Some(Difficulty::Hard));
    assert_eq!(input.confidence, Some(0.25));
    assert_eq!(input.max_latency_ms, 900);
    assert!(input.private);
    assert_eq!(input.max_output_tokens, Some(64));
    assert_eq!(input.tenant.as_deref(), Some("team-a"));
    assert_eq!(input.max_cost_usd, Some(0.5));
    assert_eq!(input.quality_floor, Some(0.7));
    assert_eq!(input.pinned.as_deref(), Some("groq/llama"));
    // "be brief" is 2 tokens, "hello there" 3.
    assert_eq!(input.input_tokens, 5);
    let embed = RouteRequest::parse(br#"{"task":"embed","input":["abcdefgh","x"]}"#).unwrap();
    assert_eq!(request_tokens(&embed), 3);
}
