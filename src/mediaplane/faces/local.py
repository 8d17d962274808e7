"""The `local` face engine: dlib's HOG detector, 5-point landmarks and 128-d ResNet descriptors.

The models come from PyPI's face-recognition-models (no download at run time). One short
pipeline per image, each step guarding the next:

    limits from the header → decode upright, long edge ≤ max_edge (shrink-on-load)
    → RGB uint8 array → HOG detection with scores → drop low scores and small faces
    → 5 landmarks → 128-d descriptor → boxes and landmarks back in the original's pixels
    → largest face first

Why a downscaled decode: HOG's cost grows with the pixels, and a 24 MP frame decoded whole is
~70 MB of RGB and seconds of HOG. A JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
(`decode_within`), so the full frame never exists. The price: HOG with upsample=1 finds faces
down to ~40 decoded pixels, so in a photo larger than `max_edge` the smallest face found is
~40 × (long edge / max_edge) original pixels: 145 px in a 5800 px wide 24 MP photo, above
`min_face_px` (50). Raise `max_edge` to find smaller faces in big photos (HOG time grows with
the decoded pixels).

Measured on one core (`bench/faces.py`: `sched_setaffinity` to one CPU, VIPS_CONCURRENCY=1,
p50 of 5 runs; obama_and_biden.jpg, two faces, and 12 MP and 24 MP JPEG Q90 copies of it):

    photo                 whole detect()        of which (upsample=1)
                          upsample=0  =1        decode to 1600 px   HOG     landmarks + descriptor
    2000×1428, 2.9 MP     0.28 s      0.64 s    45 ms               480 ms  63 ms per face
    4100×2927, 12 MP      0.27 s      0.61 s    42 ms               452 ms  64 ms per face
    5800×4141, 24 MP      0.30 s      0.67 s    68 ms               446 ms  62 ms per face

So the cost hardly depends on the megapixels (shrink-on-load) and is mostly HOG on the 1600 px
decode; upsample=1 (the default, see `DEFAULT_UPSAMPLE`) makes a photo ~2.2× as slow. One set
of models loads in 0.27 s and takes ~33 MB; two threads on two cores detect 1.64× as many
photos per second as one (dlib releases the GIL; see `ModelPool`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import pyvips

from mediaplane.faces.engine import Box, DetectedFace
from mediaplane.imaging.budget import decoding
from mediaplane.imaging.derivatives import decode_within, opaque_srgb
from mediaplane.imaging.header import upright_size
from mediaplane.imaging.inspect import libvips_errors, open_checked
from mediaplane.imaging.limits import ImageLimits

# Defaults, from the measurements in docs/faces.md.
DEFAULT_MAX_EDGE = 1600
# 1 halves the smallest face HOG finds (its 80×80 window becomes 40×40 decoded pixels): in a
# 24 MP photo decoded at 1600 px, faces from ~150 px instead of ~300 px, crowd-sized faces
# at events. It costs ~4× the HOG time (0.2 → 0.7 s per 1600 px decode).
DEFAULT_UPSAMPLE = 1
# Smallest face width in the original's pixels. Shrinking the fixtures' faces to N px moved
# their descriptor from its full-size self by ~0.06-0.09 at 80 px, 0.10-0.13 at 60 px,
# 0.15-0.17 at 50 px, 0.19-0.24 at 40 px and ~0.3 at 30 px (the match threshold is a distance
# of ~0.6). 50, not 60: a face 60 px wide (the bar, "found on group photos") gets a HOG
# box of 55-65 px, so the cut sits below it.
DEFAULT_MIN_FACE_PX = 50
# HOG score (dlib's SVM margin; 0 is dlib's own decision boundary). On the labelled group set
# (bench/data/groups, 31 photos, 126 faces; docs/faces.md) no box scored 0 or more on anything
# but a face, down to -0.3; real faces scored down to 0.0-0.3 when small, turned, dark or
# half in shadow (the child looking down in the group fixture: 0.25-0.58). The old cut, 0.75,
# dropped 12 of the 101 faces >= 60 px that 0.0 finds.
DEFAULT_MIN_SCORE = 0.0
# The score at which `quality` reaches 1: clear frontal faces in the fixtures score 1-2.4.
FULL_QUALITY_SCORE = 2.0


class LocalFaceEngine:
    """Faces found with dlib on a downscaled, upright decode; see the module docstring."""

    name = "local"

    def __init__(
        self,
        *,
        limits: ImageLimits,
        max_edge: int = DEFAULT_MAX_EDGE,
        upsample: int = DEFAULT_UPSAMPLE,
        min_face_px: int = DEFAULT_MIN_FACE_PX,
        min_score: float = DEFAULT_MIN_SCORE,
    ) -> None:
        if max_edge < 80:
            raise ValueError(f"LocalFaceEngine: max_edge must be at least 80, not {max_edge}")
        if upsample not in (0, 1, 2):
            raise ValueError(f"LocalFaceEngine: upsample must be 0, 1 or 2, not {upsample}")
        if min_face_px < 1:
            raise ValueError(f"LocalFaceEngine: min_face_px must be positive, not {min_face_px}")
        self.limits = limits
        self.max_edge = max_edge
        self.upsample = upsample
        self.min_face_px = min_face_px
        self.min_score = min_score

    def detect(self, image: bytes) -> list[DetectedFace]:
        """Faces at least `min_face_px` wide in the original and scoring `min_score` or more,
        largest first, in pixels of the upright original; raises `ImageRejected`."""
        pixels, scale, width, height = self._decode(image)
        with MODELS.borrow() as models:
            faces = [
                self._describe(models, pixels, rect, score, scale, width, height)
                for rect, score in self._find(models, pixels, scale)
            ]
        return sorted(faces, key=lambda f: (f.box.width * f.box.height, f.quality), reverse=True)

    def locate(self, image: bytes) -> list[Box]:
        """The boxes `detect` would give, largest first, without landmarks or descriptors
        (for cropping: nothing about who it is is computed)."""
        pixels, scale, width, height = self._decode(image)
        with MODELS.borrow() as models:
            boxes = [
                _box(rect, scale, width, height) for rect, _ in self._find(models, pixels, scale)
            ]
        return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)

    def _decode(self, image: bytes) -> tuple[np.ndarray, _Scale, int, int]:
        fmt, header, _ = open_checked(image, self.limits)
        width, height = upright_size(header)
        wait = self.limits.decode_wait_seconds
        with decoding(fmt, header, wait_seconds=wait), libvips_errors():
            decoded = decode_within(image, fmt, header, width=self.max_edge, height=self.max_edge)
            pixels = rgb_pixels(opaque_srgb(decoded))
        return pixels, _Scale(x=width / pixels.shape[1], y=height / pixels.shape[0]), width, height

    def _find(self, models: _Models, pixels: np.ndarray, scale: _Scale) -> list[tuple[Any, float]]:
        """HOG boxes (decoded pixels) with their scores, filtered by score and size."""
        rects, scores, _ = models.detector.run(pixels, self.upsample, self.min_score)
        return [
            (rect, score)
            for rect, score in zip(rects, scores, strict=True)
            if rect.width() * scale.x >= self.min_face_px
        ]

    def _describe(
        self,
        models: _Models,
        pixels: np.ndarray,
        rect: Any,
        score: float,
        scale: _Scale,
        width: int,
        height: int,
    ) -> DetectedFace:
        shape = models.predictor(pixels, rect)
        descriptor = models.encoder.compute_face_descriptor(pixels, shape)
        return DetectedFace(
            box=_box(rect, scale, width, height),
            landmarks=tuple(scale.point(p.x, p.y) for p in shape.parts()),
            quality=quality_from_score(score),
            embedding=tuple(float(x) for x in descriptor),
        )


def quality_from_score(score: float) -> float:
    """0–1 from a HOG score: 0 at dlib's decision boundary (score 0, the default `min_score`),
    1 from `FULL_QUALITY_SCORE` up, linear between."""
    return min(1.0, max(0.0, score / FULL_QUALITY_SCORE))


def rgb_pixels(image: pyvips.Image) -> np.ndarray:
    """An 8-bit 3-band image as the (height, width, 3) C-contiguous uint8 array dlib takes."""
    data = image.write_to_memory()
    return np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.width, image.bands)


@dataclass(frozen=True)
class _Scale:
    """From decoded pixels to the upright original's."""

    x: float
    y: float

    def point(self, x: float, y: float) -> tuple[float, float]:
        # Pixel centres: decoded pixel i covers original pixels [i·s, (i+1)·s).
        return ((x + 0.5) * self.x - 0.5, (y + 0.5) * self.y - 0.5)


