"""SASL/OAUTHBEARER (KIP-255, RFC 7628) with real clients against strata.

Signed mode — `sasl.oauthbearer.jwks.endpoint.url` set: confluent-kafka (librdkafka) hands
the broker RS256 JWTs made with PyJWT through its `oauth_cb`; the broker checks them against
a JWKS read from a `file:` URL, or fetched from a small HTTP server the test runs.
- test_signed_tokens_checked_against_a_jwks_file: produce and consume as User:<sub>.
- test_jwks_fetched_from_an_http_endpoint: the same with the JWKS served over HTTP.
- test_jwks_over_https_is_trusted_by_the_systems_roots_only: served over HTTPS by a private
  CA, the JWKS is fetched when the trusted roots (SSL_CERT_FILE) hold that CA, and not with
  the system's bundle alone: tokens are then refused and the log says why.
- test_expired_and_wrong_audience_tokens_fail_while_another_client_works: each bad token
  fails with librdkafka's authentication error carrying Kafka's `{"status":"invalid_token"}`,
  the broker's log names the reason, and a client holding a good token keeps producing.
- test_a_token_from_another_issuer_fails_while_a_right_one_works: with
  `sasl.oauthbearer.expected.issuer` set, a token from another issuer (or with no `iss`)
  fails with `{"status":"invalid_token"}` while a client with the right issuer produces.
- test_rotated_key_is_picked_up_on_an_unknown_kid: the JWKS file gains a new key; a token
  signed with it is accepted after the broker re-reads the keys (a retry of the client).
- test_token_refresh_and_reauthentication: a short-lived token; librdkafka fetches a new one
  through oauth_cb and re-authenticates (KIP-368) and keeps producing past the first token's
  expiry.
- test_sasl_ssl_listener_with_its_own_jwks: a SASL_SSL listener validates signed tokens
  (its listener-prefixed JWKS URL) beside a SASL_PLAINTEXT listener in unsecured mode.
- test_java_client_with_a_signed_token_from_a_file: the Java client (kafka-clients 4.3.0) with
  Kafka's OAuthBearerLoginCallbackHandler reading a pre-made JWT from a `file:` token
  endpoint.

Unsecured mode — no JWKS URL: Kafka's default unsecured validator.
- test_kcat_unsecured_jwt: kcat with librdkafka's built-in unsecured JWT
  (`enable.sasl.oauthbearer.unsecure.jwt=true`, `sasl.oauthbearer.config=principal=alice`);
  with `unsecuredValidatorRequiredScope` set, a token without the scope is refused with
  `insufficient_scope`.
"""

from __future__ import annotations

import http.server
import json
import pathlib
import re
import ssl
import subprocess
import threading
import time

import jwt
import pytest
from confluent_kafka import KafkaError, Producer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from certs import TestPki
from clients import (Delivered, consume_partitions, program_report, run_configured_java, tail, unique_topic,
                     wait_until)
from conftest import StrataBroker, free_port, strata_binary

ISSUER = "https://idp.strata.test"
AUDIENCE = "strata-broker"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = rsa_key()


def jwk(key, kid: str) -> dict:
    d = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    d.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return d


def write_jwks(path: pathlib.Path, *keys: dict) -> None:
    path.write_text(json.dumps({"keys": list(keys)}))


def make_token(sub: str = "alice", lifetime: int = 3600, kid: str = "k1", key=KEY, **claims) -> str:
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + lifetime, "iss": ISSUER, "aud": AUDIENCE}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}  # a claim given as None is left out
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"


