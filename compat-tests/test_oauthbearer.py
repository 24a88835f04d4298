"""SASL/OAUTHBEARER (KIP-255, RFC 7628) with real clients against strata.

Signed mode — `sasl.oauthbearer.jwks.endpoint.url` set: confluent-kafka (librdkafka) hands
the broker RS256 JWTs made with PyJWT through its `oauth_cb`; the broker checks them against
a JWKS read from a `file:` URL, or fetched from a small HTTP server the test runs.
- test_signed_tokens_checked_against_a_jwks_file: produce and consume as User:<sub>.
- test_jwks_fetched_from_an_http_endpoint: the same with the JWKS served over HTTP.
- test_expired_and_wrong_audience_tokens_fail_while_another_client_works: each bad token
  fails with librdkafka's authentication error carrying Kafka's `{"status":"invalid_token"}`,
  the broker's log names the reason, and a client holding a good token keeps producing.
- test_rotated_key_is_picked_up_on_an_unknown_kid: the JWKS file gains a new key; a token
  signed with it is accepted after the broker re-reads the keys (a retry of the client).
- test_token_refresh_and_reauthentication: a short-lived token; librdkafka fetches a new one
  through oauth_cb and re-authenticates (KIP-368) and keeps producing past the first token's
  expiry.
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
import subprocess
import threading
import time

import jwt
import pytest
from confluent_kafka import KafkaError, Producer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from clients import Delivered, consume_partitions, free_port_pair, tail, unique_topic

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
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})
