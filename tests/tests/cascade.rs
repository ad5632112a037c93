//! Answer-aware escalation through the whole fleet: the cheap model's
//! answer is judged by its token log-probabilities or by the agreement of
//! two cheap samples or by an in-cluster judge's verdict (the emulators'
//! real wire formats, steered from the prompt), escalated below the
//! threshold and kept above it; both
//! attempts are billed; a private request keeps every step in the cluster.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;

use fleet_tests::{Fleet, FleetOptions};
use serde_json::{Value, json};

/// The cheap model of the test policy (OpenAI's wire format returns
/// log-probabilities, and it has a price, so billing shows).
const CHEAP: &str = "openai/gpt-4.1-nano";
const STRONG: &str = "vertex/gemini-2.5-flash";

/// The built-in policy with the cascade on for `signals`, at a fixed
/// threshold of 0.5 (no calibration, so each verdict is known in advance),
/// `simple_cheap` on the one cheap model, and `private_local` escalating
/// to the in-cluster vLLM (the external Vertex it also names is never
/// allowed for a private request).
fn policy(signals: &str, combine: &str) -> String {
    let default = routing_core::policy::DEFAULT_POLICY;
    let edits = [
        (
            "[cascade]\nenabled = false\nsignals = [\"logprobs\", \"agreement\"]\ncombine = \"mean\"",
            format!("[cascade]\nenabled = true\nsignals = {signals}\ncombine = \"{combine}\""),
        ),
        ("\ncalibrate = true", "\ncalibrate = false".to_owned()),
        (
            "# judge_model = \"ollama/local\"",
            "judge_model = \"ollama/local\"".to_owned(),
        ),
        (
            "models = [\n    \"groq/llama-3.1-8b-instant\",\n    \"ollama/local\",\n    \"vertex/gemini-2.5-flash-lite\",\n    \"openai/gpt-4.1-nano\",\n    \"mistral/mistral-small-latest\",\n    \"groq/openai/gpt-oss-20b\",\n]\nescalate = { to = [\"vertex/gemini-2.5-flash\", \"gemini/gemini-2.5-flash\"], check = \"default\" }",
            format!(
                "models = [\"{CHEAP}\"]\nrank = \"listed\"\nescalate = {{ to = [\"{STRONG}\"], check = \"default\" }}"
            ),
        ),
        (
            "models = [\"ollama/local\"]\nrank = \"listed\"\nreason = \"private requests",
            "models = [\"ollama/local\"]\nrank = \"listed\"\nescalate = { to = [\"vertex/gemini-2.5-flash\", \"vllm/qwen2.5-7b-instruct\"] }\nreason = \"private requests".to_owned(),
        ),
    ];
    let mut text = default.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "the built-in policy changed: {from}");
        text = text.replacen(from, &to, 1);
    }
    text
}

async fn fleet(signals: &str, combine: &str) -> (Fleet, tempfile::TempDir) {
    fleet_with(&policy(signals, combine)).await
}

async fn fleet_with(policy: &str) -> (Fleet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let fleet = Fleet::start(FleetOptions {
        env: BTreeMap::from([("POLICY_PATH".to_owned(), path.display().to_string())]),
        ..FleetOptions::default()
    })
    .await;
    (fleet, dir)
}

fn simple(prompt: &str) -> Value {
    json!({"task": "generate", "difficulty": "simple", "prompt": prompt, "max_latency_ms": 20000})
}

/// Chat calls an emulator received (not its admin or token endpoints).
fn chat_calls(fleet: &Fleet, provider: &str) -> u64 {
    fleet
        .emulator(provider)
        .stats()
        .by_path
        .iter()
        .filter(|(path, _)| {
            !path.starts_with("/_emulator")
                && !path.ends_with("/token")
                && !path.contains("computeMetadata")
        })
        .map(|(_, n)| n)
        .sum()
}