@pytest.fixture
def oauth_broker(request, tmp_path):
    """start(*props, sasl_ssl_port=None, pki=None) -> a broker whose listener is
    SASL_PLAINTEXT on broker.port with OAUTHBEARER and the given Kafka properties
    (name=value), plus a SASL_SSL listener on sasl_ssl_port when given (its certificate
    from pki)."""
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(*props: str, sasl_ssl_port: int | None = None, pki: TestPki | None = None) -> StrataBroker:
        n = len(brokers)
        data_dir = tmp_path / f"data{n}"
        data_dir.mkdir()
        port = free_port()
        listeners = f"SASL_PLAINTEXT://127.0.0.1:{port}"
        props = ("sasl.enabled.mechanisms=OAUTHBEARER", "auto.create.topics.enable=true", "num.partitions=1",
                 *props)
        if sasl_ssl_port is not None:
            listeners += f",SASL_SSL://127.0.0.1:{sasl_ssl_port}"
            server = pki.server()
            keystore = pki.dir / "keystore.pem"
            keystore.write_text(server.key.read_text() + server.cert.read_text())
            props = (*props, f"ssl.keystore.location={keystore}")
        args = ["--override", f"listeners={listeners}", "--override", f"advertised.listeners={listeners}"]
        for p in props:
            args += ["--override", p]
        broker = StrataBroker(strata_binary(), port, data_dir, tmp_path / f"strata{n}.log", tuple(args))
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.shutdown_quietly()


def signed_props(jwks_url: str, *props: str) -> tuple[str, ...]:
    return (f"sasl.oauthbearer.jwks.endpoint.url={jwks_url}",
            f"sasl.oauthbearer.expected.issuer={ISSUER}",
            f"sasl.oauthbearer.expected.audience=other-service,{AUDIENCE}",
            *props)


def broker_log(broker) -> str:
    return ANSI.sub("", broker.log_path.read_text(errors="replace"))


class TokenSource:
    """An oauth_cb for librdkafka: hands out what `make()` returns and counts the calls."""

    def __init__(self, make):
        self.make = make
        self.calls = 0
        self.issued: list[str] = []

    def __call__(self, _oauthbearer_config):
        self.calls += 1
        token = self.make()
        self.issued.append(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        # librdkafka refuses to send a token it thinks has expired; a deliberately expired
        # one is handed over with a future lifetime so that the broker is the one to judge it.
        expiry = claims["exp"] if claims["exp"] > time.time() + 1 else time.time() + 3600
        return token, float(expiry), claims["sub"]


def client_conf(bootstrap: str, tokens: TokenSource, **extra) -> dict:
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": tokens}
    conf.update(extra)
    return conf


def produce(conf: dict, topic: str, values: list[bytes], timeout: float = 30.0) -> Delivered:
    delivered = Delivered()
    producer = Producer(dict(conf, **{"acks": "all", "message.timeout.ms": int(timeout * 1000)}))
    try:
        for v in values:
            producer.produce(topic, value=v, partition=0, on_delivery=delivered.callback)
        assert producer.flush(timeout) == 0, f"undelivered after {timeout}s: {delivered.failed}"
    finally:
        producer.close()
    assert not delivered.failed, delivered.failed
    return delivered


def produce_and_consume(conf: dict, topic: str, n: int = 20) -> None:
    values = [f"{topic}-{i}".encode() for i in range(n)]
    produce(conf, topic, values)
    consumer_conf = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
    got = consume_partitions(conf["bootstrap.servers"], topic, [0], expected=n, timeout=30, settle=0,
                             **consumer_conf)
    assert [m.value() for m in got[0]] == values


def authentication_error(conf: dict, timeout: float = 30.0) -> str:
    """The authentication error a fresh producer with this configuration runs into."""
    errors: list[KafkaError] = []
    producer = Producer(dict(conf, error_cb=errors.append))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            producer.poll(0.2)
            auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
            if auth:
                return auth[0].str()
        raise AssertionError(f"no authentication error within {timeout}s; errors seen: {errors}")
    finally:
        producer.close()


@pytest.fixture
def jwks_file(tmp_path) -> pathlib.Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(KEY, "k1"))
    return path


