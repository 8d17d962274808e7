"""Benchmark of the local face engine (CNN + dlib) and of face search in PostgreSQL + pgvector.

    .venv/bin/python bench/faces.py               # ~7.5 min on 2 cores (search up to 1M faces)
    .venv/bin/python bench/faces.py --quick       # ~1 min (search up to 100k faces, no JSON)
    .venv/bin/python bench/faces.py --low-dim 16  # control: search on structured data, 100k
    .venv/bin/python bench/faces.py --recall      # ~2 min: recall on the labelled group set

(r) Recall on bench/data/groups (bench/make_groups.py; 31 photos, 126 faces labelled: the
    group fixture, landscapes and textures without faces, 20 synthetic crowds of small,
    turned, dark and half-shadowed faces): per photo, faces found, missed, false positives and
    the time of `detect()` on one core, for the engine's defaults (the CNN) and, as peers, the
    CNN without its second look, dlib's HOG with turned passes, and round 1's HOG. A label is
    found when a box holds its centre and it holds the box's centre (one box per label).

(a) Detection + embedding, one core (`os.sched_setaffinity(0, {0})`, `VIPS_CONCURRENCY=1`):
    `LocalFaceEngine.detect` on the group fixture (2000×1428, 2.9 MP) and on 12 MP and 24 MP
    copies of it (upscaled with libvips, JPEG Q90, cached under /tmp), with each detector (the
    CNN, the default, and dlib's HOG with its turned passes as the peer); p50 of several runs
    after a warm-up, and the default's split into decode, detection and descriptors. Then, on
    both cores, two threads detecting at once (the model pool of faces/local.py).
(b) Search for one face (128-d, L2 `<->`, top 10) among 10k, 100k and 1M stored synthetic
    descriptors, in an embedded PostgreSQL 18 + pgvector started in a fresh temporary
    directory (removed at the end), bulk loaded with binary COPY: exact (sequential scan, before
    the index exists) and HNSW (`vector_l2_ops`, m=32, ef_construction=128, as migrated) at
    `hnsw.ef_search` 40, 100 and 200, with the index build time and recall@10 against the exact
    answer (computed with numpy, and checked against PostgreSQL's own exact answers).

Synthetic descriptors: what L2 search sees of dlib's vectors is their spread, so the stored
vectors are a fixed centre plus Gaussian noise with σ per component set so two of them are
~0.9 apart, like two different people in the fixtures (0.82–0.85) and in dlib's own data
(0.77–1.02); the centre gives them dlib's norm (~1.4). Each query is a stored vector plus
noise putting it ~0.4 away, like another photo of the same person (fixtures: 0.35–0.42): so
every query has one true match, and "match found" counts the queries whose match came first.
Random high-dimensional data has no structure beyond that, which makes it a hard case for
HNSW: neighbours 2–10 are all about equally far, so recall@10 is pessimistic.

Results: a table on stdout; a full run also writes bench/results/faces.json.
"""

from __future__ import annotations

import os

# Before pyvips is imported anywhere: libvips reads this once, at start.
os.environ["VIPS_CONCURRENCY"] = "1"

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP_PHOTO = ROOT / "tests" / "fixtures" / "faces" / "obama_and_biden.jpg"
RESULTS = ROOT / "bench" / "results" / "faces.json"
CACHE = Path(tempfile.gettempdir()) / "mediaplane-bench-faces"

MAX_PIXELS = 50_000_000  # the service's defaults (MAX_IMAGE_PIXELS, PHOTO_MAX_BYTES)
MAX_BYTES = 50 * 1024 * 1024
# Upscaled copies of the group photo (2000×1428): 4100×2927 = 12.0 MP, 5800×4141 = 24.0 MP.
PHOTO_WIDTHS = {"12mp": 4100, "24mp": 5800}

DIM = 128
SPREAD = 0.9  # L2 distance between two random stored vectors (different people)
MATCH_DISTANCE = 0.4  # L2 distance of a query from its planted match (same person)
# The index as migrated (0007): --m and --ef-construction build others.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128
EF_SEARCH = (40, 100, 200)
TOP_K = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), nearest rank on the sorted values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- (a) detection ------------------------------------------------------------------------------


def bench_photos() -> dict[str, Path]:
    """The group fixture and its 12 MP and 24 MP copies (made once, kept in CACHE)."""
    import pyvips

    CACHE.mkdir(parents=True, exist_ok=True)
    photos = {"fixture": GROUP_PHOTO}
    for label, width in PHOTO_WIDTHS.items():
        path = CACHE / f"obama_and_biden-{width}w-q90.jpg"
        if not path.exists():
            log(f"making {path.name}")
            big = pyvips.Image.thumbnail(str(GROUP_PHOTO), width, size=pyvips.enums.Size.UP)
            tmp = path.with_suffix(".part")
            big.jpegsave(str(tmp), Q=90)
            tmp.replace(path)
        photos[label] = path
    return photos


@contextmanager
def pinned_to_one_core() -> Iterator[int]:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    """CPU seconds of this process per call (pinned to one core: the time on one core, and
    what other work on a shared machine does not inflate)."""
    fn()  # warm-up: models loaded, caches filled
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return times


