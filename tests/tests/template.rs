//! The rust-fleet template's image build, checked without Docker: the
//! Dockerfile's settings read from the file (release profile, user, target
//! platform, cache) and `build-function.sh`, the script the build stage runs,
//! driven with a stand-in cargo.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use fleet_tests::repo_root;

fn dockerfile() -> String {
    fs::read_to_string(repo_root().join("template/rust-fleet/Dockerfile")).unwrap()
}

/// Dockerfile instructions with their continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// `KEY="value"` pairs of every ENV instruction of the stage named `stage`.
fn stage_env(dockerfile: &str, stage: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut in_stage = false;
    for instruction in instructions(dockerfile) {
        if instruction.starts_with("FROM ") {
            in_stage = instruction.ends_with(&format!(" AS {stage}"));
        } else if in_stage && let Some(rest) = instruction.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (key, value) = pair.split_once('=').unwrap();
                env.insert(key.to_owned(), value.trim_matches('"').to_owned());
            }
        }
    }
    env
}

fn toml_scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => panic!("unexpected profile value {other:?}"),
    }
}

#[test]
fn the_image_builds_with_the_workspaces_release_profile() {
    let workspace: toml::Table =
        toml::from_str(&fs::read_to_string(repo_root().join("Cargo.toml")).unwrap()).unwrap();
    let profile = workspace["profile"]["release"].as_table().unwrap();
    let expected: BTreeMap<String, String> = profile
        .iter()
        .map(|(key, value)| {
            (
                format!(
                    "CARGO_PROFILE_RELEASE_{}",
                    key.to_ascii_uppercase().replace('-', "_")
                ),
                toml_scalar(value),
            )
        })
        .collect();
    let env = stage_env(&dockerfile(), "build");
    let given: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with("CARGO_PROFILE_RELEASE_"))
        .collect();
    assert_eq!(
        given, expected,
        "the Dockerfile's CARGO_PROFILE_RELEASE_* must be the workspace's [profile.release]"
    );
    assert!(expected.contains_key("CARGO_PROFILE_RELEASE_LTO"));
    assert!(expected.contains_key("CARGO_PROFILE_RELEASE_STRIP"));
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user() {
    let users: Vec<String> = instructions(&dockerfile())
        .into_iter()
        .filter_map(|i| i.strip_prefix("USER ").map(str::to_owned))
        .collect();
    assert_eq!(users.len(), 1, "{users:?}");
    let (uid, gid) = users[0].split_once(':').expect("USER uid:gid");
    let uid: u32 = uid.parse().expect("a numeric uid (runAsNonRoot checks it)");
    let gid: u32 = gid.parse().expect("a numeric gid");
    assert!(uid != 0 && gid != 0, "{users:?}");
    // distroless's nonroot user, which owns nothing the function writes.
    assert_eq!((uid, gid), (65532, 65532));
}

#[test]
fn the_build_stage_cross_compiles_for_the_target_platform() {
    let instructions = instructions(&dockerfile());
    let build_from = instructions
        .iter()
        .position(|i| i.starts_with("FROM ") && i.ends_with(" AS build"))
        .unwrap();
    // The compiler runs on the build machine...
    assert!(
        instructions[build_from].contains("--platform=${BUILDPLATFORM"),
        "{}",
        instructions[build_from]
    );
    let stage_end = instructions[build_from + 1..]
        .iter()
        .position(|i| i.starts_with("FROM "))
        .map_or(instructions.len(), |p| build_from + 1 + p);
    let stage = &instructions[build_from + 1..stage_end];
    // ...and builds for TARGETPLATFORM, declared in the stage before use.
    let declared = stage
        .iter()
        .position(|i| i == "ARG TARGETPLATFORM")
        .expect("ARG TARGETPLATFORM in the build stage");
    let build = stage
        .iter()
        .position(|i| i.contains("build-function.sh /src"))
        .expect("the build runs build-function.sh");
    assert!(declared < build);
    let run = &stage[build];
    assert!(run.contains("CARGO_BUILD_TARGET=\"$(xx-cargo --print-target-triple)\""));
    assert!(run.contains("BUILD_CARGO=xx-cargo"));
    assert!(run.contains("xx-verify --static /out/handler"));
    // One target cache per platform; never a bare shared one.
    assert!(
        run.contains("id=rust-fleet-target-${TARGETPLATFORM},target=/cargo-target"),
        "{run}"
    );
    assert!(
        !run.contains("find "),
        "no copying whichever executable is found: {run}"
    );
    // The ship stage takes the watchdog built for the target.
    assert!(instructions.iter().any(|i| i.starts_with(
        "FROM --platform=${TARGETPLATFORM:-linux/amd64} ghcr.io/openfaas/of-watchdog:"
    )));
}

