"""Test helpers for the Images server: signed upload URLs and raw multipart bodies."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from mediaplane.images_api.schemas import UploadMetadata

HOST = "testserver"


def signed_upload_url(
    app: FastAPI,
    app_id: str = "app",
    object_id: str = "obj1",
    *,
    metadata: UploadMetadata | None = None,
    now: datetime | None = None,
    expires_in: int = 900,
) -> str:
    meta = metadata or UploadMetadata(uploaded_by="user", user_id="user-1")
    return str(
        app.state.images_signer.sign_url(
            method="POST",
            origin=f"http://{HOST}",
            host=HOST,
            path=f"/_images/{app_id}/{object_id}",
            params=[("x-authgear-metadata", meta.encode())],
            now=now or datetime.now(UTC),
            expires_in=expires_in,
        )
    )


def multipart_body(*parts: tuple[str, bytes], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body from (field name, bytes) pairs, each sent as a file."""
    out = b""
    for name, data in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()
