//! Compact JWS (RS256) splitting and verification, for tests and for the
//! token-endpoint emulator.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::GoogleAuthError;

/// A JWT split into its parts, signature not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedJwt {
    /// The JOSE header.
    pub header: serde_json::Value,
    /// The claims.
    pub claims: serde_json::Value,
    /// `b64(header).b64(claims)`, the bytes that were signed.
    pub signing_input: String,
    /// The raw signature.
    pub signature: Vec<u8>,
}

/// Splits and base64url-decodes a compact JWT without checking it.
pub fn decode_jwt(jwt: &str) -> Result<DecodedJwt, GoogleAuthError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(GoogleAuthError::Decode("a JWT has three parts".into()));
    };
    let json = |part: &str, what: &str| -> Result<serde_json::Value, GoogleAuthError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| GoogleAuthError::Decode(format!("JWT {what} is not base64url")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| GoogleAuthError::Decode(format!("JWT {what} is not JSON")))
    };
    Ok(DecodedJwt {
        header: json(header, "header")?,
        claims: json(claims, "claims")?,
        signing_input: format!("{header}.{claims}"),
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| GoogleAuthError::Decode("JWT signature is not base64url".into()))?,
    })
}

/// Decodes `jwt` and checks that it is RS256 and signed by the key whose
/// public half is `public_key_der` (PKCS#1 `RSAPublicKey` or X.509
/// `SubjectPublicKeyInfo` DER, e.g. [`super::ServiceAccountKey::public_key_der`]).
pub fn verify_rs256(jwt: &str, public_key_der: &[u8]) -> Result<DecodedJwt, GoogleAuthError> {
    let decoded = decode_jwt(jwt)?;
    if decoded.header.get("alg").and_then(|v| v.as_str()) != Some("RS256") {
        return Err(GoogleAuthError::Decode("JWT alg is not RS256".into()));
    }
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(decoded.signing_input.as_bytes(), &decoded.signature)
        .map_err(|_| GoogleAuthError::Decode("JWT signature does not verify".into()))?;
    Ok(decoded)
}

/// Unpadded base64url of `bytes`.
pub(super) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_jwts_are_rejected() {
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.!!.AA", "e30.e30.!!"] {
            assert!(decode_jwt(bad).is_err(), "{bad}");
        }
        let ok = decode_jwt("e30.eyJhIjoxfQ.AAEC").unwrap();
        assert_eq!(ok.claims["a"], 1);
        assert_eq!(ok.signature, [0, 1, 2]);
        assert_eq!(ok.signing_input, "e30.eyJhIjoxfQ");
    }
}
