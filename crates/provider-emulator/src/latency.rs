//! Simulated response time: a time to first token drawn from a seeded
//! distribution, then a steady output rate in tokens per second.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A distribution of delays in milliseconds. Draws are clamped at zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Distribution {
    /// Always the same delay.
    Fixed {
        /// The delay.
        ms: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean delay.
        mean_ms: f64,
        /// Standard deviation.
        jitter_ms: f64,
    },
    /// Log-normal with the given mean and standard deviation (of the delay
    /// itself, not of its logarithm): right-skewed like real latency.
    LogNormal {
        /// Mean delay.
        mean_ms: f64,
        /// Standard deviation.
        jitter_ms: f64,
    },
}

impl Distribution {
    /// No delay at all.
    pub const ZERO: Distribution = Distribution::Fixed { ms: 0.0 };

    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match *self {
            Self::Fixed { ms } => ms,
            Self::Normal { mean_ms, jitter_ms } => mean_ms + jitter_ms * standard_normal(rng),
            Self::LogNormal { mean_ms, jitter_ms } => {
                if mean_ms <= 0.0 {
                    0.0
                } else {
                    // Moments of the log-normal: sigma² = ln(1 + (sd/mean)²), mu = ln(mean) - sigma²/2.
                    let variance = (1.0 + (jitter_ms / mean_ms).powi(2)).ln();
                    let mu = mean_ms.ln() - variance / 2.0;
                    (mu + variance.sqrt() * standard_normal(rng)).exp()
                }
            }
        };
        millis(ms)
    }
}

/// How long a provider takes: time to first token, then output speed.
/// A non-streamed answer arrives after `ttft + output_tokens / tokens_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    /// Time to the first token (or the whole head of a non-streamed reply).
    pub ttft: Distribution,
    /// Output speed; `None` or a non-positive value means instant.
    pub tokens_per_second: Option<f64>,
}

impl LatencyModel {
    /// Answers at once: what tests want.
    pub fn zero() -> Self {
        Self {
            ttft: Distribution::ZERO,
            tokens_per_second: None,
        }
    }

    /// Fixed time to first token and output rate.
    pub fn fixed(ttft_ms: f64, tokens_per_second: Option<f64>) -> Self {
        Self {
            ttft: Distribution::Fixed { ms: ttft_ms },
            tokens_per_second,
        }
    }

    /// How long `tokens` output tokens take at the configured rate.
    pub fn generation_time(&self, tokens: u64) -> Duration {
        match self.tokens_per_second {
            Some(tps) if tps > 0.0 && tps.is_finite() => millis(tokens as f64 * 1000.0 / tps),
            _ => Duration::ZERO,
        }
    }
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::zero()
    }
}

fn millis(ms: f64) -> Duration {
    if ms.is_finite() && ms > 0.0 {
        Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0)
    } else {
        Duration::ZERO
    }
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn zero_model_never_waits() {
        let model = LatencyModel::zero();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(model.ttft.sample(&mut rng), Duration::ZERO);
        assert_eq!(model.generation_time(1000), Duration::ZERO);
    }

    #[test]
    fn draws_are_seeded_and_roughly_centred() {
        let dist = Distribution::LogNormal {
            mean_ms: 500.0,
            jitter_ms: 100.0,
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..2000)
                .map(|_| dist.sample(&mut rng).as_secs_f64() * 1000.0)
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((450.0..550.0).contains(&mean), "mean {mean}");
        assert!(a.iter().all(|ms| *ms >= 0.0));
    }

    #[test]
    fn generation_time_follows_rate() {
        let model = LatencyModel::fixed(0.0, Some(100.0));
        assert_eq!(model.generation_time(50), Duration::from_millis(500));
    }
}
