//! Which providers exist in this process, built once from the environment
//! and the mounted secrets.
//!
//! A provider whose secret is missing is still registered; every call to
//! it fails with [`ProviderError::NotConfigured`] naming the secret (never
//! its value). Only invalid settings (an unparsable URL or flag) fail
//! start-up.
//!
//! The settings of a provider family left out of the build (see the crate
//! docs on features) are logged at warn level and otherwise ignored.

#[cfg(feature = "google")]
use std::sync::Arc;

#[cfg(any(feature = "ollama", feature = "openai"))]
use super::Locality;
use super::Provider;
#[cfg(feature = "anthropic")]
use super::anthropic::Anthropic;
#[cfg(feature = "bedrock")]
use super::bedrock::{Bedrock, BedrockAuth};
#[cfg(feature = "google")]
use super::google::{self, Gemini};
#[cfg(feature = "ollama")]
use super::ollama::Ollama;
#[cfg(feature = "openai")]
use super::openai::{Flavor, OpenAiCompatible};
#[cfg(feature = "google")]
use google_auth::{GoogleAuth, ServiceAccountKey, TokenSource, metadata_base_url};
use routing_core::env::{Env, EnvError};
#[cfg(any(
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
use secrets::Secret;
#[cfg(any(feature = "openai", feature = "google", feature = "anthropic"))]
use secrets::SecretError;
use secrets::SecretStore;

/// Names of the environment variables read here.
pub mod env_vars {
    /// Ollama's base URL.
    pub const OLLAMA_BASE_URL: &str = "OLLAMA_BASE_URL";
    /// Groq's OpenAI-compatible base URL.
    pub const GROQ_BASE_URL: &str = "GROQ_BASE_URL";
    /// OpenAI's base URL.
    pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
    /// OpenRouter's base URL.
    pub const OPENROUTER_BASE_URL: &str = "OPENROUTER_BASE_URL";
    /// DeepSeek's base URL.
    pub const DEEPSEEK_BASE_URL: &str = "DEEPSEEK_BASE_URL";
    /// Mistral's base URL.
    pub const MISTRAL_BASE_URL: &str = "MISTRAL_BASE_URL";
    /// vLLM's base URL; vLLM is configured only when this is set.
    pub const VLLM_BASE_URL: &str = "VLLM_BASE_URL";
    /// `in_cluster` (default) or `external`.
    pub const VLLM_LOCALITY: &str = "VLLM_LOCALITY";
    /// Vertex AI's base URL (default depends on the location).
    pub const VERTEX_BASE_URL: &str = "VERTEX_BASE_URL";
    /// The Google Cloud project for Vertex AI.
    pub const VERTEX_PROJECT: &str = "VERTEX_PROJECT";
    /// The Vertex AI location, default `global`.
    pub const VERTEX_LOCATION: &str = "VERTEX_LOCATION";
    /// Overrides the service account's `token_uri` (emulators).
    pub const VERTEX_TOKEN_URL: &str = "VERTEX_TOKEN_URL";
    /// `true` to take Vertex tokens from the metadata server.
    pub const VERTEX_USE_METADATA: &str = "VERTEX_USE_METADATA";
    /// The metadata server host (host[:port] or URL), as `google-auth`
    /// names it.
    pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
    /// The Gemini Developer API's base URL.
    pub const GEMINI_BASE_URL: &str = "GEMINI_BASE_URL";
    /// Anthropic's base URL.
    pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
    /// Bedrock Runtime's base URL (default from the region).
    pub const BEDROCK_BASE_URL: &str = "BEDROCK_BASE_URL";
    /// The AWS region, default `us-east-1`.
    pub const AWS_REGION: &str = "AWS_REGION";
}