async fn metrics(fleet: &Fleet, function: &str) -> String {
    fleet
        .http
        .get(fleet.url(function, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of a counter's samples whose labels contain `labels`.
fn counter_sum(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-6 * a.abs().max(b.abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_token_confidence_escalates_billing_both_attempts_and_high_does_not() {
    let (fleet, _dir) = fleet(r#"["logprobs"]"#, "mean").await;

    // Sure: the cheap answer is kept, and the strong model never called.
    let sure = fleet.route(simple("Name the capital of France.")).await;
    assert_eq!(sure.status, 200, "{}", sure.json);
    let route = &sure.json["route"];
    let cascade = &route["cascade"];
    assert!(cascade["confidence"].as_f64().unwrap() > 0.9, "{cascade}");
    assert!(cascade["signals"]["logprobs"].as_f64().unwrap() > 0.9);
    assert_eq!(cascade["threshold"], 0.5, "{cascade}");
    assert_eq!(cascade["source"], "static", "{cascade}");
    assert_eq!(cascade["escalated"], false, "{cascade}");
    assert_eq!(cascade["cheap_calls"], 1, "{cascade}");
    assert!(route.get("escalated").is_none(), "{route}");
    assert_eq!(route["attempts"].as_array().unwrap().len(), 1, "{route}");
    assert_eq!(sure.json["provider"], "openai");
    assert_eq!(chat_calls(&fleet, "vertex"), 0);
    assert!(near(
        sure.json["cost_usd"].as_f64().unwrap(),
        cascade["cheap_cost_usd"].as_f64().unwrap()
    ));

    // Unsure: escalated; the caller pays for both calls, as billed.
    let before = metrics(&fleet, "provider-proxy").await;
    let unsure = fleet
        .route(simple(
            "Name the capital of France. [[emulator:confidence=0.2]]",
        ))
        .await;
    assert_eq!(unsure.status, 200, "{}", unsure.json);
    let route = &unsure.json["route"];
    let cascade = &route["cascade"];
    let confidence = cascade["confidence"].as_f64().unwrap();
    assert!((0.1..0.3).contains(&confidence), "{cascade}");
    assert_eq!(cascade["escalated"], true, "{cascade}");
    assert_eq!(route["escalated"]["from"], CHEAP, "{route}");
    assert!(
        route["escalated"]["reason"]
            .as_str()
            .unwrap()
            .contains("confidence"),
        "{route}"
    );
    let attempts: Vec<&str> = route["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, [CHEAP, STRONG], "{route}");
    assert_eq!(unsure.json["provider"], "vertex");
    let after = metrics(&fleet, "provider-proxy").await;
    let billed = |provider: &str| {
        let labels = format!("provider=\"{provider}\"");
        counter_sum(&after, "llm_token_cost_usd_total", &labels)
            - counter_sum(&before, "llm_token_cost_usd_total", &labels)
    };
    let (cheap, strong) = (billed("openai"), billed("vertex"));
    assert!(cheap > 0.0 && strong > 0.0, "{cheap} {strong}");
    assert!(
        near(cascade["cheap_cost_usd"].as_f64().unwrap(), cheap),
        "{cascade} vs {cheap}"
    );
    assert!(
        near(unsure.json["cost_usd"].as_f64().unwrap(), cheap + strong),
        "{} vs {cheap} + {strong}",
        unsure.json["cost_usd"]
    );

    // Streamed: the judged answer is replayed, its route first.
    let streamed = fleet
        .http
        .post(fleet.url("llm-router", ""))
        .body(
            json!({"task": "generate", "difficulty": "simple", "stream": true,
                   "prompt": "Name the capital of Spain. [[emulator:confidence=0.2]]",
                   "max_latency_ms": 20000})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "route", "{text}");
    assert_eq!(events[0]["route"]["cascade"]["escalated"], true, "{text}");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{text}");
    assert_eq!(done["provider"], "vertex", "{text}");
    assert!(done["cost_usd"].as_f64().unwrap() > 0.0, "{text}");
    assert!(events.iter().any(|e| e["type"] == "delta"), "{text}");

    let router = metrics(&fleet, "llm-router").await;
    assert!(
        router.contains(r#"llm_router_cascade_decisions_total{outcome="accepted"} 1"#),
        "{router}"
    );
    assert!(
        router.contains(r#"llm_router_cascade_decisions_total{outcome="escalated"} 2"#),
        "{router}"
    );
    assert!(
        router.contains(r#"llm_router_escalations_total{reason="cascade"} 2"#),
        "{router}"
    );
    assert!(
        router.contains("llm_router_cascade_threshold 0.5"),
        "{router}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreeing_samples_escalate_and_agreeing_ones_do_not() {
    let (fleet, _dir) = fleet(r#"["agreement"]"#, "mean").await;

    let agreeing = fleet.route(simple("Name a primary colour.")).await;
    assert_eq!(agreeing.status, 200, "{}", agreeing.json);
    let cascade = &agreeing.json["route"]["cascade"];
    assert_eq!(cascade["signals"]["agreement"], 1.0, "{cascade}");
    assert!(cascade["signals"].get("logprobs").is_none(), "{cascade}");
    assert_eq!(cascade["escalated"], false, "{cascade}");
    assert_eq!(cascade["cheap_calls"], 2, "{cascade}");
    assert_eq!(agreeing.json["provider"], "openai");
    assert_eq!(chat_calls(&fleet, "openai"), 2, "the answer and one sample");
    assert_eq!(chat_calls(&fleet, "vertex"), 0);
    // Both cheap calls are billed.
    let billed = counter_sum(
        &metrics(&fleet, "provider-proxy").await,
        "llm_token_cost_usd_total",
        "provider=\"openai\"",
    );
    assert!(
        near(agreeing.json["cost_usd"].as_f64().unwrap(), billed),
        "{} vs {billed}",
        agreeing.json["cost_usd"]
    );

    let disagreeing = fleet
        .route(simple("Name a primary colour. [[emulator:unstable]]"))
        .await;
    assert_eq!(disagreeing.status, 200, "{}", disagreeing.json);
    let route = &disagreeing.json["route"];
    let cascade = &route["cascade"];
    assert!(
        cascade["signals"]["agreement"].as_f64().unwrap() < 0.5,
        "{cascade}"
    );
    assert_eq!(cascade["escalated"], true, "{cascade}");
    assert_eq!(route["escalated"]["from"], CHEAP, "{route}");
    assert_eq!(disagreeing.json["provider"], "vertex");
    assert_eq!(chat_calls(&fleet, "openai"), 4);
    assert_eq!(chat_calls(&fleet, "vertex"), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cascade_keeps_every_step_in_the_cluster() {
    let (fleet, _dir) = fleet(r#"["logprobs", "agreement", "judge"]"#, "min").await;
    // Sure tokens but unstable samples: every signal is read, and the
    // disagreement escalates.
    let answer = fleet
        .route(
            json!({"task": "generate", "private": true, "max_latency_ms": 20000,
                      "prompt": "Summarise our payroll file. [[emulator:unstable]]"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let route = &answer.json["route"];
    assert_eq!(route["rule"], "private_local", "{route}");
    let cascade = &route["cascade"];
    assert_eq!(cascade["escalated"], true, "{cascade}");
    assert_eq!(cascade["cheap_calls"], 2, "{cascade}");
    assert!(
        cascade["signals"]["logprobs"].as_f64().unwrap() > 0.9,
        "{cascade}"
    );
    assert!(
        cascade["signals"]["agreement"].as_f64().unwrap() < 0.5,
        "{cascade}"
    );
    assert_eq!(cascade["judge"]["model"], "ollama/local", "{cascade}");
    assert_eq!(route["escalated"]["from"], "ollama/local", "{route}");
    assert_eq!(answer.json["provider"], "vllm", "{}", answer.json);
    // The cheap answer, its sample, the verdict and the escalation all
    // stayed in.
    assert_eq!(chat_calls(&fleet, "ollama"), 3);
    assert_eq!(chat_calls(&fleet, "vllm"), 1);
    for external in [
        "groq",
        "vertex",
        "gemini",
        "openai",
        "openrouter",
        "deepseek",
        "mistral",
        "anthropic",
        "bedrock",
    ] {
        assert_eq!(
            fleet.emulator(external).stats().total_requests,
            0,
            "{external} received a private request"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubtful_judge_escalates_and_a_confident_one_does_not() {
    let (fleet, _dir) = fleet(r#"["judge"]"#, "mean").await;
    // The directive is addressed to the in-cluster judge (Ollama) only: it
    // decides the judge's reply, not the cheap model's answer.
    let trusted = fleet
        .route(simple(
            "Name the largest planet. [[emulator:reply=0.9@ollama]]",
        ))
        .await;
    assert_eq!(trusted.status, 200, "{}", trusted.json);
    let route = &trusted.json["route"];
    let cascade = &route["cascade"];
    assert_eq!(cascade["signals"]["judge"], 0.9, "{cascade}");
    assert_eq!(cascade["judge"]["model"], "ollama/local", "{cascade}");
    assert_eq!(cascade["judge"]["outcome"], "ok", "{cascade}");
    assert_eq!(cascade["escalated"], false, "{cascade}");
    assert_eq!(trusted.json["provider"], "openai");
    // The judge is not among the calls that could answer.
    let attempts = route["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{route}");
    assert_eq!(attempts[0]["model"], CHEAP, "{route}");

    let doubted = fleet
        .route(simple(
            "Name the largest planet. [[emulator:reply=0.1@ollama]]",
        ))
        .await;
    assert_eq!(doubted.status, 200, "{}", doubted.json);
    let cascade = &doubted.json["route"]["cascade"];
    assert_eq!(cascade["signals"]["judge"], 0.1, "{cascade}");
    assert_eq!(cascade["escalated"], true, "{cascade}");
    assert_eq!(doubted.json["provider"], "vertex");
    assert_eq!(chat_calls(&fleet, "ollama"), 2, "one verdict per answer");
    assert_eq!(chat_calls(&fleet, "vertex"), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_a_low_token_confidence_escalates_without_more_calls() {
    let (fleet, _dir) = fleet(r#"["logprobs", "agreement"]"#, "min").await;
    let answer = fleet
        .route(simple(
            "Name the capital of Peru. [[emulator:confidence=0.2]]",
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let cascade = &answer.json["route"]["cascade"];
    assert_eq!(cascade["escalated"], true, "{cascade}");
    assert_eq!(cascade["cheap_calls"], 1, "{cascade}");
    assert!(cascade["signals"].get("agreement").is_none(), "{cascade}");
    assert_eq!(chat_calls(&fleet, "openai"), 1, "no sample was needed");
    assert_eq!(answer.json["provider"], "vertex");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threshold_moves_to_the_target_escalation_share() {
    let mut text = policy(r#"["logprobs"]"#, "mean");
    for (from, to) in [
        ("\ncalibrate = false", "\ncalibrate = true"),
        ("\nwindow = 1000", "\nwindow = 20"),
        ("\nmin_scores = 100", "\nmin_scores = 20"),
        ("\nrecompute_every = 16", "\nrecompute_every = 4"),
        (
            "\ntarget_escalation_share = 0.2",
            "\ntarget_escalation_share = 0.25",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let (fleet, _dir) = fleet_with(&text).await;
    // Twenty token confidences from 0.6 to 0.98, all above the cold-start
    // threshold (0.5), in a scrambled order; twice.
    let mut escalated = [0u32; 2];
    for (round, count) in escalated.iter_mut().enumerate() {
        for i in 0..20u32 {
            let p = 0.6 + 0.02 * f64::from((i * 7) % 20);
            let answer = fleet
                .route(simple(&format!(
                    "Question {round}-{i}. [[emulator:confidence={p:.2}]]"
                )))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.json);
            let cascade = &answer.json["route"]["cascade"];
            if cascade["escalated"] == true {
                *count += 1;
            }
        }
    }
    // Cold, no answer is below 0.5; once the window holds 20 confidences
    // the threshold escalates about a quarter of them.
    assert_eq!(escalated[0], 0, "{escalated:?}");
    assert!((3..=7).contains(&escalated[1]), "{escalated:?}");
    let last = fleet
        .route(simple("Question last. [[emulator:confidence=0.61]]"))
        .await;
    let cascade = &last.json["route"]["cascade"];
    assert_eq!(cascade["source"], "window", "{cascade}");
    assert_eq!(cascade["n"], 20, "{cascade}");
    let threshold = cascade["threshold"].as_f64().unwrap();
    assert!((0.6..0.98).contains(&threshold), "{cascade}");
    assert_eq!(cascade["escalated"], true, "{cascade}");
    let router = metrics(&fleet, "llm-router").await;
    assert!(
        router.contains("llm_router_cascade_window_size 20"),
        "{router}"
    );
    fleet.stop().await;
}
