//! Endpoint pools for in-cluster providers: several replicas of one model
//! (e.g. `OLLAMA_BASE_URLS=http://ollama-0:11434,http://ollama-1:11434`),
//! each call placed on the least busy replica (or by peak-EWMA latency), and
//! waiting for a slot when every replica is at `_POOL_MAX_OUTSTANDING`.

use std::collections::BTreeMap;

use providers::pool::{EndpointLoad, PickStrategy, Pool, PoolConfig, PoolGuard};
use providers::{Locality, Provider, Providers};
use routing_core::env::Env;
use secrets::SecretStore;
use serde::Serialize;

/// The providers that may be pooled, with their base-URL variable.
const POOLABLE: [(&str, &str); 2] = [("ollama", "OLLAMA_BASE_URL"), ("vllm", "VLLM_BASE_URL")];

/// One provider's replicas.
struct ProviderPool {
    pool: Pool,
    /// One client set per endpoint, in the pool's order.
    replicas: Vec<Providers>,
}

/// Every pooled provider.
#[derive(Default)]
pub(crate) struct ReplicaPools {
    pools: BTreeMap<String, ProviderPool>,
}

/// A pool as `GET /providers` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct PoolListing {
    /// Endpoint URL, requests in flight, peak-EWMA latency, picks so far.
    pub endpoints: Vec<EndpointLoad>,
}

impl ReplicaPools {
    /// Reads `<NAME>_BASE_URLS` (comma-separated), `<NAME>_POOL_STRATEGY`
    /// (`least_outstanding` or `peak_ewma`) and `<NAME>_POOL_MAX_OUTSTANDING`
    /// for each in-cluster provider that may be pooled.
    pub(crate) fn from_env(
        env: &Env,
        secrets: &SecretStore,
        http: &reqwest::Client,
    ) -> Result<Self, String> {
        let mut pools = BTreeMap::new();
        for (name, base_variable) in POOLABLE {
            let prefix = name.to_ascii_uppercase();
            let list_variable = format!("{prefix}_BASE_URLS");
            let Some(list) = env.get(&list_variable) else {
                continue;
            };
            let endpoints: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            if endpoints.is_empty() {
                return Err(format!("{list_variable} lists no endpoint"));
            }
            let strategy = match env.get(&format!("{prefix}_POOL_STRATEGY")) {
                None | Some("least_outstanding") => PickStrategy::LeastOutstanding,
                Some("peak_ewma") => PickStrategy::PeakEwma,
                Some(other) => {
                    return Err(format!(
                        "{prefix}_POOL_STRATEGY={other:?}: expected least_outstanding or peak_ewma"
                    ));
                }
            };
            let max_variable = format!("{prefix}_POOL_MAX_OUTSTANDING");
            let max_outstanding =
                match env.get(&max_variable) {
                    None => None,
                    Some(v) => Some(v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("{max_variable}={v:?}: expected a positive integer")
                    })?),
                };
            let mut replicas = Vec::with_capacity(endpoints.len());
            for endpoint in &endpoints {
                let mut vars = vec![(base_variable.to_owned(), endpoint.clone())];
                if let Some(locality) = env.get("VLLM_LOCALITY").filter(|_| name == "vllm") {
                    vars.push(("VLLM_LOCALITY".to_owned(), locality.to_owned()));
                }
                let providers = Providers::from_env(&Env::from_pairs(vars), secrets, http.clone())
                    .map_err(|e| format!("{list_variable}: {e}"))?;
                match providers.get(name).map(Provider::locality) {
                    Some(Locality::InCluster) => replicas.push(providers),
                    Some(Locality::External) => {
                        return Err(format!(
                            "{list_variable}: only in-cluster providers are pooled"
                        ));
                    }
                    None => return Err(format!("{list_variable}: {name} is not configured")),
                }
            }
            let pool = Pool::new(PoolConfig {
                name: name.to_owned(),
                strategy,
                endpoints,
                max_outstanding,
                ewma_alpha: 0.3,
            });
            pools.insert(name.to_owned(), ProviderPool { pool, replicas });
        }
        Ok(Self { pools })
    }

    /// Whether `name` is pooled.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    /// Waits for a slot of `name`'s pool and returns the replica's client
    /// with the guard that holds the slot until dropped.
    pub(crate) async fn pick(&self, name: &str) -> Option<(&Provider, PoolGuard)> {
        let pooled = self.pools.get(name)?;
        let guard = pooled.pool.pick().await;
        let provider = pooled.replicas.get(guard.endpoint_index())?.get(name)?;
        Some((provider, guard))
    }

    /// Each pool's endpoints and their load.
    pub(crate) fn listing(&self) -> BTreeMap<String, PoolListing> {
        self.pools
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    PoolListing {
                        endpoints: p.pool.endpoints(),
                    },
                )
            })
            .collect()
    }
}
