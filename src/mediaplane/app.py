"""Builds the FastAPI app: state, routers, error handlers, probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from mediaplane import __version__
from mediaplane.access_log import AccessLog, request_id_of
from mediaplane.auth import build_verifier
from mediaplane.consent import ConsentRevoked, Purpose, subscribe
from mediaplane.consent.routes import audit_router as consent_audit_router
from mediaplane.consent.routes import router as consent_router
from mediaplane.console import mount_console
from mediaplane.cors import Cors
from mediaplane.db import Database
from mediaplane.errors import MediaplaneError
from mediaplane.faces.index import FaceIndex, build_index
from mediaplane.faces.service import erase_user
from mediaplane.http import BodyLimit, HttpLimits, StreamedRoute
from mediaplane.http.disconnects import client_disconnected
from mediaplane.images_api import UploadSigner, key_from_setting
from mediaplane.images_api import router as images_router
from mediaplane.images_api.errors import IMAGES_PATH_PREFIXES, authgear_response
from mediaplane.images_api.service import KnownFiles, RenderedVariants
from mediaplane.jobs.metrics import DatabaseGauges
from mediaplane.jobs.supervisor import WorkerCollector
from mediaplane.jobs.worker import InProcessWorker, job_env
from mediaplane.keys import load_or_create_secret
from mediaplane.media_api.routes import router as media_router
from mediaplane.projects.routes import router as projects_router
from mediaplane.settings import Settings
from mediaplane.storage import ObjectInfo, ObjectStore, storage_router
from mediaplane.uploads import Signal
from mediaplane.web import as_domain_error, problem_response, with_request_id

# Upload routes stream their bodies to disk under their own per-kind limits; every other route
# gets HTTP_MAX_BODY_BYTES.
UPLOAD_ROUTES = (StreamedRoute("PUT", "/_storage/"), StreamedRoute("POST", "/_images/"))


def render_error(scope: Scope, exc: MediaplaneError) -> Response:
    """An error answered before routing, in the shape of the API the path belongs to."""
    if str(scope["path"]).startswith(IMAGES_PATH_PREFIXES):
        return authgear_response(exc)
    return problem_response(exc)


def images_signing_key(settings: Settings) -> bytes:
    if settings.images_signing_key:
        return key_from_setting(settings.images_signing_key)
    return load_or_create_secret(settings.data_dir, "images-signing.key")


def erasure_on_revocation(
    store: ObjectStore, index: FaceIndex
) -> Callable[[Session, ConsentRevoked], None]:
    def erase(session: Session, event: ConsentRevoked) -> None:
        if event.purpose == Purpose.BIOMETRIC_PROCESSING:
            erase_user(session, store, index, user_id=event.user_id)

    return erase


def create_app(
    settings: Settings, *, database: Database, store: ObjectStore, run_worker: bool = False
) -> FastAPI:
    """The whole service over an already migrated database and a ready object store.

    `run_worker` also runs a job worker in this process (the embedded default of `serve`).
    """
    env = job_env(settings, database=database, store=store)
    tracker = env.tracker
    worker = InProcessWorker(env) if run_worker else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Revoking biometric consent erases the user's biometric data in the same transaction.
        unsubscribe = subscribe(erasure_on_revocation(store, app.state.face_index))
        if worker is not None:
            await worker.start()
        yield
        if worker is not None:
            await worker.stop()
        unsubscribe()

    app = FastAPI(title="Mediaplane", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = database
    app.state.store = store
    app.state.verifier = build_verifier(settings)
    app.state.images_signer = UploadSigner(images_signing_key(settings))
    app.state.images_files = KnownFiles()
    app.state.images_variants = RenderedVariants(settings.images_memory_cache_bytes)
    app.state.uploads = tracker
    # Where faces are kept (pgvector or Rekognition): erasure needs it even with FACE_ENGINE=off.
    app.state.face_index = build_index(settings)
    app.state.jobs = env
    gauges = CollectorRegistry(auto_describe=True)
    gauges.register(DatabaseGauges(database))
    if worker is not None:
        gauges.register(WorkerCollector(worker.liveness))

    def storage_wrote(info: ObjectInfo) -> None:
        # Local disk: the storage route itself reports each completed PUT.
        tracker.notice_key(info.key, via=Signal.STORAGE)

    app.state.object_written_listeners = [storage_wrote]
    # Local disk: a presigned PUT writes only while its upload is unsettled (storage.routes).
    app.state.object_write_gate = tracker

    # Inside the access log (added first = innermost): preflights are logged too.
    app.add_middleware(Cors, allowed_origins=settings.cors_allowed_origins)
    app.add_middleware(AccessLog)
    app.include_router(images_router)
    app.include_router(storage_router)
    app.include_router(consent_router)
    app.include_router(consent_audit_router)
    app.include_router(media_router)
    app.include_router(projects_router)
    mount_console(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=HttpLimits.from_settings(settings).max_body_bytes,
        streamed=UPLOAD_ROUTES,
        render=render_error,
    )

    app.add_exception_handler(ClientDisconnect, client_disconnected)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and methods: still JSON with a machine-readable reason.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {
            "type": f"urn:mediaplane:error:{code}",
            "title": str(exc.detail),
            "status": exc.status_code,
            "code": code,
            "detail": str(exc.detail),
        }
        return JSONResponse(
            with_request_id(body),
            status_code=exc.status_code,
            media_type="application/problem+json",
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Routes outside the API routers (probes, metrics): an outage is still a 503.
        outage = as_domain_error(request, exc)
        if outage is not None:
            return problem_response(outage)
        body = {
            "type": "urn:mediaplane:error:internal_error",
            "title": "internal error",
            "status": 500,
            "code": "internal_error",
            "detail": "unexpected server error",
        }
        # Runs in ServerErrorMiddleware, outside AccessLog: the id comes from the scope, and
        # the header is set here.
        request_id = request_id_of(request.scope)
        return JSONResponse(
            with_request_id(body, request_id),
            status_code=500,
            media_type="application/problem+json",
            headers={"X-Request-Id": request_id} if request_id else None,
        )

    @app.get("/metrics", tags=["ops"])
    def metrics() -> Response:
        """Prometheus: jobs by task and outcome, step durations, queue depth, upload states."""
        body = generate_latest(REGISTRY) + generate_latest(gauges)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        """The database and the object store answer, and the in-process worker (if any) runs
        and beats; `worker` details its liveness."""
        checks: dict[str, str] = {}
        for name, check in (("database", database.check), ("storage", store.check)):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # a probe reports, it does not raise
                checks[name] = f"error: {type(exc).__name__}"
        body: dict[str, object] = {"checks": checks}
        if worker is None:
            checks["worker"] = "disabled"  # `serve --no-worker`: workers run elsewhere
        else:
            checks["worker"] = worker.liveness.check()
            body["worker"] = worker.liveness.report()
        ready = all(v in ("ok", "disabled") for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", **body},
            status_code=200 if ready else 503,
        )

    return app
