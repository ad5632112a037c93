//! Configuration read from environment variables, without touching the
//! process environment in tests.

use std::collections::HashMap;
use std::str::FromStr;

/// `OPENFAAS_GATEWAY_URL`: where functions reach each other.
pub const ENV_GATEWAY_URL: &str = "OPENFAAS_GATEWAY_URL";
/// The gateway URL used inside an OpenFaaS cluster.
pub const DEFAULT_GATEWAY_URL: &str = "http://gateway.openfaas:8080";
/// `SECRETS_DIR`: the folder OpenFaaS mounts secrets into.
pub const ENV_SECRETS_DIR: &str = "SECRETS_DIR";
/// Where OpenFaaS mounts secrets.
pub const DEFAULT_SECRETS_DIR: &str = "/var/openfaas/secrets";

/// A snapshot of environment variables.
///
/// Functions build one from the process at start-up; tests build one from
/// pairs, so no test ever mutates the shared process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

/// A variable held a value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct EnvError {
    /// Variable name.
    pub name: String,
    /// The offending value.
    pub value: String,
    /// What was expected.
    pub reason: String,
}

impl Env {
    /// Reads the current process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// Builds an environment from explicit pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `default`.
    pub fn get_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// Parses `name` with [`FromStr`], or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|e: T::Err| EnvError {
                name: name.to_owned(),
                value: value.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset_and_bad_numbers_name_the_variable() {
        let env = Env::from_pairs([("A", ""), ("N", "12"), ("BAD", "x1")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get_or("A", "d"), "d");
        assert_eq!(env.parse_or("N", 0u32), Ok(12));
        assert_eq!(env.parse_or("MISSING", 7u32), Ok(7));
        let err = env.parse_or("BAD", 0u32).unwrap_err();
        assert_eq!(err.name, "BAD");
        assert!(err.to_string().contains("BAD=\"x1\""));
    }
}
