"""The `FaceEngine` protocol: find faces in an image and describe them.

Two implementations, picked by settings in `faces.build_engine`: `local` (dlib, models shipped in
PyPI's face-recognition-models; 128-d embeddings compared in PostgreSQL with pgvector) and
`rekognition` (AWS; faces are indexed and searched inside Rekognition collections, so it returns
no embedding). Every engine passes the contract suite in `tests/faces/test_engine_contract.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mediaplane.imaging.derivatives import Original


@dataclass(frozen=True)
class Box:
    """A face's bounding box in pixels of the upright original image."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class DetectedFace:
    box: Box
    # (x, y) points in pixels of the upright original (5 for dlib: eye corners and nose).
    landmarks: tuple[tuple[float, float], ...]
    # 0–1: how sure the detector is, scaled for filtering (badges and patterns score low).
    quality: float
    # The descriptor (local engine: dlib's 128-d vector, compared by L2 distance); None for
    # engines that keep faces server-side.
    embedding: tuple[float, ...] | None


@runtime_checkable
class FaceEngine(Protocol):
    name: str

    def detect(self, image: bytes | Original) -> list[DetectedFace]:
        """Faces big and clear enough to match, largest first; [] when none. An `Original`
        lets the engine share the photo's one decode with the other steps.

        Raises `ImageRejected` (mediaplane.imaging) for input that is not a decodable image.
        """
        ...


def similarity_from_distance(distance: float) -> float:
    """0–100 like Rekognition, from the L2 distance of two 128-d dlib descriptors.

    Measured on tests/fixtures/faces with the local engine (docs/faces.md): same person
    0.35–0.42 (similarity 65–71), different people 0.82–0.85 (29–32). Mapped linearly so
    distance 0 → 100 and distance 1.2 → 0 (clamped): dlib's own "same person below 0.6" is
    similarity 50, the default `FACE_MATCH_THRESHOLD`, midway between the two groups.
    """
    return max(0.0, min(100.0, 100.0 * (1.0 - distance / 1.2)))


def distance_from_similarity(similarity: float) -> float:
    """The inverse of `similarity_from_distance` (a threshold in SQL is a distance)."""
    return 1.2 * (1.0 - similarity / 100.0)