class JwksServer:
    """A small HTTP server handing out a JWKS document, counting the requests."""

    def __init__(self, document: dict, tls=None):
        """`tls`: an issued certificate (certs.TestPki) to serve https:// with."""
        self.document = document
        self.requests = 0
        self.scheme = "https" if tls else "http"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert), str(tls.key))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_signed_tokens_checked_against_a_jwks_file(oauth_broker, jwks_file):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}"))
    tokens = TokenSource(lambda: make_token(sub="alice"))
    produce_and_consume(client_conf(broker.bootstrap, tokens), unique_topic("oauth-file"))
    assert tokens.calls >= 1
    assert "principal=User:alice mechanism=OAUTHBEARER" in broker_log(broker)


def test_jwks_fetched_from_an_http_endpoint(oauth_broker):
    server = JwksServer({"keys": [jwk(KEY, "k1")]})
    try:
        broker = oauth_broker(*signed_props(server.url))
        tokens = TokenSource(lambda: make_token(sub="svc-orders"))
        produce_and_consume(client_conf(broker.bootstrap, tokens), unique_topic("oauth-http"))
        assert server.requests >= 1
        assert "principal=User:svc-orders mechanism=OAUTHBEARER" in broker_log(broker)
    finally:
        server.close()


def test_jwks_over_https_is_trusted_by_the_systems_roots_only(oauth_broker, tmp_path, monkeypatch):
    pki = TestPki(tmp_path / "pki")
    server = JwksServer({"keys": [jwk(KEY, "k1")]}, tls=pki.server())
    try:
        # The trusted roots as OpenSSL's variables name them: first with the private CA
        # (as after update-ca-certificates), then the system's bundle without it.
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
        broker = oauth_broker(*signed_props(server.url))
        tokens = TokenSource(lambda: make_token(sub="svc-tls"))
        produce_and_consume(client_conf(broker.bootstrap, tokens), unique_topic("oauth-https"))
        assert server.requests >= 1
        assert "principal=User:svc-tls mechanism=OAUTHBEARER" in broker_log(broker)

        monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        untrusting = oauth_broker(*signed_props(server.url))
        error = authentication_error(client_conf(untrusting.bootstrap, TokenSource(lambda: make_token())))
        assert '{"status":"invalid_token"}' in error, error
        wait_until(lambda: "OAUTHBEARER JWKS refresh failed" in broker_log(untrusting), 15,
                   "the failed JWKS fetch in the log")
        assert "UnknownIssuer" in broker_log(untrusting), tail(broker_log(untrusting))
    finally:
        server.close()


def test_expired_and_wrong_audience_tokens_fail_while_another_client_works(oauth_broker, jwks_file):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}"))
    topic = unique_topic("oauth-bad")
    good = Producer(dict(client_conf(broker.bootstrap, TokenSource(lambda: make_token(sub="alice"))),
                         acks="all"))
    delivered = Delivered()
    good.produce(topic, value=b"before", partition=0, on_delivery=delivered.callback)
    assert good.flush(30) == 0 and b"before" in delivered.ok, delivered.failed

    now = int(time.time())
    expired = TokenSource(lambda: make_token(sub="mallory", iat=now - 7200, exp=now - 3600))
    error = authentication_error(client_conf(broker.bootstrap, expired))
    assert "SASL authentication error" in error and '{"status":"invalid_token"}' in error, error

    wrong_audience = TokenSource(lambda: make_token(sub="mallory", aud="someone-else"))
    error = authentication_error(client_conf(broker.bootstrap, wrong_audience))
    assert "SASL authentication error" in error and '{"status":"invalid_token"}' in error, error

    log = broker_log(broker)
    assert "the token has expired" in log, tail(log)
    assert "Audience (aud) claim [\"someone-else\"] doesn't contain an acceptable identifier" in log, tail(log)
    assert "User:mallory" not in log
    for token in expired.issued + wrong_audience.issued:
        assert token.split(".")[2] not in log, "the broker logged a token"

    good.produce(topic, value=b"after", partition=0, on_delivery=delivered.callback)
    assert good.flush(30) == 0 and b"after" in delivered.ok, delivered.failed
    good.close()


