"""TokenVerifier and the key sources: real JWTs, real keys, a real JWKS endpoint on loopback."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mediaplane.auth import (
    AUDIENCE_BACKOFFICE,
    AUDIENCE_MEDIA,
    Principal,
    build_verifier,
    dev_public_jwk,
    mint_dev_token,
)
from mediaplane.auth.tokens import JwksKeys, TokenVerifier
from mediaplane.errors import Forbidden, Unauthenticated, Unavailable
from tests.auth.factories import (
    HS256_SECRET,
    OMIT,
    JwksServer,
    SigningKey,
    claims,
    ec_key,
    ed25519_key,
    hmac_token,
    hs256_key,
    make_settings,
    rsa_key,
    unsigned_token,
    verifier_for,
)

MEDIA = (AUDIENCE_MEDIA,)


def accepts(verifier: TokenVerifier, token: str) -> bool:
    """The token verifies AND the principal is the token's own subject (a call that merely
    returned would prove nothing: a principal is always truthy)."""
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]
    return verifier.verify(token, audiences=MEDIA).subject == subject


def refused(verifier: TokenVerifier, token: str, *, audiences: tuple[str, ...] = MEDIA) -> str:
    """The reason a token is refused with 401."""
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(token, audiences=audiences)
    return caught.value.reason


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


# --- a genuine token ------------------------------------------------------------------------


def test_valid_token_gives_a_principal_with_roles_from_role_and_roles() -> None:
    key = rsa_key()
    payload = claims(role="admin", roles=["user", "editor"], email="a@example.com")

    principal = verifier_for(key).verify(key.sign(payload), audiences=MEDIA)

    assert principal == Principal(
        subject=payload["sub"],
        audience=AUDIENCE_MEDIA,
        roles=frozenset({"admin", "user", "editor"}),
        claims={},
    )
    assert principal.claims["email"] == "a@example.com"
    assert "a@example.com" not in repr(principal)


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (rsa_key(), "RS256"),
        (rsa_key(), "PS256"),
        (rsa_key(), "RS512"),
        (ec_key(), "ES256"),
        (ec_key("ec-384", curve="P-384"), "ES384"),
        (ed25519_key(), "EdDSA"),
        (hs256_key(), "HS256"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.kid,
)
def test_each_key_type_verifies_its_own_algorithms(key: SigningKey, algorithm: str) -> None:
    payload = claims()
    token = key.sign(payload, algorithm=algorithm)

    assert verifier_for(key).verify(token, audiences=MEDIA).subject == payload["sub"]


def test_aud_list_matches_the_first_accepted_audience() -> None:
    key = ec_key()
    token = key.sign(claims(aud=["other", AUDIENCE_BACKOFFICE, AUDIENCE_MEDIA]))

    principal = verifier_for(key).verify(token, audiences=(AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE))

    assert principal.audience == AUDIENCE_MEDIA


def test_role_claims_come_from_the_configured_claims_only() -> None:
    key = ec_key()
    token = key.sign(claims(role="ignored", **{"https://example.com/roles": ["operator", 7]}))
    verifier = verifier_for(key, role_claims=["https://example.com/roles"])

    assert verifier.verify(token, audiences=MEDIA).roles == {"operator"}


# --- not genuine: 401 -------------------------------------------------------------------------


def test_expired_token_is_token_expired() -> None:
    key = rsa_key()
    token = key.sign(claims(iat=int(time.time()) - 600, exp=int(time.time()) - 60))

    assert refused(verifier_for(key, leeway_seconds=30), token) == "token_expired"


def test_expiry_within_leeway_still_verifies() -> None:
    key = rsa_key()
    token = key.sign(claims(exp=int(time.time()) - 10))

    assert accepts(verifier_for(key, leeway_seconds=30), token)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_beyond_leeway_is_refused(claim: str) -> None:
    key = rsa_key()
    verifier = verifier_for(key, leeway_seconds=30)
    future = int(time.time())

    assert accepts(verifier, key.sign(claims(**{claim: future + 20})))
    assert refused(verifier, key.sign(claims(**{claim: future + 120}))) == "invalid_token"


def test_signature_of_another_key_is_refused() -> None:
    impostor = SigningKey(rsa.generate_private_key(65537, 2048), "RS256", rsa_key().kid)

    assert refused(verifier_for(rsa_key()), impostor.sign(claims())) == "invalid_token"


def test_tampered_payload_is_refused() -> None:
    key = ec_key()
    header, _, signature = key.sign(claims(roles=["user"])).split(".")
    forged = hmac_token(claims(roles=["admin"]), b"x").split(".")[1]

    assert refused(verifier_for(key), f"{header}.{forged}.{signature}") == "invalid_token"


@pytest.mark.parametrize(
    "key", [rsa_key(), ec_key(), ed25519_key(), hs256_key()], ids=lambda k: k.kid
)
def test_alg_none_is_refused(key: SigningKey) -> None:
    assert refused(verifier_for(key), unsigned_token(claims())) == "invalid_token"


@pytest.mark.parametrize("key", [rsa_key(), ec_key()], ids=lambda k: k.kid)
def test_hs256_signed_with_the_public_key_is_refused(key: SigningKey) -> None:
    # The classic algorithm confusion: the public PEM is no secret, so if a verifier let the
    # header pick HS256 and used its key bytes as the HMAC secret, anyone could mint tokens.
    for secret in (key.public_pem().encode(), key.public_pem().strip().encode()):
        assert refused(verifier_for(key), hmac_token(claims(), secret)) == "invalid_token"


def test_asymmetric_algorithm_against_the_hs256_secret_is_refused() -> None:
    assert refused(verifier_for(hs256_key()), rsa_key().sign(claims())) == "invalid_token"


def test_wrong_issuer_is_invalid_issuer() -> None:
    key = rsa_key()
    verifier = verifier_for(key, issuer="https://id.example.com")

    assert accepts(verifier, key.sign(claims(iss="https://id.example.com")))
    assert refused(verifier, key.sign(claims(iss="https://evil.example"))) == "invalid_issuer"
    assert refused(verifier, key.sign(claims())) == "invalid_token"  # no iss at all


@pytest.mark.parametrize("sub", [OMIT, "", 42], ids=["missing", "empty", "number"])
def test_token_without_a_subject_is_refused(sub: object) -> None:
    key = rsa_key()

    assert refused(verifier_for(key), key.sign(claims(sub=sub))) == "invalid_token"


def test_token_without_exp_is_refused() -> None:
    key = rsa_key()

    assert refused(verifier_for(key), key.sign(claims(exp=OMIT))) == "invalid_token"


@pytest.mark.parametrize(
    ("token", "reason"),
    [("", "missing_token"), ("not-a-jwt", "invalid_token"), ("a.b.c", "invalid_token")],
)
def test_missing_or_malformed_token_is_refused(token: str, reason: str) -> None:
    assert refused(verifier_for(rsa_key()), token) == reason


# --- genuine, but not for this API: 403 -------------------------------------------------------


@pytest.mark.parametrize(
    "aud", [AUDIENCE_BACKOFFICE, ["a", "b"], OMIT], ids=["other", "list", "missing"]
)
def test_wrong_audience_is_forbidden(aud: object) -> None:
    key = rsa_key()

    with pytest.raises(Forbidden) as caught:
        verifier_for(key).verify(key.sign(claims(aud=aud)), audiences=MEDIA)
    assert caught.value.reason == "wrong_audience"


# --- key sources from settings ----------------------------------------------------------------


@pytest.mark.parametrize("key", [rsa_key(), ec_key(), ed25519_key()], ids=lambda k: k.kid)
def test_public_key_setting_verifies(tmp_path: Path, key: SigningKey) -> None:
    # Also as an env var often holds it: on one line with literal "\n".
    pem = key.public_pem().replace("\n", "\\n")
    verifier = build_verifier(make_settings(tmp_path, jwt_public_key=pem))

    assert accepts(verifier, key.sign(claims()))
    assert not (tmp_path / "keys").exists()  # no dev key made when a key is configured


def test_hs256_secret_setting_verifies(tmp_path: Path) -> None:
    verifier = build_verifier(make_settings(tmp_path, jwt_hs256_secret=HS256_SECRET.decode()))

    assert accepts(verifier, hs256_key().sign(claims()))


def _weak_rsa_pem() -> str:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    return weak.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _private_pem() -> str:
    private = ec_key().private
    assert not isinstance(private, bytes)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("setting", "value", "names"),
    [
        ("jwt_public_key", "not a pem", "JWT_PUBLIC_KEY"),
        ("jwt_public_key", _private_pem(), "JWT_PUBLIC_KEY"),
        ("jwt_public_key", _weak_rsa_pem(), "JWT_PUBLIC_KEY"),
        ("jwt_hs256_secret", "short", "JWT_HS256_SECRET"),
        ("jwt_jwks_url", "file:///etc/jwks.json", "JWT_JWKS_URL"),
    ],
    ids=["garbage", "private", "rsa-1024", "short-secret", "file-url"],
)
def test_bad_key_setting_fails_at_start_naming_it(
    tmp_path: Path, setting: str, value: str, names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        build_verifier(make_settings(tmp_path, **{setting: value}))


# --- JWKS -------------------------------------------------------------------------------------


def test_jwks_url_picks_the_key_by_kid(tmp_path: Path, jwks: JwksServer) -> None:
    jwks.publish(rsa_key(), ec_key(), ed25519_key())
    verifier = build_verifier(make_settings(tmp_path, jwt_jwks_url=jwks.url))

    for key in (rsa_key(), ec_key(), ed25519_key()):
        assert accepts(verifier, key.sign(claims()))
    # The EC key's kid on an RSA-signed token: the kid's key decides, and it does not match.
    assert refused(verifier, rsa_key().sign(claims(), kid=ec_key().kid)) == "invalid_token"
    assert jwks.hits == 1  # the key set is cached


def test_jwks_rotation_takes_new_keys_and_drops_withdrawn_ones(jwks: JwksServer) -> None:
    old, new = rsa_key("2024"), ec_key("2025")
    verifier = TokenVerifier(JwksKeys(jwks.url, cooldown_seconds=0))
    jwks.publish(old)
    assert accepts(verifier, old.sign(claims()))

    jwks.publish(new)

    assert accepts(verifier, new.sign(claims()))  # unknown kid: refetched
    assert refused(verifier, old.sign(claims())) == "invalid_token"


def test_unknown_kids_do_not_flood_the_provider(tmp_path: Path, jwks: JwksServer) -> None:
    jwks.publish(rsa_key())
    verifier = build_verifier(make_settings(tmp_path, jwt_jwks_url=jwks.url))
    assert accepts(verifier, rsa_key().sign(claims()))

    for _ in range(5):
        token = rsa_key().sign(claims(), kid=uuid.uuid4().hex)
        assert refused(verifier, token) == "invalid_token"

    assert jwks.hits == 1  # refetches wait for the cooldown


def test_jwks_token_without_kid_is_refused(jwks: JwksServer) -> None:
    jwks.publish(rsa_key())
    token = jwt.encode(claims(), rsa_key().private, algorithm="RS256")

    assert refused(TokenVerifier(JwksKeys(jwks.url)), token) == "invalid_token"


def test_symmetric_key_in_a_jwks_is_refused(jwks: JwksServer) -> None:
    jwks.publish(rsa_key(), hs256_key())
    token = hmac_token(claims(), HS256_SECRET, kid=hs256_key().kid)

    assert refused(TokenVerifier(JwksKeys(jwks.url)), token) == "invalid_token"


def test_unreachable_jwks_is_unavailable_not_unauthenticated() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = TokenVerifier(JwksKeys(f"http://127.0.0.1:{port}/jwks.json"))

    with pytest.raises(Unavailable) as caught:
        verifier.verify(rsa_key().sign(claims()), audiences=MEDIA)
    assert caught.value.reason == "jwks_unavailable"


# --- dev key ----------------------------------------------------------------------------------


def test_dev_token_verifies_with_the_dev_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_issuer="mediaplane-dev")
    verifier = build_verifier(settings)
    subject = str(uuid.uuid4())

    token = mint_dev_token(
        settings, subject=subject, audience=AUDIENCE_MEDIA, roles=["user", "editor"]
    )

    principal = verifier.verify(token, audiences=MEDIA)
    assert (principal.subject, principal.roles) == (subject, {"user", "editor"})
    assert principal.claims["role"] == "user"
    assert principal.claims["roles"] == ["user", "editor"]
    assert principal.claims["iss"] == "mediaplane-dev"
    assert principal.claims["exp"] - principal.claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["kid"] == dev_public_jwk(settings)["kid"]
    # The published JWK verifies it too, as another service holding it would.
    published = jwt.PyJWK(dev_public_jwk(settings))
    jwt.decode(token, published, algorithms=["ES256"], audience=AUDIENCE_MEDIA)


def test_dev_key_file_is_private_and_reused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    build_verifier(settings)
    key_file = tmp_path / "keys" / "dev-jwt.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    first = key_file.read_bytes()
    token = mint_dev_token(settings, subject="u1", audience=AUDIENCE_MEDIA, roles=["user"])

    restarted = build_verifier(settings)

    assert key_file.read_bytes() == first
    assert restarted.verify(token, audiences=MEDIA).subject == "u1"


def test_dev_token_is_refused_when_a_key_source_is_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_public_key=rsa_key().public_pem())

    with pytest.raises(RuntimeError, match="JWT key source is configured"):
        mint_dev_token(settings, subject="u1", audience=AUDIENCE_MEDIA, roles=["user"])
