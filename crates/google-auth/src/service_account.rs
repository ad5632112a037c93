//! Service-account keys: parsing the JSON, building and signing the RS256
//! assertion.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::GoogleAuthError;
use super::jwt::b64url;

/// The longest assertion lifetime Google accepts.
const JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// The token URI when the key names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The fields of a service-account key file this client uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

/// A parsed service-account key. `Debug` shows the email and key id only.
#[derive(Clone)]
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    project_id: Option<String>,
    key_pair: Arc<RsaKeyPair>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The claims of a token-request assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// The service account's email.
    pub iss: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The token URI the assertion is posted to.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds (`iat + 3600`).
    pub exp: u64,
}

impl ServiceAccountKey {
    /// Parses a service-account JSON key. Errors never quote the key.
    pub fn from_json(json: &str) -> Result<Self, GoogleAuthError> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            GoogleAuthError::InvalidServiceAccount(format!(
                "not a service account JSON key (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if let Some(kind) = &file.kind
            && kind != "service_account"
        {
            return Err(GoogleAuthError::InvalidServiceAccount(format!(
                "key type is {kind:?}, expected \"service_account\""
            )));
        }
        let key_pair = parse_private_key_pem(&file.private_key)?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            token_uri: file
                .token_uri
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            project_id: file.project_id,
            key_pair: Arc::new(key_pair),
        })
    }

    /// The service account's email (the JWT issuer).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key id, sent as the JWT `kid`.
    pub fn private_key_id(&self) -> Option<&str> {
        self.private_key_id.as_deref()
    }

    /// The token endpoint named in the key.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The project the key belongs to.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The public key as PKCS#1 `RSAPublicKey` DER, for verifying with
    /// [`super::verify_rs256`].
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key_pair.public_key().as_ref().to_vec()
    }

    /// The claims of an assertion issued at `now` for `aud`.
    pub fn claims(&self, aud: &str, scope: &str, now: SystemTime) -> JwtClaims {
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        JwtClaims {
            iss: self.client_email.clone(),
            scope: scope.to_owned(),
            aud: aud.to_owned(),
            iat,
            exp: iat + JWT_LIFETIME.as_secs(),
        }
    }

    /// Signs `claims` as a compact RS256 JWT with `kid` = the key id.
    pub fn sign_jwt(&self, claims: &JwtClaims) -> Result<String, GoogleAuthError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let header = serde_json::to_vec(&header).map_err(|_| GoogleAuthError::Signing)?;
        let claims = serde_json::to_vec(claims).map_err(|_| GoogleAuthError::Signing)?;
        let signing_input = format!("{}.{}", b64url(&header), b64url(&claims));
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| GoogleAuthError::Signing)?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }
}

/// Parses a `BEGIN PRIVATE KEY` (PKCS#8) or `BEGIN RSA PRIVATE KEY` (PKCS#1)
/// PEM block.
fn parse_private_key_pem(pem: &str) -> Result<RsaKeyPair, GoogleAuthError> {
    let invalid = |what: &str| GoogleAuthError::InvalidServiceAccount(what.to_owned());
    let (label, body) = pem_body(pem).ok_or_else(|| invalid("private_key is not a PEM block"))?;
    let der = STANDARD
        .decode(body)
        .map_err(|_| invalid("private_key PEM is not base64"))?;
    match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(invalid("private_key is not an RSA private key")),
    }
    .map_err(|_| invalid("private_key is not a usable RSA key"))
}

/// The label and the base64 text of the first PEM block.
fn pem_body(pem: &str) -> Option<(&str, String)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: String = rest
        .get(body_start..body_end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some((label, body))
}

#[cfg(test)]
mod tests {
    use super::super::{decode_jwt, verify_rs256};
    use super::*;

    fn fixture() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/service-account.json"
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_key_and_hides_it_in_debug() {
        let key = ServiceAccountKey::from_json(&fixture()).unwrap();
        assert_eq!(
            key.client_email(),
            "router-test@test-project.iam.gserviceaccount.com"
        );
        assert_eq!(key.token_uri(), "https://oauth2.googleapis.com/token");
        assert_eq!(key.project_id(), Some("test-project"));
        let debug = format!("{key:?}");
        assert!(debug.contains("router-test@") && !debug.contains("PRIVATE"));
    }

    #[test]
    fn signs_a_jwt_that_verifies_with_the_public_key() {
        let key = ServiceAccountKey::from_json(&fixture()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let claims = key.claims(
            "https://oauth2.googleapis.com/token",
            "https://www.googleapis.com/auth/cloud-platform",
            now,
        );
        assert_eq!(claims.exp - claims.iat, 3600);
        let jwt = key.sign_jwt(&claims).unwrap();
        let decoded = verify_rs256(&jwt, &key.public_key_der()).unwrap();
        assert_eq!(decoded.header["alg"], "RS256");
        assert_eq!(decoded.header["typ"], "JWT");
        assert_eq!(
            decoded.header["kid"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        let got: JwtClaims = serde_json::from_value(decoded.claims).unwrap();
        assert_eq!(got, claims);
        assert_eq!(decoded.signature.len(), 256);

        // A changed claim breaks the signature.
        let parts: Vec<&str> = jwt.split('.').collect();
        let forged_claims = b64url(br#"{"iss":"x"}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(decode_jwt(&forged).is_ok());
        assert!(verify_rs256(&forged, &key.public_key_der()).is_err());
    }

    #[test]
    fn bad_keys_are_rejected_without_quoting_them() {
        let mut json: serde_json::Value = serde_json::from_str(&fixture()).unwrap();
        json["private_key"] =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n".into();
        let err = ServiceAccountKey::from_json(&json.to_string()).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        json["private_key"] = "no pem".into();
        assert!(ServiceAccountKey::from_json(&json.to_string()).is_err());
        json["type"] = "authorized_user".into();
        assert!(ServiceAccountKey::from_json(&json.to_string()).is_err());
        assert!(ServiceAccountKey::from_json("{").is_err());
    }
}
