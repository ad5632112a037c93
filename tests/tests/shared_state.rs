//! Two llm-router replicas sharing one Redis (`STATE_URL`): feedback on a
//! call one served is taken by the other, what it learned shows in the
//! other's decisions, survives a restart, a tenant's budget spent through
//! one closes on the other, and a Redis that dies costs requests nothing
//! but the learning.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;

use fleet_tests::redis::RedisServer;
use fleet_tests::{Fleet, FleetOptions, sample};
use serde_json::{Value, json};

/// The built-in policy's `[learning].min_observations`: from this many
/// observations on, a model's learned quality replaces its prior.
const MIN_OBSERVATIONS: u64 = 10;

async fn fleet_on(redis: &RedisServer) -> Fleet {
    Fleet::start(FleetOptions {
        env: BTreeMap::from([("STATE_URL".to_owned(), redis.url())]),
        ..FleetOptions::default()
    })
    .await
}

/// A fleet on `redis` whose policy gives tenant acme a daily budget of
/// `limit` USD.
async fn fleet_with_budget(redis: &RedisServer, policy_dir: &std::path::Path, limit: f64) -> Fleet {
    let policy = routing_core::policy::DEFAULT_POLICY.replace(
        "# [[budgets.limit]]\n# tenant = \"*\"\n# daily_usd = 20.0\n# monthly_usd = 400.0",
        &format!("[[budgets.limit]]\ntenant = \"acme\"\ndaily_usd = {limit}"),
    );
    assert!(policy.contains("tenant = \"acme\""), "the policy changed");
    let path = policy_dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    Fleet::start(FleetOptions {
        env: BTreeMap::from([
            ("STATE_URL".to_owned(), redis.url()),
            ("POLICY_PATH".to_owned(), path.display().to_string()),
        ]),
        ..FleetOptions::default()
    })
    .await
}

fn request() -> Value {
    json!({"task":"generate","difficulty":"simple","prompt":"Say hi.","tenant":"acme"})
}