def test_a_token_from_another_issuer_fails_while_a_right_one_works(oauth_broker, jwks_file):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}"))
    topic = unique_topic("oauth-issuer")
    # signed with the right key, for the right audience, but issued by someone else
    foreign = TokenSource(lambda: make_token(sub="mallory", iss="https://idp.elsewhere.test"))
    with_issuer = Producer(dict(client_conf(broker.bootstrap, TokenSource(lambda: make_token(sub="alice"))),
                                acks="all"))
    error = authentication_error(client_conf(broker.bootstrap, foreign))
    assert "SASL authentication error" in error and '{"status":"invalid_token"}' in error, error
    delivered = Delivered()
    with_issuer.produce(topic, value=b"from-alice", partition=0, on_delivery=delivered.callback)
    assert with_issuer.flush(30) == 0 and b"from-alice" in delivered.ok, delivered.failed
    with_issuer.close()
    # no issuer at all fails too
    without = TokenSource(lambda: make_token(sub="mallory", iss=None))
    error = authentication_error(client_conf(broker.bootstrap, without))
    assert '{"status":"invalid_token"}' in error, error

    log = broker_log(broker)
    assert (f"Issuer (iss) claim value (https://idp.elsewhere.test) doesn't match expected value of {ISSUER}"
            in log), tail(log)
    assert "No Issuer (iss) claim present" in log, tail(log)
    assert "principal=User:alice mechanism=OAUTHBEARER" in log
    assert "User:mallory" not in log


def test_rotated_key_is_picked_up_on_an_unknown_kid(oauth_broker, jwks_file):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}"))
    new_key = rsa_key()
    write_jwks(jwks_file, jwk(KEY, "k1"), jwk(new_key, "k2"))
    # The broker read the file at start-up; the first attempt with k2 finds no such key and
    # has the keys re-read, librdkafka's reconnect then gets in.
    tokens = TokenSource(lambda: make_token(sub="bob", kid="k2", key=new_key))
    produce_and_consume(client_conf(broker.bootstrap, tokens), unique_topic("oauth-rotate"))
    log = broker_log(broker)
    assert 'no key with kid "k2"' in log, tail(log)
    assert 'OAUTHBEARER JWKS updated source=file:' in log and 'kids=["k1", "k2"]' in log, tail(log)
    assert "principal=User:bob mechanism=OAUTHBEARER" in log, tail(log)


def test_token_refresh_and_reauthentication(oauth_broker, jwks_file):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}", "sasl.oauthbearer.clock.skew.seconds=0"))
    lifetime = 4
    tokens = TokenSource(lambda: make_token(sub="alice", lifetime=lifetime))
    topic = unique_topic("oauth-reauth")
    delivered = Delivered()
    producer = Producer(dict(client_conf(broker.bootstrap, tokens), acks="all", **{"linger.ms": 0}))
    # Keep producing well past the first token's expiry.
    end = time.monotonic() + 3 * lifetime
    i = 0
    while time.monotonic() < end:
        producer.produce(topic, value=b"m%d" % i, partition=0, on_delivery=delivered.callback)
        producer.flush(15)
        i += 1
        time.sleep(0.25)
    assert producer.flush(15) == 0
    producer.close()
    assert not delivered.failed, delivered.failed
    assert len(delivered.ok) == i
    assert tokens.calls >= 2, "librdkafka never asked for a fresh token"
    log = broker_log(broker)
    assert "re-authentication succeeded" in log, tail(log)


