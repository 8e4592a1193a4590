//! jwt verification benchmark: a typical token (iss, sub, exp, nbf, a few claims) checked by the
//! jwt plugin's `Jwt::verify` (decode, credential lookup, cached key, signature, claims) for
//! HS256 and RS256 (2048-bit). Goals: HS256 < 5 us, RS256 < 50 us.

#![allow(clippy::expect_used)] // a benchmark: a broken setup should stop it loudly

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gwctl::model::{Config, Consumer, JwtSecret};
use gwctl::plugins::jwt::{Jwt, JwtConfig};
use gwctl::store::Tables;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

/// A throwaway key made for this benchmark (openssl genpkey, 2048 bits).
const RSA_PRIVATE: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAjIjHQ/2+LYNJrdCLaXWOhzEm3NbcezHweM0Awm5dXQ8HDzxO
vdctuLP5iD7RuhDb9T1pWd9+BtkCBnWkKgxlP5VtE+jTGx0w+LZwcD+n88vCjgRD
ssYyyzOIaGN1JiJ0OBZ773ULs5HENjScChnmyx1lkVb9lmXq3jmBw0SbBC3tLpPI
cRQDPpYVZmvOC+GpbnGNyZT0/Z78Yoyhc+NqlHMsKNlLjwUII5u/e/KVmlk09gpY
Aa0pB/Eoh8XlNx7mUEwZ/YbFiR7rY2UBndP4ihBQlbeDNK5fo3Rrror/fM9AnKLA
JllE77HZXs9MkQ/9sghcYNAgD/3pcqC0F5pWoQIDAQABAoIBAAxyIJOY6TrGocPO
8EnKq3C1nad5L9WJOq64GRUfCQ2wwwNKZ/7QC7CL39F9Hr3HuHMjmSzoahTZKyC/
UmaW6nCTHzHgMLH6B9g+7/5A5PLmXLiPEB/JBb6RNcdo53sVGg3Nj/RI/VxN0H6s
chVC7fmXBOO2PIcRR5eeqCtO7BuWhAWpPpkS/ANlFqEOl6ifLgsRRhRN6vLjEIo9
0qpWTRvlWcRl455+5Nxm3O0n26Zz1IOyKQNBZoYNhLbFEXlLCj4KIo/LaYYNxsQ+
kHBF8NFsJN4dpl28sdFWMrc8FwaXcU6sDPwnVUfFPuwzd6o5rztQxhRJ1YpBcSVi
EiXEz3ECgYEAxleiJ5sIksReeeuqIFLA79+7YJoCO/kveoxGcQwDpceCNLn5LzFC
scqW/coW5wOz+NamDRIN5qYbyky7f0BlsfNVDqQK1VBGflqwf5a3BGGi+BaYJdcv
bNRwZcBrrnmHUv6ZLTjx9FwdvGm+8uiMYRXja9gcsEozK+zwj4U1fLsCgYEAtWMm
XpKUH+uc9yDmWDByHjMsr9nUCOeWsy4ION4KIurTbeq+lp2EFftYrcHg8His3e4M
wI1rqctWN2c+9rVr8twniTxJPqsz9PjxsvM/fGPXdKAuKd/rS9D0q+M8gQ9YhF8r
HFt7XVGoovr1Am1Zu8tAOYd4QHxD+WJCmbp9UlMCgYAwv+FPMr/Msw81kELkZvKd
ArSfbbsW2oxc5pV5u6Y53OuX4g3pF4Z5BH5QKpeueC6H/toZZFKeWj2CX5HGGSHl
txU04AT5oR1yeP/gnD6niQfxSjxjMJyrdxuZJs5Qt/YW5BTqFJEDqpB0etlAAwBd
7G9VVmzWt6YUKcyGugsHeQKBgEvlZsKflnccwRrumzM/YiCczQ/vlzb6oCXtFuek
kJ03oKwXUxP2aLRB7UMXIqW7+KkL2C4hfnEXccXQ35mfI8IEuE5F+WfNfvn7yDZW
bbQAmsBj3a0L0opwrk/VzxU5dJI+t+0vohjT+Dnpw+b2Flvrmb34nypsVIzevntQ
euudAoGAM9KwNLYBVemRrhoYWKHRgg3O7bmvnLwj22HlQZQgtujD2LdSOHJxJi9y
FZ0V5r1DZbAG8TWH3+8l6liGcbJeqONY6shCNfDx9gMBoxwiKa7YA/NXXEHiq9nA
0VBXBHkyjiEr5KhoIcAPU2mWluvaQ2CkiAN1wFGaIIDI7YNZJgM=
-----END RSA PRIVATE KEY-----
";
const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjIjHQ/2+LYNJrdCLaXWO
hzEm3NbcezHweM0Awm5dXQ8HDzxOvdctuLP5iD7RuhDb9T1pWd9+BtkCBnWkKgxl
P5VtE+jTGx0w+LZwcD+n88vCjgRDssYyyzOIaGN1JiJ0OBZ773ULs5HENjScChnm
yx1lkVb9lmXq3jmBw0SbBC3tLpPIcRQDPpYVZmvOC+GpbnGNyZT0/Z78Yoyhc+Nq
lHMsKNlLjwUII5u/e/KVmlk09gpYAa0pB/Eoh8XlNx7mUEwZ/YbFiR7rY2UBndP4
ihBQlbeDNK5fo3Rrror/fM9AnKLAJllE77HZXs9MkQ/9sghcYNAgD/3pcqC0F5pW
oQIDAQAB
-----END PUBLIC KEY-----
";
const SECRET: &str = "a-typical-hs256-secret-of-32-by!";

fn tables() -> Tables {
    let consumer = Consumer {
        id: Uuid::new_v4(),
        username: Some("bench".into()),
        custom_id: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    };
    let secret = |key: &str, algorithm: &str| JwtSecret {
        id: Uuid::new_v4(),
        consumer: consumer.id.into(),
        key: key.into(),
        secret: Some(SECRET.into()),
        rsa_public_key: Some(RSA_PUBLIC.into()),
        algorithm: algorithm.into(),
        tags: None,
        created_at: 0,
    };
    Tables::from_config(Config {
        jwt_secrets: vec![secret("hs-issuer", "HS256"), secret("rs-issuer", "RS256")],
        consumers: vec![consumer],
        ..Config::default()
    })
}

fn token(alg: Algorithm, iss: &str, key: &EncodingKey, now: i64) -> String {
    let claims = json!({
        "iss": iss, "sub": "user-1234", "iat": now, "nbf": now - 10, "exp": now + 3600,
        "roles": ["reader", "writer"], "name": "Bench User",
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("sign")
}

fn bench(c: &mut Criterion) {
    let tables = tables();
    let jwt = Jwt::new(JwtConfig {
        claims_to_verify: Some(vec!["exp".into(), "nbf".into()]),
        ..JwtConfig::default()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let hs = token(
        Algorithm::HS256,
        "hs-issuer",
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("hmac key"),
        now,
    );
    let rs_key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
    let rs = token(Algorithm::RS256, "rs-issuer", &rs_key, now);
    for t in [&hs, &rs] {
        assert!(jwt.verify(&tables, t, now).is_ok(), "token verifies");
    }
    c.bench_function("jwt_verify_hs256", |b| {
        b.iter(|| black_box(jwt.verify(&tables, black_box(&hs), now)).is_ok())
    });
    c.bench_function("jwt_verify_rs256", |b| {
        b.iter(|| black_box(jwt.verify(&tables, black_box(&rs), now)).is_ok())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
