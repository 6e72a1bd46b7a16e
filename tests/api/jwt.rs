//! JWTs signed by the ERP's backend (protocol §3.2), against the real server and a JWKS served over loopback.
//! Keys are generated here; each refusal has its own test, and each acceptance algorithm too.

use crate::common::*;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use dukasync::wire::ScopeList;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, LazyLock, Mutex,
};
use std::time::{Duration, Instant};

/// The same over `https://`, with the dev CA of `deploy/services.sh`.
mod https;

const AUDIENCE: &str = "dukasync-test";
const SECRET: &str = "a-shared-hs256-secret-of-40-bytes-or-so!";
/// The ERP's id of the demo owner (set on the user by `setup`).
const OWNER_SUB: &str = "erp-user-1";

/// A signing key, its `kid` and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub signing: EncodingKey,
    pub jwk: Value,
    /// The public key as PEM (SPKI), for the algorithm-confusion test.
    pub public_pem: String,
    /// The private key as PKCS#8 PEM, for the protocol vectors.
    pub private_pem: String,
}

fn ed25519(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        signing: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                    "x": B64.encode(key.verifying_key().as_bytes())}),
        public_pem: key.verifying_key().to_public_key_pem(Default::default()).unwrap(),
        private_pem: key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
    }
}

fn p256(kid: &str) -> TestKey {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key.public_key(), false);
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        signing: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                    "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())}),
        public_pem: key.public_key().to_public_key_pem(Default::default()).unwrap(),
        private_pem: key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
    }
}

fn rsa(kid: &str) -> TestKey {
    use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::EncodePublicKey, traits::PublicKeyParts};
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        signing: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256",
                    "n": B64.encode(key.n().to_bytes_be()), "e": B64.encode(key.e().to_bytes_be())}),
        public_pem: key.to_public_key().to_public_key_pem(Default::default()).unwrap(),
        private_pem: rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, Default::default())
            .unwrap()
            .to_string(),
    }
}

/// Generated once for the whole binary: an RSA key takes a moment.
static KEYS: LazyLock<[TestKey; 4]> = LazyLock::new(|| [ed25519("ed-1"), p256("es-1"), rsa("rs-1"), ed25519("ed-2")]);

/// The keys of `protocol/vectors/jwt.json`, generated only when the vectors are rewritten.
pub static KEYS_FOR_VECTORS: LazyLock<[TestKey; 4]> =
    LazyLock::new(|| [ed25519("ed-1"), p256("es-1"), rsa("rs-1"), ed25519("ed-unlisted")]);

fn ed() -> &'static TestKey {
    &KEYS[0]
}

/// A JWKS served over loopback, whose document the test can change, counting the fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: &[&TestKey]) -> JwksServer {
        let document = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (doc, count) = (doc.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    axum::Json(doc.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let server = JwksServer { url, document, fetches };
        server.publish(keys);
        server
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.document.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }
}

struct Fixture {
    app: TestApp,
    jwks: JwksServer,
}

/// The demo owner becomes the ERP user `OWNER_SUB` (the `sub` of the tests' JWTs).
async fn know_owner_as_sub(app: &TestApp) {
    sqlx::query("UPDATE users SET external_id = $1 WHERE email = $2")
        .bind(OWNER_SUB)
        .bind(OWNER)
        .execute(&app.db)
        .await
        .unwrap();
}

/// The server with a JWKS (the first three keys), an HS256 secret and the demo owner known as `OWNER_SUB`.
async fn setup() -> Fixture {
    let jwks = JwksServer::start(&[&KEYS[0], &KEYS[1], &KEYS[2]]).await;
    let app = TestApp::start_with(&[
        ("DUKASYNC_JWT_JWKS_URL", &jwks.url),
        ("DUKASYNC_JWT_HS256_SECRET", SECRET),
        ("DUKASYNC_JWT_AUDIENCE", AUDIENCE),
        ("DUKASYNC_JWT_JWKS_MIN_REFETCH_SECS", "1"),
    ])
    .await;
    know_owner_as_sub(&app).await;
    Fixture { app, jwks }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid claims for the owner's phone, to be altered by each test.
fn claims() -> Value {
    json!({"sub": OWNER_SUB, "aud": AUDIENCE, "iat": now(), "exp": now() + 600, "device": "phone-1"})
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.signing).unwrap()
}

fn sign_hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(String::from);
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

async fn status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/v1/scopes", Some(token)).await.status()
}

