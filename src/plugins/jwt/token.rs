//! Kong's JWT parser (`kong.plugins.jwt.jwt_parser`): split, decode and check the registered
//! claims, with Kong's error strings.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::borrow::Cow;

use serde_json::{Map, Value};

use super::keys::ALGORITHMS;

/// The standard alphabet, padding optional, trailing bits ignored: what `ngx.decode_base64`
/// accepts once Kong mapped `-`/`_` to `+`/`/` and padded the input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// [`LENIENT`] with the base64url alphabet.
const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Kong's `base64_decode`: base64url or standard alphabet, padding optional. `None` when the
/// input is not base64.
pub fn kong_b64_decode(input: &str) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let url = input.bytes().any(|b| b == b'-' || b == b'_');
    let standard = input.bytes().any(|b| b == b'+' || b == b'/');
    if url && !standard {
        // What mapping `-_` to `+/` and decoding the standard alphabet gives, without a copy.
        LENIENT_URL.decode(input).ok()
    } else if url {
        let mapped: String = input
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        LENIENT.decode(mapped).ok()
    } else {
        LENIENT.decode(input).ok()
    }
}

/// A token Kong could decode (its signature is not checked yet).
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The JOSE header.
    pub header: Header,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// What the signature signs: `<header b64>.<claims b64>`.
    pub signing_input: &'a str,
    /// The header's `alg`.
    pub alg: &'static str,
}

/// A token's JOSE header: `kid` read when decoding, any other field on demand.
#[derive(Debug, Clone)]
pub struct Header {
    /// `kid` when it is a string.
    pub kid: Option<String>,
    /// The header's JSON (a valid JSON object).
    json: Vec<u8>,
}

impl Header {
    /// The value of field `name` (parses the header again: only the rare fallback of
    /// `key_claim_name` to the header needs it).
    pub fn field(&self, name: &str) -> Option<Value> {
        let Ok(Value::Object(mut map)) = serde_json::from_slice(&self.json) else {
            return None;
        };
        map.remove(name)
    }
}

/// The header fields every token needs, read without building a JSON tree. A field that is
/// not a string reads as absent, as `Value::as_str` would.
#[derive(serde::Deserialize)]
struct Jose<'a> {
    #[serde(borrow, default, deserialize_with = "string_or_absent")]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "string_or_absent")]
    kid: Option<Cow<'a, str>>,
}

fn string_or_absent<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Lenient;
    impl<'de> serde::de::Visitor<'de> for Lenient {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Lenient)
}

fn known_alg(alg: &str) -> Option<&'static str> {
    ALGORITHMS.iter().find(|k| **k == alg).copied()
}

/// Decode `token` like Kong; the error is what follows `Bad token; ` in the 401 body.
pub fn decode(token: &str) -> Result<Decoded<'_>, &'static str> {
    // Kong's tokenize(token, ".", 3): at most three parts, the last one keeps any extra dots.
    let mut parts = token.splitn(3, '.');
    let (Some(h64), Some(c64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("invalid JSON");
    };
    let json = kong_b64_decode(h64).ok_or("invalid JSON")?;
    // `None`: the header is JSON but not an object ("invalid alg", once the claims parsed).
    // The typed read only for an object: serde would also fill the struct from an array.
    let object = json.trim_ascii_start().first() == Some(&b'{');
    let typed = if object {
        serde_json::from_slice::<Jose<'_>>(&json).map_err(Some)
    } else {
        Err(None)
    };
    let fields = match typed {
        Ok(j) => Some((
            j.alg.as_deref().and_then(known_alg),
            j.kid.map(Cow::into_owned),
        )),
        Err(Some(e)) if e.is_syntax() || e.is_eof() => return Err("invalid JSON"),
        // Not an object, or a repeated field: the JSON tree decides (the last value wins).
        Err(_) => match serde_json::from_slice::<Value>(&json) {
            Ok(Value::Object(m)) => Some((
                m.get("alg").and_then(Value::as_str).and_then(known_alg),
                m.get("kid").and_then(Value::as_str).map(str::to_owned),
            )),
            Ok(_) => None,
            Err(_) => return Err("invalid JSON"),
        },
    };
    let claims = kong_b64_decode(c64).ok_or("invalid JSON")?;
    let claims: Value = serde_json::from_slice(&claims).map_err(|_| "invalid JSON")?;
    let signature = kong_b64_decode(s64);
    let (alg, kid) = fields.ok_or("invalid alg")?;
    let alg = alg.ok_or("invalid alg")?;
    let Value::Object(claims) = claims else {
        return Err("invalid claims");
    };
    let signature = signature.ok_or("invalid signature")?;
    Ok(Decoded {
        header: Header { kid, json },
        claims,
        signature,
        signing_input: &token[..h64.len() + 1 + c64.len()],
        alg,
    })
}

/// A registered claim Kong can verify (`claims_to_verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// `exp`: expired when `exp <= now`.
    Exp,
    /// `nbf`: not valid yet when `nbf > now`.
    Nbf,
}

impl Registered {
    /// The claim's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exp => "exp",
            Self::Nbf => "nbf",
        }
    }
}

/// Kong's `verify_registered_claims`: a map of claim name -> error, empty when all pass.
pub fn verify_registered(
    claims: &Map<String, Value>,
    to_verify: &[Registered],
    now: i64,
) -> Map<String, Value> {
    let mut errors = Map::new();
    let now = now as f64;
    for c in to_verify {
        let err = match claims.get(c.name()).and_then(Value::as_f64) {
            None => "must be a number",
            Some(exp) if *c == Registered::Exp && exp <= now => "token expired",
            Some(nbf) if *c == Registered::Nbf && nbf > now => "token not valid yet",
            Some(_) => continue,
        };
        errors.insert(c.name().to_owned(), Value::from(err));
    }
    errors
}

