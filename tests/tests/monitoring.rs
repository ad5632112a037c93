//! A real Prometheus (Debian's `prometheus`) scrapes the fleet through the
//! dev gateway during a mixed workload: every panel of the shipped dashboard
//! returns data, the alert rules load, and the cost and token counters add
//! up exactly to the usage the providers reported in the answers.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_tests::{Fleet, FleetOptions, repo_root};
use serde_json::{Value, json};

/// The functions Prometheus scrapes, as the alert rules name their jobs.
const JOBS: [&str; 4] = ["llm-router", "provider-proxy", "classify", "embed"];
/// Scrape interval (and timeout): short, so the test waits little, yet
/// long enough for a function that starts from zero on a loaded machine.
const SCRAPE: &str = "2s";

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Prometheus {
    /// Starts Prometheus scraping every function through `gateway` (host:port).
    fn start(gateway: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let monitoring = repo_root().join("scripts/monitoring");
        let mut config = format!(
            "global:\n  scrape_interval: {SCRAPE}\n  evaluation_interval: {SCRAPE}\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            monitoring.join("alerts.yml").display()
        );
        for job in JOBS {
            config.push_str(&format!(
                "  - job_name: {job}\n    metrics_path: /function/{job}/metrics\n    \
                 static_configs:\n      - targets: ['{gateway}']\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (apt-get install prometheus)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Runs an instant query; returns the result vector.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Vec<Value> {
        let answer: Value = http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query answer");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of a scalar-valued query, if it has one.
    async fn value(&self, http: &reqwest::Client, expr: &str) -> Option<f64> {
        let result = self.query(http, expr).await;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Polls `probe` until it holds (each poll one scrape interval apart),
    /// for at most a minute; returns whether it held.
    async fn until<F, Fut>(&self, mut probe: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        for _ in 0..120 {
            ticks.tick().await;
            if probe().await {
                return true;
            }
        }
        false
    }
}

/// Totals the answers reported, to compare with the scraped counters.
#[derive(Debug, Default)]
struct Served {
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Served {
    fn add(&mut self, answer: &Value) {
        self.cost_usd += answer["cost_usd"].as_f64().unwrap_or(0.0);
        self.input_tokens += answer["usage"]["input_tokens"].as_u64().unwrap_or(0);
        self.output_tokens += answer["usage"]["output_tokens"].as_u64().unwrap_or(0);
    }
}

/// The dashboard's queries, with Grafana's range variables made concrete.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m");
            queries.push((title.to_owned(), expr));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_and_cost_adds_up_to_what_was_served() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let gateway = fleet
        .url("llm-router", "/")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("gateway address")
        .to_owned();
    let prometheus = Prometheus::start(&gateway);

    // A mixed workload: cheap and strong models, a private call, a stream.
    let mut served = Served::default();
    let requests = [
        json!({"task":"generate","prompt":"hi","max_latency_ms":3000}),
        json!({"task":"generate","prompt":"Write a haiku about rivers.","max_latency_ms":5000}),
        json!({"task":"reason","prompt":"Prove that the square root of two is irrational.","max_latency_ms":20000}),
        json!({"task":"generate","prompt":"private notes","private":true,"max_latency_ms":5000}),
        json!({"task":"generate","prompt":"hello again","max_latency_ms":3000}),
    ];
    for request in requests {
        let answer = fleet.route(request).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        served.add(&answer.json);
    }
    let stream = fleet
        .http
        .post(fleet.url("llm-router", "/"))
        .json(&json!({"task":"generate","prompt":"count to five","stream":true,"max_latency_ms":5000}))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.expect("stream body");
    let done = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|event| event["type"] == "done")
        .unwrap_or_else(|| panic!("no done event in {text}"));
    served.add(&done);
    assert!(served.cost_usd > 0.0, "{served:?}");

    // Wait until Prometheus holds the workload: several scrapes of every
    // function, and the last one after the last answer.
    let http = &fleet.http;
    let expected_cost = served.cost_usd;
    let caught_up = prometheus
        .until(|| async {
            let scrapes = prometheus
                .value(http, "min(count_over_time(up[30s]))")
                .await
                .unwrap_or(0.0);
            let all_up = prometheus.value(http, "min(up)").await == Some(1.0);
            let cost = prometheus
                .value(http, "sum(llm_token_cost_usd_total)")
                .await
                .unwrap_or(-1.0);
            scrapes >= 3.0 && all_up && (cost - expected_cost).abs() < 1e-9
        })
        .await;
    let cost = prometheus
        .value(http, "sum(llm_token_cost_usd_total)")
        .await;
    assert!(
        caught_up,
        "scraped cost {cost:?} never matched the answers' {expected_cost}, or a function \
         was not up: {}",
        http.get(format!("{}/api/v1/targets", prometheus.url))
            .send()
            .await
            .expect("targets")
            .text()
            .await
            .expect("targets text")
    );

    // Every function is scraped.
    for job in JOBS {
        let up = prometheus
            .value(http, &format!("up{{job=\"{job}\"}}"))
            .await;
        assert_eq!(up, Some(1.0), "{job} is not scraped");
    }
    // Tokens add up exactly to the usage in the answers.
    for (kind, expected) in [
        ("input", served.input_tokens),
        ("output", served.output_tokens),
    ] {
        let scraped = prometheus
            .value(http, &format!("sum(llm_tokens_total{{kind=\"{kind}\"}})"))
            .await;
        assert_eq!(scraped, Some(expected as f64), "{kind} tokens");
    }
    // Spend by model sums to the total: no call escaped the model label.
    let by_model = prometheus
        .query(http, "sum by (provider, model) (llm_token_cost_usd_total)")
        .await;
    let summed: f64 = by_model
        .iter()
        .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        .sum();
    assert!((summed - expected_cost).abs() < 1e-9, "{by_model:?}");

    // The cost report prints the same spend and tokens.
    let output = tokio::process::Command::new("python3")
        .arg(repo_root().join("scripts/cost-report"))
        .args(["--prometheus", &prometheus.url, "--range", "10m", "--json"])
        .args(["--by", "provider,model"])
        .output()
        .await
        .expect("run scripts/cost-report");
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).expect("report JSON");
    let column = |name: &str| -> f64 { rows.iter().filter_map(|r| r[name].as_f64()).sum() };
    assert!(
        (column("cost_usd") - expected_cost).abs() < 1e-9,
        "{rows:?}"
    );
    assert_eq!(
        column("input_tokens"),
        served.input_tokens as f64,
        "{rows:?}"
    );
    assert_eq!(
        column("output_tokens"),
        served.output_tokens as f64,
        "{rows:?}"
    );

    // Every panel's query returns data.
    let queries = dashboard_queries(&repo_root().join("scripts/monitoring/dashboard.json"));
    assert!(queries.len() >= 16, "{queries:?}");
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        if prometheus.query(http, expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without data: {empty:#?}");

    // The alert rules loaded, and none fires on a healthy fleet.
    let rules: Value = http
        .get(format!("{}/api/v1/rules", prometheus.url))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("rules JSON");
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(loaded >= 7, "{rules}");
    let firing = prometheus
        .query(http, "ALERTS{alertstate=\"firing\"}")
        .await;
    assert!(firing.is_empty(), "{firing:?}");

    drop(prometheus);
    fleet.stop().await;
}
