//! Reloading: a changed valid file replaces the policy, a bad edit is
//! refused and the old policy kept.

use std::time::Duration;

use routing_core::Task;
use routing_core::env::Env;
use routing_core::policy::{
    BreakerState, BudgetView, DEFAULT_POLICY, LiveStats, PolicyWatcher, ReloadOutcome,
    SelectionInput,
};
use routing_core::pricing::Catalogue;

fn fast_budget_model(watcher: &PolicyWatcher) -> String {
    let input = SelectionInput::new(Task::Generate, 200, false);
    watcher
        .current()
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .map(|d| d.primary.model.id.clone())
        .unwrap_or_else(|e| e.message)
}

const FAST: &str = "models = [\"groq/llama-3.1-8b-instant\", \"groq/openai/gpt-oss-20b\"]";
const FAST_SWAPPED: &str = "models = [\"groq/openai/gpt-oss-20b\", \"groq/llama-3.1-8b-instant\"]";

#[test]
fn reload_swaps_a_valid_edit_and_keeps_the_old_policy_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    let watcher = PolicyWatcher::new(&path, Catalogue::builtin().unwrap(), Env::default()).unwrap();
    assert_eq!(fast_budget_model(&watcher), "groq/llama-3.1-8b-instant");
    assert_eq!(watcher.check_now(), ReloadOutcome::Unchanged);

    // A valid edit takes effect.
    std::fs::write(&path, DEFAULT_POLICY.replace(FAST, FAST_SWAPPED)).unwrap();
    assert_eq!(watcher.check_now(), ReloadOutcome::Reloaded);
    assert_eq!(fast_budget_model(&watcher), "groq/openai/gpt-oss-20b");
    let held = watcher.current();

    // A bad edit is refused with its line; the policy in force stays.
    let bad = DEFAULT_POLICY
        .replace(FAST, FAST_SWAPPED)
        .replace("reject_status = 402", "reject_status = 403");
    std::fs::write(&path, &bad).unwrap();
    match watcher.check_now() {
        ReloadOutcome::Rejected(e) => {
            assert_eq!(e.field.as_deref(), Some("budgets.reject_status"));
            assert!(e.line.is_some());
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(fast_budget_model(&watcher), "groq/openai/gpt-oss-20b");
    assert!(watcher.last_error().is_some());
    // Reported once, not on every poll.
    assert_eq!(watcher.check_now(), ReloadOutcome::Unchanged);

    // A vanished file keeps the policy too.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(watcher.check_now(), ReloadOutcome::Unreadable(_)));
    assert_eq!(fast_budget_model(&watcher), "groq/openai/gpt-oss-20b");

    // Fixing the file takes effect and clears the error.
    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    assert_eq!(watcher.check_now(), ReloadOutcome::Reloaded);
    assert_eq!(fast_budget_model(&watcher), "groq/llama-3.1-8b-instant");
    assert!(watcher.last_error().is_none());

    // A request that took the policy before the reload keeps it.
    let input = SelectionInput::new(Task::Generate, 200, false);
    let d = held
        .select(&input, &LiveStats::default(), &BudgetView::unlimited())
        .unwrap();
    assert_eq!(d.primary.model.id, "groq/openai/gpt-oss-20b");
}

#[test]
fn a_bad_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY.replace("version = 1", "version = 7")).unwrap();
    let e = PolicyWatcher::new(&path, Catalogue::builtin().unwrap(), Env::default()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("version"));
    assert!(e.origin.ends_with("policy.toml"));
    let missing = dir.path().join("nope.toml");
    assert!(PolicyWatcher::new(&missing, Catalogue::builtin().unwrap(), Env::default()).is_err());
}

#[test]
fn from_env_reads_policy_path_and_model_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY.replace(FAST, FAST_SWAPPED)).unwrap();
    let env = Env::from_pairs([
        ("POLICY_PATH", path.to_str().unwrap()),
        ("POLICY_RELOAD_SECS", "0"),
        ("LOCAL_CHAT_MODEL", "qwen2.5:3b"),
    ]);
    let watcher = PolicyWatcher::from_env(&env).unwrap();
    assert_eq!(fast_budget_model(&watcher), "groq/openai/gpt-oss-20b");
    let policy = watcher.current();
    assert_eq!(
        policy.model("ollama/local").map(|m| m.model.as_str()),
        Some("qwen2.5:3b")
    );
    // A reload applies the environment again.
    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    assert_eq!(watcher.check_now(), ReloadOutcome::Reloaded);
    assert_eq!(
        watcher
            .current()
            .model("ollama/local")
            .map(|m| m.model.clone()),
        Some("qwen2.5:3b".to_owned())
    );
    // Without POLICY_PATH: the built-in policy, never reloaded.
    let fixed = PolicyWatcher::from_env(&Env::default()).unwrap();
    assert_eq!(fixed.current().origin(), "built-in");
    assert_eq!(fixed.check_now(), ReloadOutcome::Unchanged);
    // A bad POLICY_RELOAD_SECS is an error.
    let env = Env::from_pairs([
        ("POLICY_PATH", path.to_str().unwrap()),
        ("POLICY_RELOAD_SECS", "soon"),
    ]);
    assert!(PolicyWatcher::from_env(&env).is_err());
}

#[test]
fn the_polling_thread_stops_with_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    let watcher = PolicyWatcher::new(&path, Catalogue::builtin().unwrap(), Env::default())
        .unwrap()
        .poll_every(Duration::from_secs(3600));
    assert_eq!(fast_budget_model(&watcher), "groq/llama-3.1-8b-instant");
    // Dropping joins the thread; a hang here fails the test run.
    drop(watcher);
}

#[test]
fn a_reload_applies_live_settings_to_the_live_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    let watcher = PolicyWatcher::new(&path, Catalogue::builtin().unwrap(), Env::default()).unwrap();
    let live = watcher.live_stats();
    assert_eq!(live.config(), watcher.current().live_config());
    assert_eq!(live.config().breaker_failures, 5);
    let model = "groq/llama-3.1-8b-instant";
    for _ in 0..2 {
        live.observe(model, Duration::from_millis(300), false);
    }
    assert_eq!(live.breaker(model), BreakerState::Closed);

    // Three failures now open a breaker; three samples are trusted.
    let edited = DEFAULT_POLICY
        .replace("breaker_failures = 5", "breaker_failures = 3")
        .replace("min_samples = 10", "min_samples = 3");
    std::fs::write(&path, &edited).unwrap();
    assert_eq!(watcher.check_now(), ReloadOutcome::Reloaded);
    assert_eq!(live.config(), watcher.current().live_config());
    assert_eq!(live.config().breaker_failures, 3);
    // The failures counted before the reload still count.
    live.observe(model, Duration::from_millis(300), false);
    assert!(
        matches!(live.breaker(model), BreakerState::Open { .. }),
        "{:?}",
        live.breaker(model)
    );
    let other = "groq/openai/gpt-oss-20b";
    for _ in 0..3 {
        live.observe(other, Duration::from_millis(120), true);
    }
    assert_eq!(live.trusted_latency(other).map(|l| l.samples), Some(3));

    // A rejected edit leaves the settings in force.
    std::fs::write(
        &path,
        edited.replace("breaker_failures = 3", "breaker_failures = -1"),
    )
    .unwrap();
    assert!(matches!(watcher.check_now(), ReloadOutcome::Rejected(_)));
    assert_eq!(live.config().breaker_failures, 3);
}
