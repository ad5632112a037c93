//! Fault injection: which failure a request gets, from a prompt directive,
//! a queue of "next N requests" faults, or seeded per-request rates.
//!
//! Each provider module renders a [`Fault`] in that provider's own wire
//! format (status, body, headers, in-stream error shape).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::flavor::ProviderFlavor;

/// A failure an emulator can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Retryable 429 with the provider's wait hint (`retry-after`, Google's
    /// `RetryInfo`, or none for Bedrock's `ThrottlingException`).
    RateLimit,
    /// Non-retryable quota exhaustion (OpenAI `insufficient_quota`, Google
    /// `PerDay` quota, Anthropic spend cap without `retry-after`, OpenRouter 402).
    QuotaExhausted,
    /// HTTP 500 in the provider's error shape.
    ServerError,
    /// HTTP 503 (service unavailable / model overloaded).
    Unavailable,
    /// Anthropic's 529 `overloaded_error`; the closest 503 elsewhere.
    Overloaded,
    /// Groq's 413 for a request above the TPM limit; the provider's
    /// "request too large" elsewhere.
    RequestTooLarge,
    /// Groq's 498 flex-tier `capacity_exceeded`; 503 elsewhere.
    CapacityExceeded,
    /// The provider's own context-length error (400).
    ContextTooLong,
    /// The provider's authentication failure, whatever credentials were sent.
    AuthFailure,
    /// Never answer. The request stays open until the client gives up or
    /// the emulator shuts down.
    Hang,
    /// Drop the socket with a TCP reset, without a response.
    ConnectionReset,
    /// Start a 200 response and cut the connection part way through the body.
    StreamCut,
    /// A 200 stream that ends with the provider's in-stream error event
    /// (a 500-class error for non-streamed requests).
    StreamError,
    /// A 200 whose JSON body (or one stream event) does not parse.
    MalformedJson,
}

impl Fault {
    /// Every fault, in a stable order.
    pub const ALL: [Fault; 14] = [
        Self::RateLimit,
        Self::QuotaExhausted,
        Self::ServerError,
        Self::Unavailable,
        Self::Overloaded,
        Self::RequestTooLarge,
        Self::CapacityExceeded,
        Self::ContextTooLong,
        Self::AuthFailure,
        Self::Hang,
        Self::ConnectionReset,
        Self::StreamCut,
        Self::StreamError,
        Self::MalformedJson,
    ];

    /// The snake_case name used in directives, JSON and CLI flags.
    pub fn name(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::QuotaExhausted => "quota_exhausted",
            Self::ServerError => "server_error",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::RequestTooLarge => "request_too_large",
            Self::CapacityExceeded => "capacity_exceeded",
            Self::ContextTooLong => "context_too_long",
            Self::AuthFailure => "auth_failure",
            Self::Hang => "hang",
            Self::ConnectionReset => "connection_reset",
            Self::StreamCut => "stream_cut",
            Self::StreamError => "stream_error",
            Self::MalformedJson => "malformed_json",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| Error::UnknownFault(s.to_owned()))
    }
}

/// A fault drawn independently for each request with a probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaultRate {
    /// The fault.
    pub fault: Fault,
    /// Chance per request, 0.0 to 1.0.
    pub probability: f64,
}

/// Which faults the inference endpoints produce. JSON form (for
/// `PUT /_emulator/faults`):
/// `{"next":["rate_limit","rate_limit"],"rates":[{"fault":"server_error","probability":0.05}]}`.
///
/// Precedence per request: a prompt directive, then the `next` queue (one
/// entry consumed per request), then one seeded draw against `rates`
/// (probabilities add up, in order; a total above 1 is capped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Faults for the next requests, one per request, in order.
    #[serde(default)]
    pub next: Vec<Fault>,
    /// Per-request fault probabilities.
    #[serde(default)]
    pub rates: Vec<FaultRate>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// `fault` for each of the next `count` requests.
    pub fn next_n(fault: Fault, count: usize) -> Self {
        Self {
            next: vec![fault; count],
            rates: Vec::new(),
        }
    }

    /// `fault` with the given probability on every request.
    pub fn rate(fault: Fault, probability: f64) -> Self {
        Self {
            next: Vec::new(),
            rates: vec![FaultRate { fault, probability }],
        }
    }

    /// Checks that every probability is within 0..=1.
    pub fn validate(&self) -> Result<(), Error> {
        match self
            .rates
            .iter()
            .find(|r| !(0.0..=1.0).contains(&r.probability))
        {
            Some(bad) => Err(Error::InvalidConfig(format!(
                "probability {} for {} is outside 0..=1",
                bad.probability, bad.fault
            ))),
            None => Ok(()),
        }
    }
}

/// The live fault state of one emulator: the plan's queue and its seeded
/// random generator.
#[derive(Debug)]
pub(crate) struct FaultState {
    queue: VecDeque<Fault>,
    rates: Vec<FaultRate>,
    rng: StdRng,
}