def test_kcat_unsecured_jwt(oauth_broker):
    jaas = f'{LOGIN_MODULE} required unsecuredValidatorRequiredScope="kafka";'
    broker = oauth_broker(f"listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config={jaas}")
    assert "accepts UNSIGNED tokens" in broker_log(broker)
    topic = unique_topic("oauth-kcat")

    def kcat(oauth_config: str, *args: str, stdin: bytes | None = None):
        return subprocess.run(["kcat", "-b", broker.bootstrap,
                               "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=OAUTHBEARER",
                               "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
                               "-X", f"sasl.oauthbearer.config={oauth_config}", *args],
                              input=stdin, capture_output=True, timeout=60)

    produced = kcat("principal=alice scope=kafka", "-P", "-t", topic, "-p", "0",
                    stdin=b"one\ntwo\nthree\n")
    assert produced.returncode == 0, produced.stderr.decode(errors="replace")
    consumed = kcat("principal=alice scope=kafka", "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q")
    assert consumed.returncode == 0, consumed.stderr.decode(errors="replace")
    assert consumed.stdout.decode().splitlines() == ["one", "two", "three"]
    assert "principal=User:alice mechanism=OAUTHBEARER" in broker_log(broker)

    refused = kcat("principal=eve", "-L", "-m", "5")
    err = refused.stderr.decode(errors="replace")
    assert refused.returncode != 0, err
    assert '{"status":"insufficient_scope", "scope":"[kafka]"}' in err, err


def test_sasl_ssl_listener_with_its_own_jwks(oauth_broker, jwks_file, tmp_path):
    pki = TestPki(tmp_path / "pki")
    ssl_port = free_port()
    prefix = "listener.name.sasl_ssl.oauthbearer."
    broker = oauth_broker(f"{prefix}sasl.oauthbearer.jwks.endpoint.url=file://{jwks_file}",
                          f"{prefix}sasl.oauthbearer.expected.audience={AUDIENCE}",
                          sasl_ssl_port=ssl_port, pki=pki)
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    tokens = TokenSource(lambda: make_token(sub="carol"))
    conf = client_conf(ssl_bootstrap, tokens, **{"security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.ca_cert)})
    produce_and_consume(conf, unique_topic("oauth-ssl"))
    assert "principal=User:carol mechanism=OAUTHBEARER" in broker_log(broker)

    def kcat_metadata(bootstrap: str, *extra: str):
        return subprocess.run(["kcat", "-b", bootstrap, "-X", "sasl.mechanisms=OAUTHBEARER",
                               "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
                               "-X", "sasl.oauthbearer.config=principal=eve", *extra, "-L", "-m", "5"],
                              capture_output=True, timeout=60)

    # The SASL_PLAINTEXT listener keeps Kafka's default: unsigned tokens.
    plain = kcat_metadata(broker.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT")
    assert plain.returncode == 0, plain.stderr.decode(errors="replace")
    # The SASL_SSL listener checks signatures: an unsigned token is refused there.
    refused = kcat_metadata(ssl_bootstrap, "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.ca_cert}")
    err = refused.stderr.decode(errors="replace")
    assert refused.returncode != 0 and '{"status":"invalid_token"}' in err, err
    assert "unsigned tokens (alg none) are refused" in broker_log(broker)


def test_java_client_with_a_signed_token_from_a_file(oauth_broker, jwks_file, java_classpath, tmp_path):
    broker = oauth_broker(*signed_props(f"file://{jwks_file}"))
    token_file = tmp_path / "token.jwt"
    token_file.write_text(make_token(sub="java-app", scope="kafka"))
    cmd, proc, summary = run_configured_java(java_classpath, broker.bootstrap, unique_topic("oauth-java"), 20, {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.login.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
        "sasl.oauthbearer.token.endpoint.url": f"file:{token_file}",
        "sasl.jaas.config": f"{LOGIN_MODULE} required ;",
    }, tmp_path, jvm_args=(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file:{token_file}",))
    report = program_report(cmd, proc, summary, "client log")
    assert proc.returncode == 0 and summary and summary["ok"], report
    assert summary["produced"] == 20 and summary["consumed"] == 20, report
    assert "principal=User:java-app mechanism=OAUTHBEARER" in broker_log(broker)
