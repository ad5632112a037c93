use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::client;

#[tokio::test]
async fn binary_prints_ready_lines_writes_keys_and_exits_cleanly_on_sigterm() {
    let keys = std::env::temp_dir().join(format!("provider-emulator-keys-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_provider-emulator"))
        .args([
            "--listen",
            "groq=127.0.0.1:0",
            "--listen",
            "ollama=127.0.0.1:0",
            "--listen",
            "vertex=127.0.0.1:0",
            "--listen",
            "bedrock=127.0.0.1:0",
        ])
        .arg("--keys-dir")
        .arg(&keys)
        .args(["--instant", "--fault", "rate_limit*1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ready = Vec::new();
    for _ in 0..4 {
        let line = lines.next_line().await.unwrap().unwrap();
        let parts: Vec<String> = line.split(' ').map(str::to_owned).collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], "ready");
        ready.push((parts[1].clone(), parts[2].clone()));
    }
    assert_eq!(ready[0].0, "groq");
    assert!(ready[0].1.starts_with("http://127.0.0.1:") && ready[0].1.ends_with("/openai/v1"));
    let groq_key = std::fs::read_to_string(keys.join("groq-api-key")).unwrap();
    assert!(groq_key.starts_with("gsk_"));
    let sa: Value = serde_json::from_str(
        &std::fs::read_to_string(keys.join("vertex-service-account")).unwrap(),
    )
    .unwrap();
    assert_eq!(sa["token_uri"], format!("{}/token", ready[2].1));
    assert!(
        std::fs::read_to_string(keys.join("aws-access-key-id"))
            .unwrap()
            .starts_with("AKIA")
    );
    assert!(keys.join("aws-secret-access-key").exists());

    let url = format!("{}/chat/completions", ready[0].1);
    let body = json!({"model":"llama-3.1-8b-instant","messages":[{"role":"user","content":"hi"}]});
    let first = client()
        .post(&url)
        .bearer_auth(&groq_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.status(),
        429,
        "--fault rate_limit*1 applies to the first request"
    );
    let second = client()
        .post(&url)
        .bearer_auth(&groq_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);

    // The admin API drives the same state.
    let admin = format!("{}/_emulator", ready[1].1);
    let put = client()
        .put(format!("{admin}/faults"))
        .json(&json!({"next":["server_error"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let chat = client().post(format!("{}/api/chat", ready[1].1)).json(&json!({"model":"llama3.2","messages":[{"role":"user","content":"marker-xyz"}],"stream":false})).send().await.unwrap();
    assert_eq!(chat.status(), 500);
    let stats: Value = client()
        .get(format!("{admin}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total_requests"], 1);
    assert_eq!(stats["by_status"]["500"], 1);
    let recent: Value = client()
        .get(format!("{admin}/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(recent[0]["body"].as_str().unwrap().contains("marker-xyz"));
    assert_eq!(
        client()
            .post(format!("{admin}/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let stats: Value = client()
        .get(format!("{admin}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total_requests"], 0);

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    std::fs::remove_dir_all(&keys).unwrap();
}
