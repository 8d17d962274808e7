"""The bucket CORS rules browser uploads need on S3, R2 or MinIO (`mediaplane storage cors`).

In S3 mode a browser PUTs to a presigned URL on the bucket's own origin, and reads presigned
GETs from it: the bucket, not this service, must answer those preflights. Each origin of
CORS_ALLOWED_ORIGINS gets PUT (signed for a `Content-Type`, the only header sent) and GET/HEAD,
the ETag exposed (multipart-style clients read it), no credentials (S3 CORS never sends any).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RULE_ID = "mediaplane-browser-uploads"
MAX_AGE_SECONDS = 600


def browser_upload_rules(origins: Sequence[str]) -> list[dict[str, Any]]:
    """The rules to apply for `origins` ([] for none: the bucket then takes no CORS)."""
    if not origins:
        return []
    return [
        {
            "ID": RULE_ID,
            "AllowedOrigins": list(origins),
            "AllowedMethods": ["GET", "HEAD", "PUT"],
            "AllowedHeaders": ["Content-Type"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": MAX_AGE_SECONDS,
        }
    ]
