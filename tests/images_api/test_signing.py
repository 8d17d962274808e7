"""The upload URL signature, checked against an independent implementation of Authgear's formula.

`independent_signature` below is written from the scheme's text (not from the project's signer):
if both agree, a URL signed by a real Authgear server with the same key verifies here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest

from mediaplane.images_api.signing import SignatureError, UploadSigner, key_from_setting

KEY = b"authgear-images-key"
HOST = "app1.example.com"
PATH = "/_images/app1/obj123"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def go_query_escape(s: str) -> str:
    # Go's url.QueryEscape: unreserved A-Za-z0-9-_.~ kept, space -> "+", everything else %XX.
    out = []
    for byte in s.encode():
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-_.~"):
            out.append(ch)
        elif ch == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def independent_signature(
    key: bytes, method: str, path: str, query: list[tuple[str, str]], host: str
) -> str:
    by_name: dict[str, list[str]] = {}
    for name, value in query:
        by_name.setdefault(name, []).append(value)
    items = []
    for name in sorted(by_name):
        if name in ("", "x-authgear-signature"):
            continue
        for value in by_name[name]:
            items.append(go_query_escape(name) + ("=" + go_query_escape(value) if value else ""))
    canonical = f"{method}\n{path}\n{'&'.join(items)}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    date = dict(query)["x-authgear-date"]
    to_sign = "HMAC-SHA256\n" + date + "\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def metadata(**body: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def signed_query(
    *,
    date: datetime = NOW,
    expires: int = 900,
    extra: list | None = None,
    key: bytes = KEY,
    host: str = HOST,
    path: str = PATH,
) -> list[tuple[str, str]]:
    query = [
        ("x-authgear-metadata", metadata(uploaded_by="user", user_id="u 1/ü")),
        ("x-authgear-algorithm", "HMAC-SHA256"),
        ("x-authgear-date", date.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("x-authgear-expires", str(expires)),
        ("x-authgear-signedheaders", "host"),
        *(extra or []),
    ]
    query.append(("x-authgear-signature", independent_signature(key, "POST", path, query, host)))
    return query


def verify(
    query, *, host: str = HOST, path: str = PATH, now: datetime = NOW + timedelta(seconds=5)
):
    return UploadSigner(KEY).verify(
        method="POST", host=host, escaped_path=path, params=query, now=now
    )


def test_independently_signed_url_verifies() -> None:
    verify(signed_query(extra=[("a b", "x y&z"), ("empty", ""), ("dup", "2"), ("dup", "1")]))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: dict(path="/_images/app1/obj124"), id="path"),
        pytest.param(lambda q: dict(host="evil.example.com"), id="host"),
        pytest.param(lambda q: dict(query=[*q, ("extra", "1")]), id="query-added"),
        pytest.param(
            lambda q: dict(
                query=[
                    (k, metadata(uploaded_by="admin_api", user_id="x"))
                    if k == "x-authgear-metadata"
                    else (k, v)
                    for k, v in q
                ]
            ),
            id="metadata",
        ),
        pytest.param(
            lambda q: dict(
                query=[
                    (k, ("0" if v[0] != "0" else "1") + v[1:])
                    if k == "x-authgear-signature"
                    else (k, v)
                    for k, v in q
                ]
            ),
            id="flipped-hex-digit",
        ),
        pytest.param(
            lambda q: dict(
                query=[(k, "3600") if k == "x-authgear-expires" else (k, v) for k, v in q]
            ),
            id="expires-extended",
        ),
    ],
)
def test_any_change_breaks_the_signature(tamper) -> None:
    query = signed_query()
    changes = tamper(query)
    with pytest.raises(SignatureError) as err:
        verify(
            changes.get("query", query),
            host=changes.get("host", HOST),
            path=changes.get("path", PATH),
        )
    assert err.value.reason == "invalid_signature"


def test_expired_signature() -> None:
    query = signed_query(date=NOW, expires=900)
    verify(query, now=NOW + timedelta(seconds=900))  # the last valid second
    with pytest.raises(SignatureError) as err:
        verify(query, now=NOW + timedelta(seconds=901))
    assert err.value.reason == "expired_signature"


@pytest.mark.parametrize("drop", ["x-authgear-signature", "x-authgear-date", "x-authgear-expires"])
def test_missing_parameters(drop: str) -> None:
    query = [(k, v) for k, v in signed_query() if k != drop]
    with pytest.raises(SignatureError) as err:
        verify(query)
    assert err.value.reason == "invalid_signature_query_param"


def test_seed_aliases_metadata_and_signature_are_accepted() -> None:
    query = [("metadata" if k == "x-authgear-metadata" else k, v) for k, v in signed_query()]
    query = [("signature" if k == "x-authgear-signature" else k, v) for k, v in query]
    # The alias for metadata changes the canonical query unless normalised before hashing;
    # the signer normalises both names, as its docstring promises.
    verify(query)


def test_project_signer_output_verifies_with_independent_formula() -> None:
    signer = UploadSigner(KEY)
    url = signer.sign_url(
        method="POST",
        origin=f"https://{HOST}",
        host=HOST,
        path=PATH,
        params=[("x-authgear-metadata", metadata(uploaded_by="user", user_id="u"))],
        now=NOW,
        expires_in=900,
    )
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    assert parts.path == PATH and parts.netloc == HOST
    assert dict(query)["x-authgear-signature"] == independent_signature(
        KEY, "POST", PATH, query, HOST
    )
    assert dict(query)["x-authgear-expires"] == "900"


def test_octet_jwk_key() -> None:
    k = base64.urlsafe_b64encode(KEY).rstrip(b"=").decode()
    assert key_from_setting(json.dumps({"kty": "oct", "k": k})) == KEY
    assert key_from_setting("raw-secret") == b"raw-secret"


def test_escaped_path_is_signed_as_sent() -> None:
    path = "/_images/app1/" + quote("obj 1")
    verify(signed_query(path=path), path=path)
    assert urlencode([("a", "b c")]) == "a=b+c"


# A known answer from Authgear's own signer (`httpsigning.Sign` in authgear/authgear-server,
# pkg/util/httpsigning): its query is `url.Values.Encode()`, names sorted, values escaped by
# `url.QueryEscape` (`:` as `%3A`), the signature added last and sorted in with the rest.
AUTHGEAR_KEY = b"k3y with spaces & symbols"
AUTHGEAR_DATE = datetime(2026, 11, 29, 3, 4, 5, tzinfo=UTC)
AUTHGEAR_METADATA = "eyJ1cGxvYWRlZF9ieSI6ImFkbWluX2FwaSIsInVzZXJfaWQiOiJ1c2VyIDEifQ"
AUTHGEAR_URL = (
    "http://localhost:3003/_images/app/obj-with~odd_chars.x"
    "?x-authgear-algorithm=HMAC-SHA256"
    "&x-authgear-date=2026-11-29T03%3A04%3A05Z"
    "&x-authgear-expires=900"
    f"&x-authgear-metadata={AUTHGEAR_METADATA}"
    "&x-authgear-signature=41cc288290370b548b66c34036f25a62d28978143970a00f59aa8655cbbe0952"
    "&x-authgear-signedheaders=host"
)


def test_signer_reproduces_authgear_known_answer_byte_for_byte() -> None:
    url = UploadSigner(AUTHGEAR_KEY).sign_url(
        method="POST",
        origin="http://localhost:3003",
        host="localhost:3003",
        path="/_images/app/obj-with~odd_chars.x",
        params=[("x-authgear-metadata", AUTHGEAR_METADATA)],
        now=AUTHGEAR_DATE,
        expires_in=900,
    )
    assert url == AUTHGEAR_URL
    assert json.loads(base64.urlsafe_b64decode(AUTHGEAR_METADATA + "==")) == {
        "uploaded_by": "admin_api",
        "user_id": "user 1",
    }


def verify_authgear_url(url: str, now: datetime) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    return UploadSigner(AUTHGEAR_KEY).verify(
        method="POST",
        host=parts.netloc,
        escaped_path=parts.path,
        params=parse_qsl(parts.query, keep_blank_values=True),
        now=now,
    )


def test_verifier_accepts_authgear_known_answer_and_reports_expiry_after_the_signature() -> None:
    expiry = AUTHGEAR_DATE + timedelta(seconds=900)
    pairs = verify_authgear_url(AUTHGEAR_URL, now=expiry)  # the last valid second
    assert ("x-authgear-metadata", AUTHGEAR_METADATA) in pairs
    # Long expired (it is signed for 2026-11-29T03:04:05Z): the signature is good, so the
    # reason is the expiry...
    with pytest.raises(SignatureError) as expired:
        verify_authgear_url(AUTHGEAR_URL, now=expiry + timedelta(seconds=1))
    assert expired.value.reason == "expired_signature"
    # ...while one changed hex digit of the same expired URL is reported as a forgery.
    forged = AUTHGEAR_URL.replace("signature=41cc", "signature=41cd")
    with pytest.raises(SignatureError) as bad:
        verify_authgear_url(forged, now=expiry + timedelta(days=365))
    assert bad.value.reason == "invalid_signature"
    # Another key, or another host than the one Authgear signed (port included), fails too.
    with pytest.raises(SignatureError) as other_host:
        verify_authgear_url(AUTHGEAR_URL.replace("localhost:3003", "localhost:3004"), now=expiry)
    assert other_host.value.reason == "invalid_signature"


def test_duplicated_parameters_are_read_as_authgear_reads_them() -> None:
    # Authgear's Verify reads `q.Get(name)`: the FIRST value. Both values are signed (the
    # canonical query keeps every value), so the verifier must judge the expiry by the first.
    query = signed_query(date=NOW, expires=5, extra=[("x-authgear-expires", "999999")])
    with pytest.raises(SignatureError) as err:
        verify(query, now=NOW + timedelta(seconds=6))
    assert err.value.reason == "expired_signature"


def test_signing_parameters_given_by_the_caller_are_replaced_as_authgear_does() -> None:
    # Authgear's Sign uses `q.Set`: a stale date or signature in the URL is replaced, not
    # doubled, so the result is the same URL as signing a clean one.
    url = UploadSigner(AUTHGEAR_KEY).sign_url(
        method="POST",
        origin="http://localhost:3003",
        host="localhost:3003",
        path="/_images/app/obj-with~odd_chars.x",
        params=[
            ("x-authgear-date", "2001-01-01T00:00:00Z"),
            ("x-authgear-metadata", AUTHGEAR_METADATA),
            ("x-authgear-signature", "00"),
        ],
        now=AUTHGEAR_DATE,
        expires_in=900,
    )
    assert url == AUTHGEAR_URL
