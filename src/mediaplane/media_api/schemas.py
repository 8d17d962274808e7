"""Request and response shapes of the Media API (camelCase on the wire, as the spec)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# The types an upload URL can be signed for (`uploads.service.UPLOAD_CONTENT_TYPES`).
UploadContentType = Literal[
    "image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "image/avif"
]
CONTENT_TYPE_DESCRIPTION = (
    "The `Content-Type` the PUT will send; the URL is signed for it. The object's "
    "key keeps the spec's name (`.jpg`) whatever the type; downloads carry the type sniffed "
    "from the bytes."
)


class UploadRequest(CamelModel):
    """Optional body of the selfie and profile-picture upload-url requests."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    content_type: UploadContentType = Field(
        default="image/jpeg", description=CONTENT_TYPE_DESCRIPTION
    )


class PhotoUploadRequest(UploadRequest):
    project_id: uuid.UUID


class PhotoBatchRequest(PhotoUploadRequest):
    count: int = Field(ge=1, le=100, description="How many upload URLs to issue (1-100).")


HEADERS_FIELD = Field(
    description='What the PUT to `uploadUrl` must send: `{"Content-Type": ...}`, the signed type.'
)


class SelfieUploadURL(CamelModel):
    selfie_id: uuid.UUID
    upload_url: str
    headers: dict[str, str] = HEADERS_FIELD
    key: str
    expires_in_seconds: int


class PhotoUploadURL(CamelModel):
    photo_id: uuid.UUID
    upload_url: str
    headers: dict[str, str] = HEADERS_FIELD
    key: str
    expires_in_seconds: int


class PhotoUploadURLs(CamelModel):
    """Several photo upload URLs, each exactly what `POST /v1/photos/upload-url` answers."""

    items: list[PhotoUploadURL]


class ProfilePictureUploadURL(CamelModel):
    upload_url: str
    headers: dict[str, str] = HEADERS_FIELD
    file_url: str


class Download(CamelModel):
    """A presigned GET URL; never a public one."""

    url: str
    expires_in_seconds: int


class StepView(CamelModel):
    status: str
    reason: str | None
    attempts: int


class FaceBox(CamelModel):
    """A rectangle in pixels of the upright original (EXIF orientation applied)."""

    x: int
    y: int
    width: int
    height: int


class PhotoFaceView(CamelModel):
    """A face found in a photo: where it is, nothing about whom it matched."""

    box: FaceBox


class ProcessingView(CamelModel):
    """A photo's one overall outcome, the field a client polls (docs/media-api.md)."""

    status: str = Field(
        description="pending (nothing arrived yet), processing (arrived, steps underway), "
        "processed (every step done), failed (see failedStep and reason), or expired (the URL "
        "was never used)."
    )
    failed_step: str | None = Field(
        default=None,
        description="With failed: `upload` (the bytes were refused on arrival) or the "
        "processing step that failed (thumbnail, watermark, faces).",
    )
    reason: str | None = None


class PhotoView(CamelModel):
    photo_id: uuid.UUID
    project_id: uuid.UUID
    status: str = Field(description="The upload: pending, uploaded, rejected or expired.")
    reason: str | None
    size: int | None
    width: int | None
    height: int | None
    created_at: datetime
    uploaded_at: datetime | None
    downloads: dict[str, Download] = Field(
        description="`original` and each derivative that exists (thumb-400, thumb-800, "
        "watermarked), as presigned GETs."
    )
    processing: ProcessingView
    steps: dict[str, StepView] = Field(
        default_factory=dict,
        description="Processing steps (thumbnail, watermark, faces): queued, running, done, "
        "or failed with its reason.",
    )
    faces: list[PhotoFaceView] = Field(
        default_factory=list,
        description="The faces the `faces` step found, largest first (empty until it ran). "
        "Shown to the photographer and operators only; who matched is never shown.",
    )


class PhotoPage(CamelModel):
    items: list[PhotoView]
    next_cursor: str | None


class FaceStatus(CamelModel):
    """What face processing made of a selfie: processing, indexed, no_face, multiple_faces,
    failed, no_consent, superseded, erased, or off (no face engine)."""

    status: str
    reason: str | None = None


class SelfieView(CamelModel):
    selfie_id: uuid.UUID
    status: str
    reason: str | None
    created_at: datetime
    uploaded_at: datetime | None
    download: Download | None
    face: FaceStatus


class MyPhoto(CamelModel):
    """A photo the user appears in: previews only, never the original."""

    photo_id: uuid.UUID
    project_id: uuid.UUID
    similarity: float
    box: dict[str, int] = Field(
        description="The user's face in the photo: left, top, width, height in pixels of the "
        "upright original."
    )
    width: int | None = Field(description="The original's upright width (for `box`).")
    height: int | None
    created_at: datetime
    downloads: dict[str, Download]


class MyPhotos(CamelModel):
    items: list[MyPhoto]
    next_cursor: str | None = None


class StorageEventsResult(CamelModel):
    records: int
    settled: int
