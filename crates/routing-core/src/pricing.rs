//! The price catalogue and cost from provider-reported usage.

use std::collections::HashMap;

use serde::Deserialize;

use crate::chat::Usage;
use crate::env::Env;

/// The catalogue shipped with the fleet.
pub const DEFAULT_CATALOGUE: &str = include_str!("../config/prices.toml");
/// `PRICES_PATH`: a price catalogue replacing the built-in one.
pub const ENV_PRICES_PATH: &str = "PRICES_PATH";

/// USD per one million tokens for one model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Provider name, e.g. `groq`.
    pub provider: String,
    /// The provider's model id, or `*` for every model of the provider.
    pub model: String,
    /// Uncached prompt tokens.
    pub input: f64,
    /// Generated tokens, reasoning included.
    pub output: f64,
    /// Prompt tokens read from the provider's cache (defaults to `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the provider's cache (defaults to `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// The most tokens the model generates in one answer, when known:
    /// provider-proxy caps `max_tokens` at it.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// When the price was read.
    pub as_of: String,
    /// Where the price was read.
    pub source: String,
}

impl Price {
    /// Cost in USD of one call with this usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let uncached = usage.input_tokens - cached - written;
        let per_token = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1e6;
        per_token(uncached, self.input)
            + per_token(cached, self.cached_input.unwrap_or(self.input))
            + per_token(written, self.cache_write.unwrap_or(self.input))
            + per_token(usage.output_tokens, self.output)
    }
}

/// A catalogue failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("price catalogue {origin}: {reason}")]
pub struct CatalogueError {
    /// File name or `built-in`.
    pub origin: String,
    /// What is wrong, with the line or entry.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    model: Vec<Price>,
}

/// Prices by provider and model.
#[derive(Debug, Clone)]
pub struct Catalogue {
    prices: HashMap<(String, String), Price>,
}

impl Catalogue {
    /// Parses and validates a catalogue in the `prices.toml` format.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogueError> {
        let error = |reason: String| CatalogueError {
            origin: origin.to_owned(),
            reason,
        };
        let file: CatalogueFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        let mut prices = HashMap::new();
        for price in file.model {
            let rates = [
                Some(price.input),
                Some(price.output),
                price.cached_input,
                price.cache_write,
            ];
            if rates
                .into_iter()
                .flatten()
                .any(|r| !r.is_finite() || r < 0.0)
            {
                return Err(error(format!(
                    "{}/{}: prices must be finite and not negative",
                    price.provider, price.model
                )));
            }
            let key = (price.provider.clone(), price.model.clone());
            if prices.insert(key, price.clone()).is_some() {
                return Err(error(format!(
                    "{}/{} is listed twice",
                    price.provider, price.model
                )));
            }
        }
        Ok(Self { prices })
    }

    /// The catalogue shipped with the fleet.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(DEFAULT_CATALOGUE, "built-in")
    }

    /// The catalogue at `PRICES_PATH`, else the built-in one: what both
    /// routing and metering price with.
    pub fn from_env(env: &Env) -> Result<Self, CatalogueError> {
        let Some(path) = env.get(ENV_PRICES_PATH) else {
            return Self::builtin();
        };
        let text = std::fs::read_to_string(path).map_err(|e| CatalogueError {
            origin: path.to_owned(),
            reason: format!("cannot read {ENV_PRICES_PATH}: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// The price of `model` at `provider`; a `*` entry covers any model.
    pub fn price(&self, provider: &str, model: &str) -> Option<&Price> {
        self.prices
            .get(&(provider.to_owned(), model.to_owned()))
            .or_else(|| self.prices.get(&(provider.to_owned(), "*".to_owned())))
    }

    /// Cost of a call, or `None` when the model has no price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.price(provider, model).map(|p| p.cost(usage))
    }

    /// Every price, for listing.
    pub fn iter(&self) -> impl Iterator<Item = &Price> {
        self.prices.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn from_env_reads_prices_path_or_falls_back_to_the_built_in_catalogue() {
        let builtin = Catalogue::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(
            builtin.iter().count(),
            Catalogue::builtin().unwrap().iter().count()
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            "[[model]]\nprovider = \"p\"\nmodel = \"m\"\ninput = 1.0\noutput = 2.0\nas_of = \"2026-01-01\"\nsource = \"test\"\n",
        )
        .unwrap();
        let path = path.display().to_string();
        let custom =
            Catalogue::from_env(&Env::from_pairs([(ENV_PRICES_PATH, path.as_str())])).unwrap();
        assert_eq!(custom.iter().count(), 1);
        assert_eq!(custom.price("p", "m").map(|p| p.output), Some(2.0));

        let missing = dir.path().join("missing.toml").display().to_string();
        let err = Catalogue::from_env(&Env::from_pairs([(ENV_PRICES_PATH, missing.as_str())]))
            .unwrap_err();
        assert_eq!(err.origin, missing);
        assert!(err.reason.starts_with("cannot read PRICES_PATH"), "{err}");
    }

    fn usage(input: u64, output: u64, cached: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            ..Usage::default()
        }
    }

    #[test]
    fn builtin_catalogue_prices_the_seed_models() {
        let catalogue = Catalogue::builtin().unwrap();
        let groq = catalogue
            .cost(
                "groq",
                "llama-3.1-8b-instant",
                &usage(1_000_000, 1_000_000, 0),
            )
            .unwrap();
        assert!((groq - (0.05 + 0.08)).abs() < 1e-12);
        let flash = catalogue
            .cost("vertex", "gemini-2.5-flash", &usage(2_000, 500, 1_000))
            .unwrap();
        let expected = (1_000.0 * 0.30 + 1_000.0 * 0.03 + 500.0 * 2.50) / 1e6;
        assert!((flash - expected).abs() < 1e-15);
        assert_eq!(
            catalogue.cost("ollama", "llama3.2", &usage(10, 10, 0)),
            Some(0.0)
        );
        assert_eq!(
            catalogue.cost("groq", "no-such-model", &usage(1, 1, 0)),
            None
        );
    }

    #[test]
    fn duplicate_and_negative_prices_are_rejected() {
        let entry = "[[model]]\nprovider=\"p\"\nmodel=\"m\"\ninput=1.0\noutput=1.0\nas_of=\"x\"\nsource=\"y\"\n";
        let twice = format!("{entry}{entry}");
        assert!(
            Catalogue::parse(&twice, "t")
                .unwrap_err()
                .reason
                .contains("twice")
        );
        let negative = entry.replace("input=1.0", "input=-1.0");
        assert!(Catalogue::parse(&negative, "t").is_err());
        let typo = entry.replace("output", "outptu");
        assert!(
            Catalogue::parse(&typo, "t")
                .unwrap_err()
                .reason
                .contains("outptu")
        );
    }

    proptest! {
        #[test]
        fn cost_is_monotonic_and_never_negative(
            input in 0u64..10_000_000, output in 0u64..10_000_000, cached in 0u64..20_000_000, extra in 1u64..1000
        ) {
            let catalogue = Catalogue::builtin().unwrap();
            let base = catalogue.cost("vertex", "gemini-2.5-flash", &usage(input, output, cached)).unwrap();
            prop_assert!(base >= 0.0);
            let more_out = catalogue.cost("vertex", "gemini-2.5-flash", &usage(input, output + extra, cached)).unwrap();
            prop_assert!(more_out > base);
            let more_in = catalogue.cost("vertex", "gemini-2.5-flash", &usage(input + extra, output, cached)).unwrap();
            prop_assert!(more_in >= base);
        }
    }
}