/// Kong's `check_maximum_expiration`: `exp` must exist and be at most `maximum` seconds away.
pub fn within_maximum_expiration(claims: &Map<String, Value>, maximum: f64, now: i64) -> bool {
    if maximum <= 0.0 {
        return true;
    }
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .is_some_and(|exp| exp - now as f64 <= maximum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn base64_like_kong() {
        assert_eq!(kong_b64_decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(kong_b64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(kong_b64_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        // Both alphabets in one input: Kong maps one onto the other.
        assert_eq!(
            kong_b64_decode("-/8+").as_deref(),
            Some(&[0xfb, 0xff, 0x3e][..])
        );
        assert_eq!(kong_b64_decode("+/8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert!(kong_b64_decode("a").is_none());
        assert!(kong_b64_decode("a b=").is_none());
        assert_eq!(kong_b64_decode("").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn decode_errors_in_kongs_order() {
        let h = b64(&json!({"alg": "HS256", "typ": "JWT"}));
        let c = b64(&json!({"iss": "a"}));
        assert_eq!(decode("abc").unwrap_err(), "invalid JSON");
        assert_eq!(decode(&format!("{h}.{c}")).unwrap_err(), "invalid JSON");
        assert_eq!(decode(&format!("{h}.!!.x")).unwrap_err(), "invalid JSON");
        assert_eq!(
            decode(&format!("{h}.{}.x", b64(&json!("nope")))).unwrap_err(),
            "invalid claims"
        );
        let bad_alg = b64(&json!({"alg": "none"}));
        assert_eq!(
            decode(&format!("{bad_alg}.{c}.x")).unwrap_err(),
            "invalid alg"
        );
        assert_eq!(
            decode(&format!("{}.{c}.x", b64(&json!({"alg": 5})))).unwrap_err(),
            "invalid alg"
        );
        assert_eq!(
            decode(&format!("{h}.{c}.a.b")).unwrap_err(),
            "invalid signature"
        );
        let token = format!("{h}.{c}.aGk");
        let ok = decode(&token).unwrap();
        assert_eq!(ok.alg, "HS256");
        assert_eq!(ok.signature, b"hi");
        assert_eq!(ok.signing_input, format!("{h}.{c}"));
        assert_eq!(ok.claims["iss"], "a");
        assert_eq!(ok.header.kid, None);
    }

    #[test]
    fn header_fields_like_the_json_tree() {
        let c = b64(&json!({"iss": "a"}));
        let tok = |h: &str| {
            format!(
                "{}.{c}.aGk",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h)
            )
        };
        let t = tok(r#"{"alg":"HS256","kid":"k1","x":[1,{"y":null}],"n":1.5}"#);
        let d = decode(&t).unwrap();
        assert_eq!((d.alg, d.header.kid.as_deref()), ("HS256", Some("k1")));
        assert_eq!(d.header.field("x"), Some(json!([1, {"y": null}])));
        assert_eq!(d.header.field("missing"), None);
        // A kid that is not a string is absent; escapes are decoded.
        let t = tok(r#"{"alg":"HS\u0032\u0035\u0036","kid":7}"#);
        let d = decode(&t).unwrap();
        assert_eq!((d.alg, d.header.kid), ("HS256", None));
        // A repeated field: the last one wins, as in the JSON tree.
        let t = tok(r#"{"alg":"none","alg":"RS256","kid":"a","kid":"b"}"#);
        let d = decode(&t).unwrap();
        assert_eq!((d.alg, d.header.kid.as_deref()), ("RS256", Some("b")));
        // JSON that is not an object, and broken JSON.
        assert_eq!(decode(&tok("[1]")).unwrap_err(), "invalid alg");
        assert_eq!(decode(&tok(r#"["HS256","k"]"#)).unwrap_err(), "invalid alg");
        assert_eq!(decode(&tok(r#" {"alg":"HS256"}"#)).unwrap().alg, "HS256");
        assert_eq!(decode(&tok("[1")).unwrap_err(), "invalid JSON");
        assert_eq!(decode(&tok(r#""HS256""#)).unwrap_err(), "invalid alg");
        assert_eq!(
            decode(&tok(r#"{"alg":"HS256""#)).unwrap_err(),
            "invalid JSON"
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"HS256"} x"#)).unwrap_err(),
            "invalid JSON"
        );
        assert_eq!(
            decode(&tok(r#"{"alg":["HS256"]}"#)).unwrap_err(),
            "invalid alg"
        );
    }

    #[test]
    fn registered_claims() {
        use Registered::*;
        let m = |v: Value| v.as_object().cloned().unwrap();
        let now = 1000;
        assert!(
            verify_registered(&m(json!({"exp": 1001, "nbf": 1000})), &[Exp, Nbf], now).is_empty()
        );
        assert_eq!(
            Value::Object(verify_registered(
                &m(json!({"exp": 1000, "nbf": 1001})),
                &[Exp, Nbf],
                now
            )),
            json!({"exp": "token expired", "nbf": "token not valid yet"})
        );
        assert_eq!(
            Value::Object(verify_registered(&m(json!({"exp": "1"})), &[Exp, Nbf], now)),
            json!({"exp": "must be a number", "nbf": "must be a number"})
        );
        assert!(verify_registered(&m(json!({})), &[], now).is_empty());
        assert!(within_maximum_expiration(
            &m(json!({"exp": 1100})),
            100.0,
            now
        ));
        assert!(!within_maximum_expiration(
            &m(json!({"exp": 1101})),
            100.0,
            now
        ));
        assert!(!within_maximum_expiration(&m(json!({})), 100.0, now));
        assert!(within_maximum_expiration(&m(json!({})), 0.0, now));
    }
}