impl FaultState {
    pub(crate) fn new(plan: &FaultPlan, seed: u64) -> Self {
        Self {
            queue: plan.next.iter().copied().collect(),
            rates: plan.rates.clone(),
            rng: StdRng::seed_from_u64(seed ^ 0x6661_756c_7473),
        }
    }

    /// Replaces the plan, keeping the random sequence where it is.
    pub(crate) fn set_plan(&mut self, plan: &FaultPlan) {
        self.queue = plan.next.iter().copied().collect();
        self.rates = plan.rates.clone();
    }

    /// The plan as it stands (queue entries already used are gone).
    pub(crate) fn plan(&self) -> FaultPlan {
        FaultPlan {
            next: self.queue.iter().copied().collect(),
            rates: self.rates.clone(),
        }
    }

    /// The fault for one request that carried no directive.
    pub(crate) fn draw(&mut self) -> Option<Fault> {
        if let Some(fault) = self.queue.pop_front() {
            return Some(fault);
        }
        if self.rates.is_empty() {
            return None;
        }
        let roll: f64 = self.rng.random();
        let mut upto = 0.0;
        for rate in &self.rates {
            upto += rate.probability;
            if roll < upto {
                return Some(rate.fault);
            }
        }
        None
    }
}

/// The opening of a prompt directive.
pub const DIRECTIVE_PREFIX: &str = "[[emulator:";

/// Finds the first fault directive addressed to `flavor` in a request body.
///
/// Syntax: `[[emulator:FAULT]]` (every emulator obeys) or
/// `[[emulator:FAULT@FLAVOR]]` (only that provider's emulator obeys; several
/// flavors may be joined with `,`). Unknown faults are ignored.
pub fn find_directive(text: &str, flavor: ProviderFlavor) -> Option<Fault> {
    let mut rest = text;
    while let Some(start) = rest.find(DIRECTIVE_PREFIX) {
        let after = &rest[start + DIRECTIVE_PREFIX.len()..];
        let end = after.find("]]")?;
        let inner = &after[..end];
        rest = &after[end..];
        let (fault, target) = match inner.split_once('@') {
            Some((fault, target)) => (fault, Some(target)),
            None => (inner, None),
        };
        let addressed = target.is_none_or(|t| {
            t.split(',')
                .any(|name| name.parse::<ProviderFlavor>().is_ok_and(|f| f == flavor))
        });
        if let (true, Ok(fault)) = (addressed, fault.parse::<Fault>()) {
            return Some(fault);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_found_and_scoped_to_a_flavor() {
        let text = r#"{"content":"hello [[emulator:rate_limit]] world"}"#;
        assert_eq!(
            find_directive(text, ProviderFlavor::Groq),
            Some(Fault::RateLimit)
        );
        let scoped = "x [[emulator:hang@anthropic]] [[emulator:server_error@groq,openai]]";
        assert_eq!(
            find_directive(scoped, ProviderFlavor::Anthropic),
            Some(Fault::Hang)
        );
        assert_eq!(
            find_directive(scoped, ProviderFlavor::OpenAi),
            Some(Fault::ServerError)
        );
        assert_eq!(find_directive(scoped, ProviderFlavor::Ollama), None);
        assert_eq!(
            find_directive("[[emulator:nonsense]]", ProviderFlavor::Ollama),
            None
        );
        assert_eq!(
            find_directive("[[emulator:hang", ProviderFlavor::Ollama),
            None
        );
    }

    #[test]
    fn every_fault_name_parses_back() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>().unwrap(), fault);
            let json = serde_json::to_string(&fault).unwrap();
            assert_eq!(json, format!("\"{}\"", fault.name()));
        }
    }

    #[test]
    fn queue_comes_before_rates_and_rates_are_seeded() {
        let plan = FaultPlan {
            next: vec![Fault::Hang],
            rates: vec![FaultRate {
                fault: Fault::ServerError,
                probability: 0.25,
            }],
        };
        let mut a = FaultState::new(&plan, 42);
        assert_eq!(a.draw(), Some(Fault::Hang));
        let draws: Vec<_> = (0..4000).map(|_| a.draw()).collect();
        let hits = draws.iter().filter(|d| d.is_some()).count();
        assert!((800..1200).contains(&hits), "hits {hits}");
        let mut b = FaultState::new(&plan, 42);
        b.draw();
        let again: Vec<_> = (0..4000).map(|_| b.draw()).collect();
        assert_eq!(draws, again);
    }

    #[test]
    fn plan_json_shape() {
        let plan: FaultPlan = serde_json::from_str(
            r#"{"next":["rate_limit"],"rates":[{"fault":"hang","probability":0.5}]}"#,
        )
        .unwrap();
        assert_eq!(plan.next, vec![Fault::RateLimit]);
        assert_eq!(plan.rates[0].fault, Fault::Hang);
        assert!(plan.validate().is_ok());
        assert!(FaultPlan::rate(Fault::Hang, 1.5).validate().is_err());
    }
}