async fn post(fleet: &Fleet, path: &str, body: Value) -> (u16, Value) {
    let response = fleet
        .http
        .post(fleet.url("llm-router", path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What `fleet`'s dry-run of [`request`] predicts for `model`.
async fn predicted(fleet: &Fleet, model: &str) -> Value {
    let (status, body) = post(fleet, "/dry-run", request()).await;
    assert_eq!(status, 200, "{body}");
    body["route"]["predicted_quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == model)
        .unwrap_or_else(|| panic!("{model} not in {body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_learned_state_which_survives_a_restart() {
    let redis = RedisServer::start().await;
    let a = fleet_on(&redis).await;
    let b = fleet_on(&redis).await;

    // Calls served by A, rated through B.
    let mut served = None;
    let mut call_ids = Vec::new();
    for i in 0..MIN_OBSERVATIONS {
        let answer = a.route(request()).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let model = answer.json["route"]["model"].as_str().unwrap().to_owned();
        assert_eq!(*served.get_or_insert_with(|| model.clone()), model);
        let call_id = answer.json["id"].as_str().unwrap().to_owned();
        let (status, body) = post(
            &b,
            "/feedback",
            json!({"call_id": call_id, "thumbs": "up", "tenant": "acme"}),
        )
        .await;
        assert_eq!(status, 200, "B takes feedback on A's call: {body}");
        assert_eq!(body["model"], model.as_str(), "{body}");
        assert_eq!(body["learned"], true, "{body}");
        assert_eq!(body["observations"], i + 1, "{body}");
        call_ids.push(call_id);
    }
    let model = served.unwrap();
    // One feedback per call, whichever replica it reaches.
    let (status, body) = post(
        &a,
        "/feedback",
        json!({"call_id": call_ids[0], "thumbs": "down", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // Both replicas now route with what was learned.
    for fleet in [&a, &b] {
        let p = predicted(fleet, &model).await;
        assert_eq!(p["source"], "learned", "{p}");
        assert_eq!(p["observations"], MIN_OBSERVATIONS, "{p}");
    }
    let learned = predicted(&b, &model).await["quality"].as_f64().unwrap();

    // Scored prompts fill the shared calibration window (dry-runs count);
    // the built-in policy merges every 32 scores.
    for i in 0..32 {
        let (status, body) = post(
            &a,
            "/dry-run",
            json!({"task":"generate","prompt":format!("Summarise item {i} of the report.")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        sample(
            &a.metrics("llm-router").await,
            "llm_router_calibration_window_size"
        ),
        32.0
    );

    // A restarted replica (a new process) still knows it all.
    a.stop().await;
    let a = fleet_on(&redis).await;
    let p = predicted(&a, &model).await;
    assert_eq!(p["source"], "learned", "{p}");
    assert_eq!(p["observations"], MIN_OBSERVATIONS, "{p}");
    assert_eq!(p["quality"].as_f64().unwrap(), learned, "{p}");
    // It started at the shared calibration window, not from a cold start
    // (the dry-run above declared its difficulty: it scored nothing).
    assert_eq!(
        sample(
            &a.metrics("llm-router").await,
            "llm_router_calibration_window_size"
        ),
        32.0
    );
    let (status, body) = post(
        &a,
        "/feedback",
        json!({"call_id": call_ids[1], "thumbs": "down", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 409, "the rating survived the restart too: {body}");
    let (status, body) = post(
        &a,
        "/feedback",
        json!({"call_id": call_ids[0], "thumbs": "up", "tenant": "globex"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_when_redis_dies() {
    let mut redis = RedisServer::start().await;
    let fleet = fleet_on(&redis).await;
    let answer = fleet.route(request()).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let before = answer.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sample(&fleet.metrics("llm-router").await, "llm_router_state_up"),
        1.0
    );

    redis.kill().await;
    for _ in 0..3 {
        let answer = fleet.route(request()).await;
        assert_eq!(answer.status, 200, "served without Redis: {}", answer.json);
        // Without learned state the static priors route.
        let route = &answer.json["route"];
        assert_eq!(route["predicted_quality"][0]["source"], "prior", "{route}");
    }
    // The OpenAI-compatible path too.
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

    // Feedback cannot be taken: the call records are out of reach.
    let (status, body) = post(
        &fleet,
        "/feedback",
        json!({"call_id": before, "thumbs": "up", "tenant": "acme"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "unavailable", "{body}");
    assert_eq!(body["error"]["param"], "call_id", "{body}");

    let metrics = fleet.metrics("llm-router").await;
    for op in ["arms_get", "calls_put", "calls_claim", "budgets_refresh"] {
        let failed = sample(
            &metrics,
            &format!(r#"llm_router_state_errors_total{{op="{op}"}}"#),
        );
        assert!(failed >= 1.0, "{op}: {failed}");
    }
    assert_eq!(sample(&metrics, "llm_router_state_up"), 0.0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_through_one_replica_closes_on_the_other() {
    const LIMIT: f64 = 0.00003;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = fleet_with_budget(&redis, dir.path(), LIMIT).await;
    let b = fleet_with_budget(&redis, dir.path(), LIMIT).await;
    let pinned = |tenant: &str| json!({"task":"generate","prompt":"hi","tenant":tenant,"model":"groq/llama-3.1-8b-instant"});
    // B has served acme nothing; A spends acme's budget until it refuses.
    let mut refused = None;
    for _ in 0..40 {
        let answer = a.route(pinned("acme")).await;
        if answer.status != 200 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("A's budget gate closes");
    assert_eq!(refused.status, 402, "{}", refused.json);
    // A read acme's spend from Redis right before refusing, so B reads at
    // least as much: it refuses too.
    let answer = b.route(pinned("acme")).await;
    assert_eq!(answer.status, 402, "B gates on A's spend: {}", answer.json);
    assert_eq!(answer.json["error"]["type"], "budget_exceeded");
    let other = b.route(pinned("globex")).await;
    assert_eq!(other.status, 200, "{}", other.json);
    a.stop().await;
    b.stop().await;
}