/// Names of the secrets read here.
pub mod secret_names {
    /// Groq API key.
    pub const GROQ_API_KEY: &str = "groq-api-key";
    /// OpenAI API key.
    pub const OPENAI_API_KEY: &str = "openai-api-key";
    /// OpenRouter API key.
    pub const OPENROUTER_API_KEY: &str = "openrouter-api-key";
    /// DeepSeek API key.
    pub const DEEPSEEK_API_KEY: &str = "deepseek-api-key";
    /// Mistral API key.
    pub const MISTRAL_API_KEY: &str = "mistral-api-key";
    /// Optional vLLM API key.
    pub const VLLM_API_KEY: &str = "vllm-api-key";
    /// Vertex AI service-account JSON key.
    pub const VERTEX_SERVICE_ACCOUNT: &str = "vertex-service-account";
    /// Gemini Developer API key.
    pub const GEMINI_API_KEY: &str = "gemini-api-key";
    /// Anthropic API key.
    pub const ANTHROPIC_API_KEY: &str = "anthropic-api-key";
    /// AWS access key id (SigV4 for Bedrock).
    pub const AWS_ACCESS_KEY_ID: &str = "aws-access-key-id";
    /// AWS secret access key.
    pub const AWS_SECRET_ACCESS_KEY: &str = "aws-secret-access-key";
    /// Optional AWS session token.
    pub const AWS_SESSION_TOKEN: &str = "aws-session-token";
    /// Bedrock API key (Bearer), used when no access keys are set.
    pub const BEDROCK_API_KEY: &str = "bedrock-api-key";
}

use env_vars as ev;
use secret_names as sn;

/// A setting that makes start-up fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    /// An environment variable does not parse.
    #[error(transparent)]
    InvalidEnv(#[from] EnvError),
}

/// A provider family: its cargo feature, whether this build has it, and
/// the settings that only it reads. Variables that are not the family's
/// own (`AWS_REGION`, `GCE_METADATA_HOST`) are left out: they say nothing
/// about whether the family is wanted.
struct Family {
    feature: &'static str,
    compiled_in: bool,
    env: &'static [&'static str],
    secrets: &'static [&'static str],
}

const FAMILIES: [Family; 5] = [
    Family {
        feature: "ollama",
        compiled_in: cfg!(feature = "ollama"),
        env: &[ev::OLLAMA_BASE_URL],
        secrets: &[],
    },
    Family {
        feature: "openai",
        compiled_in: cfg!(feature = "openai"),
        env: &[
            ev::GROQ_BASE_URL,
            ev::OPENAI_BASE_URL,
            ev::OPENROUTER_BASE_URL,
            ev::DEEPSEEK_BASE_URL,
            ev::MISTRAL_BASE_URL,
            ev::VLLM_BASE_URL,
            ev::VLLM_LOCALITY,
        ],
        secrets: &[
            sn::GROQ_API_KEY,
            sn::OPENAI_API_KEY,
            sn::OPENROUTER_API_KEY,
            sn::DEEPSEEK_API_KEY,
            sn::MISTRAL_API_KEY,
            sn::VLLM_API_KEY,
        ],
    },
    Family {
        feature: "google",
        compiled_in: cfg!(feature = "google"),
        env: &[
            ev::VERTEX_BASE_URL,
            ev::VERTEX_PROJECT,
            ev::VERTEX_LOCATION,
            ev::VERTEX_TOKEN_URL,
            ev::VERTEX_USE_METADATA,
            ev::GEMINI_BASE_URL,
        ],
        secrets: &[sn::VERTEX_SERVICE_ACCOUNT, sn::GEMINI_API_KEY],
    },
    Family {
        feature: "anthropic",
        compiled_in: cfg!(feature = "anthropic"),
        env: &[ev::ANTHROPIC_BASE_URL],
        secrets: &[sn::ANTHROPIC_API_KEY],
    },
    Family {
        feature: "bedrock",
        compiled_in: cfg!(feature = "bedrock"),
        env: &[ev::BEDROCK_BASE_URL],
        secrets: &[
            sn::AWS_ACCESS_KEY_ID,
            sn::AWS_SECRET_ACCESS_KEY,
            sn::AWS_SESSION_TOKEN,
            sn::BEDROCK_API_KEY,
        ],
    },
];

impl Family {
    /// The family's variables that are set and secrets that exist (an
    /// unreadable secret exists too).
    fn settings_present(&self, env: &Env, secrets: &SecretStore) -> Vec<&'static str> {
        let vars = self.env.iter().filter(|name| env.get(name).is_some());
        let files = self
            .secrets
            .iter()
            .filter(|name| !matches!(secrets.read_optional(name), Ok(None)));
        vars.chain(files).copied().collect()
    }
}

