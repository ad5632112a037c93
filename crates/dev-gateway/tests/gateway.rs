//! The gateway with real child processes (the `dev-gateway-echo` binary).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use dev_gateway::DevGateway;
use http::{Method, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use support::{
    DEADLINE, Http, echo, eventually, function_status, pid_of, process_exists, temp_dir,
};

#[tokio::test]
async fn first_request_starts_the_process() {
    let gateway = DevGateway::new(vec![echo("echo")]).start().await.unwrap();
    let http = Http::new();

    let before = function_status(&http, &gateway, "echo").await;
    assert_eq!((before.replicas, before.available_replicas), (0, 0));
    assert_eq!(before.cold_start_ms, None);
    assert_eq!(before.invocation_count, 0);

    let reply = http
        .get(&format!("{}/function/echo/hello", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let pid = pid_of(&reply);
    assert!(process_exists(pid));

    let after = function_status(&http, &gateway, "echo").await;
    assert_eq!((after.replicas, after.available_replicas), (1, 1));
    assert!(after.cold_start_ms.is_some(), "{after:?}");
    assert_eq!(after.invocation_count, 1);
    assert_eq!(after.namespace, "openfaas-fn");

    // A second request reuses the process.
    let again = http.get(&format!("{}/function/echo", gateway.url())).await;
    assert_eq!(pid_of(&again), pid);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_first_requests_share_one_process() {
    // The function takes a while to report healthy, so all requests arrive
    // during the cold start.
    let spec = echo("slow").with_env("ECHO_HEALTH_DELAY_MS", "300");
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let http = Http::new();
    let url = format!("{}/function/slow/", gateway.url());
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = url.clone();
        requests.spawn(async move { http.get(&url).await });
    }
    let mut pids = HashSet::new();
    while let Some(reply) = requests.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        pids.insert(pid_of(&reply));
    }
    assert_eq!(
        pids.len(),
        1,
        "requests were served by several processes: {pids:?}"
    );
    let status = function_status(&http, &gateway, "slow").await;
    assert_eq!(status.invocation_count, 8);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_function_scales_to_zero_and_back() {
    let spec = echo("idle").with_idle(Duration::from_millis(200));
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let http = Http::new();
    let url = format!("{}/function/idle", gateway.url());
    let first = pid_of(&http.get(&url).await);

    eventually("replicas to drop to 0", || async {
        (function_status(&http, &gateway, "idle").await.replicas == 0).then_some(())
    })
    .await;
    eventually("the idle process to exit", || async {
        (!process_exists(first)).then_some(())
    })
    .await;

    // The next request scales from zero again.
    let second = pid_of(&http.get(&url).await);
    assert_ne!(first, second);
    assert_eq!(function_status(&http, &gateway, "idle").await.replicas, 1);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn functions_without_idle_time_stay_up() {
    let gateway = DevGateway::new(vec![echo("steady").with_min_replicas(1)])
        .start()
        .await
        .unwrap();
    let http = Http::new();
    // scale.min starts the process without any request.
    eventually("the scale.min replica to be available", || async {
        (function_status(&http, &gateway, "steady")
            .await
            .available_replicas
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        function_status(&http, &gateway, "steady")
            .await
            .invocation_count,
        0
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn paths_are_stripped_and_queries_kept() {
    let gateway = DevGateway::new(vec![echo("echo")]).start().await.unwrap();
    let http = Http::new();
    let base = gateway.url();
    for (path, expected_path, expected_query) in [
        ("/function/echo", "/", None),
        ("/function/echo/", "/", None),
        ("/function/echo/a/b?q=1&r=%20x", "/a/b", Some("q=1&r=%20x")),
        ("/function/echo?only=query", "/", Some("only=query")),
        ("/function/echo.openfaas-fn/ns", "/ns", None),
    ] {
        let reply = http
            .send(
                Method::POST,
                &format!("{base}{path}"),
                &[("content-type", "text/plain")],
                "payload",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let echoed = reply.json();
        assert_eq!(echoed["path"], expected_path, "{path}");
        assert_eq!(echoed["query"].as_str(), expected_query, "{path}");
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["body"], "payload");
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn call_id_start_time_and_forwarding_headers() {
    let gateway = DevGateway::new(vec![echo("echo")]).start().await.unwrap();
    let http = Http::new();
    let url = format!("{}/function/echo/h", gateway.url());

    // No X-Call-Id: one is generated for the function and echoed to the client.
    let reply = http
        .send(
            Method::GET,
            &url,
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "private"),
                ("x-custom", "kept"),
            ],
            "",
        )
        .await;
    let generated = reply
        .header("x-call-id")
        .expect("generated call id on the response")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    assert_eq!(reply.header("x-served-by"), Some("dev-gateway"));
    let response_start: u128 = reply.header("x-start-time").unwrap().parse().unwrap();
    let seen = reply.json()["headers"].clone();
    assert_eq!(seen["x-call-id"][0], generated.as_str());
    let request_start: u128 = seen["x-start-time"][0].as_str().unwrap().parse().unwrap();
    assert_eq!(request_start, response_start);
    assert_eq!(seen["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(
        seen["x-forwarded-host"][0],
        gateway.addr().to_string().as_str()
    );
    assert_eq!(seen["x-custom"][0], "kept");
    assert!(
        seen.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop: {seen}"
    );

    // A client X-Call-Id passes through unchanged and is not echoed.
    let reply = http
        .send(Method::GET, &url, &[("x-call-id", "chain-123")], "")
        .await;
    assert_eq!(reply.header("x-call-id"), None);
    assert!(reply.header("x-start-time").is_some());
    assert_eq!(
        reply.json()["headers"]["x-call-id"],
        serde_json::json!(["chain-123"])
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_functions_and_routes_are_404() {
    let gateway = DevGateway::new(vec![echo("echo")]).start().await.unwrap();
    let http = Http::new();
    let reply = http
        .get(&format!("{}/function/nope/x", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.text(), "error finding function nope");
    assert!(
        reply.header("x-call-id").is_some(),
        "call headers are added to gateway errors too"
    );

    let reply = http
        .get(&format!("{}/system/function/nope", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = http.get(&format!("{}/elsewhere", gateway.url())).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let reply = http.get(&format!("{}/healthz", gateway.url())).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "OK")
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_mid_request_is_502_and_the_next_request_restarts_it() {
    let gateway = DevGateway::new(vec![echo("crashy")]).start().await.unwrap();
    let http = Http::new();
    let base = format!("{}/function/crashy", gateway.url());
    let first = pid_of(&http.get(&base).await);

    let reply = http.get(&format!("{base}/_/crash")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.text().contains("function crashy is not reachable"),
        "{}",
        reply.text()
    );
    assert!(reply.text().contains("exit status: 3"), "{}", reply.text());
    assert_eq!(function_status(&http, &gateway, "crashy").await.replicas, 0);

    let reply = http.get(&base).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_ne!(pid_of(&reply), first);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_function_that_dies_during_start_up_is_502() {
    let spec = echo("broken").with_env("ECHO_EXIT_AT_START", "7");
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let http = Http::new();
    let reply = http
        .get(&format!("{}/function/broken", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply
            .text()
            .contains("exited during start-up (exit status: 7)"),
        "{}",
        reply.text()
    );
    assert_eq!(function_status(&http, &gateway, "broken").await.replicas, 0);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_binary_is_502() {
    let dir = temp_dir("ghost");
    let spec = dev_gateway::FunctionSpec::new("ghost", dir.join("no-such-binary"));
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let reply = Http::new()
        .get(&format!("{}/function/ghost", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.text().contains("cannot start function ghost"),
        "{}",
        reply.text()
    );
    gateway.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_function_that_never_gets_healthy_is_503() {
    let spec = echo("stuck").with_env("ECHO_HEALTH_DELAY_MS", "3600000");
    let gateway = DevGateway {
        startup_timeout: Duration::from_millis(300),
        ..DevGateway::new(vec![spec])
    }
    .start()
    .await
    .unwrap();
    let http = Http::new();
    let reply = http.get(&format!("{}/function/stuck", gateway.url())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("did not become healthy"),
        "{}",
        reply.text()
    );
    assert_eq!(function_status(&http, &gateway, "stuck").await.replicas, 0);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn response_chunks_stream_through_before_the_response_ends() {
    let gateway = DevGateway::new(vec![echo("sse")]).start().await.unwrap();
    let http = Http::new();
    let base = format!("{}/function/sse", gateway.url());
    let response = http
        .open(
            Method::GET,
            &format!("{base}/_/stream"),
            &[("accept", "text/event-stream")],
            "",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    // The function holds the rest back until released: the first chunk can only
    // arrive here if the gateway forwards it without waiting for the end.
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("first chunk was not streamed through")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first\n");
    assert!(!body.is_end_stream());

    let released = http.get(&format!("{base}/_/release")).await;
    assert_eq!(released.status, StatusCode::OK);
    let rest = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second\nthird\n");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_sends_sigterm_to_children() {
    let dir = temp_dir("sigterm");
    let marker = dir.join("terminated");
    let spec = echo("graceful").with_env("ECHO_TERM_FILE", marker.display().to_string());
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let pid = pid_of(
        &Http::new()
            .get(&format!("{}/function/graceful", gateway.url()))
            .await,
    );
    assert!(!marker.exists());

    gateway.shutdown().await.unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM");
    assert!(
        !process_exists(pid),
        "the child must be gone once shutdown returns"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn children_ignoring_sigterm_are_killed_after_the_stop_timeout() {
    let dir = temp_dir("stubborn");
    let marker = dir.join("terminated");
    let spec = echo("stubborn")
        .with_env("ECHO_TERM_FILE", marker.display().to_string())
        .with_env("ECHO_IGNORE_SIGTERM", "1");
    let gateway = DevGateway {
        stop_timeout: Duration::from_millis(300),
        ..DevGateway::new(vec![spec])
    }
    .start()
    .await
    .unwrap();
    let pid = pid_of(
        &Http::new()
            .get(&format!("{}/function/stubborn", gateway.url()))
            .await,
    );
    gateway.shutdown().await.unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM ignored");
    assert!(!process_exists(pid), "the child must have been killed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn scale_function_starts_and_stops_the_process() {
    let gateway = DevGateway::new(vec![echo("scaled")]).start().await.unwrap();
    let http = Http::new();
    let scale = |replicas: u64| {
        let http = http.clone();
        let url = format!("{}/system/scale-function/scaled", gateway.url());
        async move {
            http.send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                &format!(r#"{{"serviceName":"scaled","replicas":{replicas}}}"#),
            )
            .await
        }
    };
    assert_eq!(scale(1).await.status, StatusCode::ACCEPTED);
    let status = function_status(&http, &gateway, "scaled").await;
    assert_eq!(
        (
            status.replicas,
            status.available_replicas,
            status.invocation_count
        ),
        (1, 1, 0)
    );

    assert_eq!(scale(0).await.status, StatusCode::ACCEPTED);
    assert_eq!(function_status(&http, &gateway, "scaled").await.replicas, 0);

    let bad = http
        .send(
            Method::POST,
            &format!("{}/system/scale-function/scaled", gateway.url()),
            &[],
            "{}",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn system_functions_lists_every_function_in_the_openfaas_shape() {
    let spec = dev_gateway::FunctionSpec {
        labels: [("com.openfaas.scale.zero".to_owned(), "true".to_owned())].into(),
        image: "ghcr.io/example/echo:dev".to_owned(),
        ..echo("one")
    };
    let gateway = DevGateway::new(vec![spec, echo("two")])
        .start()
        .await
        .unwrap();
    let reply = Http::new()
        .get(&format!("{}/system/functions", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let list = reply.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let one = &list[0];
    for field in [
        "name",
        "image",
        "namespace",
        "envProcess",
        "labels",
        "annotations",
        "replicas",
        "availableReplicas",
        "invocationCount",
        "coldStartMs",
    ] {
        assert!(one.get(field).is_some(), "missing {field} in {one}");
    }
    assert_eq!(one["name"], "one");
    assert_eq!(one["image"], "ghcr.io/example/echo:dev");
    assert_eq!(one["labels"]["com.openfaas.scale.zero"], "true");
    assert_eq!(one["namespace"], "openfaas-fn");
    assert!(
        one["envProcess"]
            .as_str()
            .unwrap()
            .ends_with("dev-gateway-echo")
    );
    assert_eq!(list[1]["name"], "two");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn children_get_runtime_env_and_only_their_own_secrets() {
    let secrets = temp_dir("secrets");
    std::fs::write(secrets.join("groq-api-key"), "gsk-test\n").unwrap();
    std::fs::write(secrets.join("other-secret"), "not for you").unwrap();
    let spec = echo("env")
        .with_env("FROM_SPEC", "spec-value")
        .with_env("healthcheck_interval", "5s")
        .with_secrets(["groq-api-key", "not-created"]);
    let gateway = DevGateway {
        secrets_dir: Some(secrets.clone()),
        ..DevGateway::new(vec![spec])
    }
    .start()
    .await
    .unwrap();
    let http = Http::new();
    let env = http
        .get(&format!("{}/function/env/_/env", gateway.url()))
        .await
        .json();
    assert_eq!(env["FROM_SPEC"], "spec-value");
    assert_eq!(
        env["healthcheck_interval"], "5s",
        "the function's own value beats the local default"
    );
    assert_eq!(env["OPENFAAS_GATEWAY_URL"], gateway.url().as_str());
    let upstream = env["upstream_url"].as_str().unwrap();
    assert!(upstream.starts_with("http://127.0.0.1:"), "{upstream}");
    let secrets_dir = env["SECRETS_DIR"].as_str().unwrap();
    assert!(secrets_dir.ends_with(".mounts/env"), "{secrets_dir}");

    let visible = http
        .get(&format!("{}/function/env/_/secrets", gateway.url()))
        .await
        .json();
    assert_eq!(visible, serde_json::json!({"groq-api-key": "gsk-test\n"}));
    gateway.shutdown().await.unwrap();
    std::fs::remove_dir_all(&secrets).unwrap();
}

#[tokio::test]
async fn functions_can_chain_through_the_gateway_url_they_are_given() {
    let gateway = DevGateway::new(vec![echo("caller"), echo("callee")])
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let env = http
        .get(&format!("{}/function/caller/_/env", gateway.url()))
        .await
        .json();
    let gateway_url = env["OPENFAAS_GATEWAY_URL"].as_str().unwrap().to_owned();
    // What a function does to call another one.
    let reply = http
        .send(
            Method::GET,
            &format!("{gateway_url}/function/callee/x"),
            &[("x-call-id", "chain-1")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-call-id"][0], "chain-1");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_hanging_up_does_not_abort_the_cold_start() {
    let spec = echo("patient").with_env("ECHO_HEALTH_DELAY_MS", "300");
    let gateway = DevGateway::new(vec![spec]).start().await.unwrap();
    let http = Http::new();
    let url = format!("{}/function/patient", gateway.url());
    let impatient = tokio::spawn({
        let http = http.clone();
        async move { http.get(&url).await }
    });
    eventually("the cold start to begin", || async {
        let status = function_status(&http, &gateway, "patient").await;
        (status.replicas == 1 && status.available_replicas == 0).then_some(())
    })
    .await;
    impatient.abort();
    assert!(impatient.await.unwrap_err().is_cancelled());
    eventually("the start to complete anyway", || async {
        (function_status(&http, &gateway, "patient")
            .await
            .available_replicas
            == 1)
            .then_some(())
    })
    .await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_open_stream_keeps_the_function_from_idling_out() {
    let idle = Duration::from_millis(100);
    let gateway = DevGateway::new(vec![
        echo("streaming").with_idle(idle),
        echo("control").with_idle(idle),
    ])
    .start()
    .await
    .unwrap();
    let http = Http::new();
    let base = gateway.url();
    let response = http
        .open(
            Method::GET,
            &format!("{base}/function/streaming/_/stream"),
            &[],
            "",
        )
        .await;
    let mut body = response.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first\n");

    // `control` is called after the stream began, so once it has idled out the
    // streaming function has been quiet for longer than its idle time too.
    http.get(&format!("{base}/function/control")).await;
    eventually("control to idle out", || async {
        (function_status(&http, &gateway, "control").await.replicas == 0).then_some(())
    })
    .await;
    assert_eq!(
        function_status(&http, &gateway, "streaming").await.replicas,
        1,
        "a function must not be stopped while a response is streaming"
    );

    http.get(&format!("{base}/function/streaming/_/release"))
        .await;
    let rest = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second\nthird\n");
    eventually("streaming to idle out after the stream ended", || async {
        (function_status(&http, &gateway, "streaming").await.replicas == 0).then_some(())
    })
    .await;
    gateway.shutdown().await.unwrap();
}
