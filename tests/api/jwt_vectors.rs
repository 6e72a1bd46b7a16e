//! `protocol/vectors/jwt.json`: sample keys (public JWKS, private PEMs, the HS256 secret) and tokens with the
//! answer each must get, replayed here against the verifier at the vectors' fixed `now`, so the written rules
//! of protocol §3.2 and the server cannot drift apart. Regenerate (new keys, same cases) with
//! `cargo test --test api jwt_vectors::write -- --ignored`, then re-read the diff.

use super::jwt::{TestKey, KEYS_FOR_VECTORS};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use dukasync::auth::{jwks, jwt::Rules};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/vectors/jwt.json");
const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const AUDIENCE: &str = "dukasync";
const ISSUER: &str = "https://erp.example";
const SECRET: &str = "vector-secret-vector-secret-vector-secret";

#[test]
fn the_verifier_gives_every_vector_its_expected_answer() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let settings = &doc["settings"];
    let rules = Rules {
        audience: settings["audience"].as_str().unwrap().into(),
        issuer: settings["issuer"].as_str().map(String::from),
        max_lifetime_secs: settings["max_lifetime_secs"].as_i64().unwrap(),
        leeway_secs: settings["leeway_secs"].as_i64().unwrap(),
        hs256: Some(DecodingKey::from_secret(
            settings["hs256_secret"].as_str().unwrap().as_bytes(),
        )),
    };
    let keys = jwks::parse(doc["jwks"].to_string().as_bytes()).unwrap();
    let now = settings["now"].as_i64().unwrap();
    let tokens = doc["tokens"].as_array().unwrap();
    assert!(tokens.len() >= 15);
    for case in tokens {
        let name = case["name"].as_str().unwrap();
        let got = rules.verify(case["token"].as_str().unwrap(), now, &keys);
        match case["expect"].as_str().unwrap() {
            "accept" => {
                let verified = got.unwrap_or_else(|r| panic!("{name}: refused as {}", r.as_str()));
                assert_eq!(verified.subject, case["sub"].as_str().unwrap(), "{name}");
                assert_eq!(verified.device, case["device"].as_str().unwrap(), "{name}");
            }
            "refuse" => {
                let refusal = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(refusal.as_str(), case["reason"].as_str().unwrap(), "{name}");
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "erp-user-42", "aud": AUDIENCE, "iat": NOW - 60, "exp": NOW + 540,
           "device": "7f0c2a1e-tablet"})
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.signing).unwrap()
}

fn with(change: &[(&str, Value)]) -> Value {
    let mut c = claims();
    for (k, v) in change {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(*k);
        } else {
            c[*k] = v.clone();
        }
    }
    c
}

