//! Verification keys of jwt credentials: decoded once per snapshot (the handler caches them by
//! credential), then used for every request's signature check.
//!
//! `jsonwebtoken` checks HS*, ES256, ES384 and EdDSA. ES512 (P-521), which it lacks, is checked
//! with RustCrypto's `p521`. RS*/PS* with keys of 2048 bits and more are checked with `ring`
//! (already in the tree through rustls): `jsonwebtoken`'s RustCrypto backend rebuilds the RSA key
//! and its Montgomery parameters on every call, about 100 us per RS256 verification against
//! ring's ~20 us. Smaller RSA keys (which ring refuses) still go through `jsonwebtoken`.

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
    /// Anything `jsonwebtoken` verifies (ES256, ES384, EdDSA, RSA keys under 2048 bits).
    Jwt(Algorithm, DecodingKey),
    /// HS256/384/512: ring's HMAC with the key schedule computed once, compared in constant
    /// time (through `jsonwebtoken` the signature was re-encoded and the key re-derived per token).
    Hmac(ring::hmac::Key),
    /// ES512: ECDSA over P-521 with SHA-512.
    Es512(Box<p521::ecdsa::VerifyingKey>),
    /// RS*/PS* with a key of at least 2048 bits: ring, over the PKCS#1 `RSAPublicKey` DER.
    Rsa(&'static dyn ring::signature::VerificationAlgorithm, Vec<u8>),
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwt(alg, _) => write!(f, "VerifyKey({alg:?})"),
            Self::Hmac(k) => write!(f, "VerifyKey({:?})", k.algorithm()),
            Self::Es512(_) => f.write_str("VerifyKey(ES512)"),
            Self::Rsa(alg, _) => write!(f, "VerifyKey({alg:?})"),
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
            if bytes.is_empty() {
                return Err(KeyError::Missing);
            }
            Ok(Self::Hmac(ring::hmac::Key::new(alg, &bytes)))
        };
        let pem = || public_key.map(str::as_bytes).ok_or(KeyError::Missing);
        let unusable = |_| KeyError::Unusable;
        match algorithm {
            "HS256" => hmac(ring::hmac::HMAC_SHA256),
            "HS384" => hmac(ring::hmac::HMAC_SHA384),
            "HS512" => hmac(ring::hmac::HMAC_SHA512),
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
                let alg = match algorithm {
                    "RS256" => Algorithm::RS256,
                    "RS384" => Algorithm::RS384,
                    "RS512" => Algorithm::RS512,
                    "PS256" => Algorithm::PS256,
                    "PS384" => Algorithm::PS384,
                    _ => Algorithm::PS512,
                };
                let pem = pem()?;
                if let Some(der) = rsa_pkcs1_der(pem).filter(|d| modulus_bits(d) >= 2048) {
                    use ring::signature as r;
                    let params: &'static dyn r::VerificationAlgorithm = match algorithm {
                        "RS256" => &r::RSA_PKCS1_2048_8192_SHA256,
                        "RS384" => &r::RSA_PKCS1_2048_8192_SHA384,
                        "RS512" => &r::RSA_PKCS1_2048_8192_SHA512,
                        "PS256" => &r::RSA_PSS_2048_8192_SHA256,
                        "PS384" => &r::RSA_PSS_2048_8192_SHA384,
                        _ => &r::RSA_PSS_2048_8192_SHA512,
                    };
                    return Ok(Self::Rsa(params, der));
                }
                let key = DecodingKey::from_rsa_pem(pem).map_err(unusable)?;
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
            Self::Hmac(key) => ring::hmac::verify(key, message, signature).is_ok(),
            Self::Es512(key) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Self::Rsa(alg, der) => ring::signature::UnparsedPublicKey::new(*alg, der)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// The PKCS#1 `RSAPublicKey` DER of a PEM `RSA PUBLIC KEY`, or of an RSA `PUBLIC KEY` (SPKI).
fn rsa_pkcs1_der(pem: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer as _;
    let start = pem.windows(11).position(|w| w == b"-----BEGIN ")?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem[start..]).ok()?;
    match block.label.as_str() {
        "RSA PUBLIC KEY" => Some(block.contents),
        "PUBLIC KEY" => {
            let (_, spki) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents).ok()?;
            // rsaEncryption
            (spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1")
                .then(|| spki.subject_public_key.data.to_vec())
        }
        _ => None,
    }
}

/// The bit length of the modulus of a PKCS#1 `RSAPublicKey` (0 when it does not parse).
fn modulus_bits(der: &[u8]) -> usize {
    use x509_parser::der_parser::ber::BerObjectContent;
    let Ok((_, obj)) = x509_parser::der_parser::parse_der(der) else {
        return 0;
    };
    let BerObjectContent::Sequence(items) = &obj.content else {
        return 0;
    };
    match items.first().map(|i| &i.content) {
        Some(BerObjectContent::Integer(n)) => {
            let n: &[u8] = n;
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            n.first().map_or(0, |top| {
                (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
            })
        }
        _ => 0,
    }
}