async fn assert_refused(f: &Fixture, token: &str) {
    let resp = f.app.get("/v1/scopes", Some(token)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

/// A valid token sees the owner's scopes; asserts it, for each accepted algorithm.
async fn assert_accepted_as_owner(f: &Fixture, token: &str) {
    let resp = f.app.get("/v1/scopes", Some(token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let owner = f.app.token(OWNER, "owner-cli").await;
    let expected: ScopeList = f.app.get("/v1/scopes", Some(&owner)).await.json().await.unwrap();
    let got: ScopeList = resp.json().await.unwrap();
    assert_eq!(format!("{got:?}"), format!("{expected:?}"));
}

#[tokio::test]
async fn eddsa_from_the_jwks_is_accepted_and_its_device_created_once() {
    let f = setup().await;
    let token = sign(ed(), &claims());
    assert_accepted_as_owner(&f, &token).await;
    // A second token of the same device (another iat) finds the same device row.
    let mut later = claims();
    later["iat"] = json!(now() - 1);
    assert_eq!(status(&f.app, &sign(ed(), &later)).await, StatusCode::OK);
    let devices: Vec<(String, String)> =
        sqlx::query_as("SELECT d.name, d.external_id FROM devices d WHERE d.external_id IS NOT NULL")
            .fetch_all(&f.app.db)
            .await
            .unwrap();
    assert_eq!(devices, vec![("jwt:phone-1".to_string(), "phone-1".to_string())]);
}

#[tokio::test]
async fn es256_from_the_jwks_is_accepted() {
    let f = setup().await;
    assert_accepted_as_owner(&f, &sign(&KEYS[1], &claims())).await;
}

#[tokio::test]
async fn rs256_from_the_jwks_is_accepted() {
    let f = setup().await;
    assert_accepted_as_owner(&f, &sign(&KEYS[2], &claims())).await;
}

#[tokio::test]
async fn hs256_with_the_shared_secret_is_accepted() {
    let f = setup().await;
    assert_accepted_as_owner(&f, &sign_hs256(SECRET.as_bytes(), None, &claims())).await;
}

#[tokio::test]
async fn a_rotated_key_is_accepted_without_restart_and_the_old_one_dropped() {
    let f = setup().await;
    let new_key = &KEYS[3];
    assert_eq!(status(&f.app, &sign(ed(), &claims())).await, StatusCode::OK);
    f.jwks.publish(&[new_key]);
    // The new kid is fetched at most once per DUKASYNC_JWT_JWKS_MIN_REFETCH_SECS (1 s here): ask until the
    // server has refetched (observable: the answer), within a deadline.
    let token = sign(new_key, &claims());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&f.app, &token).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the rotated key was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old key left the JWKS: a fresh token of it (not cached) is refused.
    let mut fresh = claims();
    fresh["device"] = json!("phone-2");
    assert_refused(&f, &sign(ed(), &fresh)).await;
}

#[tokio::test]
async fn random_kids_do_not_hammer_the_jwks_url() {
    let f = setup().await;
    assert_eq!(status(&f.app, &sign(ed(), &claims())).await, StatusCode::OK);
    let before = f.jwks.fetches.load(Ordering::SeqCst);
    for i in 0..20 {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(format!("random-{i}"));
        let token = encode(&header, &claims(), &ed().signing).unwrap();
        assert_refused(&f, &token).await;
    }
    // With a 1 s minimum interval, 20 quick unknown kids cost at most a couple of fetches, not 20.
    let fetched = f.jwks.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 2, "{fetched} fetches for 20 unknown kids");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = setup().await;
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = B64.encode(claims().to_string());
    assert_refused(&f, &format!("{header}.{payload}.")).await;
    // Also with a kid of the JWKS, and with a signature part.
    let header = B64.encode(br#"{"alg":"none","kid":"ed-1"}"#);
    assert_refused(&f, &format!("{header}.{payload}.c2ln")).await;
}

#[tokio::test]
async fn a_public_key_used_as_an_hs256_secret_is_refused() {
    let f = setup().await;
    for key in [&KEYS[0], &KEYS[1], &KEYS[2]] {
        // The classic confusion: HS256 keyed with the public key the server knows, naming that key's kid.
        let token = sign_hs256(key.public_pem.as_bytes(), Some(&key.kid), &claims());
        assert_refused(&f, &token).await;
        // And keyed with the JWK's own bytes.
        let token = sign_hs256(key.jwk.to_string().as_bytes(), Some(&key.kid), &claims());
        assert_refused(&f, &token).await;
    }
}

#[tokio::test]
async fn an_alg_other_than_the_keys_is_refused() {
    let f = setup().await;
    // Signed by the P-256 key but naming the Ed25519 key's kid: the kid's key decides the algorithm.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(ed().kid.clone());
    let token = encode(&header, &claims(), &KEYS[1].signing).unwrap();
    assert_refused(&f, &token).await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let f = setup().await;
    let mut c = claims();
    c["aud"] = json!("another-service");
    assert_refused(&f, &sign(ed(), &c)).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let f = setup().await;
    let mut c = claims();
    c["iat"] = json!(now() - 900);
    c["exp"] = json!(now() - 60); // beyond the 30 s leeway
    assert_refused(&f, &sign(ed(), &c)).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let f = setup().await;
    let mut future_iat = claims();
    future_iat["iat"] = json!(now() + 300);
    future_iat["exp"] = json!(now() + 900);
    assert_refused(&f, &sign(ed(), &future_iat)).await;
    let mut future_nbf = claims();
    future_nbf["nbf"] = json!(now() + 300);
    assert_refused(&f, &sign(ed(), &future_nbf)).await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let f = setup().await;
    // A key the JWKS does not have, and a token without any kid.
    assert_refused(&f, &sign(&KEYS[3], &claims())).await;
    let token = encode(&Header::new(Algorithm::EdDSA), &claims(), &ed().signing).unwrap();
    assert_refused(&f, &token).await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let f = setup().await;
    let token = sign(ed(), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("erp-someone-else");
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    assert_refused(&f, &tampered).await;
}

#[tokio::test]
async fn a_lifetime_over_the_maximum_is_refused() {
    let f = setup().await;
    let mut c = claims();
    c["exp"] = json!(now() + 3601);
    assert_refused(&f, &sign(ed(), &c)).await;
}

#[tokio::test]
async fn an_unknown_sub_is_refused() {
    let f = setup().await;
    let mut c = claims();
    c["sub"] = json!("erp-user-nobody");
    assert_refused(&f, &sign(ed(), &c)).await;
}

#[tokio::test]
async fn without_jwt_configuration_jwts_are_refused_and_device_tokens_work() {
    let app = TestApp::start().await;
    know_owner_as_sub(&app).await;
    assert_eq!(
        status(&app, &sign_hs256(SECRET.as_bytes(), None, &claims())).await,
        StatusCode::UNAUTHORIZED
    );
    let device_token = app.token(OWNER, "phone").await;
    assert_eq!(status(&app, &device_token).await, StatusCode::OK);
}

#[tokio::test]
async fn a_user_linked_by_the_cli_signs_in_with_its_roles_here() {
    let f = setup().await;
    let (ok, _, err) = cli(
        &f.app,
        &[
            "user-add",
            "--email",
            "erp.cashier@duka.test",
            "--name",
            "Baraka",
            "--scope",
            "water",
            "--role",
            "cashier",
            "--external-id",
            "erp-user-9",
        ],
    );
    assert!(ok, "{err}");
    let mut c = claims();
    c["sub"] = json!("erp-user-9");
    let resp = f
        .app
        .get("/v1/scopes", Some(&sign_hs256(SECRET.as_bytes(), None, &c)))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let list: ScopeList = resp.json().await.unwrap();
    let seen: Vec<(String, String)> = list
        .scopes
        .iter()
        .map(|s| (s.id.clone(), s.role.as_str().to_string()))
        .collect();
    assert_eq!(seen, vec![("water".to_string(), "cashier".to_string())]);
}

#[tokio::test]
async fn a_cached_jwt_is_not_kept_past_its_exp() {
    // No leeway and a long token cache: only the bound by `exp` can refuse the token once it expired.
    let jwks = JwksServer::start(&[ed()]).await;
    let app = TestApp::start_with(&[
        ("DUKASYNC_JWT_JWKS_URL", &jwks.url),
        ("DUKASYNC_JWT_AUDIENCE", AUDIENCE),
        ("DUKASYNC_JWT_LEEWAY_SECS", "0"),
        ("DUKASYNC_TOKEN_CACHE_SECS", "300"),
    ])
    .await;
    know_owner_as_sub(&app).await;
    let mut c = claims();
    c["exp"] = json!(now() + 2);
    let token = sign(ed(), &c);
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    // Ask until the token is refused (the clock passing its exp), within a deadline far below the cache's 300 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&app, &token).await == StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "an expired JWT was still served from the cache"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(now() >= c["exp"].as_i64().unwrap());
}

#[tokio::test]
async fn a_jwks_file_works_like_a_url() {
    let dir = std::env::temp_dir().join(format!("dukasync-jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({"keys": [KEYS[1].jwk.clone()]}).to_string()).unwrap();
    let app = TestApp::start_with(&[
        ("DUKASYNC_JWT_JWKS_FILE", path.to_str().unwrap()),
        ("DUKASYNC_JWT_AUDIENCE", AUDIENCE),
    ])
    .await;
    know_owner_as_sub(&app).await;
    assert_eq!(status(&app, &sign(&KEYS[1], &claims())).await, StatusCode::OK);
    assert_eq!(status(&app, &sign(ed(), &claims())).await, StatusCode::UNAUTHORIZED);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_client_id_stays_bound_to_the_device_of_the_jwt() {
    let f = setup().await;
    let device = |token: String, client_id| Device {
        app: &f.app,
        token,
        client_id,
        scope: "water",
    };
    let phone = device(sign(ed(), &claims()), uuid::Uuid::new_v4());
    phone.push(&[put_customer(1, "c-1")]).await;
    // A later token of the same device (another iat, another key) goes on with the same client_id.
    let mut later = claims();
    later["iat"] = json!(now() - 5);
    let again = device(sign(&KEYS[1], &later), phone.client_id);
    again.push(&[put_customer(2, "c-2")]).await;
    // Another device of the same user may not use it.
    let mut other = claims();
    other["device"] = json!("phone-2");
    let thief = device(sign(ed(), &other), phone.client_id);
    let (status, body) = thief.push_error(&[put_customer(3, "c-3")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::CONFLICT, "client_id_taken")
    );
}