def _box(rect: Any, scale: _Scale, width: int, height: int) -> Box:
    """dlib's rectangle in original pixels, clipped to the image: HOG boxes of faces at an edge
    reach outside it (negative left, say), which no crop or UI overlay wants."""
    left = max(0, round(rect.left() * scale.x))
    top = max(0, round(rect.top() * scale.y))
    right = min(width, round((rect.right() + 1) * scale.x))
    bottom = min(height, round((rect.bottom() + 1) * scale.y))
    return Box(left=left, top=top, width=max(1, right - left), height=max(1, bottom - top))


# --- models ---------------------------------------------------------------------------------------


def models_dir() -> Path:
    """Where face-recognition-models keeps its .dat files.

    TRAP: importing `face_recognition_models` imports `pkg_resources`, which setuptools ≥ 81
    no longer ships, so the import fails on a fresh environment. `find_spec` locates the
    package without running it.
    """
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class _Models:
    detector: Any
    predictor: Any
    encoder: Any


def _load_models() -> _Models:
    folder = models_dir()
    return _Models(
        detector=dlib.get_frontal_face_detector(),
        predictor=dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        encoder=dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        ),
    )


class ModelPool:
    """Up to `size` sets of dlib models, loaded on first need, each used by one thread at once.

    dlib's detector and networks keep scratch state in the object: one instance must not be
    used by two threads at the same time. dlib releases the GIL while it works, so separate
    instances do run in parallel (measured: two threads, one set each, finished two group
    photos in 0.83 s against 0.64 s for one, i.e. 1.55× the throughput on 2 cores). One set per
    thread would load a set into each of the 40 threads of a web server's pool; a pool sized
    to the CPUs keeps the parallelism and bounds the memory (~33 MB and ~0.3 s per set).
    """

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._free: queue.LifoQueue[_Models] = queue.LifoQueue()
        self._loaded = 0
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[_Models]:
        models = self._take()
        try:
            yield models
        finally:
            self._free.put(models)

    def _take(self) -> _Models:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            load = self._loaded < self._size
            if load:
                self._loaded += 1
        if not load:
            return self._free.get()  # every set is in use: wait for one
        try:
            return _load_models()
        except BaseException:
            with self._lock:
                self._loaded -= 1
            raise


# One pool per process, shared by every engine instance.
MODELS = ModelPool(len(os.sched_getaffinity(0)))
