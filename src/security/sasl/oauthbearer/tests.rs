use super::*;
use crate::config::{Config, Overrides};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use serde_json::json;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000_000;
const LISTENER: &str = "SASL_PLAINTEXT";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_keys() -> &'static [sig::RsaKeyPair; 2] {
    static KEYS: OnceLock<[sig::RsaKeyPair; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gen = || sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        [gen(), gen()]
    })
}

fn ec_p256() -> &'static sig::EcdsaKeyPair {
    static KEY: OnceLock<sig::EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
}

fn ec_p384() -> &'static sig::EcdsaKeyPair {
    static KEY: OnceLock<sig::EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| sig::EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap())
}

fn rsa_jwk(kid: &str, key: &sig::RsaKeyPair) -> Value {
    let public = key.public_key();
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

fn ec_jwk(kid: &str, key: &sig::EcdsaKeyPair, crv: &str) -> Value {
    let point = key.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    json!({
        "kty": "EC",
        "kid": kid,
        "crv": crv,
        "x": b64(&point[1..1 + half]),
        "y": b64(&point[1 + half..]),
    })
}

fn ed25519() -> &'static sig::Ed25519KeyPair {
    static KEY: OnceLock<sig::Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| sig::Ed25519KeyPair::generate().unwrap())
}

enum Signer {
    Rsa(&'static sig::RsaKeyPair),
    Ec(&'static sig::EcdsaKeyPair),
    Ed(&'static sig::Ed25519KeyPair),
}

fn jwt(alg: &str, kid: Option<&str>, signer: Signer, claims: Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let rng = SystemRandom::new();
    let signature = match signer {
        Signer::Rsa(key) => {
            let padding: &'static dyn sig::RsaEncoding = match alg {
                "RS256" => &sig::RSA_PKCS1_SHA256,
                "RS384" => &sig::RSA_PKCS1_SHA384,
                "RS512" => &sig::RSA_PKCS1_SHA512,
                "PS256" => &sig::RSA_PSS_SHA256,
                "PS384" => &sig::RSA_PSS_SHA384,
                "PS512" => &sig::RSA_PSS_SHA512,
                other => panic!("{other}"),
            };
            let mut out = vec![0; key.public_modulus_len()];
            key.sign(padding, &rng, input.as_bytes(), &mut out).unwrap();
            out
        }
        Signer::Ec(key) => key.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        Signer::Ed(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
    };
    format!("{input}.{}", b64(&signature))
}

fn unsigned(claims: Value) -> String {
    format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn claims() -> Value {
    claims_at(NOW)
}

fn claims_at(now_ms: i64) -> Value {
    json!({ "sub": "alice", "iat": now_ms / 1000 - 10, "exp": now_ms / 1000 + 3600 })
}

fn props(extra: &[String]) -> BrokerProps {
    Config::load(
        None,
        Overrides {
            properties: extra.to_vec(),
            ..Default::default()
        },
    )
    .expect("config")
    .props
}

fn write_jwks(path: &std::path::Path, keys: Vec<Value>) {
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

struct Secured {
    _dir: tempfile::TempDir,
    path: PathBuf,
    v: Arc<OAuthBearerValidator>,
}

fn secured(extra: &[&str]) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let [k1, _] = rsa_keys();
    write_jwks(
        &path,
        vec![
            rsa_jwk("k1", k1),
            ec_jwk("e1", ec_p256(), "P-256"),
            ec_jwk("e2", ec_p384(), "P-384"),
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "d1", "x": b64(ed25519().public_key().as_ref())}),
            json!({"kty": "oct", "kid": "h1", "k": "c2VjcmV0"}),
            json!({"kty": "weird", "kid": "w1"}),
        ],
    );
    let mut props_list = vec![format!(
        "sasl.oauthbearer.jwks.endpoint.url=file://{}",
        path.display()
    )];
    props_list.extend(extra.iter().map(|s| s.to_string()));
    let v = OAuthBearerValidator::from_props(&props(&props_list), LISTENER).expect("validator");
    assert!(v.is_secured());
    Secured { _dir: dir, path, v }
}

fn rs256(c: Value) -> String {
    jwt("RS256", Some("k1"), Signer::Rsa(&rsa_keys()[0]), c)
}

fn refused(v: &OAuthBearerValidator, token: &str) -> String {
    let r = v.validate(token, NOW).expect_err("token must be refused");
    assert_eq!(r.json(), "{\"status\":\"invalid_token\"}");
    r.reason
}

#[test]
fn initial_response_parses_as_kafka_writes_it() {
    let r = ClientInitialResponse::parse(b"n,,\x01auth=Bearer abc.DEF-_.ghi\x01\x01").unwrap();
    assert_eq!(r.token, "abc.DEF-_.ghi");
    assert_eq!(r.authzid, "");
    assert!(r.extensions.is_empty());

    let r = ClientInitialResponse::parse(
        b"n,a=al=2Cice,\x01auth=bearer  t.u.\x01traceId=a b\x01logicalCluster=lkc-1\x01\x01",
    )
    .unwrap();
    assert_eq!(r.authzid, "al,ice");
    assert_eq!(r.token, "t.u.");
    assert_eq!(r.extensions["traceId"], "a b");
    assert_eq!(r.extensions["logicalCluster"], "lkc-1");
}

#[test]
fn malformed_initial_responses_are_refused() {
    let bad: &[&[u8]] = &[
        b"",
        b"\x01",
        b"y,,\x01auth=Bearer t\x01\x01",
        b"n,\x01auth=Bearer t\x01\x01",
        b"n,,auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer t\x01",
        b"n,,\x01auth=Bearer t",
        b"n,,\x01\x01",
        b"n,,\x01k=v\x01\x01",
        b"n,,\x01auth=Basic dXNlcg\x01\x01",
        b"n,,\x01auth=Bearer\x01\x01",
        b"n,,\x01auth=Bearer t!t\x01\x01",
        b"n,,\x01auth=Bearer t\x01k1=v\x01\x01",
        b"n,,\x01auth=Bearer t\x01k=\x01\x01",
        b"n,x=y,\x01auth=Bearer t\x01\x01",
        b"n,a=,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer \xff\x01\x01",
    ];
    for b in bad {
        assert!(
            ClientInitialResponse::parse(b).is_err(),
            "{:?} must be refused",
            String::from_utf8_lossy(b)
        );
    }
    let mut huge = b"n,,\x01auth=Bearer ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_CLIENT_RESPONSE));
    huge.extend(b"\x01\x01");
    assert!(ClientInitialResponse::parse(&huge).is_err());
}

#[test]
fn signed_tokens_of_every_supported_algorithm_are_accepted() {
    let s = secured(&[]);
    let [k1, _] = rsa_keys();
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let a =
            s.v.validate(&jwt(alg, Some("k1"), Signer::Rsa(k1), claims()), NOW)
                .unwrap_or_else(|e| panic!("{alg}: {}", e.reason));
        assert_eq!(a.principal, "alice");
        assert_eq!(a.expires_at_ms, NOW + 3_600_000);
    }
    let es256 = jwt("ES256", Some("e1"), Signer::Ec(ec_p256()), claims());
    assert_eq!(s.v.validate(&es256, NOW).unwrap().principal, "alice");
    let es384 = jwt("ES384", Some("e2"), Signer::Ec(ec_p384()), claims());
    assert_eq!(s.v.validate(&es384, NOW).unwrap().principal, "alice");
    let eddsa = jwt("EdDSA", Some("d1"), Signer::Ed(ed25519()), claims());
    assert_eq!(s.v.validate(&eddsa, NOW).unwrap().principal, "alice");
    // No kid: any key of the right kind may verify it.
    let no_kid = jwt("RS256", None, Signer::Rsa(k1), claims());
    assert!(s.v.validate(&no_kid, NOW).is_ok());
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let s = secured(&[]);
    let mut c = claims();
    c["exp"] = json!(NOW / 1000 - 31);
    assert!(refused(&s.v, &rs256(c)).contains("expired"));
    // Within the default 30 s of clock skew.
    let mut c = claims();
    c["exp"] = json!(NOW / 1000 - 29);
    assert!(s.v.validate(&rs256(c), NOW).is_ok());

    let mut c = claims();
    c["nbf"] = json!(NOW / 1000 + 60);
    assert!(refused(&s.v, &rs256(c)).contains("not yet valid"));
    let mut c = claims();
    c["iat"] = json!(NOW / 1000 + 60);
    assert!(refused(&s.v, &rs256(c)).contains("issued in the future"));

    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(refused(&s.v, &rs256(c)).contains("exp"));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iat");
    assert!(refused(&s.v, &rs256(c)).contains("iat"));
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    assert!(refused(&s.v, &rs256(c)).contains("exp"));
}

#[test]
fn clock_skew_setting_is_applied() {
    let s = secured(&["sasl.oauthbearer.clock.skew.seconds=0"]);
    let mut c = claims();
    c["exp"] = json!(NOW / 1000 - 1);
    assert!(refused(&s.v, &rs256(c)).contains("expired"));
}

#[test]
fn issuer_and_audience_are_checked_when_expected() {
    let s = secured(&[
        "sasl.oauthbearer.expected.issuer=https://idp.example",
        "sasl.oauthbearer.expected.audience=kafka,strata",
    ]);
    let mut good = claims();
    good["iss"] = json!("https://idp.example");
    good["aud"] = json!(["other", "strata"]);
    assert!(s.v.validate(&rs256(good.clone()), NOW).is_ok());
    let mut single = good.clone();
    single["aud"] = json!("kafka");
    assert!(s.v.validate(&rs256(single), NOW).is_ok());

    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    assert!(refused(&s.v, &rs256(c)).contains("Issuer"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("iss");
    assert!(refused(&s.v, &rs256(c)).contains("Issuer"));
    let mut c = good.clone();
    c["aud"] = json!(["other"]);
    assert!(refused(&s.v, &rs256(c)).contains("Audience"));
    let mut c = good;
    c.as_object_mut().unwrap().remove("aud");
    assert!(refused(&s.v, &rs256(c)).contains("Audience"));

    // As in Kafka: a token naming an audience is refused when none is expected.
    let s = secured(&[]);
    let mut c = claims();
    c["aud"] = json!("kafka");
    assert!(refused(&s.v, &rs256(c)).contains("no expected audience"));
}

#[test]
fn wrong_keys_and_algorithms_are_refused() {
    let s = secured(&[]);
    let [k1, k2] = rsa_keys();
    assert!(
        refused(&s.v, &jwt("RS256", Some("nope"), Signer::Rsa(k1), claims()))
            .contains("no key with kid")
    );
    // Signed by another key under k1's name.
    assert!(
        refused(&s.v, &jwt("RS256", Some("k1"), Signer::Rsa(k2), claims())).contains("signature")
    );
    // A signature that is not even base64.
    let t = rs256(claims());
    let (head, _) = t.rsplit_once('.').unwrap();
    refused(&s.v, &format!("{head}.***"));
    // An RSA key named by an EC algorithm, and the reverse.
    refused(
        &s.v,
        &jwt("ES256", Some("k1"), Signer::Ec(ec_p256()), claims()),
    );
    refused(&s.v, &jwt("RS256", Some("e1"), Signer::Rsa(k1), claims()));
    // Unsigned tokens and HMAC with a JWKS.
    assert!(refused(&s.v, &unsigned(claims())).contains("alg none"));
    let hs = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "HS256", "kid": "h1"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert!(refused(&s.v, &hs).contains("HS256"));
    // Structure.
    refused(&s.v, "a.b");
    refused(&s.v, "a.b.c.d");
    refused(&s.v, "!!.??.xx");
}

#[test]
fn principal_comes_from_the_configured_claim() {
    let s = secured(&["sasl.oauthbearer.sub.claim.name=client_id"]);
    let mut c = claims();
    c["client_id"] = json!(" svc-orders ");
    assert_eq!(
        s.v.validate(&rs256(c), NOW).unwrap().principal,
        "svc-orders"
    );
    assert!(refused(&s.v, &rs256(claims())).contains("client_id"));
}

#[test]
fn scope_comes_from_the_configured_claim() {
    let s = secured(&["sasl.oauthbearer.scope.claim.name=scp"]);
    let mut c = claims();
    c["scp"] = json!(["orders.read", "orders.write"]);
    c["scope"] = json!("ignored");
    assert_eq!(
        s.v.validate(&rs256(c), NOW).unwrap().scope,
        ["orders.read", "orders.write"]
    );
    // by default the claim is `scope`, a space-separated string
    let s = secured(&[]);
    let mut c = claims();
    c["scope"] = json!("a b");
    assert_eq!(s.v.validate(&rs256(c), NOW).unwrap().scope, ["a", "b"]);
}

#[test]
fn unsecured_mode_takes_unsigned_tokens_and_its_jaas_options() {
    let v = OAuthBearerValidator::from_props(&props(&[]), LISTENER).unwrap();
    assert!(!v.is_secured());
    let a = v.validate(&unsigned(claims()), NOW).unwrap();
    assert_eq!(a.principal, "alice");
    assert_eq!(a.expires_at_ms, NOW + 3_600_000);
    // A signed token cannot be checked here.
    assert!(v.validate(&rs256(claims()), NOW).is_err());
    let mut c = claims();
    c["exp"] = json!(NOW / 1000);
    assert_eq!(
        v.validate(&unsigned(c), NOW).unwrap_err().json(),
        "{\"status\":\"invalid_token\"}"
    );
    let mut c = claims();
    c["exp"] = json!(NOW / 1000 - 20);
    assert!(v.validate(&unsigned(c), NOW).is_err());
    assert!(v.validate("e30..", NOW).is_err());

    let jaas =
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule \
                required unsecuredValidatorPrincipalClaimName=\"user\" \
                unsecuredValidatorRequiredScope=\"produce consume\" \
                unsecuredValidatorAllowableClockSkewMs=\"5000\";";
    let v = OAuthBearerValidator::from_props(
        &props(&[format!("listener.name.sasl_plaintext.oauthbearer.{jaas}")]),
        LISTENER,
    )
    .unwrap();
    let mut c = claims();
    c["user"] = json!("bob");
    c["scope"] = json!("consume produce admin");
    c["exp"] = json!(NOW / 1000 - 2);
    let a = v.validate(&unsigned(c.clone()), NOW).unwrap();
    assert_eq!(a.principal, "bob");
    c["scope"] = json!(["consume"]);
    let r = v.validate(&unsigned(c.clone()), NOW).unwrap_err();
    assert_eq!(
        r.json(),
        "{\"status\":\"insufficient_scope\", \"scope\":\"[produce, consume]\"}"
    );
    c.as_object_mut().unwrap().remove("user");
    c["scope"] = json!("produce consume");
    assert!(v
        .validate(&unsigned(c), NOW)
        .unwrap_err()
        .reason
        .contains("user"));
}

#[test]
fn bad_settings_stop_start_up() {
    let e = OAuthBearerValidator::from_props(
        &props(&["sasl.oauthbearer.jwks.endpoint.url=ftp://x/jwks".into()]),
        LISTENER,
    )
    .unwrap_err();
    assert!(e.contains("not an https://"), "{e}");
    let e = OAuthBearerValidator::from_props(
        &props(&["sasl.oauthbearer.jwks.endpoint.url=file:/no/such/jwks.json".into()]),
        LISTENER,
    )
    .unwrap_err();
    assert!(e.contains("/no/such/jwks.json"), "{e}");
    let e = OAuthBearerValidator::from_props(
        &props(&[
            "sasl.jaas.config=x.Module required unsecuredValidatorAllowableClockSkewMs=-1;".into(),
        ]),
        LISTENER,
    )
    .unwrap_err();
    assert!(e.contains("unsecuredValidatorAllowableClockSkewMs"), "{e}");
    let e = OAuthBearerValidator::from_props(
        &props(&["sasl.server.callback.handler.class=com.example.Custom".into()]),
        LISTENER,
    )
    .unwrap_err();
    assert!(e.contains("com.example.Custom"), "{e}");
}

#[test]
fn the_exchange_answers_as_kafka_does() {
    let v = OAuthBearerValidator::from_props(&props(&[]), LISTENER).unwrap();
    let first = |t: &str| format!("n,,\x01auth=Bearer {t}\x01\x01").into_bytes();

    // The exchange runs on the broker's clock.
    let now = crate::clock::now_ms();
    let mut m = v.mechanism();
    match m.step(&first(&unsigned(claims_at(now)))) {
        Step::Done {
            token,
            principal,
            expires_at_ms,
        } => {
            assert!(token.is_empty());
            assert_eq!(principal, Principal::user("alice"));
            assert_eq!(expires_at_ms, Some(now / 1000 * 1000 + 3_600_000));
        }
        other => panic!("{other:?}"),
    }

    let mut c = claims();
    c["exp"] = json!(1);
    c["iat"] = json!(0);
    let mut m = v.mechanism();
    match m.step(&first(&unsigned(c))) {
        Step::Continue(challenge) => assert_eq!(challenge, b"{\"status\":\"invalid_token\"}"),
        other => panic!("{other:?}"),
    }
    match m.step(b"\x01") {
        Step::Failed(msg) => assert_eq!(msg, "{\"status\":\"invalid_token\"}"),
        other => panic!("{other:?}"),
    }

    let mut m = v.mechanism();
    match m.step(b"n,,\x01auth=Basic x\x01\x01") {
        Step::Rejected(reason) => assert!(reason.contains("Invalid scheme"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A lone \x01 with no error pending is just a malformed message.
    let mut m = v.mechanism();
    assert!(matches!(m.step(b"\x01"), Step::Rejected(_)));

    let mut m = v.mechanism();
    let t = unsigned(claims_at(now));
    match m.step(format!("n,a=bob,\x01auth=Bearer {t}\x01\x01").as_bytes()) {
        Step::Failed(msg) => assert!(msg.contains("(bob)") && msg.contains("(alice)"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let mut m = v.mechanism();
    assert!(matches!(
        m.step(format!("n,a=alice,\x01auth=Bearer {t}\x01\x01").as_bytes()),
        Step::Done { .. }
    ));
}

#[tokio::test]
async fn jwks_file_is_reread_and_the_last_good_set_kept() {
    let s = secured(&["sasl.oauthbearer.jwks.endpoint.refresh.ms=3600000"]);
    let [k1, k2] = rsa_keys();
    let rotated = jwt("RS256", Some("k2"), Signer::Rsa(k2), claims());
    assert!(refused(&s.v, &rotated).contains("no key with kid"));

    write_jwks(&s.path, vec![rsa_jwk("k2", k2)]);
    assert_eq!(s.v.refresh_keys().await.unwrap(), 1);
    assert!(s.v.validate(&rotated, NOW).is_ok());
    assert!(s.v.validate(&rs256(claims()), NOW).is_err());

    // A broken file does not take the keys away.
    std::fs::write(&s.path, b"{ not json").unwrap();
    assert!(s.v.refresh_keys().await.is_err());
    assert!(s.v.validate(&rotated, NOW).is_ok());
    std::fs::remove_file(&s.path).unwrap();
    assert!(s.v.refresh_keys().await.is_err());
    assert!(s.v.validate(&rotated, NOW).is_ok());
    let _ = k1;
}

#[tokio::test]
async fn an_unknown_kid_makes_the_background_task_refresh() {
    let s = secured(&["sasl.oauthbearer.jwks.endpoint.refresh.ms=3600000"]);
    let [k1, k2] = rsa_keys();
    write_jwks(&s.path, vec![rsa_jwk("k1", k1), rsa_jwk("k2", k2)]);
    let rotated = jwt("RS256", Some("k2"), Signer::Rsa(k2), claims());
    // The first attempt fails and asks for a refresh; a retry soon succeeds.
    assert!(s.v.validate(&rotated, NOW).is_err());
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.v.validate(&rotated, NOW).is_err() {
        assert!(Instant::now() < deadline, "the refresh never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn jwks_is_refreshed_on_its_interval() {
    let s = secured(&["sasl.oauthbearer.jwks.endpoint.refresh.ms=100"]);
    let [_, k2] = rsa_keys();
    write_jwks(&s.path, vec![rsa_jwk("k2", k2)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Tokens without a kid trigger no refresh of their own: only the interval applies.
    let rotated = jwt("RS256", None, Signer::Rsa(k2), claims());
    while s.v.validate(&rotated, NOW).is_err() {
        assert!(
            Instant::now() < deadline,
            "the periodic refresh never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn file_urls_name_paths() {
    assert_eq!(
        JwksSource::parse("file:///etc/jwks.json").unwrap(),
        JwksSource::File("/etc/jwks.json".into())
    );
    assert_eq!(
        JwksSource::parse("file://localhost/a%20b.json").unwrap(),
        JwksSource::File("/a b.json".into())
    );
    assert_eq!(
        JwksSource::parse("file:/x.json").unwrap(),
        JwksSource::File("/x.json".into())
    );
    assert!(JwksSource::parse("file://host/x.json").is_err());
    assert!(JwksSource::parse("file:").is_err());
    assert_eq!(
        JwksSource::parse("HTTPS://idp/keys").unwrap(),
        JwksSource::Http("HTTPS://idp/keys".into())
    );
}

/// A bare HTTP/1.1 server answering every request with the current status and body.
async fn jwks_http_server(
    answer: Arc<Mutex<(u16, String)>>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = answer.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_is_fetched_over_http_and_a_failed_fetch_is_retried() {
    let answer = Arc::new(Mutex::new((500u16, "oops".to_string())));
    let (url, hits) = jwks_http_server(Arc::clone(&answer)).await;
    let v = OAuthBearerValidator::from_props(
        &props(&[format!("sasl.oauthbearer.jwks.endpoint.url={url}")]),
        LISTENER,
    )
    .unwrap();
    let token = rs256(claims());
    let deadline = Instant::now() + Duration::from_secs(20);
    while hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no fetch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(v.validate(&token, NOW).is_err());
    let err = v.refresh_keys().await.unwrap_err();
    assert!(err.contains("500"), "{err}");

    *answer.lock().unwrap() = (
        200,
        json!({ "keys": [rsa_jwk("k1", &rsa_keys()[0])] }).to_string(),
    );
    // The failed fetch is retried with backoff: the keys arrive without any help.
    while v.validate(&token, NOW).is_err() {
        assert!(Instant::now() < deadline, "the retry never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken answer later keeps the keys.
    *answer.lock().unwrap() = (200, "[]".to_string());
    assert!(v.refresh_keys().await.is_err());
    assert!(v.validate(&token, NOW).is_ok());
}

#[test]
fn unknown_kids_ask_for_a_refresh_once_a_minute_each_and_for_at_most_sixteen() {
    let s = secured(&[]);
    let Mode::Secured(secured) = &s.v.mode else {
        panic!("not secured")
    };
    let jwks = &secured.jwks;
    let asked = |jwks: &Jwks| jwks.missing.lock().unwrap().len();
    jwks.request_refresh(Some("a"));
    jwks.request_refresh(Some("a"));
    assert_eq!(asked(jwks), 1);
    for i in 0..40 {
        jwks.request_refresh(Some(&format!("kid-{i}")));
    }
    assert_eq!(asked(jwks), MISSING_KID_MAX);
    jwks.request_refresh(Some(&"x".repeat(MISSING_KID_MAX_LEN + 1)));
    assert_eq!(asked(jwks), MISSING_KID_MAX);
}
