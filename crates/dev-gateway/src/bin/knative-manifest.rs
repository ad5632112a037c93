//! Prints Knative Services for the functions of a stack file, with what
//! `faas-cli generate --api=serving.knative.dev/v1` leaves out (scaling
//! annotations, resources, timeout, port, non-root security context).
//!
//! ```text
//! knative-manifest [STACK_FILE] [NAMESPACE]   # stack.yml, openfaas-fn
//! REGISTRY=ghcr.io/you TAG=0.1.0 VERTEX_PROJECT=p knative-manifest | kubectl apply -f -
//! ```
//! `${VAR}` in the stack file expands from the environment, as in faas-cli.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use dev_gateway::Stack;
use dev_gateway::knative;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| "stack.yml".to_owned()));
    let namespace = args.next().unwrap_or_else(|| "openfaas-fn".to_owned());
    let yaml = Stack::load(&path, &|name| std::env::var(name).ok())
        .and_then(|stack| knative::services(&stack, &namespace))
        .and_then(|services| knative::to_yaml(&services));
    match yaml {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "knative-manifest: {err}");
            ExitCode::FAILURE
        }
    }
}
