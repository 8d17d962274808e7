"""Authgear's upload URL signature (`x-authgear-*` query parameters), so a URL issued by a real
Authgear server with the same key verifies here and the other way round.

    signature = hex(HMAC-SHA256(key, "HMAC-SHA256\n" + date + "\n" + hex(SHA256(canonical))))
    canonical = METHOD \n PATH \n CANONICAL_QUERY \n host:HOST \n \n host \n UNSIGNED-PAYLOAD

The canonical query sorts names (values keep their order), drops `x-authgear-signature`, escapes
names and values like Go's `url.QueryEscape` and writes a name with an empty value bare.
As in Authgear, the signature is checked before the expiry, so an expired URL with a forged
signature reports the forgery; a name given twice counts with its first value (Go's
`url.Values.Get`). Checked against a known answer of Authgear's own signer in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus, urlencode

from mediaplane.errors import InvalidInput

ALGORITHM = "HMAC-SHA256"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SIGNED_HEADERS = "host"

P_ALGORITHM = "x-authgear-algorithm"
P_DATE = "x-authgear-date"
P_EXPIRES = "x-authgear-expires"
P_SIGNED_HEADERS = "x-authgear-signedheaders"
P_SIGNATURE = "x-authgear-signature"
P_METADATA = "x-authgear-metadata"
# The seed document names them `metadata` and `signature`: accepted on input, never issued.
_SIGNING_PARAMS = {P_ALGORITHM, P_DATE, P_EXPIRES, P_SIGNED_HEADERS, P_SIGNATURE}
ALIASES = {"signature": P_SIGNATURE, "metadata": P_METADATA}

QueryPairs = Sequence[tuple[str, str]]


class SignatureError(InvalidInput):
    """reason: `invalid_signature`, `invalid_signature_query_param` or `expired_signature`."""


def key_from_setting(value: str) -> bytes:
    """The HMAC key from IMAGES_SIGNING_KEY: an octet JWK (`{"kty":"oct","k":...}`) or raw text."""
    text = value.strip()
    if text.startswith("{"):
        jwk = json.loads(text)
        if jwk.get("kty") != "oct" or "k" not in jwk:
            raise ValueError("IMAGES_SIGNING_KEY JWK must be an octet key with a `k` member")
        return b64url_decode(jwk["k"])
    return text.encode()


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _go_query_escape(value: str) -> str:
    # Go's url.QueryEscape keeps A-Z a-z 0-9 - _ . ~ and writes a space as "+": quote_plus agrees.
    return quote_plus(value, safe="")


def canonical_query(pairs: QueryPairs) -> str:
    names = sorted({name for name, _ in pairs if name and name != P_SIGNATURE})
    parts: list[str] = []
    for name in names:
        for key, value in pairs:
            if key != name:
                continue
            escaped = _go_query_escape(name)
            parts.append(f"{escaped}={_go_query_escape(value)}" if value else escaped)
    return "&".join(parts)


def string_to_sign(method: str, escaped_path: str, pairs: QueryPairs, host: str, date: str) -> str:
    canonical = "\n".join(
        [
            method,
            escaped_path,
            canonical_query(pairs),
            f"host:{host}",
            "",
            SIGNED_HEADERS,
            "UNSIGNED-PAYLOAD",
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def first_values(pairs: QueryPairs) -> dict[str, str]:
    """{name: first value}, as Go's `url.Values.Get` reads a query (and so Authgear): with a
    name given twice, the first value counts (every value is signed)."""
    values: dict[str, str] = {}
    for name, value in pairs:
        values.setdefault(name, value)
    return values


def normalize_aliases(pairs: QueryPairs) -> list[tuple[str, str]]:
    """Rename the seed's `metadata`/`signature` to their `x-authgear-*` names."""
    return [(ALIASES.get(name, name), value) for name, value in pairs]


class UploadSigner:
    """Signs and verifies Images upload URLs with one key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the images signing key is empty")
        self._key = key

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def sign_url(
        self,
        *,
        method: str,
        origin: str,
        host: str,
        path: str,
        params: QueryPairs,
        now: datetime,
        expires_in: int,
    ) -> str:
        """An absolute URL (`origin` + `path`) carrying `params` and a signature valid for
        `expires_in` seconds from `now`. `path` must already be escaped."""
        # As Authgear's `q.Set`: a signing parameter already in `params` is replaced.
        pairs = [
            *((name, value) for name, value in params if name not in _SIGNING_PARAMS),
            (P_ALGORITHM, ALGORITHM),
            (P_DATE, now.astimezone(UTC).strftime(DATE_FORMAT)),
            (P_EXPIRES, str(expires_in)),
            (P_SIGNED_HEADERS, SIGNED_HEADERS),
        ]
        date = pairs[-3][1]
        signature = self._mac(string_to_sign(method, path, pairs, host, date))
        ordered = sorted([*pairs, (P_SIGNATURE, signature)], key=lambda kv: kv[0])
        return f"{origin}{path}?{urlencode(ordered, quote_via=quote_plus)}"

    def verify(
        self, *, method: str, host: str, escaped_path: str, params: QueryPairs, now: datetime
    ) -> list[tuple[str, str]]:
        """Check the signature, then the expiry; return the query with aliases normalised."""
        pairs = normalize_aliases(params)
        values = first_values(pairs)
        try:
            claimed = bytes.fromhex(values.get(P_SIGNATURE, ""))
        except ValueError:
            claimed = b""
        if not claimed:
            raise SignatureError(
                "invalid_signature_query_param", f"missing or malformed {P_SIGNATURE}"
            )
        date_text = values.get(P_DATE, "")
        try:
            signed_at = datetime.strptime(date_text, DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise SignatureError(
                "invalid_signature_query_param", f"missing or malformed {P_DATE}"
            ) from None
        try:
            expires = int(values.get(P_EXPIRES, ""))
        except ValueError:
            raise SignatureError(
                "invalid_signature_query_param", f"missing or malformed {P_EXPIRES}"
            ) from None

        expected = self._mac(string_to_sign(method, escaped_path, pairs, host, date_text))
        if not hmac.compare_digest(claimed, bytes.fromhex(expected)):
            raise SignatureError("invalid_signature", "invalid signature")
        if now > signed_at + timedelta(seconds=expires):
            raise SignatureError("expired_signature", "expired signature")
        return pairs
