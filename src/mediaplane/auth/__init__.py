"""Who is calling: bearer JWTs checked against one configured key source, audiences and roles.

A route declares `Depends(require_principal(AUDIENCE_MEDIA, roles=[...]))`; `build_verifier`
picks the key source from settings (JWKS URL, PEM public key, HS256 secret, or the generated dev
key) once, at app start. `mint_dev_token` backs `mediaplane token` in dev.
"""

from mediaplane.auth.dependencies import Guard, require_principal
from mediaplane.auth.devtokens import dev_public_jwk, mint_dev_token
from mediaplane.auth.tokens import Principal, TokenVerifier, build_verifier

AUDIENCE_MEDIA = "media"
"""Tokens of end users calling the Media API and the Images server's user endpoints."""
AUDIENCE_BACKOFFICE = "backoffice"
"""Tokens of operators and back-office services."""

__all__ = [
    "AUDIENCE_BACKOFFICE",
    "AUDIENCE_MEDIA",
    "Guard",
    "Principal",
    "TokenVerifier",
    "build_verifier",
    "dev_public_jwk",
    "mint_dev_token",
    "require_principal",
]