/// All providers configured for this process, by name.
#[derive(Debug)]
pub struct Providers {
    providers: Vec<Provider>,
}

fn invalid(name: &str, value: &str, reason: &str) -> ProviderConfigError {
    ProviderConfigError::InvalidEnv(EnvError {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The value of a base-URL variable (or the default), checked to be an
/// absolute http(s) URL.
fn base_url(env: &Env, name: &str, default: &str) -> Result<String, ProviderConfigError> {
    let value = env.get_or(name, default);
    let uri: http::Uri = value
        .parse()
        .map_err(|_| invalid(name, value, "not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(value.trim_end_matches('/').to_owned()),
        _ => Err(invalid(name, value, "expected an absolute http(s) URL")),
    }
}

#[cfg(any(feature = "openai", feature = "google", feature = "anthropic"))]
/// A required secret, or the reason it is unusable (never its value).
fn required(secrets: &SecretStore, name: &str) -> Result<Secret, String> {
    secrets.read(name).map_err(|e| match e {
        SecretError::Missing { .. } => format!("secret {name} is missing"),
        SecretError::Unreadable { reason, .. } => format!("secret {name} is unreadable: {reason}"),
    })
}

#[cfg(any(feature = "openai", feature = "google", feature = "bedrock"))]
/// An optional secret; unreadable counts as a configuration problem.
fn optional(secrets: &SecretStore, name: &str) -> Result<Option<Secret>, String> {
    secrets
        .read_optional(name)
        .map_err(|e| format!("secret {name} is unreadable: {e}"))
}

#[cfg(feature = "openai")]
fn locality(env: &Env, name: &str) -> Result<Locality, ProviderConfigError> {
    match env.get(name) {
        None | Some("in_cluster") => Ok(Locality::InCluster),
        Some("external") => Ok(Locality::External),
        Some(other) => Err(invalid(name, other, "expected in_cluster or external")),
    }
}

#[cfg(feature = "google")]
fn vertex_credentials(
    env: &Env,
    secrets: &SecretStore,
    http: &reqwest::Client,
    location: &str,
) -> Result<Result<google::Credentials, String>, ProviderConfigError> {
    let use_metadata = env.parse_or(ev::VERTEX_USE_METADATA, false)?;
    let project = env.get(ev::VERTEX_PROJECT).map(str::to_owned);
    let key = match optional(secrets, sn::VERTEX_SERVICE_ACCOUNT) {
        Ok(key) => key,
        Err(reason) => return Ok(Err(reason)),
    };
    let (source, project) = match key {
        Some(json) => {
            let key = match ServiceAccountKey::from_json(json.expose()) {
                Ok(key) => key,
                Err(e) => {
                    return Ok(Err(format!(
                        "secret {} is not a usable service account key: {e}",
                        sn::VERTEX_SERVICE_ACCOUNT
                    )));
                }
            };
            let token_uri = match env.get(ev::VERTEX_TOKEN_URL) {
                Some(url) => base_url(env, ev::VERTEX_TOKEN_URL, url)?,
                None => key.token_uri().to_owned(),
            };
            let project = project.or_else(|| key.project_id().map(str::to_owned));
            (TokenSource::ServiceAccount { key, token_uri }, project)
        }
        None if use_metadata => (
            TokenSource::Metadata {
                base_url: metadata_base_url(env.get(ev::GCE_METADATA_HOST)),
            },
            project,
        ),
        None => {
            return Ok(Err(format!(
                "secret {} is missing and {} is not true",
                sn::VERTEX_SERVICE_ACCOUNT,
                ev::VERTEX_USE_METADATA
            )));
        }
    };
    // Credentials without a project are a deployment mistake: refuse to
    // start rather than call a project nobody chose.
    let Some(project) = project else {
        return Err(invalid(
            ev::VERTEX_PROJECT,
            "",
            "required with Vertex credentials (the service account key names no project_id)",
        ));
    };
    Ok(Ok(google::Credentials::Vertex {
        project,
        location: location.to_owned(),
        auth: Arc::new(GoogleAuth::new(source, http.clone())),
    }))
}

#[cfg(feature = "bedrock")]
fn bedrock_auth(secrets: &SecretStore) -> Result<BedrockAuth, String> {
    let akid = optional(secrets, sn::AWS_ACCESS_KEY_ID)?;
    let secret = optional(secrets, sn::AWS_SECRET_ACCESS_KEY)?;
    match (akid, secret) {
        (Some(akid), Some(secret)) => Ok(BedrockAuth::SigV4(aws_sigv4::Credentials {
            access_key_id: akid.expose().to_owned(),
            secret_access_key: secret,
            session_token: optional(secrets, sn::AWS_SESSION_TOKEN)?,
        })),
        (None, None) => match optional(secrets, sn::BEDROCK_API_KEY)? {
            Some(key) => Ok(BedrockAuth::Bearer(key)),
            None => Err(format!(
                "secrets {} and {}, or {}, are missing",
                sn::AWS_ACCESS_KEY_ID,
                sn::AWS_SECRET_ACCESS_KEY,
                sn::BEDROCK_API_KEY
            )),
        },
        (Some(_), None) => Err(format!("secret {} is missing", sn::AWS_SECRET_ACCESS_KEY)),
        (None, Some(_)) => Err(format!("secret {} is missing", sn::AWS_ACCESS_KEY_ID)),
    }
}

impl Providers {
    /// Builds every provider from `env` and `secrets`, sharing `http`.
    pub fn from_env(
        env: &Env,
        secrets: &SecretStore,
        http: reqwest::Client,
    ) -> Result<Self, ProviderConfigError> {
        let mut providers = Vec::new();
        for family in FAMILIES.iter().filter(|f| !f.compiled_in) {
            for setting in family.settings_present(env, secrets) {
                tracing::warn!(
                    setting,
                    feature = family.feature,
                    "setting ignored: this build of crate providers leaves out the feature \
                     of its provider family"
                );
            }
        }

        #[cfg(feature = "ollama")]
        providers.push(Provider::Ollama(Ollama::new(
            "ollama",
            base_url(env, ev::OLLAMA_BASE_URL, "http://ollama.ollama:11434")?,
            Locality::InCluster,
            http.clone(),
        )));

        #[cfg(feature = "openai")]
        {
            let hosted = [
                (
                    "groq",
                    Flavor::Groq,
                    ev::GROQ_BASE_URL,
                    "https://api.groq.com/openai/v1",
                    sn::GROQ_API_KEY,
                ),
                (
                    "openai",
                    Flavor::OpenAi,
                    ev::OPENAI_BASE_URL,
                    "https://api.openai.com/v1",
                    sn::OPENAI_API_KEY,
                ),
                (
                    "openrouter",
                    Flavor::OpenRouter,
                    ev::OPENROUTER_BASE_URL,
                    "https://openrouter.ai/api/v1",
                    sn::OPENROUTER_API_KEY,
                ),
                (
                    "deepseek",
                    Flavor::DeepSeek,
                    ev::DEEPSEEK_BASE_URL,
                    "https://api.deepseek.com",
                    sn::DEEPSEEK_API_KEY,
                ),
                (
                    "mistral",
                    Flavor::Mistral,
                    ev::MISTRAL_BASE_URL,
                    "https://api.mistral.ai/v1",
                    sn::MISTRAL_API_KEY,
                ),
            ];
            for (name, flavor, url_var, default_url, secret) in hosted {
                providers.push(Provider::OpenAiCompatible(OpenAiCompatible::new(
                    name,
                    flavor,
                    base_url(env, url_var, default_url)?,
                    Locality::External,
                    required(secrets, secret).map(Some),
                    http.clone(),
                )));
            }

            if let Some(url) = env.get(ev::VLLM_BASE_URL) {
                providers.push(Provider::OpenAiCompatible(OpenAiCompatible::new(
                    "vllm",
                    Flavor::Vllm,
                    base_url(env, ev::VLLM_BASE_URL, url)?,
                    locality(env, ev::VLLM_LOCALITY)?,
                    optional(secrets, sn::VLLM_API_KEY),
                    http.clone(),
                )));
            }
        }

        #[cfg(feature = "google")]
        {
            let location = env.get_or(ev::VERTEX_LOCATION, "global").to_owned();
            let vertex_default = if location == "global" {
                "https://aiplatform.googleapis.com".to_owned()
            } else {
                format!("https://{location}-aiplatform.googleapis.com")
            };
            providers.push(Provider::Google(Gemini::vertex(
                "vertex",
                base_url(env, ev::VERTEX_BASE_URL, &vertex_default)?,
                vertex_credentials(env, secrets, &http, &location)?,
                http.clone(),
            )));
            providers.push(Provider::Google(Gemini::developer(
                "gemini",
                base_url(
                    env,
                    ev::GEMINI_BASE_URL,
                    "https://generativelanguage.googleapis.com",
                )?,
                required(secrets, sn::GEMINI_API_KEY),
                http.clone(),
            )));
        }

        #[cfg(feature = "anthropic")]
        providers.push(Provider::Anthropic(Anthropic::new(
            "anthropic",
            base_url(env, ev::ANTHROPIC_BASE_URL, "https://api.anthropic.com")?,
            required(secrets, sn::ANTHROPIC_API_KEY),
            http.clone(),
        )));

        #[cfg(feature = "bedrock")]
        {
            let region = env.get_or(ev::AWS_REGION, "us-east-1").to_owned();
            let bedrock_default = format!("https://bedrock-runtime.{region}.amazonaws.com");
            providers.push(Provider::Bedrock(Bedrock::new(
                "bedrock",
                base_url(env, ev::BEDROCK_BASE_URL, &bedrock_default)?,
                region,
                bedrock_auth(secrets),
                http.clone(),
            )));
        }
        Ok(Self { providers })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// The configured names, in a fixed order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(Provider::name)
    }

    /// All providers.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::super::loopback::TempSecrets;
    #[cfg(all(
        feature = "openai",
        feature = "google",
        feature = "anthropic",
        feature = "bedrock"
    ))]
    use super::super::{CallScope, ChatRequest, Message, ProviderError, ProviderKind};
    use super::*;

    #[cfg(feature = "google")]
    fn client() -> reqwest::Client {
        http_client::client().expect("an HTTP client")
    }

    #[test]
    fn a_family_finds_its_own_variables_and_secrets_only() {
        let secrets = TempSecrets::new(
            "families",
            &[("groq-api-key", "k"), ("aws-access-key-id", "AKID")],
        );
        let env = Env::from_pairs([
            (env_vars::OPENAI_BASE_URL, "http://o"),
            (env_vars::AWS_REGION, "eu-west-1"),
            (env_vars::GCE_METADATA_HOST, "127.0.0.1:1"),
        ]);
        let present = |feature: &str| {
            FAMILIES
                .iter()
                .find(|f| f.feature == feature)
                .unwrap()
                .settings_present(&env, &secrets.store())
        };
        assert_eq!(present("openai"), ["OPENAI_BASE_URL", "groq-api-key"]);
        assert_eq!(present("bedrock"), ["aws-access-key-id"]);
        assert!(present("google").is_empty());
        assert!(present("ollama").is_empty());
        assert!(present("anthropic").is_empty());
        for family in &FAMILIES {
            assert_eq!(
                family.compiled_in,
                match family.feature {
                    "ollama" => cfg!(feature = "ollama"),
                    "openai" => cfg!(feature = "openai"),
                    "google" => cfg!(feature = "google"),
                    "anthropic" => cfg!(feature = "anthropic"),
                    "bedrock" => cfg!(feature = "bedrock"),
                    other => panic!("unknown family {other}"),
                }
            );
        }
    }

    #[cfg(feature = "google")]
    #[test]
    fn the_metadata_host_variable_is_the_one_google_auth_reads() {
        assert_eq!(
            env_vars::GCE_METADATA_HOST,
            google_auth::ENV_GCE_METADATA_HOST
        );
    }

    #[cfg(not(feature = "openai"))]
    #[test]
    fn a_family_left_out_is_unknown_and_its_settings_do_not_fail_start_up() {
        let secrets = TempSecrets::new("left-out", &[("groq-api-key", "k")]);
        let providers = Providers::from_env(
            &Env::from_pairs([(env_vars::GROQ_BASE_URL, "not a url")]),
            &secrets.store(),
            http_client::client().expect("an HTTP client"),
        )
        .unwrap();
        assert!(providers.get("groq").is_none());
        assert!(providers.names().all(|name| name != "openai"));
    }

    #[cfg(feature = "ollama")]
    #[test]
    fn ollama_is_registered_in_cluster() {
        let secrets = TempSecrets::new("ollama-only", &[]);
        let providers = Providers::from_env(
            &Env::from_pairs([(env_vars::OLLAMA_BASE_URL, "http://o:11434")]),
            &secrets.store(),
            http_client::client().expect("an HTTP client"),
        )
        .unwrap();
        let ollama = providers.get("ollama").unwrap();
        assert_eq!(ollama.locality(), Locality::InCluster);
        assert_eq!(ollama.name(), "ollama");
    }

    #[cfg(all(
        feature = "ollama",
        feature = "openai",
        feature = "google",
        feature = "anthropic",
        feature = "bedrock"
    ))]
    #[test]
    fn every_provider_is_registered_and_vllm_only_when_set() {
        let secrets = TempSecrets::new("names", &[]);
        let providers = Providers::from_env(
            &Env::from_pairs::<&str, &str>([]),
            &secrets.store(),
            client(),
        )
        .unwrap();
        let names: Vec<&str> = providers.names().collect();
        assert_eq!(
            names,
            [
                "ollama",
                "groq",
                "openai",
                "openrouter",
                "deepseek",
                "mistral",
                "vertex",
                "gemini",
                "anthropic",
                "bedrock"
            ]
        );
        let providers = Providers::from_env(
            &Env::from_pairs([
                (env_vars::VLLM_BASE_URL, "http://vllm.vllm:8000/v1"),
                (env_vars::VLLM_LOCALITY, "external"),
            ]),
            &secrets.store(),
            client(),
        )
        .unwrap();
        let vllm = providers.get("vllm").unwrap();
        assert_eq!(vllm.kind(), ProviderKind::OpenAiCompatible);
        assert_eq!(vllm.locality(), Locality::External);
        assert_eq!(
            providers.get("ollama").unwrap().locality(),
            Locality::InCluster
        );
        assert_eq!(
            providers.get("vertex").unwrap().kind(),
            ProviderKind::Vertex
        );
        assert_eq!(
            providers.get("gemini").unwrap().kind(),
            ProviderKind::Gemini
        );
        assert!(providers.get("nope").is_none());
    }

    #[cfg(all(
        feature = "ollama",
        feature = "openai",
        feature = "google",
        feature = "anthropic",
        feature = "bedrock"
    ))]
    #[test]
    fn invalid_settings_fail_start_up() {
        let secrets = TempSecrets::new("invalid", &[]);
        for (name, value) in [
            (env_vars::GROQ_BASE_URL, "not a url"),
            (env_vars::OLLAMA_BASE_URL, "ftp://x"),
            (env_vars::VERTEX_USE_METADATA, "yes"),
        ] {
            let err = Providers::from_env(
                &Env::from_pairs([(name, value)]),
                &secrets.store(),
                client(),
            )
            .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        // Vertex credentials (the metadata server's) but no project: never a
        // placeholder project, a refusal to start.
        let err = Providers::from_env(
            &Env::from_pairs([(env_vars::VERTEX_USE_METADATA, "true")]),
            &secrets.store(),
            client(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("VERTEX_PROJECT"), "{err}");
        let err = Providers::from_env(
            &Env::from_pairs([
                (env_vars::VLLM_BASE_URL, "http://v"),
                (env_vars::VLLM_LOCALITY, "moon"),
            ]),
            &secrets.store(),
            client(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("VLLM_LOCALITY"));
    }

    #[cfg(all(
        feature = "ollama",
        feature = "openai",
        feature = "google",
        feature = "anthropic",
        feature = "bedrock"
    ))]
    #[tokio::test]
    async fn a_missing_secret_fails_every_call_by_name_only() {
        let secrets = TempSecrets::new("missing", &[("openai-api-key", "sk-present-value")]);
        let providers = Providers::from_env(
            &Env::from_pairs::<&str, &str>([]),
            &secrets.store(),
            client(),
        )
        .unwrap();
        let cx = CallScope {
            call_id: "t",
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(5),
        };
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            max_tokens: None,
            temperature: None,
            stop: vec![],
            options: Default::default(),
            logprobs: false,
        };
        for (name, reason) in [
            ("groq", "secret groq-api-key is missing"),
            ("anthropic", "secret anthropic-api-key is missing"),
            ("gemini", "secret gemini-api-key is missing"),
            (
                "vertex",
                "secret vertex-service-account is missing and VERTEX_USE_METADATA is not true",
            ),
            (
                "bedrock",
                "secrets aws-access-key-id and aws-secret-access-key, or bedrock-api-key, are missing",
            ),
        ] {
            let provider = providers.get(name).unwrap();
            let err = provider.chat(&req, &cx).await.unwrap_err();
            assert_eq!(
                err,
                ProviderError::NotConfigured {
                    provider: name.into(),
                    reason: reason.into()
                }
            );
            let err = provider.chat_stream(&req, &cx).await.err().unwrap();
            assert!(matches!(err, ProviderError::NotConfigured { .. }));
        }
        let debug = format!("{providers:?}");
        assert!(!debug.contains("sk-present-value"), "{debug}");
    }

    #[cfg(feature = "bedrock")]
    #[test]
    fn bedrock_prefers_access_keys_and_falls_back_to_a_bearer_key() {
        let secrets = TempSecrets::new(
            "bedrock-keys",
            &[
                ("aws-access-key-id", "AKID"),
                ("aws-secret-access-key", "SECRET"),
                ("aws-session-token", "TOKEN"),
                ("bedrock-api-key", "BEARER"),
            ],
        );
        match bedrock_auth(&secrets.store()).unwrap() {
            BedrockAuth::SigV4(c) => {
                assert_eq!(c.access_key_id, "AKID");
                assert_eq!(c.session_token.unwrap().expose(), "TOKEN");
            }
            other => panic!("expected SigV4, got {other:?}"),
        }
        let secrets = TempSecrets::new("bedrock-bearer", &[("bedrock-api-key", "BEARER")]);
        assert!(matches!(
            bedrock_auth(&secrets.store()),
            Ok(BedrockAuth::Bearer(_))
        ));
        let secrets = TempSecrets::new("bedrock-half", &[("aws-access-key-id", "AKID")]);
        assert_eq!(
            bedrock_auth(&secrets.store()).unwrap_err(),
            "secret aws-secret-access-key is missing"
        );
    }

    #[cfg(feature = "google")]
    #[test]
    fn vertex_reads_the_service_account_and_its_overrides() {
        let sa = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vertex/service-account.json"
        ))
        .unwrap();
        let secrets = TempSecrets::new("vertex-sa", &[("vertex-service-account", &sa)]);
        let env = Env::from_pairs([(env_vars::VERTEX_TOKEN_URL, "http://127.0.0.1:9/token")]);
        let creds = vertex_credentials(&env, &secrets.store(), &client(), "global")
            .unwrap()
            .unwrap();
        let google::Credentials::Vertex { project, auth, .. } = creds else {
            panic!("expected Vertex credentials");
        };
        assert_eq!(project, "test-project");
        match auth.source() {
            TokenSource::ServiceAccount { token_uri, .. } => {
                assert_eq!(token_uri, "http://127.0.0.1:9/token");
            }
            other => panic!("unexpected {other:?}"),
        }

        let secrets = TempSecrets::new("vertex-md", &[]);
        let env = Env::from_pairs([
            (env_vars::VERTEX_USE_METADATA, "true"),
            (env_vars::VERTEX_PROJECT, "p"),
            (env_vars::GCE_METADATA_HOST, "127.0.0.1:8089"),
        ]);
        let creds = vertex_credentials(&env, &secrets.store(), &client(), "us-central1")
            .unwrap()
            .unwrap();
        let google::Credentials::Vertex { auth, location, .. } = creds else {
            panic!("expected Vertex credentials");
        };
        assert_eq!(location, "us-central1");
        assert!(matches!(
            auth.source(),
            TokenSource::Metadata { base_url } if base_url == "http://127.0.0.1:8089"
        ));

        let secrets = TempSecrets::new("vertex-bad", &[("vertex-service-account", "{\"x\":1}")]);
        let reason = vertex_credentials(&Env::default(), &secrets.store(), &client(), "global")
            .unwrap()
            .unwrap_err();
        assert!(reason.starts_with("secret vertex-service-account is not a usable"));
    }
}
