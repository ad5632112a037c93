//! Reloading: a changed valid file replaces the policy, a bad edit is
//! refused and the old policy kept.

use routing_core::Task;
use routing_core::env::Env;
use routing_core::policy::{
    BudgetView, DEFAULT_POLICY, LiveStats, PolicyWatcher, ReloadOutcome, SelectionInput,
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
        .poll_every(std::time::Duration::from_secs(3600));
    assert_eq!(fast_budget_model(&watcher), "groq/llama-3.1-8b-instant");
    // Dropping joins the thread; a hang here fails the test run.
    drop(watcher);
}
