"""Faces: the `FaceEngine` protocol, its engines, and the one place that picks an engine.

- `LocalFaceEngine` (faces/local.py): dlib on this machine; descriptors searched in pgvector.
- `RekognitionFaceEngine` (faces/rekognition.py): AWS Rekognition; imported only when chosen,
  so a local deployment never loads boto's Rekognition client.

`similarity_from_distance` and `distance_from_similarity` convert between the 0–100 similarity
the API speaks (Rekognition's scale) and the L2 distance of two dlib descriptors.
"""

from __future__ import annotations

import importlib

from mediaplane.faces.engine import (
    Box,
    DetectedFace,
    FaceEngine,
    distance_from_similarity,
    similarity_from_distance,
)
from mediaplane.faces.local import LocalFaceEngine
from mediaplane.imaging.limits import ImageLimits
from mediaplane.imaging.profile import FaceLocator, Region
from mediaplane.settings import Settings

__all__ = [
    "Box",
    "DetectedFace",
    "FaceEngine",
    "LocalFaceEngine",
    "build_engine",
    "build_locator",
    "distance_from_similarity",
    "local_locator",
    "similarity_from_distance",
]


def build_engine(settings: Settings) -> FaceEngine:
    """The engine `settings.face_engine` names: "local" or "rekognition".

    Raises `ValueError` for "off" (no face processing: callers should not ask for an engine),
    and `RuntimeError` when Rekognition is chosen but its module is not part of this build.
    """
    name = settings.face_engine
    if name == "local":
        return LocalFaceEngine(
            limits=face_limits(settings),
            max_edge=settings.face_max_edge,
            detector=detector_setting(settings),
        )
    if name == "rekognition":
        try:
            module = importlib.import_module("mediaplane.faces.rekognition")
        except ModuleNotFoundError as exc:
            if exc.name != "mediaplane.faces.rekognition":
                raise  # a dependency of the module is missing: say that, not this
            raise RuntimeError(
                "FACE_ENGINE=rekognition, but mediaplane.faces.rekognition is not in this build"
            ) from exc
        engine: FaceEngine = module.RekognitionFaceEngine.from_settings(settings)
        return engine
    raise ValueError(f"FACE_ENGINE={name!r} has no face engine (choose local or rekognition)")


def detector_setting(settings: Settings) -> str | None:
    """`FACE_DETECTOR` for `LocalFaceEngine`: None (its default) for "auto"."""
    return None if settings.face_detector == "auto" else settings.face_detector


def face_limits(settings: Settings) -> ImageLimits:
    """What the engine agrees to decode: faces are looked for in selfies and photos, so the
    larger of their upload limits (and the pixel limit every upload already passed)."""
    return ImageLimits(
        max_pixels=settings.max_image_pixels,
        max_bytes=max(settings.selfie_max_bytes, settings.photo_max_bytes),
    )


# Avatars are small and their faces big. HOG without upsampling on a 640 px decode finds faces
# from ~80 px of it (an eighth of the long edge); a smaller face gets the attention crop. It
# is the cost of a cold `profile`: measured on one core, 12 MP JPEG 244 → 132 ms with the
# render, a 2 MP portrait 107 → 33 ms, against 800 px with upsampling (render alone 47 / 16 ms).
LOCATOR_MAX_EDGE = 640
LOCATOR_UPSAMPLE = 0


def build_locator(settings: Settings) -> FaceLocator | None:
    """Where the faces of a profile picture are, for the avatar crop (imaging/profile.py):
    the local detector, boxes only, whatever `FACE_ENGINE` matches with (nothing is stored
    and nothing leaves the machine); None when `FACE_ENGINE=off`, which turns every face
    processing off."""
    if settings.face_engine == "off":
        return None
    return local_locator(face_limits(settings), detector_setting(settings))


def local_locator(limits: ImageLimits, detector: str | None = None) -> FaceLocator:
    """The local detector as a `FaceLocator`: boxes of a 640 px decode, largest first."""
    # No turned passes: they would add ~40% to a cold profile, for heads tilted 20° or more.
    engine = LocalFaceEngine(
        limits=limits,
        max_edge=LOCATOR_MAX_EDGE,
        upsample=LOCATOR_UPSAMPLE,
        turns=(),
        detector=detector,
    )

    def locate(image: bytes) -> list[Region]:
        return [(b.left, b.top, b.width, b.height) for b in engine.locate(image)]

    return locate
