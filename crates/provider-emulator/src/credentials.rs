//! What an emulator accepts as authentication, and throw-away credentials
//! for tests and the dev runner (API keys, a Vertex service account, an
//! AWS key pair).

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::error::Error;
use crate::flavor::ProviderFlavor;
use crate::text::{random_hex, random_id};

/// The token URI Google puts into real service-account keys. The emulator
/// accepts it as a JWT audience next to its own token URI.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// What the emulator checks a request's authentication against.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No authentication (Ollama; vLLM started without `--api-key`).
    #[default]
    None,
    /// One API key: `Authorization: Bearer`, `x-api-key` (Anthropic) or
    /// `x-goog-api-key` / `?key=` (Gemini), as the flavor expects.
    ApiKey(String),
    /// A Vertex service account: JWTs must verify with its public key.
    ServiceAccount(ServiceAccountPublic),
    /// AWS credentials for SigV4, and optionally a Bedrock API key.
    Aws(AwsCredentials),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::ApiKey(_) => f.write_str("ApiKey(*****)"),
            Self::ServiceAccount(sa) => f
                .debug_tuple("ServiceAccount")
                .field(&sa.client_email)
                .finish(),
            Self::Aws(aws) => f.debug_tuple("Aws").field(&aws.access_key_id).finish(),
        }
    }
}

/// The public half of a service account, as the emulator's token endpoint
/// needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountPublic {
    /// `client_email`, the JWT's `iss`.
    pub client_email: String,
    /// `private_key_id`, the JWT header's `kid`.
    pub key_id: String,
    /// The project the account belongs to; Vertex paths must name it.
    pub project_id: String,
    /// The token URI clients are told to use; a JWT's `aud` must equal it
    /// (or Google's own token URI).
    pub token_uri: String,
    /// The RSA public key, DER (PKCS#1 `RSAPublicKey` or X.509 SPKI).
    pub public_key_der: Vec<u8>,
}

/// AWS credentials the Bedrock emulator verifies SigV4 signatures with.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// Access key id (`AKIA...`).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token that must be sent (and signed) as
    /// `x-amz-security-token`, for temporary credentials.
    pub session_token: Option<String>,
    /// A Bedrock API key accepted as `Authorization: Bearer`.
    pub bearer_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The secrets a client needs, keyed by the fleet's secret names
/// (`groq-api-key`, `vertex-service-account`, `aws-access-key-id`, ...).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSecrets(pub BTreeMap<String, String>);

impl ClientSecrets {
    /// One secret's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A throw-away Vertex service account.
#[derive(Clone)]
pub struct TestServiceAccount {
    /// The service-account key file clients load (with `token_uri`
    /// pointing at the emulator).
    pub json: String,
    /// The private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// What the emulator verifies with.
    pub public: ServiceAccountPublic,
}

impl fmt::Debug for TestServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServiceAccount")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ServiceAccountFile<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    project_id: &'a str,
    private_key_id: &'a str,
    private_key: &'a str,
    client_email: &'a str,
    client_id: &'a str,
    auth_uri: &'a str,
    token_uri: &'a str,
    auth_provider_x509_cert_url: &'a str,
    client_x509_cert_url: String,
    universe_domain: &'a str,
}

impl TestServiceAccount {
    /// Generates an RSA 2048 service account whose key file points its
    /// `token_uri` at `token_uri` (e.g. `http://127.0.0.1:PORT/token`).
    pub fn generate(token_uri: &str, project_id: &str, seed: u64) -> Result<Self, Error> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7361);
        let key_pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| Error::Crypto("RSA key generation failed".into()))?;
        let pkcs8 = key_pair
            .as_der()
            .map_err(|_| Error::Crypto("PKCS#8 encoding failed".into()))?;
        let private_key_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let public_key_der = key_pair.public_key().as_ref().to_vec();
        let key_id = random_hex(&mut rng, 40);
        let client_email = format!("emulator-test@{project_id}.iam.gserviceaccount.com");
        let client_id: String = (0..21)
            .map(|i| char::from(b'1' + u8::try_from(i % 9).unwrap_or(0)))
            .collect();
        let file = ServiceAccountFile {
            kind: "service_account",
            project_id,
            private_key_id: &key_id,
            private_key: &private_key_pem,
            client_email: &client_email,
            client_id: &client_id,
            auth_uri: "https://accounts.google.com/o/oauth2/auth",
            token_uri,
            auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs",
            client_x509_cert_url: format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                client_email.replace('@', "%40")
            ),
            universe_domain: "googleapis.com",
        };
        let json = serde_json::to_string_pretty(&file)?;
        Ok(Self {
            json,
            private_key_pem,
            public: ServiceAccountPublic {
                client_email,
                key_id,
                project_id: project_id.to_owned(),
                token_uri: token_uri.to_owned(),
                public_key_der,
            },
        })
    }
}

/// PEM armour with 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The project id generated service accounts belong to.
pub const TEST_PROJECT_ID: &str = "emulator-project";

