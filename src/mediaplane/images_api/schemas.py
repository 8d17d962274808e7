"""Request and response shapes of the Images server."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mediaplane.errors import InvalidInput
from mediaplane.images_api.signing import b64url_decode, b64url_encode


class UploadMetadata(BaseModel):
    """`x-authgear-metadata`: who uploads. No other key is accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uploaded_by: Literal["user", "admin_api"]
    user_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _user_needs_user_id(self) -> UploadMetadata:
        if self.uploaded_by == "user" and not self.user_id:
            raise ValueError("user_id is required when uploaded_by is user")
        return self

    def encode(self) -> str:
        """Base64URL (unpadded) of the JSON, as Authgear puts it in the query."""
        body = self.model_dump(exclude_none=True)
        return b64url_encode(json.dumps(body, separators=(",", ":")).encode())

    @classmethod
    def decode(cls, value: str) -> UploadMetadata:
        try:
            return cls.model_validate(json.loads(b64url_decode(value)))
        except (ValueError, ValidationError) as exc:
            raise InvalidInput("invalid_metadata", f"invalid x-authgear-metadata: {exc}") from None


class AdminUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)


class UploadURL(BaseModel):
    """The URL under both names: the seed spec's `upload_url`, and `url`, the key upstream
    Authgear's own upload handler answers (its clients read that one)."""

    upload_url: str
    url: str


class UploadURLResult(BaseModel):
    result: UploadURL

    @classmethod
    def of(cls, url: str) -> UploadURLResult:
        return cls(result=UploadURL(upload_url=url, url=url))
