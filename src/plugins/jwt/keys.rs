//! Verification keys of jwt credentials: decoded once per snapshot (the handler caches them by
//! credential), then used for every request's signature check.
//!
//! `jsonwebtoken` checks every algorithm it knows (HS*, RS*, PS*, ES256, ES384, EdDSA); ES512
//! (P-521), which it lacks, is checked with RustCrypto's `p521`.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use p521::ecdsa::signature::Verifier as _;
use p521::pkcs8::DecodePublicKey as _;

use super::token::kong_b64_decode;

/// The algorithms Kong 3.9's jwt plugin accepts (`alg` header and credential `algorithm`).
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];

/// Why a credential yields no key (Kong: `Invalid key/secret`, or a key that can never verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No secret / public key, or `secret_is_base64` with a secret that is not base64
    /// (`Invalid key/secret`).
    Missing,
    /// The public key does not parse for this algorithm (no signature can match it).
    Unusable,
}

/// A decoded verification key.
pub enum VerifyKey {
    /// Anything `jsonwebtoken` verifies.
    Jwt(Algorithm, DecodingKey),
    /// ES512: ECDSA over P-521 with SHA-512.
    Es512(Box<p521::ecdsa::VerifyingKey>),
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwt(alg, _) => write!(f, "VerifyKey({alg:?})"),
            Self::Es512(_) => f.write_str("VerifyKey(ES512)"),
        }
    }
}

impl VerifyKey {
    /// The key of a credential with `algorithm`: the HMAC secret (base64-decoded first when
    /// `secret_is_base64`, like Kong 3.9, which no longer decodes public keys) or the PEM public
    /// key.
    pub fn new(
        algorithm: &str,
        secret: Option<&str>,
        public_key: Option<&str>,
        secret_is_base64: bool,
    ) -> Result<Self, KeyError> {
        let hmac = |alg| {
            let secret = secret.ok_or(KeyError::Missing)?;
            let bytes = if secret_is_base64 {
                kong_b64_decode(secret).ok_or(KeyError::Missing)?
            } else {
                secret.as_bytes().to_vec()
            };
            // An empty key (only reachable through `secret_is_base64`) cannot sign anything.
            let key = DecodingKey::from_secret(&bytes).map_err(|_| KeyError::Missing)?;
            Ok(Self::Jwt(alg, key))
        };
        let pem = || public_key.map(str::as_bytes).ok_or(KeyError::Missing);
        let unusable = |_| KeyError::Unusable;
        match algorithm {
            "HS256" => hmac(Algorithm::HS256),
            "HS384" => hmac(Algorithm::HS384),
            "HS512" => hmac(Algorithm::HS512),
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
                let alg = match algorithm {
                    "RS256" => Algorithm::RS256,
                    "RS384" => Algorithm::RS384,
                    "RS512" => Algorithm::RS512,
                    "PS256" => Algorithm::PS256,
                    "PS384" => Algorithm::PS384,
                    _ => Algorithm::PS512,
                };
                let key = DecodingKey::from_rsa_pem(pem()?).map_err(unusable)?;
                Ok(Self::Jwt(alg, key))
            }
            "ES256" => Ok(Self::Jwt(
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem()?).map_err(unusable)?,
            )),
            "ES384" => Ok(Self::Jwt(
                Algorithm::ES384,
                DecodingKey::from_ec_pem(pem()?).map_err(unusable)?,
            )),
            "ES512" => {
                let text = std::str::from_utf8(pem()?).map_err(|_| KeyError::Unusable)?;
                let key = p521::ecdsa::VerifyingKey::from_public_key_pem(text.trim())
                    .map_err(|_| KeyError::Unusable)?;
                Ok(Self::Es512(Box::new(key)))
            }
            "EdDSA" => Ok(Self::Jwt(
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(pem()?).map_err(unusable)?,
            )),
            _ => Err(KeyError::Unusable),
        }
    }

    /// Whether `signature` (raw bytes, already base64url-decoded) signs `message`
    /// (`<header b64>.<claims b64>`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Jwt(alg, key) => {
                let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
                jsonwebtoken::crypto::verify(&sig, message, key, *alg).unwrap_or(false)
            }
            Self::Es512(key) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
        }
    }
}