/// A handler folder named `name`, with a stand-in cargo that "builds" every
/// binary it is asked for and leaves another function's binary beside it.
fn fake_handler(dir: &Path, name: &str) -> std::path::PathBuf {
    let handler = dir.join("handler");
    fs::create_dir_all(handler.join("src")).unwrap();
    fs::write(
        handler.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[dependencies]\nname = \"not-this\"\n"
        ),
    )
    .unwrap();
    let cargo = dir.join("fake-cargo");
    fs::write(
        &cargo,
        "#!/bin/sh\n\
         # fake-cargo build --release --bin NAME\n\
         [ \"$1 $2 $3\" = \"build --release --bin\" ] || exit 64\n\
         dir=\"$CARGO_TARGET_DIR/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}release\"\n\
         mkdir -p \"$dir\"\n\
         printf 'binary %s\\n' \"$4\" > \"$dir/$4\"; chmod +x \"$dir/$4\"\n\
         printf 'other\\n' > \"$dir/zz-other-function\"; chmod +x \"$dir/zz-other-function\"\n",
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    handler
}

fn run_build(dir: &Path, handler: &Path, target: Option<&str>) -> Output {
    let mut command = Command::new("sh");
    command
        .arg(repo_root().join("template/rust-fleet/build-function.sh"))
        .arg(handler)
        .arg(dir.join("out"))
        .env("BUILD_CARGO", dir.join("fake-cargo"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CARGO_BUILD_TARGET");
    if let Some(target) = target {
        command.env("CARGO_BUILD_TARGET", target);
    }
    command.output().unwrap()
}

#[test]
fn build_function_copies_exactly_the_packages_binary() {
    for target in [None, Some("aarch64-unknown-linux-musl")] {
        let dir = tempfile::tempdir().unwrap();
        let handler = fake_handler(dir.path(), "provider-proxy");
        let output = run_build(dir.path(), &handler, target);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out = dir.path().join("out");
        assert_eq!(
            fs::read_to_string(out.join("handler")).unwrap(),
            "binary provider-proxy\n"
        );
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["assets", "handler"]);
    }
}

#[test]
fn build_function_refuses_missing_or_altered_assets() {
    let dir = tempfile::tempdir().unwrap();
    let handler = fake_handler(dir.path(), "embed");
    fs::create_dir_all(handler.join("assets/model")).unwrap();
    fs::write(handler.join("assets/model/weights"), "the real weights").unwrap();
    // sha256 of "the real weights".
    let hash = Command::new("sha256sum")
        .arg(handler.join("assets/model/weights"))
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    let hash = hash.split_whitespace().next().unwrap().to_owned();
    fs::write(
        handler.join("assets.sha256"),
        format!("{hash}  assets/model/weights\n"),
    )
    .unwrap();

    let built = run_build(dir.path(), &handler, None);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(dir.path().join("out/assets/model/weights").exists());

    fs::write(handler.join("assets/model/weights"), "other weights").unwrap();
    let altered = run_build(dir.path(), &handler, None);
    assert!(!altered.status.success());
    assert!(String::from_utf8_lossy(&altered.stderr).contains("do not match assets.sha256"));

    fs::remove_file(handler.join("assets/model/weights")).unwrap();
    let missing = run_build(dir.path(), &handler, None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scripts/fetch-model.sh"));
}

#[test]
fn the_embed_functions_model_is_pinned_where_the_build_checks_it() {
    let root = repo_root();
    let pinned = fs::read_to_string(root.join("functions/embed/assets.sha256")).unwrap();
    let files: Vec<&str> = pinned
        .lines()
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "assets/model/model.safetensors",
            "assets/model/tokenizer.json",
            "assets/model/config.json"
        ]
    );
    // fetch-model.sh reads the same list.
    let fetch = fs::read_to_string(root.join("scripts/fetch-model.sh")).unwrap();
    assert!(fetch.contains("functions/embed/assets.sha256"));
}
