//! The `dev-gateway` command: load `stack.yml`, optionally build the function
//! binaries, serve until SIGTERM or SIGINT, then stop every function gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use crate::env_file::load_env_file;
use crate::go_duration::parse_go_duration;
use crate::{DevGateway, Error, FunctionSpec, SpecOptions, Stack};

/// Runs the functions of a stack.yml locally behind an OpenFaaS-compatible gateway.
#[derive(Debug, Clone, Parser)]
#[command(name = "dev-gateway", version, about)]
pub struct Args {
    /// The stack file.
    #[arg(long, default_value = "stack.yml")]
    pub stack: PathBuf,
    /// Address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder with one file per secret (name = secret name).
    #[arg(long, default_value = ".dev/secrets")]
    pub secrets_dir: PathBuf,
    /// KEY=VALUE file whose values override every function's stack environment.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Folder with one binary per function, named after the function
    /// [default: target/debug, or target/release with --release].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Run `cargo build --bins -p <fn>...` for all functions before serving.
    #[arg(long)]
    pub build: bool,
    /// Build and run release binaries.
    #[arg(long)]
    pub release: bool,
    /// Idle time (Go duration, e.g. 30s) after which any function is stopped;
    /// overrides the com.openfaas.scale.zero labels.
    #[arg(long, value_parser = duration_arg)]
    pub idle: Option<Duration>,
    /// How long a function may take to answer GET /_/health after spawning.
    #[arg(long, value_parser = duration_arg, default_value = "30s")]
    pub startup_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL when stopping a function.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub stop_timeout: Duration,
    /// Also expose secret NAME to FUNCTION, as FUNCTION=NAME: a secret the
    /// stack does not list (e.g. a further provider's key in development).
    /// Repeatable.
    #[arg(long = "secret", value_name = "FUNCTION=NAME", value_parser = secret_arg)]
    pub extra_secrets: Vec<(String, String)>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map_err(|e| e.to_string())
}

fn secret_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((function, name)) if !function.is_empty() && !name.is_empty() => {
            Ok((function.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?} is not FUNCTION=NAME")),
    }
}

impl Args {
    /// The binary folder in effect.
    pub fn bin_dir(&self) -> PathBuf {
        self.bin_dir.clone().unwrap_or_else(|| {
            PathBuf::from(if self.release {
                "target/release"
            } else {
                "target/debug"
            })
        })
    }

    /// Loads the stack and env file and turns them into a gateway configuration.
    pub fn gateway(&self) -> Result<DevGateway, Error> {
        let stack = Stack::load(&self.stack, &|name| std::env::var(name).ok())?;
        let env_overrides = match &self.env_file {
            Some(path) => load_env_file(path)?,
            None => Default::default(),
        };
        let options = SpecOptions {
            bin_dir: self.bin_dir(),
            env_overrides,
            idle_override: self.idle,
        };
        let mut functions = FunctionSpec::from_stack(&stack, &options)?;
        for (function, name) in &self.extra_secrets {
            let spec = functions
                .iter_mut()
                .find(|f| &f.name == function)
                .ok_or_else(|| Error::InvalidField {
                    path: self.stack.clone(),
                    field: format!("--secret {function}={name}"),
                    message: format!("the stack has no function {function}"),
                })?;
            if !spec.secrets.contains(name) {
                spec.secrets.push(name.clone());
            }
        }
        Ok(DevGateway {
            listen: self.listen,
            functions,
            secrets_dir: Some(self.secrets_dir.clone()),
            startup_timeout: self.startup_timeout,
            stop_timeout: self.stop_timeout,
            ..DevGateway::new(Vec::new())
        })
    }
}

