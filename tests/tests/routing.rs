//! The policy at work through the whole fleet: explain and dry-run,
//! cheap-first escalation, tenant budgets, privacy against pinning.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;

use fleet_tests::{Fleet, FleetOptions, sample};
use serde_json::json;

fn model_calls(fleet: &Fleet) -> u64 {
    ["ollama", "groq", "vertex"]
        .into_iter()
        .chain(fleet.others.keys().copied())
        .map(|p| {
            fleet
                .emulator(p)
                .stats()
                .by_path
                .iter()
                .filter(|(path, _)| !path.starts_with("/_emulator") && !path.ends_with("/token"))
                .map(|(_, n)| n)
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_explains_the_decision_without_calling_a_model() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let response = fleet
        .http
        .post(fleet.url("llm-router", "/dry-run"))
        .body(json!({"task":"reason","prompt":"Prove that there are infinitely many primes.","max_latency_ms":3000}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let route = &body["route"];
    assert!(!route["rule"].as_str().unwrap().is_empty());
    assert!(!route["model"].as_str().unwrap().is_empty());
    assert_eq!(body["decision"]["primary"]["model"]["id"], route["model"]);
    // Every model left out says why.
    for rejected in route["rejected"].as_array().unwrap() {
        assert!(rejected["reason"]["kind"].is_string(), "{rejected}");
    }
    // The score the difficulty tier was cut from is shown, for evaluation.
    let needs_strong = route["needs_strong"].as_f64().expect("needs_strong");
    assert!((0.0..=1.0).contains(&needs_strong), "{route}");
    assert_eq!(model_calls(&fleet), 0);

    // A declared difficulty is routed as declared: no score to show.
    let declared = fleet
        .http
        .post(fleet.url("llm-router", "/dry-run"))
        .body(json!({"task":"reason","difficulty":"hard","prompt":"Prove that there are infinitely many primes.","max_latency_ms":3000}).to_string())
        .send()
        .await
        .unwrap();
    let declared: serde_json::Value = declared.json().await.unwrap();
    assert!(
        declared["route"].get("needs_strong").is_none(),
        "{declared}"
    );

    // A real call carries the same explanation, plus what was tried.
    let answer = fleet
        .route(json!({"task":"reason","prompt":"Prove that there are infinitely many primes.","max_latency_ms":3000}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["route"]["model"], route["model"]);
    let attempts = answer.json["route"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["outcome"], "ok");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_cheap_answer_is_escalated_and_recorded() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let answer = fleet
        .route(json!({"task":"generate","prompt":"Write a long story about rivers.","difficulty":"simple",
                      "max_tokens":1,"max_latency_ms":20000}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let route = &answer.json["route"];
    assert_eq!(route["rule"], "simple_cheap", "{route}");
    let escalated = &route["escalated"];
    assert_eq!(escalated["from"], route["model"], "{route}");
    assert!(
        escalated["reason"]
            .as_str()
            .unwrap()
            .contains("token limit"),
        "{escalated}"
    );
    let attempts = route["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{route}");
    assert_ne!(attempts[1]["model"], attempts[0]["model"]);
    let metrics = fleet
        .http
        .get(fleet.url("llm-router", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"llm_router_escalations_total{reason="truncated"} 1"#),
        "{metrics}"
    );
    // The cheap model's failed answer is an implicit, negative outcome.
    assert!(
        metrics.contains(r#"llm_router_feedback_total{kind="implicit",outcome="negative"} 1"#),
        "{metrics}"
    );
    fleet.stop().await;
}

async fn fleet_with_budget(on_near: &str, limit: f64) -> (Fleet, tempfile::TempDir) {
    let default = routing_core::policy::DEFAULT_POLICY;
    let policy = default
        .replace(
            "# [[budgets.limit]]\n# tenant = \"*\"\n# daily_usd = 20.0\n# monthly_usd = 400.0",
            &format!("[[budgets.limit]]\ntenant = \"acme\"\ndaily_usd = {limit}"),
        )
        .replace(
            "on_near = \"downgrade\"",
            &format!("on_near = \"{on_near}\""),
        );
    assert!(policy.contains("tenant = \"acme\""), "the policy changed");
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

fn request(tenant: &str) -> serde_json::Value {
    json!({"task":"generate","prompt":"hi","max_latency_ms":200,"tenant":tenant})
}

fn pinned(tenant: &str) -> serde_json::Value {
    json!({"task":"generate","prompt":"hi","tenant":tenant,"model":"groq/llama-3.1-8b-instant"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_budget_cannot_cover_a_call_is_refused_and_others_are_not() {
    // Routed freely, a tenant near its limit is sent to cheaper (in the end,
    // free in-cluster) models; pinned to a paid one, it is refused once the
    // expected cost no longer fits what is left.
    const LIMIT: f64 = 0.00003;
    let (fleet, _dir) = fleet_with_budget("allow", LIMIT).await;
    let mut spent = 0.0;
    let mut refused = None;
    for _ in 0..40 {
        let answer = fleet.route(pinned("acme")).await;
        if answer.status != 200 {
            refused = Some(answer);
            break;
        }
        spent += answer.json["cost_usd"].as_f64().unwrap();
    }
    let refused = refused.expect("the budget gate closes");
    assert_eq!(refused.status, 402, "{}", refused.json);
    assert_eq!(refused.json["error"]["type"], "budget_exceeded");
    assert!(
        spent > 0.0 && spent <= LIMIT,
        "refused after spending {spent} of {LIMIT}"
    );
    let rejected = refused.json["error"]["rejected"].as_array().unwrap();
    assert!(
        rejected.iter().any(|r| r["reason"]["kind"] == "budget"),
        "{}",
        refused.json
    );
    let other = fleet.route(pinned("globex")).await;
    assert_eq!(other.status, 200, "{}", other.json);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_near_its_budget_is_downgraded_to_cheaper_models() {
    let (fleet, _dir) = fleet_with_budget("downgrade", 0.00012).await;
    let first = fleet.route(request("acme")).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let full_price = first.json["cost_usd"].as_f64().unwrap();
    let mut downgraded = None;
    for _ in 0..40 {
        let answer = fleet.route(request("acme")).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        if !answer.json["route"]["budget"].is_null() {
            downgraded = Some(answer);
            break;
        }
    }
    let downgraded = downgraded.expect("the tenant nears its limit");
    assert_eq!(
        downgraded.json["route"]["budget"]["action"], "downgrade",
        "{}",
        downgraded.json
    );
    assert!(
        downgraded.json["cost_usd"].as_f64().unwrap() <= full_price,
        "{}",
        downgraded.json
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinning_an_external_model_cannot_take_a_private_request_out() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let answer = fleet
        .route(
            json!({"task":"generate","prompt":"secret-pin-marker","private":true,
                      "model":"groq/llama-3.1-8b-instant"}),
        )
        .await;
    assert!(answer.status >= 400, "{}", answer.json);
    assert!(!fleet.groq.stats().any_body_contains("secret-pin-marker"));
    let rejected = answer.json["error"]["rejected"].as_array().unwrap();
    assert!(
        rejected.iter().any(|r| r["reason"]["kind"] == "private"),
        "{}",
        answer.json
    );

    // An unknown model is named as such.
    let unknown = fleet
        .route(json!({"task":"generate","prompt":"hi","model":"nobody/nothing"}))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.json);
    assert_eq!(unknown.json["error"]["param"], "model");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_are_cut_at_the_window_quantiles_once_it_fills() {
    let policy = routing_core::policy::DEFAULT_POLICY
        .replacen(
            "target_share = { medium = 0.25, hard = 0.10 }",
            "target_share = { medium = 0.30, hard = 0.30 }",
            1,
        )
        .replacen("window = 2000", "window = 100", 1)
        .replacen("min_scores = 200", "min_scores = 20", 1)
        .replacen("recompute_every = 32", "recompute_every = 5", 1)
        .replacen(
            "# cold_start = { medium = 0.0888, hard = 0.2664 }",
            "cold_start = { medium = 0.0888, hard = 0.2664 }",
            1,
        );
    assert!(policy.contains("min_scores = 20\n"), "the policy changed");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let fleet = Fleet::start(FleetOptions {
        env: BTreeMap::from([("POLICY_PATH".to_owned(), path.display().to_string())]),
        ..FleetOptions::default()
    })
    .await;

    // Every series is there before the first request: the static cut-offs.
    let before = fleet.metrics("llm-router").await;
    assert_eq!(
        sample(&before, r#"llm_router_tier_threshold{tier="medium"}"#),
        0.0888
    );
    assert_eq!(
        sample(&before, r#"llm_router_tier_threshold{tier="hard"}"#),
        0.2664
    );
    assert_eq!(sample(&before, "llm_router_calibration_window_size"), 0.0);
    assert_eq!(sample(&before, "llm_router_calibration_cold_start"), 1.0);
    for tier in ["simple", "medium", "hard"] {
        let series = format!(r#"llm_router_tier_total{{tier="{tier}"}}"#);
        assert_eq!(sample(&before, &series), 0.0);
    }

    // A stationary stream: the same kinds of prompt, over and over.
    let kinds = [
        "Tell me about rivers, item {i}.",
        "Prove that {i} squared plus one has a prime factor, step by step.",
        "Summarise tax law change number {i} for a small business owner.",
        "Plan a birthday party for {i} guests.",
        "Sort these numbers: {i}, 3, 9, 1.",
    ];
    let mut tiers = Vec::new();
    let mut last = serde_json::Value::Null;
    for i in 0..90 {
        let prompt = kinds[i % kinds.len()].replace("{i}", &(i + 10).to_string());
        let body = fleet
            .http
            .post(fleet.url("llm-router", "/dry-run"))
            .body(json!({"task":"generate","prompt":prompt,"max_latency_ms":30000}).to_string())
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let calibration = &body["route"]["calibration"];
        if i == 0 {
            assert_eq!(calibration["source"], "cold_start", "{body}");
            assert_eq!(calibration["window"], "global", "{body}");
            assert_eq!(calibration["n"], 0, "{body}");
            assert_eq!(calibration["thresholds"]["hard"], 0.2664, "{body}");
        }
        if i >= 40 {
            tiers.push(body["difficulty"].as_str().unwrap().to_owned());
        }
        last = body;
    }
    let calibration = &last["route"]["calibration"];
    assert_eq!(calibration["source"], "window", "{last}");
    assert!(calibration["n"].as_u64().unwrap() >= 85, "{last}");
    let medium = calibration["thresholds"]["medium"].as_f64().unwrap();
    let hard = calibration["thresholds"]["hard"].as_f64().unwrap();
    assert!(hard >= medium, "{last}");
    assert!(
        last["route"]["reason"]
            .as_str()
            .unwrap()
            .contains("global window's quantiles"),
        "{last}"
    );
    // Each tier gets its share of the 50 prompts after the window filled.
    for tier in ["simple", "medium", "hard"] {
        let share = tiers.iter().filter(|t| *t == tier).count() as f64 / tiers.len() as f64;
        assert!(
            (0.15..=0.55).contains(&share),
            "{tier}: {share} of {tiers:?}"
        );
    }

    let after = fleet.metrics("llm-router").await;
    assert_eq!(sample(&after, "llm_router_calibration_cold_start"), 0.0);
    assert!(sample(&after, "llm_router_calibration_window_size") >= 85.0);
    assert_eq!(
        sample(&after, r#"llm_router_tier_threshold{tier="hard"}"#),
        hard
    );
    let counted: f64 = ["simple", "medium", "hard"]
        .iter()
        .map(|t| sample(&after, &format!(r#"llm_router_tier_total{{tier="{t}"}}"#)))
        .sum();
    assert_eq!(counted, 90.0);

    // A declared difficulty is not calibrated.
    let declared = fleet
        .http
        .post(fleet.url("llm-router", "/dry-run"))
        .body(json!({"task":"generate","difficulty":"simple","prompt":"hi"}).to_string())
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(declared["route"].get("calibration").is_none(), "{declared}");
    fleet.stop().await;
}

async fn feedback(fleet: &Fleet, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = fleet
        .http
        .post(fleet.url("llm-router", path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_on_a_routed_call_is_learned_and_counted() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let before = fleet.metrics("llm-router").await;
    for series in [
        r#"llm_router_feedback_total{kind="explicit",outcome="positive"}"#,
        r#"llm_router_feedback_total{kind="implicit",outcome="negative"}"#,
        "llm_router_explorations_total",
    ] {
        assert_eq!(sample(&before, series), 0.0, "{series}");
    }

    // A native call: its explanation shows each candidate's predicted
    // quality and whether the call explored.
    let answer = fleet
        .route(json!({"task":"generate","difficulty":"simple","prompt":"Say hi.","tenant":"acme"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let call_id = answer.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        answer.headers["x-call-id"].to_str().unwrap(),
        call_id,
        "the answer's id is its call id"
    );
    let route = &answer.json["route"];
    assert_eq!(route["explored"], false, "{route}");
    let predicted = route["predicted_quality"].as_array().unwrap();
    assert_eq!(predicted[0]["model"], route["model"], "{route}");
    assert_eq!(predicted[0]["source"], "prior", "{route}");

    // Someone else's call, then an unknown one.
    let (status, body) = feedback(
        &fleet,
        "/feedback",
        json!({"call_id": call_id, "thumbs": "up", "tenant": "globex"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["param"], "tenant", "{body}");
    let (status, body) = feedback(
        &fleet,
        "/feedback",
        json!({"call_id": "no-such-call", "thumbs": "up", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = feedback(
        &fleet,
        "/feedback",
        json!({"call_id": call_id, "thumbs": "up", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], route["model"], "{body}");
    assert_eq!(body["learned"], true, "{body}");
    assert_eq!(body["observations"], 1, "{body}");
    let (status, _) = feedback(
        &fleet,
        "/feedback",
        json!({"call_id": call_id, "thumbs": "down", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 409, "a call takes one feedback");

    // The OpenAI-compatible path: the completion's id carries the call id.
    let completion = fleet
        .http
        .post(fleet.url("llm-router", "/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-route-task", "generate")
        .body(json!({"model":"auto","messages":[{"role":"user","content":"Say hi."}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(completion.status(), 200);
    let call_id = completion.headers()["x-call-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body) = feedback(
        &fleet,
        "/v1/feedback",
        json!({"call_id": call_id, "score": 0.2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reward"], 0.2, "{body}");

    let after = fleet.metrics("llm-router").await;
    assert_eq!(
        sample(
            &after,
            r#"llm_router_feedback_total{kind="explicit",outcome="positive"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"llm_router_feedback_total{kind="explicit",outcome="negative"}"#
        ),
        1.0
    );
    assert_eq!(sample(&after, "llm_router_explorations_total"), 0.0);
    fleet.stop().await;
}