impl Credentials {
    /// Generates credentials for `flavor` and the secrets a client needs
    /// (under the fleet's secret names). `root_url` is the emulator's
    /// `http://host:port`, used for the service account's `token_uri`.
    /// API keys and AWS keys follow `seed`; RSA keys are always fresh.
    pub fn generate(
        flavor: ProviderFlavor,
        root_url: &str,
        seed: u64,
    ) -> Result<(Credentials, ClientSecrets), Error> {
        let mut rng = StdRng::seed_from_u64(seed ^ fnv_name(flavor));
        let mut secrets = BTreeMap::new();
        let api_key =
            |prefix: &str, rng: &mut StdRng, len: usize| format!("{prefix}{}", random_id(rng, len));
        let creds = match flavor {
            ProviderFlavor::Ollama | ProviderFlavor::Vllm => Credentials::None,
            ProviderFlavor::Vertex => {
                let sa = TestServiceAccount::generate(
                    &format!("{root_url}/token"),
                    TEST_PROJECT_ID,
                    seed,
                )?;
                secrets.insert("vertex-service-account".to_owned(), sa.json);
                Credentials::ServiceAccount(sa.public)
            }
            ProviderFlavor::Bedrock => {
                let aws = AwsCredentials {
                    access_key_id: format!("AKIA{}", random_id(&mut rng, 16).to_uppercase()),
                    secret_access_key: random_id(&mut rng, 40),
                    session_token: None,
                    bearer_token: Some(format!("ABSK{}", random_id(&mut rng, 60))),
                };
                secrets.insert("aws-access-key-id".to_owned(), aws.access_key_id.clone());
                secrets.insert(
                    "aws-secret-access-key".to_owned(),
                    aws.secret_access_key.clone(),
                );
                if let Some(token) = &aws.bearer_token {
                    secrets.insert("bedrock-api-key".to_owned(), token.clone());
                }
                Credentials::Aws(aws)
            }
            ProviderFlavor::OpenAi => Credentials::ApiKey(api_key("sk-proj-", &mut rng, 48)),
            ProviderFlavor::Groq => Credentials::ApiKey(api_key("gsk_", &mut rng, 52)),
            ProviderFlavor::OpenRouter => {
                Credentials::ApiKey(format!("sk-or-v1-{}", random_hex(&mut rng, 64)))
            }
            ProviderFlavor::DeepSeek => {
                Credentials::ApiKey(format!("sk-{}", random_hex(&mut rng, 32)))
            }
            ProviderFlavor::Mistral => Credentials::ApiKey(api_key("", &mut rng, 32)),
            ProviderFlavor::Anthropic => {
                Credentials::ApiKey(api_key("sk-ant-api03-", &mut rng, 95))
            }
            ProviderFlavor::Gemini => Credentials::ApiKey(api_key("AIza", &mut rng, 35)),
        };
        if let (Credentials::ApiKey(key), Some(name)) = (&creds, api_key_secret_name(flavor)) {
            secrets.insert(name.to_owned(), key.clone());
        }
        Ok((creds, ClientSecrets(secrets)))
    }
}

/// The fleet's secret name for a flavor's API key.
pub fn api_key_secret_name(flavor: ProviderFlavor) -> Option<&'static str> {
    match flavor {
        ProviderFlavor::OpenAi => Some("openai-api-key"),
        ProviderFlavor::Groq => Some("groq-api-key"),
        ProviderFlavor::OpenRouter => Some("openrouter-api-key"),
        ProviderFlavor::DeepSeek => Some("deepseek-api-key"),
        ProviderFlavor::Mistral => Some("mistral-api-key"),
        ProviderFlavor::Anthropic => Some("anthropic-api-key"),
        ProviderFlavor::Gemini => Some("gemini-api-key"),
        ProviderFlavor::Vllm => Some("vllm-api-key"),
        ProviderFlavor::Ollama | ProviderFlavor::Vertex | ProviderFlavor::Bedrock => None,
    }
}

fn fnv_name(flavor: ProviderFlavor) -> u64 {
    crate::text::fnv1a(flavor.name().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_use_the_fleet_names() {
        let (creds, secrets) =
            Credentials::generate(ProviderFlavor::Groq, "http://127.0.0.1:1", 1).unwrap();
        let Credentials::ApiKey(key) = creds else {
            panic!("groq uses an API key")
        };
        assert!(key.starts_with("gsk_"));
        assert_eq!(secrets.get("groq-api-key"), Some(key.as_str()));
        let (_, again) =
            Credentials::generate(ProviderFlavor::Groq, "http://127.0.0.1:1", 1).unwrap();
        assert_eq!(secrets, again);

        let (creds, secrets) =
            Credentials::generate(ProviderFlavor::Bedrock, "http://127.0.0.1:1", 1).unwrap();
        assert!(matches!(creds, Credentials::Aws(_)));
        assert!(
            secrets
                .get("aws-access-key-id")
                .unwrap()
                .starts_with("AKIA")
        );
        assert_eq!(secrets.get("aws-secret-access-key").unwrap().len(), 40);
        assert!(
            !format!("{creds:?} {secrets:?}")
                .contains(secrets.get("aws-secret-access-key").unwrap())
        );
    }

    #[test]
    fn service_account_file_points_at_the_emulator() {
        let sa = TestServiceAccount::generate("http://127.0.0.1:9/token", "p1", 3).unwrap();
        let v: serde_json::Value = serde_json::from_str(&sa.json).unwrap();
        assert_eq!(v["type"], "service_account");
        assert_eq!(v["token_uri"], "http://127.0.0.1:9/token");
        assert_eq!(v["project_id"], "p1");
        assert_eq!(v["private_key_id"], sa.public.key_id.as_str());
        assert!(
            v["private_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(aws_lc_rs::rsa::PublicKey::from_der(&sa.public.public_key_der).is_ok());
    }
}