/// Runs the command: load, build if asked, serve until SIGTERM/SIGINT, stop the
/// functions and return. A second signal during shutdown abandons the graceful
/// stop (children are then killed when the runtime ends).
pub async fn run(args: Args) -> Result<(), Error> {
    let config = args.gateway()?;
    if config.functions.is_empty() {
        tracing::warn!(stack = %args.stack.display(), "the stack has no functions");
    }
    if args.build {
        cargo_build(&config.functions, args.release).await?;
    }
    for spec in &config.functions {
        if !spec.command.is_file() {
            tracing::warn!(
                function = %spec.name,
                binary = %spec.command.display(),
                "binary not found; build it (or pass --build) before calling the function"
            );
        }
    }
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Error::System(format!("SIGTERM handler: {e}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Error::System(format!("SIGINT handler: {e}")))?;
    let gateway = config.start().await?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    tokio::select! {
        result = gateway.shutdown() => result,
        _ = terminate.recv() => Err(Error::System("second SIGTERM: shutdown abandoned".to_owned())),
        _ = interrupt.recv() => Err(Error::System("second SIGINT: shutdown abandoned".to_owned())),
    }
}

/// `cargo build --bins -p <fn>...` once for all functions, output inherited.
async fn cargo_build(functions: &[FunctionSpec], release: bool) -> Result<(), Error> {
    if functions.is_empty() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command.arg("build").arg("--bins");
    if release {
        command.arg("--release");
    }
    for spec in functions {
        command.arg("-p").arg(&spec.name);
    }
    tracing::info!(?command, "building functions");
    let status = command
        .status()
        .await
        .map_err(|e| Error::Build(format!("cannot run cargo: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(status.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_command_line() {
        let args = Args::parse_from(["dev-gateway"]);
        assert_eq!(args.stack, PathBuf::from("stack.yml"));
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.secrets_dir, PathBuf::from(".dev/secrets"));
        assert_eq!(args.bin_dir(), PathBuf::from("target/debug"));
        assert_eq!(args.idle, None);
        assert!(!args.build);
        assert_eq!(args.startup_timeout, Duration::from_secs(30));
    }

    #[test]
    fn parses_every_option() {
        let args = Args::parse_from([
            "dev-gateway",
            "--stack",
            "s.yml",
            "--listen",
            "0.0.0.0:9000",
            "--secrets-dir",
            "sec",
            "--env-file",
            "scripts/dev.env",
            "--bin-dir",
            "out",
            "--build",
            "--idle",
            "1m30s",
            "--stop-timeout",
            "2s",
        ]);
        assert_eq!(args.stack, PathBuf::from("s.yml"));
        assert_eq!(args.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(args.env_file, Some(PathBuf::from("scripts/dev.env")));
        assert_eq!(args.bin_dir(), PathBuf::from("out"));
        assert!(args.build);
        assert_eq!(args.idle, Some(Duration::from_secs(90)));
        assert_eq!(args.stop_timeout, Duration::from_secs(2));
        assert_eq!(
            Args::parse_from(["dev-gateway", "--release"]).bin_dir(),
            PathBuf::from("target/release")
        );
    }

    #[test]
    fn extra_secrets_reach_the_named_function_only() {
        let stack = format!("{}/../../stack.yml", env!("CARGO_MANIFEST_DIR"));
        let args = Args::parse_from([
            "dev-gateway",
            "--stack",
            &stack,
            "--secret",
            "provider-proxy=openai-api-key",
            "--secret",
            "provider-proxy=groq-api-key",
        ]);
        let gateway = args.gateway().unwrap();
        let proxy = gateway
            .functions
            .iter()
            .find(|f| f.name == "provider-proxy")
            .unwrap();
        assert!(proxy.secrets.iter().any(|s| s == "openai-api-key"));
        assert_eq!(
            proxy
                .secrets
                .iter()
                .filter(|s| *s == "groq-api-key")
                .count(),
            1
        );
        assert!(
            gateway
                .functions
                .iter()
                .filter(|f| f.name != "provider-proxy")
                .all(|f| !f.secrets.iter().any(|s| s == "openai-api-key"))
        );
        let unknown = Args::parse_from(["dev-gateway", "--stack", &stack, "--secret", "nope=x"]);
        assert!(unknown.gateway().is_err());
        assert!(Args::try_parse_from(["dev-gateway", "--secret", "no-equals"]).is_err());
    }

    #[test]
    fn rejects_bad_durations() {
        let err = Args::try_parse_from(["dev-gateway", "--idle", "5 minutes"]).unwrap_err();
        assert!(err.to_string().contains("5 minutes"), "{err}");
    }
}
