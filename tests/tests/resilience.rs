//! Breakers, fallbacks and per-attempt timeouts through the whole fleet:
//! only a provider's own faults count against its model, whatever callers
//! send; a hung model leaves time for the next; strict input at the edges.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use fleet_tests::{Answer, Fleet, FleetOptions};
use provider_emulator::{Fault, FaultPlan};
use serde_json::{Value, json};

const GROQ_8B: &str = "groq/llama-3.1-8b-instant";

fn pinned(prompt: &str, max_latency_ms: u64) -> Value {
    json!({"task":"generate","prompt":prompt,"max_latency_ms":max_latency_ms,"model":GROQ_8B})
}

async fn dry_run_answer(fleet: &Fleet, request: &Value) -> (u16, Value) {
    let response = fleet
        .http
        .post(fleet.url("llm-router", "/dry-run"))
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn dry_run(fleet: &Fleet, request: &Value) -> Value {
    let (status, plan) = dry_run_answer(fleet, request).await;
    assert_eq!(status, 200, "{plan}");
    plan
}

/// Models the policy kept out because their breaker is open (from the
/// decision, or from the error when no model was left).
async fn open_breakers(fleet: &Fleet, request: &Value) -> Vec<String> {
    let (status, plan) = dry_run_answer(fleet, request).await;
    let rejected = if status == 200 {
        &plan["decision"]["rejected"]
    } else {
        &plan["error"]["rejected"]
    };
    rejected
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .filter(|r| r["reason"]["kind"] == "breaker_open")
        .map(|r| r["model"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of this test process's children named `name` and started by
/// `fleet` (the dev gateway starts each function as a child of the process
/// that runs it; tests run side by side, each fleet with its own emulators).
fn own_children_named(fleet: &Fleet, name: &str) -> Vec<u32> {
    let groq = format!("GROQ_BASE_URL={}", fleet.groq.base_url());
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm != name || ppid != Some(me) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|var| var == groq.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

async fn many(fleet: &Fleet, requests: Vec<Value>) -> Vec<Answer> {
    futures_util::future::join_all(requests.into_iter().map(|r| fleet.route(r))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_cannot_open_a_breaker_with_tiny_budgets_or_a_proxy_crash() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let warm = fleet.route(pinned("hi", 5000)).await;
    assert_eq!(warm.status, 200, "{}", warm.json);

    // Many callers with a 1 ms budget: every one of them runs out of time,
    // on every kind of route.
    let kinds = |budget: u64| {
        [
            pinned("hi", budget),
            json!({"task":"generate","prompt":"hi","max_latency_ms":budget}),
            json!({"task":"generate","prompt":"hi","max_latency_ms":budget,"private":true}),
            json!({"task":"reason","prompt":"hi","max_latency_ms":budget,"difficulty":"hard"}),
            json!({"task":"embed","input":["hi"],"max_latency_ms":budget}),
            json!({"prompt":"hi","max_latency_ms":budget}),
        ]
    };
    let poison: Vec<Value> = (0..12).flat_map(|_| kinds(1)).collect();
    for answer in many(&fleet, poison).await {
        let message = answer.json["error"]["message"].as_str().unwrap_or("");
        assert!(!message.contains("circuit breaker"), "{message}");
    }

    // provider-proxy crashes with eight calls to Groq in flight (Groq
    // hangs, so they are all waiting in it when it dies), then is restarted.
    let proxies = own_children_named(&fleet, "provider-proxy");
    assert_eq!(proxies.len(), 1, "one provider-proxy process: {proxies:?}");
    let in_flight = fleet.groq.stats().total_requests + 8;
    let hanging = (0..8)
        .map(|_| pinned("hi [[emulator:hang@groq]]", 30_000))
        .collect();
    let (cut, ()) = tokio::join!(many(&fleet, hanging), async {
        fleet.groq.wait_for_requests(in_flight).await;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &proxies[0].to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    });
    for answer in &cut {
        assert_ne!(answer.status, 200, "{}", answer.json);
        assert_eq!(
            answer.json["error"]["failure"]["class"], "unreachable_proxy",
            "{}",
            answer.json
        );
    }
    let during = many(&fleet, (0..12).map(|_| pinned("hi", 5000)).collect()).await;
    for answer in &during {
        if answer.status != 200 {
            let message = answer.json["error"]["message"].as_str().unwrap_or("");
            assert!(!message.contains("circuit breaker"), "{message}");
        }
    }

    // provider-proxy's health is counted apart, by class.
    let metrics = fleet
        .http
        .get(fleet.url("llm-router", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unreachable = metrics
        .lines()
        .find(|l| l.starts_with("llm_router_attempt_failures_total{class=\"unreachable_proxy\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(unreachable >= 8.0, "{metrics}");

    // Other callers are unaffected: no breaker opened.
    let mut after = kinds(5000).to_vec();
    after.push(json!({"task":"generate","prompt":"hi","max_latency_ms":250}));
    for request in after {
        assert_eq!(
            open_breakers(&fleet, &request).await,
            Vec::<String>::new(),
            "{request}"
        );
        let answer = fleet.route(request.clone()).await;
        assert_eq!(answer.status, 200, "{request}: {}", answer.json);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_leaves_time_for_the_fallback() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let request =
        json!({"task":"generate","prompt":"hi","max_latency_ms":5000,"difficulty":"simple"});
    let plan = dry_run(&fleet, &request).await;
    let primary = plan["decision"]["primary"]["model"]["id"].as_str().unwrap();
    let fallbacks = plan["decision"]["fallbacks"].as_array().unwrap();
    assert!(!fallbacks.is_empty(), "{plan}");
    let hung = primary.split('/').next().unwrap();
    assert!(
        fallbacks.iter().any(|f| !f["model"]["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{hung}/"))),
        "a fallback on another provider: {plan}"
    );

    let answer = fleet
        .route(
            json!({"task":"generate","prompt":format!("hi [[emulator:hang@{hung}]]"),
                      "max_latency_ms":5000,"difficulty":"simple"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_ne!(answer.json["provider"], hung, "{}", answer.json);
    let attempts = answer.json["route"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["model"], primary, "{}", answer.json);
    assert_ne!(attempts[0]["outcome"], "ok", "{}", answer.json);
    assert_eq!(attempts.last().unwrap()["outcome"], "ok");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_leaves_time_for_the_fallback_on_streams_too() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let request =
        json!({"task":"generate","prompt":"hi","max_latency_ms":5000,"difficulty":"simple"});
    let plan = dry_run(&fleet, &request).await;
    let primary = plan["decision"]["primary"]["model"]["id"].as_str().unwrap();
    let hung = primary.split('/').next().unwrap();
    let response = fleet
        .http
        .post(fleet.url("llm-router", ""))
        .header("accept", "text/event-stream")
        .body(
            json!({"task":"generate","prompt":format!("hi [[emulator:hang@{hung}]]"),
                   "max_latency_ms":5000,"difficulty":"simple","stream":true})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| serde_json::from_str(frame.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let attempts = events[0]["route"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["model"], primary, "{text}");
    // provider-proxy reports the provider's timeout itself (it is told to
    // give up a margin before the router does); under heavy load the
    // router's own clock may still win, which is the proxy's health.
    let outcome = attempts[0]["outcome"].as_str().unwrap();
    assert!(
        ["timeout_provider", "unreachable_proxy"].contains(&outcome),
        "{text}"
    );
    assert_eq!(attempts.last().unwrap()["outcome"], "ok", "{text}");
    assert_eq!(events.last().unwrap()["type"], "done", "{text}");
    assert_ne!(events.last().unwrap()["provider"], hung, "{text}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_last_model_is_retried_after_the_wait_it_asked_for() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    // OpenAI's emulator asks for a 1 s wait.
    fleet.others["openai"].set_faults(FaultPlan::next_n(Fault::RateLimit, 1));
    let answer = fleet
        .route(
            json!({"task":"generate","prompt":"hi","max_latency_ms":10_000,
                      "model":"openai/gpt-4.1-nano"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let outcomes: Vec<&str> = answer.json["route"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rate_limited", "ok"], "{}", answer.json);
    assert_eq!(fleet.others["openai"].stats().total_requests, 2);

    // A wait longer than the budget is not waited for.
    fleet.others["openai"].set_faults(FaultPlan::next_n(Fault::RateLimit, 1));
    let answer = fleet
        .route(
            json!({"task":"generate","prompt":"hi","max_latency_ms":1000,
                      "model":"openai/gpt-4.1-nano"}),
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.json);
    assert_eq!(answer.json["error"]["failure"]["class"], "rate_limited");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_credential_does_not_open_the_breaker_but_provider_errors_do() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    // Ten auth failures: twice the breaker's threshold.
    for _ in 0..10 {
        let answer = fleet
            .route(pinned("hi [[emulator:auth_failure@groq]]", 5000))
            .await;
        assert_ne!(answer.status, 200, "{}", answer.json);
        assert_eq!(
            answer.json["error"]["failure"]["class"], "auth",
            "{}",
            answer.json
        );
    }
    assert_eq!(
        open_breakers(&fleet, &pinned("hi", 5000)).await,
        Vec::<String>::new()
    );
    let ok = fleet.route(pinned("hi", 5000)).await;
    assert_eq!(ok.status, 200, "{}", ok.json);

    // The provider's own 500s do open it, and the open breaker says why.
    for _ in 0..5 {
        let answer = fleet
            .route(pinned("hi [[emulator:server_error@groq]]", 5000))
            .await;
        assert_eq!(
            answer.json["error"]["failure"]["class"], "provider_error",
            "{}",
            answer.json
        );
    }
    assert_eq!(open_breakers(&fleet, &pinned("hi", 5000)).await, [GROQ_8B]);
    let refused = fleet.route(pinned("hi", 5000)).await;
    assert_eq!(refused.status, 503, "{}", refused.json);
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("provider_error"), "{message}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_text_naming_our_project_does_not_reach_callers() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let answer = fleet
        .route(
            json!({"task":"generate","prompt":"hi [[emulator:auth_failure@vertex]]",
                      "max_latency_ms":5000,"model":"vertex/gemini-2.5-flash"}),
        )
        .await;
    assert_ne!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["error"]["failure"]["class"], "auth");
    let body = answer.json.to_string();
    assert!(
        !body.contains(provider_emulator::credentials::TEST_PROJECT_ID),
        "{body}"
    );
    // Groq names our organisation in its rate-limit message.
    let limited = fleet
        .route(pinned("hi [[emulator:rate_limit@groq]]", 5000))
        .await;
    assert_eq!(limited.json["error"]["failure"]["class"], "rate_limited");
    assert_eq!(limited.json["error"]["failure"]["retry_after_ms"], 6000);
    let body = limited.json.to_string();
    assert!(!body.contains("org_01emulator"), "{body}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_call_ids_are_replaced() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for id in [
        "quote\"d",
        "back\\slash",
        "{\"json\":1}",
        "tab\there",
        "a b",
    ] {
        let response = fleet
            .http
            .post(fleet.url("llm-router", ""))
            .header("X-Call-Id", id)
            .body(json!({"task":"generate","prompt":"hi","max_latency_ms":5000}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let kept = body["id"].as_str().unwrap();
        assert_ne!(kept, id);
        assert!(
            kept.len() == 36 && kept.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{kept}"
        );
    }
    // Newlines cannot even be sent: HTTP refuses them in a header value.
    assert!(reqwest::header::HeaderValue::from_str("a\nb").is_err());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_bytes_and_escaping_model_ids_get_400() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for function in ["llm-router", "provider-proxy"] {
        let body = if function == "llm-router" {
            r#"{"task":"generate","prompt":"hi"} trailing"#
        } else {
            r#"{"provider":"ollama","model":"llama3.2","task":"generate","messages":[{"role":"user","content":"hi"}]}{}"#
        };
        let answer = fleet.post(function, body).await;
        assert_eq!(answer.status, 400, "{function}: {}", answer.json);
        assert_eq!(answer.json["error"]["type"], "invalid_request_error");
    }
    for model in ["..", "../../x"] {
        let answer = fleet
            .post(
                "provider-proxy",
                json!({"provider":"bedrock","model":model,"task":"generate",
                       "messages":[{"role":"user","content":"hi"}]})
                .to_string(),
            )
            .await;
        assert_eq!(answer.status, 400, "{model}: {}", answer.json);
        assert_eq!(answer.json["error"]["param"], "model");
        assert_eq!(answer.json["error"]["failure"]["class"], "bad_request");
        assert_eq!(answer.headers["x-failure-class"], "bad_request");
    }
    assert_eq!(fleet.others["bedrock"].stats().total_requests, 0);
    fleet.stop().await;
}
