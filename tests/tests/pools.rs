//! provider-proxy spreads an in-cluster provider over its replicas
//! (`OLLAMA_BASE_URLS`), placing each call on the least busy one.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use fleet_tests::{Fleet, FleetOptions};
use provider_emulator::{Emulator, EmulatorConfig, LatencyModel, ProviderFlavor};
use serde_json::json;

async fn slow_ollama() -> Emulator {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    Emulator::start(
        listener,
        EmulatorConfig::instant(ProviderFlavor::Ollama)
            .with_latency(LatencyModel::fixed(1000.0, None)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_spread_over_the_replicas() {
    let replicas = [slow_ollama().await, slow_ollama().await];
    let urls: Vec<String> = replicas.iter().map(Emulator::base_url).collect();
    let fleet = Fleet::start(FleetOptions {
        env: BTreeMap::from([("OLLAMA_BASE_URLS".to_owned(), urls.join(","))]),
        ..FleetOptions::default()
    })
    .await;
    let body = json!({"provider":"ollama","model":"llama3.2","task":"generate","private":true,
                      "messages":[{"role":"user","content":"hello replicas"}]})
    .to_string();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let http = fleet.http.clone();
            let url = fleet.url("provider-proxy", "");
            let body = body.clone();
            tokio::spawn(async move { http.post(url).body(body).send().await.unwrap().status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let served: Vec<u64> = replicas
        .iter()
        .map(|r| r.stats().path_count("/api/chat"))
        .collect();
    assert_eq!(served.iter().sum::<u64>(), 8, "{served:?}");
    assert!(
        served.iter().all(|n| *n >= 2),
        "one replica took the load: {served:?}"
    );
    // The fleet's own single Ollama is not used when replicas are listed.
    assert_eq!(fleet.ollama.stats().path_count("/api/chat"), 0);

    let listing: serde_json::Value = fleet
        .http
        .get(fleet.url("provider-proxy", "/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoints = listing["pools"]["ollama"]["endpoints"].as_array().unwrap();
    let picks: u64 = endpoints.iter().map(|e| e["picks"].as_u64().unwrap()).sum();
    assert_eq!(picks, 8, "{listing}");
    assert!(endpoints.iter().all(|e| e["outstanding"] == 0), "{listing}");
    fleet.stop().await;
    for r in replicas {
        r.shutdown().await;
    }
}
