//! Reproduces `faas-cli build --shrinkwrap -f stack.yml` without Docker and
//! checks that every function's build context is self-contained: the shared
//! crates are inside it and, laid out as the template's Dockerfile lays them
//! out, cargo resolves the function with the copied Cargo.lock alone.
//!
//! faas-cli (go-sdk builder.CreateBuildContext) does, per function:
//! 1. copy `template/<lang>/*` into `build/<fn>/`;
//! 2. overlay the handler folder (minus `build` and `template`) onto
//!    `build/<fn>/function/`;
//! 3. copy every `configuration.copy` path into `build/<fn>/function/<path>`.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Deserialize)]
struct Stack {
    functions: BTreeMap<String, Function>,
    configuration: Configuration,
}

#[derive(Deserialize)]
struct Function {
    lang: String,
    handler: String,
}

#[derive(Deserialize)]
struct Configuration {
    copy: Vec<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

fn copy_tree(from: &Path, to: &Path, skip_top: &[&str]) {
    let meta = fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if meta.is_file() {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
        return;
    }
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip_top.iter().any(|s| name == **s) || name == "target" {
            continue;
        }
        copy_tree(&entry.path(), &to.join(&name), &[]);
    }
}

fn relative(path: &str) -> &str {
    path.trim_start_matches("./").trim_end_matches('/')
}

fn listing(dir: &Path, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().unwrap().is_dir();
        out.push(format!(
            "{}{}{}",
            "  ".repeat(depth),
            name,
            if is_dir { "/" } else { "" }
        ));
        if is_dir && depth < 2 {
            out.extend(listing(&e.path(), depth + 1));
        }
    }
    out
}

fn locked_versions(lock: &Path) -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct Lock {
        package: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: String,
    }
    let lock: Lock = toml::from_str(&fs::read_to_string(lock).unwrap()).unwrap();
    lock.package
        .into_iter()
        .map(|p| (format!("{} {}", p.name, p.version), p.version))
        .collect()
}

fn cargo_resolves(manifest: &Path, target: &Path) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-musl",
            "--manifest-path",
        ])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(
        metadata.status.success(),
        "{}: cargo cannot resolve it: {}",
        manifest.display(),
        String::from_utf8_lossy(&metadata.stderr)
    );
    serde_json::from_slice(&metadata.stdout).unwrap()
}

#[test]
fn the_template_skeleton_builds_where_faas_cli_new_puts_it() {
    // `faas-cli new --lang rust-fleet x` copies the skeleton to ./x; the fleet
    // keeps functions at functions/<name>.
    let root = repo_root();
    let out = tempfile::tempdir().unwrap();
    copy_tree(&root.join("crates"), &out.path().join("crates"), &[]);
    copy_tree(
        &root.join("template/rust-fleet/function"),
        &out.path().join("functions/new-function"),
        &[],
    );
    fs::copy(
        root.join("Cargo.lock"),
        out.path().join("functions/new-function/Cargo.lock"),
    )
    .unwrap();
    let metadata = cargo_resolves(
        &out.path().join("functions/new-function/Cargo.toml"),
        &out.path().join("target"),
    );
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"faas-runtime"), "{names:?}");
}

#[test]
fn every_function_gets_a_self_contained_build_context() {
    let root = repo_root();
    let stack: Stack =
        serde_saphyr::from_str(&fs::read_to_string(root.join("stack.yml")).unwrap()).unwrap();
    assert_eq!(
        stack.functions.keys().collect::<Vec<_>>(),
        ["classify", "embed", "llm-router", "provider-proxy"]
    );
    let out = tempfile::tempdir().unwrap();
    let workspace_lock = locked_versions(&root.join("Cargo.lock"));

    for (name, function) in &stack.functions {
        // faas-cli's build context.
        let context = out.path().join("build").join(name);
        copy_tree(&root.join("template").join(&function.lang), &context, &[]);
        copy_tree(
            &root.join(relative(&function.handler)),
            &context.join("function"),
            &["build", "template"],
        );
        for path in &stack.configuration.copy {
            copy_tree(
                &root.join(relative(path)),
                &context.join("function").join(relative(path)),
                &[],
            );
        }
        for required in [
            "Dockerfile",
            "template.yml",
            "build-function.sh",
            "function/Cargo.toml",
            "function/src/main.rs",
            "function/Cargo.lock",
            "function/crates/routing-core/Cargo.toml",
            "function/crates/faas-runtime/Cargo.toml",
        ] {
            assert!(
                context.join(required).exists(),
                "{name}: build context lacks {required}"
            );
        }
        let manifest = fs::read_to_string(context.join("function/Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name}: the handler's manifest must replace the template skeleton's"
        );
        assert!(
            !manifest.contains("workspace = true"),
            "{name}: no workspace inheritance in a copied manifest"
        );
        println!("build/{name}/\n{}", listing(&context, 1).join("\n"));

        // The Dockerfile's geometry: /src/crates and /src/functions/handler.
        let src = out.path().join("docker").join(name);
        copy_tree(&context.join("function/crates"), &src.join("crates"), &[]);
        copy_tree(
            &context.join("function"),
            &src.join("functions/handler"),
            &["crates"],
        );
        let metadata = cargo_resolves(
            &src.join("functions/handler/Cargo.toml"),
            &out.path().join("target"),
        );
        let packages = metadata["packages"].as_array().unwrap();
        let core = packages
            .iter()
            .find(|p| p["name"] == "routing-core")
            .unwrap_or_else(|| panic!("{name}: routing-core is not in the build"));
        assert!(
            core["manifest_path"]
                .as_str()
                .unwrap()
                .starts_with(src.join("crates").to_str().unwrap()),
            "{name}: routing-core must come from the copied crates"
        );
        // Versions stay pinned by the copied lock file.
        let resolved = locked_versions(&src.join("functions/handler/Cargo.lock"));
        for key in resolved.keys() {
            let is_fleet_crate = key.starts_with(name.as_str())
                || key.starts_with("handler ")
                || ["routing-core ", "faas-runtime "]
                    .iter()
                    .any(|c| key.starts_with(c));
            assert!(
                is_fleet_crate || workspace_lock.contains_key(key),
                "{name}: {key} is not the version pinned in the workspace Cargo.lock"
            );
        }
    }
}