def bench_detection(runs: int) -> dict[str, Any]:
    import pyvips

    from mediaplane.faces.local import LocalFaceEngine, _load_models
    from mediaplane.imaging import ImageLimits

    limits = ImageLimits(max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    photos = bench_photos()
    out: dict[str, Any] = {"photos": {}, "runs": runs}
    with pinned_to_one_core() as cpu:
        out["cpu"] = cpu
        start = time.perf_counter()
        _load_models()
        out["model_load_s"] = time.perf_counter() - start
        for label, path in photos.items():
            data = path.read_bytes()
            header = pyvips.Image.new_from_buffer(data, "")
            row: dict[str, Any] = {
                "file": path.name,
                "width": header.width,
                "height": header.height,
                "megapixels": round(header.width * header.height / 1e6, 1),
                "bytes": len(data),
            }
            for detector in DETECTORS:
                engine = LocalFaceEngine(limits=limits, detector=detector)
                faces = engine.detect(data)
                times = timed(partial(engine.detect, data), runs)
                row[detector] = {
                    "faces": len(faces),
                    "p50_s": statistics.median(times),
                    "min_s": min(times),
                    "boxes": [vars(f.box) for f in faces],
                }
                log(f"{label} {detector}: {statistics.median(times) * 1000:.0f} ms")

            row["steps"] = time_steps(data, limits, runs)
            out["photos"][label] = row
    out["two_threads"] = bench_threads(photos["12mp"].read_bytes(), limits)
    return out


def time_steps(data: bytes, limits: Any, runs: int) -> dict[str, Any]:
    """The default engine's steps one at a time: decode, find (the CNN with its second looks),
    landmarks + descriptor per face."""
    from mediaplane.faces.local import MODELS, LocalFaceEngine

    engine = LocalFaceEngine(limits=limits)
    decoded = engine._decode(data)
    with MODELS.borrow() as models:
        hits = engine._find(models, decoded)

        def describe() -> None:
            for hit in hits:
                engine._describe(models, decoded, hit)

        return {
            "detector": engine.detector,
            "decoded": f"{decoded.rgb.shape[1]}×{decoded.rgb.shape[0]}",
            "decode_s": statistics.median(timed(partial(engine._decode, data), runs)),
            "find_s": statistics.median(timed(partial(engine._find, models, decoded), runs)),
            "describe_per_face_s": statistics.median(timed(describe, runs)) / max(1, len(hits)),
        }


def bench_threads(data: bytes, limits: Any, per_thread: int = 3) -> dict[str, float]:
    """Photos/s of one thread, then of two threads at once (each borrows its own models)."""
    from mediaplane.faces.local import LocalFaceEngine

    engine = LocalFaceEngine(limits=limits)
    engine.detect(data)
    start = time.perf_counter()
    for _ in range(per_thread):
        engine.detect(data)
    one = per_thread / (time.perf_counter() - start)

    def work() -> None:
        for _ in range(per_thread):
            engine.detect(data)

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two = 2 * per_thread / (time.perf_counter() - start)
    log(f"threads: 1 → {one:.2f} photos/s, 2 → {two:.2f} photos/s")
    return {"one_thread_photos_per_s": one, "two_threads_photos_per_s": two, "speedup": two / one}


# --- (b) search ---------------------------------------------------------------------------------


class Descriptors:
    """Deterministic synthetic descriptors: the i-th block of stored vectors is always the same."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.sigma = SPREAD / np.sqrt(2 * DIM)
        # A centre of norm ~1.34, so vectors have dlib's norm (~1.4): sqrt(1.34² + 128σ²).
        centre = rng.standard_normal(DIM)
        self.centre = (centre / np.linalg.norm(centre) * 1.34).astype(np.float32)

    def block(self, start: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(self.sigma)
        return self.centre + noise

    def queries(self, stored: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` queries, each near one stored vector; returns (queries, their match's row)."""
        rng = np.random.default_rng([self.seed, 1_000_000_007])
        rows = rng.choice(len(stored), size=count, replace=False)
        tau = MATCH_DISTANCE / np.sqrt(DIM)
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(tau)
        return stored[rows] + noise, rows


class LowDimDescriptors(Descriptors):
    """A control, not dlib-like: the same spread, but in a random `k`-dimensional subspace
    (plus a little isotropic noise), as data with structure has. `--low-dim K` runs the search
    on it, to tell what HNSW's recall on the iid vectors owes to their lack of structure."""

    def __init__(self, k: int, seed: int = 7) -> None:
        super().__init__(seed)
        basis, _ = np.linalg.qr(np.random.default_rng([seed, k]).standard_normal((DIM, k)))
        self.basis = basis.T.astype(np.float32)  # k orthonormal rows
        self.k = k

    def block(self, start: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        latent_sigma = np.float32(0.97 * SPREAD / np.sqrt(2 * self.k))
        latent = rng.standard_normal((count, self.k), dtype=np.float32) * latent_sigma
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(self.sigma / 4)
        return self.centre + latent @ self.basis + noise


# Face-like descriptors (`--face-like`): real dlib descriptors of the fixture faces, augmented.
FACE_CUTS = {  # face boxes (x, y, w, h) in the upright fixtures, and whose face it is
    "biden_1.jpg": [((439, 233, 311, 310), "biden")],
    "biden_2.jpg": [((435, 286, 447, 447), "biden")],
    "obama_1.jpg": [((366, 136, 259, 259), "obama")],
    "obama_2.jpg": [((164, 302, 311, 310), "obama")],
    "obama_and_biden.jpg": [
        ((751, 453, 180, 180), "biden"),
        ((1149, 393, 181, 180), "obama"),
        ((1587, 1050, 180, 180), "child"),
    ],
}
PHOTOS_PER_PERSON = 10  # stored faces per synthetic identity (an attendee in 10 photos)
AUGMENTED_PER_CUT = 40
DIFFERENT_PEOPLE = 0.84  # median distance between two people (fixtures: 0.82-0.85)
SAME_PERSON = 0.39  # median distance between two photos of one person (fixtures: 0.35-0.42)


def augmented_descriptors() -> tuple[np.ndarray, np.ndarray]:
    """dlib descriptors of the fixture faces under crops, scales, blur, brightness and flips:
    (descriptors, identity index). Cached under CACHE (takes ~30 s on one core)."""
    cache = CACHE / f"augmented-{AUGMENTED_PER_CUT}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["vectors"], saved["identity"]
    import random

    import pyvips

    from mediaplane.faces.local import LocalFaceEngine
    from mediaplane.imaging import ImageLimits

    engine = LocalFaceEngine(
        limits=ImageLimits(max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES), upsample=1, max_edge=1200
    )
    people = sorted({who for cuts in FACE_CUTS.values() for _, who in cuts})
    rng = random.Random(5)
    vectors, identity = [], []
    for name, cuts in FACE_CUTS.items():
        photo = pyvips.Image.new_from_file(str(GROUP_PHOTO.parent / name)).autorot()
        for (x, y, w, h), who in cuts:
            for _ in range(AUGMENTED_PER_CUT):
                margin = rng.uniform(0.4, 0.9) * w
                dx, dy = rng.uniform(-0.15, 0.15) * w, rng.uniform(-0.15, 0.15) * h
                left = int(max(0, x - margin + dx))
                top = int(max(0, y - margin + dy))
                right = int(min(photo.width, x + w + margin + dx))
                bottom = int(min(photo.height, y + h + margin + dy))
                image = photo.crop(left, top, right - left, bottom - top)
                image = image.resize(rng.uniform(90, 300) / w)  # face 90-300 px wide
                if rng.random() < 0.5:
                    image = image.fliphor()
                if rng.random() < 0.4:
                    image = image.gaussblur(rng.uniform(0.5, 2.0))
                image = image.linear(rng.uniform(0.55, 1.3), rng.uniform(-20, 20)).cast("uchar")
                faces = engine.detect(image.jpegsave_buffer(Q=rng.choice([70, 85, 95])))
                if faces and faces[0].embedding is not None:
                    vectors.append(faces[0].embedding)
                    identity.append(people.index(who))
    out = np.array(vectors, dtype=np.float32), np.array(identity)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=out[0], identity=out[1])
    return out


class FaceLikeDescriptors(Descriptors):
    """Descriptors that behave like faces: many per person, people apart.

    Each stored vector is a person's centre plus a *real* within-person variation: a residual
    (descriptor minus its person's mean) of the augmented fixture descriptors, scaled so two
    photos of one person are SAME_PERSON apart as in the fixtures (augmenting one photo varies
    less than two photos do). The fixtures hold three people, so the centres of the synthetic
    people are drawn around the real mean with a decaying spectrum (the k-th of 128 random
    orthonormal directions gets variance ∝ 1/k: face embeddings concentrate in a few
    directions), scaled so two people are DIFFERENT_PEOPLE apart. Person p owns stored rows
    p·10 … p·10+9; a query is the person's centre plus a fresh residual (another photo of them).
    """

    def __init__(self, seed: int = 7) -> None:
        super().__init__(seed)
        vectors, identity = augmented_descriptors()
        means = np.stack([vectors[identity == i].mean(axis=0) for i in np.unique(identity)])
        residuals = vectors - means[identity]
        same = self._median_pair_distance(residuals, identity)
        self.residuals = (residuals * np.float32(SAME_PERSON / same)).astype(np.float32)
        self.mean = vectors.mean(axis=0).astype(np.float32)
        rng = np.random.default_rng([seed, 3])
        basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        spectrum = 1.0 / np.arange(1, DIM + 1)
        # Two centres differ by sqrt(2 · sum(variances)) on average: scale to DIFFERENT_PEOPLE
        # once the within-person spread is added back.
        between = np.sqrt(max(DIFFERENT_PEOPLE**2 - SAME_PERSON**2, 0.01) / 2 / spectrum.sum())
        self.mixing = (basis * (np.sqrt(spectrum) * between)).T.astype(np.float32)
        self.source_pairs = {"augmented": len(vectors), "augmented_same_median": same}

    @staticmethod
    def _median_pair_distance(residuals: np.ndarray, identity: np.ndarray) -> float:
        rng = np.random.default_rng(1)
        distances = []
        for _ in range(2000):
            i, j = rng.choice(len(residuals), size=2, replace=False)
            if identity[i] == identity[j]:
                distances.append(float(np.linalg.norm(residuals[i] - residuals[j])))
        return float(np.median(distances))

    def centres(self, people: np.ndarray) -> np.ndarray:
        out = np.empty((len(people), DIM), dtype=np.float32)
        for i, person in enumerate(people):
            z = np.random.default_rng([self.seed, 11, int(person)]).standard_normal(DIM)
            out[i] = self.mean + z.astype(np.float32) @ self.mixing
        return out

    def _photos(self, people: np.ndarray, salt: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, salt, int(people[0]), len(people)])
        picks = rng.integers(0, len(self.residuals), size=len(people))
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(people), 1))
        jitter = rng.standard_normal((len(people), DIM), dtype=np.float32) * np.float32(0.01)
        return self.centres(people) + signs * self.residuals[picks] + jitter

    def block(self, start: int, count: int) -> np.ndarray:
        rows = np.arange(start, start + count)
        people = rows // PHOTOS_PER_PERSON
        unique, inverse = np.unique(people, return_inverse=True)
        centres = self.centres(unique)[inverse]
        rng = np.random.default_rng([self.seed, 13, start])
        picks = rng.integers(0, len(self.residuals), size=count)
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(count, 1))
        jitter = rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(0.01)
        return centres + signs * self.residuals[picks] + jitter

    def queries(self, stored: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Another photo of `count` stored people; the match is their nearest stored photo."""
        rng = np.random.default_rng([self.seed, 17, len(stored)])
        rows = rng.choice(len(stored), size=count, replace=False)
        people = rows // PHOTOS_PER_PERSON
        queries = np.concatenate([self._photos(people[i : i + 1], 19 + i) for i in range(count)])
        own = [
            p * PHOTOS_PER_PERSON
            + int(
                np.argmin(
                    np.linalg.norm(
                        stored[p * PHOTOS_PER_PERSON : (p + 1) * PHOTOS_PER_PERSON] - q, axis=1
                    )
                )
            )
            for p, q in zip(people, queries, strict=True)
        ]
        return queries, np.array(own)


def copy_binary(rows: np.ndarray, first_id: int) -> bytes:
    """`rows` as the body of a binary COPY of (id int4, embedding vector): no header/trailer.

    pgvector's binary form is int16 dim, int16 unused, then float4s, all big-endian.
    """
    count = len(rows)
    record = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i4"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("values", ">f4", (DIM,)),
        ]
    )
    out = np.empty(count, dtype=record)
    out["fields"] = 2
    out["id_len"] = 4
    out["id"] = np.arange(first_id, first_id + count)
    out["vec_len"] = 4 + 4 * DIM
    out["dim"] = DIM
    out["unused"] = 0
    out["values"] = rows
    return out.tobytes()


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def exact_top(stored: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the k nearest stored vectors of each query (L2), nearest first."""
    stored_sq = np.einsum("ij,ij->i", stored, stored)
    tops = []
    for query in queries:
        d = stored_sq - 2 * stored @ query  # + |q|², the same for every row
        part = np.argpartition(d, k)[:k]
        tops.append(part[np.argsort(d[part])])
    return np.array(tops)


TOP_K_SQL = f"SELECT id FROM faces ORDER BY embedding <-> %(v)s LIMIT {TOP_K}"

# The shape of faces/index.py's search: the nearest 1000 by the index, with pgvector's iterative
# scan, then only those within the match distance (similarity 50 → distance 0.6).
SERVICE_SQL = """
SELECT id FROM (
  SELECT id, embedding <-> %(v)s AS d FROM faces ORDER BY embedding <-> %(v)s LIMIT 1000
) near WHERE d <= 0.6
"""

HNSW_MODES: dict[str, tuple[list[str], str]] = {
    **{
        f"hnsw_ef{ef}": ([f"SET hnsw.ef_search = {ef}", "SET hnsw.iterative_scan = off"], TOP_K_SQL)
        for ef in EF_SEARCH
    },
    "service_query": (
        ["SET hnsw.ef_search = 40", "SET hnsw.iterative_scan = relaxed_order"],
        SERVICE_SQL,
    ),
}


def query_times(
    conn: Any, queries: np.ndarray, setup: list[str], sql: str = TOP_K_SQL
) -> tuple[list[float], list[list[int]], str]:
    """Latency of each query (client side: send, plan, run, fetch) and the ids found."""
    with conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
        plan = cur.execute("EXPLAIN " + sql, {"v": queries[0]}).fetchall()
        plan_text = " / ".join(row[0].strip() for row in plan[:3])
        for query in queries[:3]:  # warm-up
            cur.execute(sql, {"v": query}).fetchall()
        times, found = [], []
        for query in queries:
            start = time.perf_counter()
            ids = [row[0] for row in cur.execute(sql, {"v": query}).fetchall()]
            times.append(time.perf_counter() - start)
            found.append(ids)
    return times, found, plan_text


def scalar(conn: Any, sql: str) -> Any:
    """The one value `sql` returns."""
    row = conn.execute(sql).fetchone()
    assert row is not None, sql
    return row[0]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    """Share of the true top-k that was found (recall@k)."""
    pairs = zip(found, truth, strict=True)
    hits = sum(len(set(ids) & {int(t) for t in row}) for ids, row in pairs)
    return hits / (len(found) * truth.shape[1])


def bench_search(
    sizes: list[int],
    n_queries: int,
    exact_cap: dict[int, int],
    data: Descriptors,
    interleaved: bool = False,
) -> dict[str, Any]:
    """`interleaved`: store each size's rows in a fixed random order instead of person by
    person (a person's photos in consecutive rows, inserted into the HNSW graph one after the
    other). An event's faces arrive photo by photo, several people in each, one person's
    photos spread over the upload: the interleaved order is that one, the person-by-person
    order a worst case for the graph's build."""
    import psycopg
    from pgvector.psycopg import register_vector

    from mediaplane.db.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="mediaplane-bench-faces-"))
    # The server runs as the `embedded_postgres` system user when we are root: it must be able
    # to reach its data directory (mkdtemp makes 0700 directories).
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    out: dict[str, Any] = {"sizes": {}}
    try:
        url = server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            # Room for the 1M table (~560 MB) and its index in PostgreSQL's own cache; takes a
            # restart. Default 128 MB would make every query read through the OS page cache.
            conn.execute("ALTER SYSTEM SET shared_buffers = '2GB'")
        server.stop()
        url = server.start()
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        out["postgres"] = scalar(conn, "SELECT version()").split(" on ")[0]
        out["pgvector"] = scalar(
            conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        out["settings"] = {
            name: scalar(conn, f"SHOW {name}")
            for name in ("shared_buffers", "max_parallel_workers_per_gather", "work_mem")
        }
        conn.execute(f"CREATE TABLE faces (id int4 PRIMARY KEY, embedding vector({DIM}))")
        stored = np.empty((0, DIM), dtype=np.float32)
        for size in sizes:
            row: dict[str, Any] = {"order": "interleaved" if interleaved else "person by person"}
            start = time.perf_counter()
            if interleaved:
                stored, (queries, matches) = load_interleaved(conn, data, size, n_queries)
            else:
                stored = append_rows(conn, data, stored, size)
            conn.execute("VACUUM ANALYZE faces")
            row["load_s"] = time.perf_counter() - start  # this step's rows only
            row["table_mb"] = scalar(conn, "SELECT pg_total_relation_size('faces') / 1e6")
            log(f"{size:,} faces loaded (+{row['load_s']:.1f} s)")

            if not interleaved:
                queries, matches = data.queries(stored, n_queries)
            truth = exact_top(stored, queries, TOP_K)
            row["truth_match_first"] = float(np.mean(truth[:, 0] == matches))

            n_exact = min(n_queries, exact_cap.get(size, n_queries))
            times, found, plan = query_times(conn, queries[:n_exact], [])
            row["exact"] = {
                "queries": n_exact,
                "p50_ms": statistics.median(times) * 1000,
                "p99_ms": percentile(times, 99) * 1000,
                "agrees_with_numpy": recall(found, truth[:n_exact]),
                "plan": plan,
            }
            log(f"{size:,} exact: p50 {row['exact']['p50_ms']:.1f} ms")

            start = time.perf_counter()
            conn.execute("SET maintenance_work_mem = '4GB'")
            # One worker beside the leader: two processes for the machine's two cores.
            conn.execute("SET max_parallel_maintenance_workers = 1")
            conn.execute(
                "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw (embedding vector_l2_ops)"
                f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
            row["hnsw_build_s"] = time.perf_counter() - start
            row["index_mb"] = scalar(conn, "SELECT pg_relation_size('faces_embedding_hnsw') / 1e6")
            log(f"{size:,} HNSW built in {row['hnsw_build_s']:.1f} s")
            for mode, (setup, sql) in HNSW_MODES.items():
                times, found, plan = query_times(conn, queries, setup, sql)
                pairs = list(zip(found, matches, strict=True))
                row[mode] = {
                    "queries": len(queries),
                    "p50_ms": statistics.median(times) * 1000,
                    "p99_ms": percentile(times, 99) * 1000,
                    "match_found": float(np.mean([int(m) in ids for ids, m in pairs])),
                    "match_found_first": float(np.mean([ids[:1] == [m] for ids, m in pairs])),
                    "rows_returned_mean": float(np.mean([len(ids) for ids in found])),
                    "plan": plan,
                }
                if sql == TOP_K_SQL:
                    row[mode]["recall_at_10"] = recall(found, truth)
                log(f"{size:,} {mode}: p50 {row[mode]['p50_ms']:.2f} ms")
            conn.execute("DROP INDEX faces_embedding_hnsw")
            out["sizes"][str(size)] = row
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


def append_rows(conn: Any, data: Descriptors, stored: np.ndarray, size: int) -> np.ndarray:
    """COPY rows len(stored)..size-1 in person order (ids = row numbers); all rows stored."""
    new = []
    with (
        conn.cursor() as cur,
        cur.copy("COPY faces (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.write(COPY_HEADER)
        for first in range(len(stored), size, 100_000):
            vectors = data.block(first, min(100_000, size - first))
            new.append(vectors)
            copy.write(copy_binary(vectors, first))
        copy.write(COPY_TRAILER)
    return np.concatenate([stored, *new])


def load_interleaved(
    conn: Any, data: Descriptors, size: int, n_queries: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Replace the table's rows with `size` rows in a fixed random order (row id = position);
    the stored array in that order, and the queries with their matches' new ids."""
    by_person = np.concatenate(
        [data.block(first, min(100_000, size - first)) for first in range(0, size, 100_000)]
    )
    queries, own = data.queries(by_person, n_queries)
    order = np.random.default_rng([7, 23, size]).permutation(size)  # position -> person row
    position = np.empty(size, dtype=np.int64)
    position[order] = np.arange(size)
    stored = by_person[order]
    conn.execute("TRUNCATE faces")
    with (
        conn.cursor() as cur,
        cur.copy("COPY faces (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.write(COPY_HEADER)
        for first in range(0, size, 100_000):
            copy.write(copy_binary(stored[first : first + 100_000], first))
        copy.write(COPY_TRAILER)
    return stored, (queries, position[own])


DETECTORS = ("cnn", "hog")

# --- (r) recall on group photos -----------------------------------------------------------------

GROUPS = ROOT / "bench" / "data" / "groups"
RECALL_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # the CNN
    "cnn-no-2nd-look": {"min_confidence": 0.6},
    "hog": {"detector": "hog"},  # the previous default: luma HOG with turned passes
    "round-1": {"detector": "hog", "min_score": 0.75, "min_face_px": 80, "turns": ()},
    # The same photos pasted at 1:1 into a 4000×3000 frame: faces of the same size in pixels
    # in a 12 MP camera photo, so the 1500 px decode shrinks them 2.7× (the set's own photos,
    # 1280-2400 px, 1-1.6×).
    "default-12mp": {"frame": (4000, 3000)},
    "hog-12mp": {"detector": "hog", "frame": (4000, 3000)},
    # As the photo pipeline runs it: the detector's frame cut from the one decode a photo's
    # steps share (`Original`, CARRY_PHOTO_STEPS), i.e. from the 2048 px preview's pixels.
    "default-pipeline": {"shared": True},
    "default-12mp-pipeline": {"frame": (4000, 3000), "shared": True},
}
_NOT_ENGINE_PARAMS = ("frame", "shared")


def in_frame(data: bytes, frame: tuple[int, int] | None) -> bytes:
    """The photo pasted at the top left of a grey frame of that size (JPEG Q90), or itself."""
    if frame is None:
        return data
    import pyvips

    photo = pyvips.Image.new_from_buffer(data, "")
    canvas = (pyvips.Image.black(*frame, bands=3) + 110).cast("uchar").insert(photo, 0, 0)
    return bytes(canvas.copy(interpretation="srgb").jpegsave_buffer(Q=90))


def same_face(label: dict[str, Any], box: Any) -> bool:
    lx, ly = label["x"] + label["width"] / 2, label["y"] + label["height"] / 2
    bx, by = box.left + box.width / 2, box.top + box.height / 2
    return (
        box.left <= lx <= box.left + box.width
        and box.top <= ly <= box.top + box.height
        and label["x"] <= bx <= label["x"] + label["width"]
        and label["y"] <= by <= label["y"] + label["height"]
    )


def _detect(engine: Any, data: bytes, limits: Any, *, shared: bool) -> Any:
    """The engine on the photo's bytes, or on the decode a photo's steps share."""
    from mediaplane.imaging import Original, preview_fit, thumbnail_fit

    if not shared:
        return engine.detect(data)
    return engine.detect(Original(data, limits, [thumbnail_fit(), preview_fit(), engine.fit]))


def bench_recall(runs: int = 1) -> dict[str, Any]:
    from mediaplane.faces.local import LocalFaceEngine
    from mediaplane.imaging import ImageLimits

    limits = ImageLimits(max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    labels = json.loads((GROUPS / "labels.json").read_text())
    out: dict[str, Any] = {}
    with pinned_to_one_core():
        for config, params in RECALL_CONFIGS.items():
            frame = params.get("frame")
            engine = LocalFaceEngine(
                limits=limits,
                **{k: v for k, v in params.items() if k not in _NOT_ENGINE_PARAMS},
            )
            rows = {}
            for name, photo in labels.items():
                data = in_frame((GROUPS / name).read_bytes(), frame)

                detect = partial(_detect, engine, data, limits, shared=bool(params.get("shared")))
                times = timed(detect, runs)
                faces = detect()
                unmatched = list(faces)
                found = []
                for label in photo["faces"]:
                    hit = next((f for f in unmatched if same_face(label, f.box)), None)
                    if hit is not None:
                        unmatched.remove(hit)
                    found.append(hit is not None)
                rows[name] = {
                    "labelled": len(photo["faces"]),
                    "found": sum(found),
                    "labelled_60px": sum(1 for f in photo["faces"] if f["width"] >= 60),
                    "found_60px": sum(
                        ok for f, ok in zip(photo["faces"], found, strict=True) if f["width"] >= 60
                    ),
                    "missed": [
                        f["note"] for f, ok in zip(photo["faces"], found, strict=True) if not ok
                    ],
                    "false_positives": [vars(f.box) for f in unmatched],
                    "p50_s": statistics.median(times),
                }
            out[config] = {"params": params, "photos": rows}
            log(f"recall, {config}: done")
    return out


def print_recall(recall: dict[str, Any]) -> None:
    print("\n(r) detection on bench/data/groups, one core; found / labelled (≥ 60 px), FP, time")
    configs = list(recall)
    print(f"{'photo':<20}" + "".join(f"{c:>30}" for c in configs))
    names = list(recall[configs[0]]["photos"])
    for name in names:
        cells = []
        for c in configs:
            r = recall[c]["photos"][name]
            cells.append(
                f"{r['found']:>3}/{r['labelled']:<3}({r['found_60px']:>2}/{r['labelled_60px']:<2})"
                f"{len(r['false_positives']):>4} FP{r['p50_s']:>7.2f}s"
            )
        print(f"{name:<20}" + "".join(f"{cell:>30}" for cell in cells))
    for c in configs:
        rows = recall[c]["photos"].values()
        found = sum(r["found"] for r in rows)
        total = sum(r["labelled"] for r in rows)
        found60 = sum(r["found_60px"] for r in rows)
        total60 = sum(r["labelled_60px"] for r in rows)
        fp = sum(len(r["false_positives"]) for r in rows)
        mean = statistics.mean(r["p50_s"] for r in rows)
        print(
            f"{c} {recall[c]['params']}: recall {found}/{total} = {found / total:.3f}, "
            f"≥ 60 px {found60}/{total60} = {found60 / total60:.3f}; false positives {fp} in "
            f"{len(rows)} photos; mean {mean:.2f} s per photo"
        )
    missed = [
        f"{name}: {note}"
        for name, r in recall[configs[0]]["photos"].items()
        for note in r["missed"]
    ]
    print(f"missed by {configs[0]}:\n  " + "\n  ".join(missed))


# --- report -------------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    print_detection(result["detection"])
    print_search(result["search"], result["plan"]["queries"])


def print_detection(detection: dict[str, Any]) -> None:
    print(f"\n(a) detect + embed, one core (cpu {detection['cpu']}), p50 of {detection['runs']}")
    print(
        f"{'photo':<10}{'size':>12}{'MP':>6}{'faces':>7}"
        + "".join(f"{d:>10}" for d in DETECTORS)
        + f"{'ratio':>7}{'decoded':>12}{'decode':>9}{'find':>8}{'descr/face':>12}"
    )
    for label, row in detection["photos"].items():
        steps = row["steps"]
        print(
            f"{label:<10}{row['width']:>6}×{row['height']:<5}{row['megapixels']:>6}"
            f"{row['cnn']['faces']:>3}/{row['hog']['faces']:<3}"
            + "".join(f"{row[d]['p50_s'] * 1000:>8.0f}ms" for d in DETECTORS)
            + f"{row['hog']['p50_s'] / row['cnn']['p50_s']:>6.2f}×"
            f"{steps['decoded']:>12}{steps['decode_s'] * 1000:>7.0f}ms"
            f"{steps['find_s'] * 1000:>6.0f}ms{steps['describe_per_face_s'] * 1000:>10.0f}ms"
        )
    print("faces: found by cnn / hog; ratio: hog's time / cnn's; steps: the default (cnn)")
    threads = detection["two_threads"]
    print(
        f"model set load {detection['model_load_s']:.2f} s; 12 MP on 2 cores: 1 thread "
        f"{threads['one_thread_photos_per_s']:.2f} photos/s, 2 threads "
        f"{threads['two_threads_photos_per_s']:.2f} ({threads['speedup']:.2f}×)"
    )
    budget = {label: 0.35 + 0.1 * row["cnn"]["faces"] for label, row in detection["photos"].items()}
    print(
        "target (issue 14) 0.35 s + 0.1 s per face: "
        + ", ".join(
            f"{label} {row['cnn']['p50_s']:.2f} / {budget[label]:.2f} s"
            for label, row in detection["photos"].items()
        )
    )


def print_search(search: dict[str, Any], n_queries: int) -> None:
    print(
        f"\n(b) one 128-d face against N stored, L2; {search['postgres']}, pgvector "
        f"{search['pgvector']}; {search['settings']}"
    )
    print(
        f"{'faces':>10}{'load':>7}{'table':>8}{'exact p50':>11}{'p99':>9}{'HNSW build':>12}"
        f"{'index':>8}  {'mode':<15}{'p50':>8}{'p99':>9}{'recall@10':>11}{'match':>7}{'1st':>6}"
    )
    for size, row in search["sizes"].items():
        exact = row["exact"]
        for i, mode in enumerate(HNSW_MODES):
            hnsw = row[mode]
            head = (
                f"{int(size):>10,}{row['load_s']:>6.1f}s{row['table_mb']:>5.0f} MB"
                f"{exact['p50_ms']:>9.1f}ms{exact['p99_ms']:>7.1f}ms{row['hnsw_build_s']:>11.1f}s"
                f"{row['index_mb']:>5.0f} MB"
                if i == 0
                else " " * 64
            )
            rec = hnsw.get("recall_at_10")
            print(
                f"{head}  {mode:<15}{hnsw['p50_ms']:>6.2f}ms{hnsw['p99_ms']:>7.2f}ms"
                f"{'' if rec is None else f'{rec:.3f}':>11}{hnsw['match_found']:>7.2f}"
                f"{hnsw['match_found_first']:>6.2f}"
            )
    counts = ", ".join(f"{int(s):,}: {r['exact']['queries']}" for s, r in search["sizes"].items())
    print(f"exact queries per size: {counts}; HNSW: {n_queries} per mode")
    print(
        "match = the query's planted same-person vector was returned; 1st = returned first; "
        "service_query = faces/index.py's query (LIMIT 1000, iterative scan, d ≤ 0.6)"
    )


def main() -> None:
    global HNSW_M, HNSW_EF_CONSTRUCTION  # --m and --ef-construction
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="search up to 100k faces only")
    parser.add_argument("--runs", type=int, help="timed detections per photo (default 5, quick 3)")
    parser.add_argument("--queries", type=int, default=100, help="search queries per size")
    parser.add_argument(
        "--low-dim",
        type=int,
        metavar="K",
        help="control run: search only, on data of intrinsic dimension K, up to 100k; no JSON",
    )
    parser.add_argument(
        "--recall", action="store_true", help="recall on bench/data/groups only; no JSON"
    )
    parser.add_argument(
        "--detect", action="store_true", help="detection timings and recall only; no JSON"
    )
    parser.add_argument(
        "--face-like",
        type=int,
        nargs="+",
        metavar="N",
        help="search only, on face-like descriptors, at these sizes (e.g. 100000 1000000); "
        "writes bench/results/faces-like-<largest>.json",
    )
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="with --face-like: store rows in a random order, not person by person",
    )
    parser.add_argument("--m", type=int, default=HNSW_M, help="HNSW m")
    parser.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    parser.add_argument(
        "--ef-search", type=int, nargs="+", help=f"hnsw.ef_search values (default {EF_SEARCH})"
    )
    args = parser.parse_args()
    if args.recall:
        print_recall(bench_recall(args.runs or 1))
        return
    if args.detect:
        print_detection(bench_detection(args.runs or 5))
        print_recall(bench_recall(args.runs or 1))
        return
    if args.face_like:
        HNSW_M, HNSW_EF_CONSTRUCTION = args.m, args.ef_construction
        if args.ef_search:
            for key in [k for k in HNSW_MODES if k.startswith("hnsw_ef")]:
                del HNSW_MODES[key]
            for ef in args.ef_search:
                HNSW_MODES[f"hnsw_ef{ef}"] = (
                    [f"SET hnsw.ef_search = {ef}", "SET hnsw.iterative_scan = off"],
                    TOP_K_SQL,
                )
        data = FaceLikeDescriptors()
        search = bench_search(
            args.face_like, args.queries, {1_000_000: 30}, data, interleaved=args.interleaved
        )
        search["data"] = {"kind": "face-like", **data.source_pairs}
        search["hnsw"] = {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
        print_search(search, args.queries)
        efs = "-ef" + "-".join(map(str, args.ef_search)) if args.ef_search else ""
        efs += "-interleaved" if args.interleaved else ""
        out = RESULTS.with_name(
            f"faces-like-{max(args.face_like)}-m{HNSW_M}-efc{HNSW_EF_CONSTRUCTION}{efs}.json"
        )
        out.write_text(json.dumps(search, indent=2, default=str) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
        return
    runs = args.runs or (3 if args.quick else 5)
    sizes = [10_000, 100_000] if args.quick or args.low_dim else [10_000, 100_000, 1_000_000]
    if args.low_dim:
        search = bench_search(sizes, args.queries, {}, LowDimDescriptors(args.low_dim))
        print_search(search, args.queries)
        return
    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "faces",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
        "plan": {"quick": args.quick, "runs": runs, "queries": args.queries, "sizes": sizes},
    }
    result["detection"] = bench_detection(runs)
    # 1M exact scans take ~0.5 s each: 30 of them give a p50 and (coarsely) a p99.
    result["search"] = bench_search(
        sizes, args.queries, exact_cap={1_000_000: 30}, data=Descriptors()
    )
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["elapsed_s"] = time.time() - started
    print_report(result)
    print(f"\ntotal {result['elapsed_s']:.0f} s")
    if not args.quick:  # a quick run only prints: the JSON keeps the full run's figures
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
