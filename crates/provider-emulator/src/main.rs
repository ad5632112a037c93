//! `provider-emulator`: runs one emulator per `--listen FLAVOR=ADDR`, writes
//! the credentials clients need into `--keys-dir` under the fleet's secret
//! names, prints `ready <flavor> <base_url>` per emulator once listening,
//! and exits 0 on SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use provider_emulator::{
    ClientSecrets, Credentials, Distribution, Emulator, EmulatorConfig, Error, Fault, FaultPlan,
    FaultRate, LatencyModel, ProviderFlavor,
};
use tokio::net::TcpListener;

/// Local emulators of the LLM providers' wire protocols.
#[derive(Debug, Parser)]
#[command(name = "provider-emulator", version)]
struct Args {
    /// An emulator to start, as FLAVOR=HOST:PORT (port 0 picks a free one).
    /// Flavors: ollama, openai, groq, openrouter, deepseek, mistral, vllm,
    /// vertex, gemini, anthropic, bedrock. Repeatable.
    #[arg(long = "listen", value_name = "FLAVOR=ADDR", required = true)]
    listen: Vec<String>,
    /// Folder to write client credentials into, one file per secret
    /// (groq-api-key, vertex-service-account, aws-access-key-id, ...).
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Accept requests without checking credentials.
    #[arg(long)]
    no_auth: bool,
    /// Answer at once: no time to first token, no output pacing.
    #[arg(long, conflicts_with_all = ["ttft_ms", "latency_ms", "tokens_per_second"])]
    instant: bool,
    /// Mean time to first token in milliseconds (default: each provider's published figure).
    #[arg(long, value_name = "MS")]
    ttft_ms: Option<f64>,
    /// Same as --ttft-ms.
    #[arg(long, value_name = "MS", conflicts_with = "ttft_ms")]
    latency_ms: Option<f64>,
    /// Standard deviation of the time to first token (log-normal); 0 = fixed.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    jitter_ms: f64,
    /// Output speed; 0 = instant (default: each provider's published figure).
    #[arg(long, value_name = "N")]
    tokens_per_second: Option<f64>,
    /// A fault with its per-request probability, as NAME=P (e.g.
    /// rate_limit=0.05), or NAME*N for the next N requests. Repeatable.
    #[arg(long = "fault", value_name = "NAME=P|NAME*N")]
    faults: Vec<String>,
    /// Seed for latency draws, fault rates, ids, padding and API keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Embedding size when a request does not ask for one.
    #[arg(long, value_name = "N")]
    embedding_dimensions: Option<usize>,
}

fn parse_listen(spec: &str) -> Result<(ProviderFlavor, String), Error> {
    let (flavor, addr) = spec
        .split_once('=')
        .ok_or_else(|| Error::InvalidConfig(format!("--listen {spec:?} is not FLAVOR=ADDR")))?;
    Ok((flavor.parse()?, addr.to_owned()))
}

fn parse_faults(specs: &[String]) -> Result<FaultPlan, Error> {
    let mut plan = FaultPlan::none();
    for spec in specs {
        if let Some((name, p)) = spec.split_once('=') {
            let probability: f64 = p
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("--fault {spec:?}: bad probability")))?;
            plan.rates.push(FaultRate {
                fault: name.parse()?,
                probability,
            });
        } else if let Some((name, n)) = spec.split_once('*') {
            let count: usize = n
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("--fault {spec:?}: bad count")))?;
            let fault: Fault = name.parse()?;
            plan.next.extend(std::iter::repeat_n(fault, count));
        } else {
            return Err(Error::InvalidConfig(format!(
                "--fault {spec:?} is not NAME=P or NAME*N"
            )));
        }
    }
    plan.validate()?;
    Ok(plan)
}

fn latency(args: &Args, flavor: ProviderFlavor) -> LatencyModel {
    if args.instant {
        return LatencyModel::zero();
    }
    let mut model = flavor.default_latency();
    if let Some(ms) = args.ttft_ms.or(args.latency_ms) {
        model.ttft = if args.jitter_ms > 0.0 {
            Distribution::LogNormal {
                mean_ms: ms,
                jitter_ms: args.jitter_ms,
            }
        } else {
            Distribution::Fixed { ms }
        };
    }
    if let Some(tps) = args.tokens_per_second {
        model.tokens_per_second = (tps > 0.0).then_some(tps);
    }
    model
}

async fn write_secrets(dir: &Path, secrets: &ClientSecrets) -> Result<(), Error> {
    tokio::fs::create_dir_all(dir).await?;
    for (name, value) in &secrets.0 {
        let path = dir.join(name);
        tokio::fs::write(&path, value).await?;
        restrict(&path)?;
    }
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<(), Error> {
    Ok(())
}

async fn run(args: Args) -> Result<(), Error> {
    let plan = parse_faults(&args.faults)?;
    let mut emulators: Vec<Emulator> = Vec::new();
    for spec in &args.listen {
        let (flavor, addr) = parse_listen(spec)?;
        let listener = TcpListener::bind(&addr).await?;
        let root = format!("http://{}", listener.local_addr()?);
        let (credentials, secrets) = if args.no_auth {
            (Credentials::None, ClientSecrets::default())
        } else {
            Credentials::generate(flavor, &root, args.seed)?
        };
        if let Some(dir) = &args.keys_dir {
            write_secrets(dir, &secrets).await?;
        }
        let mut config = EmulatorConfig::new(flavor)
            .with_credentials(credentials)
            .with_latency(latency(&args, flavor))
            .with_faults(plan.clone())
            .with_seed(args.seed);
        if let Some(dims) = args.embedding_dimensions {
            config.embedding_dimensions = dims;
        }
        emulators.push(Emulator::start(listener, config).await?);
    }
    {
        let mut out = std::io::stdout().lock();
        for emu in &emulators {
            writeln!(out, "ready {} {}", emu.flavor(), emu.base_url())?;
        }
        out.flush()?;
    }
    wait_for_signal().await?;
    for emu in emulators {
        emu.shutdown().await;
    }
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), Error> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_flags_parse() {
        let plan = parse_faults(&["rate_limit=0.05".into(), "hang*2".into()]).unwrap();
        assert_eq!(plan.rates[0].fault, Fault::RateLimit);
        assert_eq!(plan.next, vec![Fault::Hang, Fault::Hang]);
        assert!(parse_faults(&["rate_limit".into()]).is_err());
        assert!(parse_faults(&["rate_limit=2".into()]).is_err());
        assert!(parse_faults(&["nope=0.1".into()]).is_err());
        assert!(parse_listen("groq=127.0.0.1:0").is_ok());
        assert!(parse_listen("groq").is_err());
    }
}