#[test]
#[ignore = "writes protocol/vectors/jwt.json"]
fn write() {
    let [ed, es, rs, unlisted] = &*KEYS_FOR_VECTORS;
    let hs = |kid: Option<&str>, secret: &[u8], claims: &Value| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(String::from);
        encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let accept = |name: &str, why: &str, token: String| {
        json!({"name": name, "why": why, "token": token, "expect": "accept",
               "sub": claims()["sub"], "device": claims()["device"]})
    };
    let refuse = |name: &str, reason: &str, why: &str, token: String| json!({"name": name, "why": why, "token": token, "expect": "refuse", "reason": reason});
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let valid = sign(ed, &claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered_payload = B64.encode(with(&[("sub", json!("erp-user-1"))]).to_string());
    let tokens = vec![
        accept("eddsa", "Ed25519 key ed-1 of the JWKS", valid.clone()),
        accept("es256", "P-256 key es-1 of the JWKS", sign(es, &claims())),
        accept("rs256", "RSA key rs-1 of the JWKS", sign(rs, &claims())),
        accept(
            "hs256",
            "the shared secret; no kid needed",
            hs(None, SECRET.as_bytes(), &claims()),
        ),
        accept(
            "expired_within_leeway",
            "exp 10 s ago, leeway 30 s",
            sign(ed, &with(&[("iat", json!(NOW - 600)), ("exp", json!(NOW - 10))])),
        ),
        refuse(
            "alg_none",
            "malformed",
            "alg none is not an algorithm",
            format!("{none_header}.{}.", parts[1]),
        ),
        refuse(
            "hs256_keyed_with_public_pem",
            "invalid",
            "algorithm confusion: HS256 with the Ed25519 public key PEM as secret, kid ed-1",
            hs(Some("ed-1"), ed.public_pem.as_bytes(), &claims()),
        ),
        refuse(
            "hs256_keyed_with_rsa_public_pem",
            "invalid",
            "algorithm confusion: HS256 with the RSA public key PEM as secret, kid rs-1",
            hs(Some("rs-1"), rs.public_pem.as_bytes(), &claims()),
        ),
        refuse(
            "alg_not_the_keys",
            "key_mismatch",
            "ES256 naming the Ed25519 key ed-1",
            {
                let mut h = Header::new(Algorithm::ES256);
                h.kid = Some("ed-1".into());
                encode(&h, &claims(), &es.signing).unwrap()
            },
        ),
        refuse(
            "wrong_aud",
            "invalid",
            "aud is another service",
            sign(ed, &with(&[("aud", json!("other"))])),
        ),
        refuse(
            "wrong_iss",
            "invalid",
            "iss is not the configured issuer",
            sign(ed, &with(&[("iss", json!("https://evil.example"))])),
        ),
        refuse(
            "expired",
            "expired",
            "exp 31 s ago, beyond the 30 s leeway",
            sign(ed, &with(&[("iat", json!(NOW - 600)), ("exp", json!(NOW - 31))])),
        ),
        refuse(
            "iat_in_future",
            "not_yet_valid",
            "iat 31 s ahead, beyond the leeway",
            sign(ed, &with(&[("iat", json!(NOW + 31)), ("exp", json!(NOW + 600))])),
        ),
        refuse(
            "nbf_in_future",
            "not_yet_valid",
            "nbf 120 s ahead",
            sign(ed, &with(&[("nbf", json!(NOW + 120))])),
        ),
        refuse(
            "unknown_kid",
            "unknown_kid",
            "kid not in the JWKS",
            sign(unlisted, &claims()),
        ),
        refuse(
            "missing_kid",
            "unknown_kid",
            "EdDSA without kid",
            encode(&Header::new(Algorithm::EdDSA), &claims(), &ed.signing).unwrap(),
        ),
        refuse(
            "tampered_payload",
            "invalid",
            "sub changed after signing",
            format!("{}.{tampered_payload}.{}", parts[0], parts[2]),
        ),
        refuse(
            "lifetime_over_max",
            "lifetime_too_long",
            "exp - iat = 3601 s, max 3600",
            sign(ed, &with(&[("iat", json!(NOW - 1)), ("exp", json!(NOW + 3600))])),
        ),
        refuse(
            "missing_exp",
            "invalid",
            "exp is required",
            sign(ed, &with(&[("exp", Value::Null)])),
        ),
        refuse(
            "missing_device",
            "invalid",
            "the device claim is required",
            sign(ed, &with(&[("device", Value::Null)])),
        ),
        refuse(
            "empty_sub",
            "bad_identity",
            "sub is empty",
            sign(ed, &with(&[("sub", json!(""))])),
        ),
        refuse(
            "wrong_secret",
            "invalid",
            "HS256 with another secret",
            hs(None, b"another-secret-another-secret-another!", &claims()),
        ),
    ];
    let doc = json!({
        "about": "JWTs of the ERP backend (protocol §3.2). Verify each token with `settings` and `jwks` at `settings.now`; \
                  `reason` names the refusal as the server's tests do (the wire answer is always 401 unauthorized). \
                  The private keys are here so another implementation can sign its own cases; they are samples, never use them.",
        "settings": {"now": NOW, "audience": AUDIENCE, "issuer": ISSUER, "max_lifetime_secs": 3600, "leeway_secs": 30,
                     "hs256_secret": SECRET},
        "jwks": {"keys": [ed.jwk.clone(), es.jwk.clone(), rs.jwk.clone()]},
        "private_keys_pkcs8_pem": {
            "ed-1": ed.private_pem, "es-1": es.private_pem, "rs-1": rs.private_pem, "ed-unlisted": unlisted.private_pem,
        },
        "tokens": tokens,
    });
    std::fs::write(PATH, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
}
