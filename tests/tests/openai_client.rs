//! The official `openai` Python package as a client of llm-router's
//! OpenAI-compatible API, through the gateway (`tests/python/openai_client.py`;
//! `.ci/run` installs the package from `tests/python/requirements.txt`).

use fleet_tests::{Fleet, FleetOptions, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_works_against_llm_router() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "the openai package is missing: pip install -r tests/python/requirements.txt"
    );
    // Embeddings from the Ollama backend keep this test free of the model download.
    let fleet = Fleet::start(FleetOptions {
        env: [("EMBED_BACKEND".to_owned(), "ollama".to_owned())].into(),
        ..FleetOptions::default()
    })
    .await;
    let output = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/python/openai_client.py"))
        .arg(fleet.gateway.url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    fleet.stop().await;
}
