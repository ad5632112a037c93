//! Strict parsing: every kind of bad edit is refused with the line and field
//! at fault.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use routing_core::policy::{DEFAULT_POLICY, Policy, PolicyError};

/// The built-in policy with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(DEFAULT_POLICY.contains(from), "{from:?} not in the policy");
    DEFAULT_POLICY.replacen(from, to, 1)
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    text[..at].matches('\n').count() + 1
}

fn error(text: &str) -> PolicyError {
    Policy::parse(text, "test.toml").expect_err("the edit must be refused")
}

#[test]
fn the_builtin_policy_parses() {
    let policy = Policy::builtin().unwrap();
    assert_eq!(policy.origin(), "built-in");
    assert!(policy.models().count() >= 20);
    assert_eq!(
        policy.rules().first().map(|r| r.name.as_str()),
        Some("embed_local")
    );
}

#[test]
fn bad_edits_name_the_field_and_line() {
    // (from, to, field, the line holds this text, message contains)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // Unknown keys, at every level.
        (
            "max_fallbacks = 2",
            "max_fallbacks = 2\nmax_fallback = 3",
            "selection.max_fallback",
            "max_fallback = 3",
            "unknown field",
        ),
        (
            "context_window = 131072\nttft_ms = 120",
            "context_windw = 131072\nttft_ms = 120",
            "model[3].context_windw",
            "context_windw",
            "unknown field",
        ),
        (
            "model_env = \"LOCAL_CHAT_MODEL\"",
            "model_env = \"LOCAL_CHAT_MODEL\"\npool = \"ollama-pool\"",
            "model[1].pool",
            "pool = \"ollama-pool\"",
            "unknown field",
        ),
        (
            "ewma_alpha = 0.2",
            "ewma_alpha = 0.2\nwindow_size = 3",
            "live.window_size",
            "window_size",
            "unknown field",
        ),
        // Wrong types and enum values.
        (
            "tokens_per_s = 750",
            "tokens_per_s = \"fast\"",
            "model[3].tokens_per_s",
            "tokens_per_s = \"fast\"",
            "",
        ),
        (
            "locality = \"external\"\ntasks = [\"classify\", \"generate\", \"reason\"]\ncontext_window = 131072\nttft_ms = 120",
            "locality = \"outside\"\ntasks = [\"classify\", \"generate\", \"reason\"]\ncontext_window = 131072\nttft_ms = 120",
            "model[3].locality",
            "locality = \"outside\"",
            "outside",
        ),
        (
            "when = { task = [\"classify\", \"generate\"], max_latency_ms_below = 300 }",
            "when = { task = [\"clasify\", \"generate\"], max_latency_ms_below = 300 }",
            "rule[2].when.task[0]",
            "clasify",
            "clasify",
        ),
        (
            "rank = \"listed\"\nreason = \"embeddings",
            "rank = \"random\"\nreason = \"embeddings",
            "rule[0].rank",
            "rank = \"random\"",
            "random",
        ),
        // Bad values.
        (
            "quality = { simple = 0.72, medium = 0.5, hard = 0.3 }",
            "quality = { simple = 1.72, medium = 0.5, hard = 0.3 }",
            "model[3].quality.simple",
            "simple = 1.72",
            "between 0 and 1",
        ),
        (
            "hard = { quality = 0.9, cost = 0.05, latency = 0.05 }",
            "hard = { quality = 0.9, cost = -0.05, latency = 0.05 }",
            "weights.hard.cost",
            "cost = -0.05",
            ">= 0",
        ),
        (
            "reject_status = 402",
            "reject_status = 500",
            "budgets.reject_status",
            "reject_status = 500",
            "402 or 429",
        ),
        (
            "percentile = 0.9",
            "percentile = 1.9",
            "live.percentile",
            "percentile = 1.9",
            "(0, 1]",
        ),
        (
            "tokens_per_s = 750",
            "tokens_per_s = 0",
            "model[3].tokens_per_s",
            "tokens_per_s = 0",
            "> 0",
        ),
        (
            "version = 1",
            "version = 2",
            "version",
            "version = 2",
            "not supported",
        ),
        // Dangling references.
        (
            "models = [\"groq/llama-3.1-8b-instant\", \"groq/openai/gpt-oss-20b\"]",
            "models = [\"groq/llama-3.1-8b-instant\", \"groq/llama-3.1-8b\"]",
            "rule[2].models[1]",
            "groq/llama-3.1-8b\"]",
            "not in the catalogue",
        ),
        (
            "escalate = { to = [\"vertex/gemini-2.5-flash\", \"gemini/gemini-2.5-flash\"], check = \"default\" }",
            "escalate = { to = [\"vertex/gemini-2.5-flash\"], check = \"strict\" }",
            "rule[3].escalate.check",
            "check = \"strict\"",
            "[escalation.strict]",
        ),
        (
            "escalate = { to = [\"vertex/gemini-2.5-flash\", \"gemini/gemini-2.5-flash\"], check = \"default\" }",
            "escalate = { to = [\"vertex/gemini-2.5-flsh\"] }",
            "rule[3].escalate.to[0]",
            "gemini-2.5-flsh",
            "not in the catalogue",
        ),
        // Duplicates.
        (
            "name = \"medium_flash\"",
            "name = \"simple_cheap\"",
            "rule[4].name",
            "name = \"simple_cheap\"\nwhen = { difficulty = [\"medium\"] }",
            "twice",
        ),
        (
            "id = \"bedrock/claude-haiku-4-5\"",
            "id = \"anthropic/claude-haiku-4-5\"",
            "model[21].id",
            "id = \"anthropic/claude-haiku-4-5\"",
            "twice",
        ),
        // Prices: missing, or disagreeing with the price catalogue.
        (
            "model = \"deepseek-chat\"",
            "model = \"deepseek-unpriced\"",
            "model[17].model",
            "model = \"deepseek-unpriced\"",
            "no price",
        ),
        (
            "tokens_per_s = 750",
            "tokens_per_s = 750\nprice = { input = 0.5, output = 0.08, as_of = \"x\", source = \"y\" }",
            "model[3].price",
            "price = { input = 0.5",
            "disagrees with the price catalogue",
        ),
        // Structure.
        (
            "target = \"embed\"\nlocality = \"in_cluster\"",
            "target = \"embed\"\nlocality = \"external\"",
            "model[0].locality",
            "locality = \"external\"",
            "in_cluster",
        ),
        (
            "min_samples = 10",
            "min_samples = 1000",
            "live.min_samples",
            "min_samples = 1000",
            "never be reached",
        ),
        (
            "breaker_min_calls = 10 ",
            "breaker_min_calls = 50 ",
            "live.breaker_min_calls",
            "breaker_min_calls = 50",
            "never be reached",
        ),
        (
            "breaker_failure_rate = 0.5 ",
            "breaker_failure_rate = 1.5 ",
            "live.breaker_failure_rate",
            "breaker_failure_rate = 1.5",
            "(0, 1]",
        ),
        (
            "breaker_probes = 1 ",
            "breaker_probes = 0 ",
            "live.breaker_probes",
            "breaker_probes = 0",
            "at least 1",
        ),
    ];
    for (from, to, field, at, message) in cases {
        let text = edit(from, to);
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some(*field), "{e}");
        assert_eq!(e.line, Some(line_of(&text, at)), "{e}");
        assert!(e.message.contains(message), "{e}");
        assert_eq!(e.origin, "test.toml");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("policy test.toml:{}:", line_of(&text, at))),
            "{shown}"
        );
        assert!(shown.contains(field), "{shown}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let text = edit("max_fallbacks = 2", "max_fallbacks = = 2");
    let e = error(&text);
    assert_eq!(e.line, Some(line_of(&text, "max_fallbacks = = 2")));
    assert!(e.field.is_none());
}

#[test]
fn missing_sections_are_refused() {
    let e = error("version = 1\n");
    assert!(e.message.contains("model"), "{e}");
    let e = error("version = 1\nmodel = []\nrule = []\n");
    assert_eq!(e.field.as_deref(), Some("model"));
    assert!(e.message.contains("no model"), "{e}");
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "\u{0}",
        "version = 1\n[[model]]\n",
        "[[rule]]\nname = 3",
        "version = 18446744073709551616",
        "version = 1\nmodel = 3\nrule = 4",
        "version = 1\n[selection]\ncost_unit_usd = nan\n",
        "version = 1\n[selection]\ncost_unit_usd = inf\n",
    ] {
        let _ = Policy::parse(text, "garbage");
    }
}
