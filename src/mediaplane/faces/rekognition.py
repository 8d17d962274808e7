"""The `rekognition` face engine and index: faces found, stored and searched by AWS Rekognition.

Collections
    `PREFIX-selfies` (one per deployment) holds one face per enrolled user;
    `PREFIX-project-<project uuid>` (one per project) holds the faces of that project's photos.
    Our rows (`selfie_faces`, `photo_faces`) carry each face's Rekognition `FaceId` in
    `external_face_id`, with a NULL embedding: the vectors stay in AWS. FaceIds are mapped back
    to users and photos through those rows, never through `ExternalImageId`, which is only a
    label for operators (and the key of erasure's sweep, below).

Searching across collections
    Rekognition searches one collection at a time, and `SearchFaces` (by FaceId) only takes a
    face stored in the collection it searches. A selfie face lives in `PREFIX-selfies` and the
    photo faces in project collections, so neither direction can be a `SearchFaces`; copying
    faces into the other side's collections would mean one copy of every selfie per project
    (unbounded, and each copy to erase) or photo faces of people who never consented sitting
    in the selfies collection. Both directions therefore search BY IMAGE
    (`SearchFacesByImage`), sending a crop of the one face to look for (the API searches with
    the largest face of its input; a crop around our face makes that face the one searched,
    which the response's `SearchedFaceBoundingBox` confirms).

    The `FaceIndex` protocol hands the image to `enroll` and `add_photo` only, and the matcher
    calls `candidates_for_user` / `candidates_for_photo` right after them, in the same session
    and under the same matching lock (faces/service.py). So `enroll` and `add_photo` keep a
    reference to the image bytes in `session.info` (in memory, gone with the session; nothing
    is written anywhere), and the `candidates_*` methods crop from it. Calling a `candidates_*`
    method without the matching `enroll` / `add_photo` earlier in the session is a programming
    error and raises `RuntimeError`, rather than silently finding nothing.

AWS calls per operation (P: projects with photo faces; N: faces in a photo; S: users enrolled)
    detect                 DetectFaces ×1 (none for an image under 80 px a side)
    enroll                 IndexFaces ×1, then DeleteFaces ×1 of the user's earlier face if any
                           (+ CreateCollection ×1 the very first time)
    candidates_for_user    SearchFacesByImage ×P (none if P = 0)
    add_photo              IndexFaces ×1 (none if N = 0; + CreateCollection ×1 for a project's
                           first photo), then DeleteFaces ×1 of an earlier run's faces, if any
    candidates_for_photo   SearchFacesByImage ×N (none if nobody has enrolled)
    forget_user            ListFaces ×ceil(S / 4096) + DeleteFaces ×1
    forget_photos          DeleteFaces ×1 per project collection the photos' faces are in
    forget_project         DeleteCollection ×1
    DetectFaces, IndexFaces and SearchFacesByImage are the billed image analyses; stored faces
    are billed per face-month. docs/faces.md has the arithmetic.

Limits and orientation
    Rekognition takes JPEG or PNG, at most 5 MB of bytes (the API model caps `Image.Bytes` at
    5,242,880) and, as we send them, at most 15 MP. Larger or other images are decoded upright,
    shrunk and re-encoded as JPEG before they are sent (`prepare_image`). JPEGs that fit are
    sent with their APP1 segments (EXIF, XMP) cut out, pixels untouched: what Rekognition does
    with an EXIF orientation has changed across model versions (AWS documents both behaviours),
    and without the tag its boxes are relative to the pixels as stored, whatever the version;
    we then turn them upright ourselves. As a bonus no GPS position or camera serial leaves for
    AWS.

Errors
    Input Rekognition refuses (InvalidImageFormat, ImageTooLarge) becomes `ImageRejected`, a
    final failure. Throttling, network and server errors propagate as botocore errors, so the
    job that called us is retried; the client itself retries them first (standard mode).
    Rekognition is not transactional: faces indexed by a transaction that then rolls back stay
    in the collection without a row. They never match (a FaceId without a row is dropped) and
    `forget_user` finds a user's strays by `ExternalImageId`.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import pyvips
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.faces import face_limits
from mediaplane.faces.engine import Box, DetectedFace
from mediaplane.faces.index import Candidate, box_json
from mediaplane.faces.models import PhotoFace, SelfieFace
from mediaplane.faces.service import SelfieRejected
from mediaplane.imaging.budget import decoding
from mediaplane.imaging.derivatives import Original, decode_within, encode_jpeg, opaque_srgb
from mediaplane.imaging.errors import ImageRejected, RejectReason
from mediaplane.imaging.formats import ImageFormat
from mediaplane.imaging.header import upright_size
from mediaplane.imaging.inspect import libvips_errors, open_checked, verify_decodes
from mediaplane.imaging.limits import ImageLimits
from mediaplane.settings import Settings

if TYPE_CHECKING:
    # Typed once mypy-boto3-rekognition is installed; `Any` until then (ignore_missing_imports).
    from mypy_boto3_rekognition import RekognitionClient

log = structlog.get_logger(__name__)

# --- Rekognition's limits and our choices -------------------------------------------------------

# `Image.Bytes` of the API model: "Maximum length of 5242880".
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Larger images are shrunk to this many pixels before they are sent (and re-encoded).
MAX_IMAGE_PIXELS = 15_000_000
# "The minimum image dimensions is 80 pixels for both height and width."
MIN_IMAGE_EDGE = 80
# Shrinking by 0.8 ten times reaches 11% of the area: far past any photo's need.
_REENCODE_TRIES = 10
# Quality of the JPEGs we re-encode: high, since Rekognition, not a person, looks at them.
REENCODE_QUALITY = 90
# Rekognition's Confidence (0-100) that a detection is a face. Real faces score 99+; drawings,
# masks and faces seen from behind score lower.
DEFAULT_MIN_CONFIDENCE = 90.0
# Smallest face width in the upright original's pixels: the local engine's bar (faces/local.py),
# so switching engines does not change which faces count.
DEFAULT_MIN_FACE_PX = 50
# AWS's recommended range for faces to compare ("Recommendations for facial comparison input
# images"): pitch under 30° face down and 45° face up, yaw under 45° either way, any roll. The
# docs do not say which sign of Pitch is "down", so 30° is applied both ways.
DEFAULT_MAX_PITCH = 30.0
DEFAULT_MAX_YAW = 45.0
# IndexFaces indexes at most 100 faces of one image.
INDEX_MAX_FACES = 100
# The most matches one search returns (the API's maximum). Billing is per call, not per match.
SEARCH_MAX_FACES = 4096
# DeleteFaces and ListFaces take or give at most 4096 faces at once.
PAGE_FACES = 4096
# A face crop spans the face plus this fraction of its larger side on every side. AWS advises
# against images "cropped to the face bounding box" (head and shoulders are best); a wider crop
# also takes in more neighbours, whose faces must not outgrow ours (checked on every search).
CROP_MARGIN = 0.5
# A crop is shrunk to this long edge: more pixels than a face needs to be searched.
CROP_MAX_EDGE = 800
# Two boxes with at least this intersection over union are the same face.
SAME_FACE_IOU = 0.3
# The five points DetectedFace.landmarks lists, in this order (Rekognition's DEFAULT set).
LANDMARKS = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")

# What the engine and index agree to decode when not told (settings' defaults for uploads;
# `from_settings` passes the deployment's own).
DEFAULT_LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)

# Errors that mean the input itself is refused: retrying cannot help.
_IMAGE_ERRORS = frozenset({"InvalidImageFormatException", "ImageTooLargeException"})
# `ExternalImageId` characters kept as they are; every other byte is written `:HH`.
_EXTERNAL_ID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_COLLECTION_ID_SAFE = _EXTERNAL_ID_SAFE
_PENDING_KEY = "mediaplane.faces.rekognition.images"


def rekognition_client(settings: Settings) -> RekognitionClient:
    """A Rekognition client for `REKOGNITION_REGION`, with boto3's default credential chain.

    Not the S3_* keys: those belong to the object store, which is often not AWS at all (R2,
    MinIO), and mixing them would hand Rekognition rights to whatever key the bucket needs.
    The chain reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance,
    task or pod role, which is what a deployment on AWS should use.
    """
    config = Config(
        region_name=settings.rekognition_region,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=20,
    )
    # Not the global session: its creation is not thread-safe.
    return boto3.session.Session().client("rekognition", config=config)


# --- the image Rekognition sees -----------------------------------------------------------------


@dataclass(frozen=True)
class PreparedImage:
    """Bytes Rekognition accepts, and how to turn its ratios into upright original pixels.

    `orientation` is the EXIF orientation of the pixels as sent (1 when we re-encoded them
    upright); `width` and `height` are the upright original's, which ratios scale to (a
    shrunk copy has the same ratios).
    """

    data: bytes
    orientation: int
    width: int
    height: int

    def upright_ratio(self, x: float, y: float) -> tuple[float, float]:
        """A point as a ratio of the sent image → the same point as a ratio of the upright one.

        EXIF orientation n says how stored pixels are shown; e.g. 6: stored row 0 is shown as
        the right-hand column and stored column 0 as the top row.
        """
        return _ORIENT[self.orientation](x, y)

    def point(self, x: float, y: float) -> tuple[float, float]:
        ux, uy = self.upright_ratio(x, y)
        return (ux * self.width, uy * self.height)

    def box(self, ratio_box: Mapping[str, float]) -> Box:
        """Rekognition's BoundingBox (ratios of the sent image; may reach outside it for a face
        at an edge) in pixels of the upright original, clipped to the image."""
        left, top = ratio_box["Left"], ratio_box["Top"]
        right, bottom = left + ratio_box["Width"], top + ratio_box["Height"]
        corners = [self.upright_ratio(x, y) for x, y in ((left, top), (right, bottom))]
        x0, x1 = sorted(_clip(x) for x, _ in corners)
        y0, y1 = sorted(_clip(y) for _, y in corners)
        px0, py0 = round(x0 * self.width), round(y0 * self.height)
        px1, py1 = round(x1 * self.width), round(y1 * self.height)
        return Box(left=px0, top=py0, width=max(1, px1 - px0), height=max(1, py1 - py0))

    def face(self, detail: Mapping[str, Any]) -> DetectedFace:
        """A Rekognition FaceDetail as a `DetectedFace` (see `RekognitionFaceEngine`)."""
        points = {mark["Type"]: (mark["X"], mark["Y"]) for mark in detail.get("Landmarks", ())}
        return DetectedFace(
            box=self.box(detail["BoundingBox"]),
            landmarks=tuple(self.point(*points[name]) for name in LANDMARKS if name in points),
            quality=_clip(detail["Confidence"] / 100.0),
            embedding=None,
        )


_ORIENT = {
    1: lambda x, y: (x, y),
    2: lambda x, y: (1 - x, y),
    3: lambda x, y: (1 - x, 1 - y),
    4: lambda x, y: (x, 1 - y),
    5: lambda x, y: (y, x),
    6: lambda x, y: (1 - y, x),
    7: lambda x, y: (1 - y, 1 - x),
    8: lambda x, y: (y, 1 - x),
}


def prepare_image(
    image: bytes,
    *,
    limits: ImageLimits,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> PreparedImage:
    """`image` as Rekognition will take it; raises `ImageRejected` for input that is not an
    acceptable image under `limits` (checked before anything is sent anywhere).

    Sent as it is: an 8-bit grey or RGB JPEG within `max_bytes` and `max_pixels`, its APP1
    segments cut out (see the module docstring), or such a PNG without an orientation tag.
    Anything else (too big, WebP, GIF, AVIF, CMYK, 16-bit, alpha, a rotated PNG) is decoded
    upright, shrunk to fit both limits and re-encoded as a metadata-free JPEG.
    """
    fmt, header, size = open_checked(image, limits)
    width, height = upright_size(header)
    with decoding(fmt, header, wait_seconds=limits.decode_wait_seconds):
        orientation = _orientation(header)
        plain = header.format == "uchar" and header.bands in (1, 3)
        if plain and size <= max_bytes and header.width * header.height <= max_pixels:
            # Sent undecoded: decode it once here, so a truncated file fails now, not at AWS.
            verify_decodes(image)
            if fmt is ImageFormat.JPEG:
                stripped = without_app1(image)
                if stripped is not None:
                    return PreparedImage(stripped, orientation, width, height)
            elif fmt is ImageFormat.PNG and orientation == 1:
                return PreparedImage(image, 1, width, height)
        reencoded = _reencode(image, fmt, header, max_bytes=max_bytes, max_pixels=max_pixels)
        return PreparedImage(reencoded, 1, width, height)


def _reencode(
    image: bytes, fmt: ImageFormat, header: pyvips.Image, *, max_bytes: int, max_pixels: int
) -> bytes:
    """Upright, sRGB, at most `max_pixels`, JPEG at most `max_bytes`: each try that comes out
    too heavy (noise, confetti) is redone at 80% of the previous size. The decode fails on a
    truncated file (`decode_within`)."""
    width, height = upright_size(header)
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    with libvips_errors():
        for _ in range(_REENCODE_TRIES):
            target_w = max(1, math.floor(width * scale))
            target_h = max(1, math.floor(height * scale))
            pixels = opaque_srgb(decode_within(image, fmt, header, width=target_w, height=target_h))
            rendered = encode_jpeg(pixels, quality=REENCODE_QUALITY)
            fits = rendered.width * rendered.height <= max_pixels
            if fits and len(rendered.data) <= max_bytes:
                return rendered.data
            scale *= 0.8
    raise ImageRejected(
        RejectReason.FILE_TOO_LARGE,
        f"the image does not fit Rekognition's {max_bytes:,} bytes even at "
        f"{rendered.width}×{rendered.height}",
    )


def without_app1(jpeg: bytes) -> bytes | None:
    """The JPEG with its APP1 segments (EXIF, XMP) removed and every other byte kept, or None
    if its segments before the scan are not well formed (the caller re-encodes instead)."""
    if not jpeg.startswith(b"\xff\xd8"):
        return None
    kept = [jpeg[:2]]
    at = 2
    while at + 4 <= len(jpeg):
        if jpeg[at] != 0xFF:
            return None
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            kept.append(jpeg[at : at + 1])
            at += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data and the rest, as they are
            kept.append(jpeg[at:])
            return b"".join(kept)
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(jpeg):
            return None
        if marker != 0xE1:
            kept.append(jpeg[at:end])
        at = end
    return None


@dataclass(frozen=True)
class FaceCrop:
    """One face cut out of an upright image, as a JPEG, and where the face is in it (ratios)."""

    data: bytes
    face: Mapping[str, float]


def face_crops(
    image: bytes, boxes: Mapping[Any, Box], *, limits: ImageLimits
) -> dict[Any, FaceCrop]:
    """A crop around each box (pixels of the upright original), keyed like `boxes`.

    One decode, upright and within `MAX_IMAGE_PIXELS`, for all the crops. Each spans the face
    plus `CROP_MARGIN` on every side (clipped to the image), is shrunk to `CROP_MAX_EDGE` or
    enlarged to Rekognition's 80 px minimum, and is encoded as a metadata-free JPEG.
    """
    if not boxes:
        return {}
    fmt, header, _ = open_checked(image, limits)
    width, height = upright_size(header)
    scale = min(1.0, math.sqrt(MAX_IMAGE_PIXELS / (width * height)))
    crops: dict[Any, FaceCrop] = {}
    with decoding(fmt, header, wait_seconds=limits.decode_wait_seconds), libvips_errors():
        decoded = decode_within(
            image,
            fmt,
            header,
            width=max(1, math.floor(width * scale)),
            height=max(1, math.floor(height * scale)),
        )
        pixels = opaque_srgb(decoded).copy_memory()
        sx, sy = pixels.width / width, pixels.height / height
        for key, box in boxes.items():
            margin = CROP_MARGIN * max(box.width, box.height)
            x0 = max(0, math.floor((box.left - margin) * sx))
            y0 = max(0, math.floor((box.top - margin) * sy))
            x1 = min(pixels.width, math.ceil((box.left + box.width + margin) * sx))
            y1 = min(pixels.height, math.ceil((box.top + box.height + margin) * sy))
            crop_w, crop_h = max(1, x1 - x0), max(1, y1 - y0)
            region = pixels.crop(x0, y0, crop_w, crop_h)
            factor = min(1.0, CROP_MAX_EDGE / max(crop_w, crop_h))
            factor = max(factor, MIN_IMAGE_EDGE / min(crop_w, crop_h))
            if factor != 1.0:
                region = region.resize(factor)
            face = {  # ratios of the crop: the same before and after the resize
                "Left": (box.left * sx - x0) / crop_w,
                "Top": (box.top * sy - y0) / crop_h,
                "Width": box.width * sx / crop_w,
                "Height": box.height * sy / crop_h,
            }
            crops[key] = FaceCrop(encode_jpeg(region, quality=REENCODE_QUALITY).data, face)
    return crops


# --- the engine ---------------------------------------------------------------------------------


class RekognitionFaceEngine:
    """`FaceEngine` on Rekognition's DetectFaces: one call per image, no embedding.

    Kept, largest first: faces Rekognition is at least `min_confidence` sure of, at least
    `min_face_px` wide in the upright original, and turned no further than AWS recommends for
    comparison (`max_pitch`, `max_yaw`; a face looking down at the floor or seen in profile
    matches poorly, and the local engine's frontal detector does not find those either).
    `quality` is Rekognition's Confidence / 100, the detector's certainty the protocol asks for.
    Quality.Sharpness and Brightness are not folded in: IndexFaces (QualityFilter AUTO) refuses
    faces too blurred or dark to search with by Rekognition's own measure, which published
    thresholds do not exist to second-guess.
    """

    name = "rekognition"

    def __init__(
        self,
        client: RekognitionClient,
        *,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        min_face_px: int = DEFAULT_MIN_FACE_PX,
        max_pitch: float = DEFAULT_MAX_PITCH,
        max_yaw: float = DEFAULT_MAX_YAW,
    ) -> None:
        if not 0 < max_image_bytes <= MAX_IMAGE_BYTES:
            raise ValueError(f"max_image_bytes must be 1-{MAX_IMAGE_BYTES}, not {max_image_bytes}")
        self.client = client
        self.limits = limits
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        self.min_confidence = min_confidence
        self.min_face_px = min_face_px
        self.max_pitch = max_pitch
        self.max_yaw = max_yaw

    @classmethod
    def from_settings(cls, settings: Settings) -> RekognitionFaceEngine:
        return cls(rekognition_client(settings), limits=face_limits(settings))

    def detect(self, image: bytes | Original) -> list[DetectedFace]:
        """Faces big and clear enough to match, largest first; raises `ImageRejected`."""
        prepared = prepare_image(
            image.as_bytes() if isinstance(image, Original) else image,
            limits=self.limits,
            max_bytes=self.max_image_bytes,
            max_pixels=self.max_image_pixels,
        )
        if min(prepared.width, prepared.height) < MIN_IMAGE_EDGE:
            return []  # below Rekognition's minimum, and too small to hold a face we would keep
        try:
            response = self.client.detect_faces(
                Image={"Bytes": prepared.data}, Attributes=["DEFAULT"]
            )
        except ClientError as exc:
            _raise_if_refused(exc)
            raise
        faces = [prepared.face(detail) for detail in response["FaceDetails"] if self._clear(detail)]
        faces = [face for face in faces if face.box.width >= self.min_face_px]
        return sorted(faces, key=lambda f: (f.box.width * f.box.height, f.quality), reverse=True)

    def _clear(self, detail: Mapping[str, Any]) -> bool:
        pose = detail.get("Pose", {})
        return (
            detail["Confidence"] >= self.min_confidence
            and abs(pose.get("Pitch", 0.0)) <= self.max_pitch
            and abs(pose.get("Yaw", 0.0)) <= self.max_yaw
        )


# --- the index ----------------------------------------------------------------------------------


@dataclass
class _Images:
    """Images `enroll` and `add_photo` saw in this session, for the searches that follow."""

    selfies: dict[str, bytes] = field(default_factory=dict)
    photos: dict[uuid.UUID, bytes] = field(default_factory=dict)


def _images(session: Session) -> _Images:
    images = session.info.get(_PENDING_KEY)
    if images is None:
        images = session.info[_PENDING_KEY] = _Images()
    return images


class RekognitionIndex:
    """`FaceIndex` on Rekognition collections; see the module docstring for the design."""

    def __init__(
        self,
        client: RekognitionClient,
        *,
        prefix: str,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        # The longest collection id is PREFIX-project-<36-character uuid>, at most 255.
        if not prefix or set(prefix) - _COLLECTION_ID_SAFE or len(prefix) > 200:
            raise ValueError(
                f"REKOGNITION_COLLECTION_PREFIX={prefix!r}: use 1-200 of a-z A-Z 0-9 _ . - "
                "(Rekognition collection ids allow nothing else)"
            )
        self.client = client
        self.prefix = prefix
        self.limits = limits
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels

    @classmethod
    def from_settings(cls, settings: Settings) -> RekognitionIndex:
        return cls(
            rekognition_client(settings),
            prefix=settings.rekognition_collection_prefix,
            limits=face_limits(settings),
        )

    @property
    def selfies_collection(self) -> str:
        return f"{self.prefix}-selfies"

    def project_collection(self, project_id: uuid.UUID) -> str:
        return f"{self.prefix}-project-{project_id}"

    # --- FaceIndex --------------------------------------------------------------------------

    def enroll(
        self,
        session: Session,
        *,
        user_id: str,
        selfie_id: uuid.UUID,
        face: DetectedFace,
        image: bytes,
        now: datetime,
    ) -> None:
        """Index the selfie's face into PREFIX-selfies, then delete the user's earlier one.

        New first, old after: when Rekognition will not index the new face (too blurred, dark,
        small or turned away: QualityFilter AUTO) this raises `SelfieRejected("no_face")`, the
        transaction rolls back, and the user keeps the face they had, in AWS as in our row.
        """
        prepared = self._prepare(image)
        current = session.get(SelfieFace, user_id)
        previous = current.external_face_id if current is not None else None
        response = self._index_faces(
            self.selfies_collection,
            prepared,
            external_image_id=external_image_id(user_id),
            max_faces=1,
        )
        if not response["FaceRecords"]:
            reasons = sorted({r for f in response["UnindexedFaces"] for r in f["Reasons"]})
            raise SelfieRejected(
                "no_face",
                "the face in the selfie is not clear enough to search with "
                f"({', '.join(reasons) or 'no face found'})",
                details={"rekognition_reasons": reasons},
            )
        if previous:
            self._delete_faces(self.selfies_collection, [previous])
        values = {
            "user_id": user_id,
            "selfie_id": selfie_id,
            "box": box_json(face),
            "embedding": None,
            "external_face_id": response["FaceRecords"][0]["Face"]["FaceId"],
            "created_at": now,
        }
        statement = insert(SelfieFace).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={k: v for k, v in values.items() if k != "user_id"},
        )
        session.execute(statement)
        _images(session).selfies[user_id] = image

    def add_photo(
        self,
        session: Session,
        *,
        photo_id: uuid.UUID,
        project_id: uuid.UUID,
        faces: list[DetectedFace],
        image: bytes,
    ) -> None:
        """Index the photo's faces into its project's collection, then delete an earlier run's.

        The engine's `faces` decide what is kept: IndexFaces indexes at most that many faces,
        each indexed face is paired with the engine's face it overlaps (the row keeps the
        engine's box and quality), and one that overlaps none is deleted again with the old.
        No face, no IndexFaces.
        """
        collection = self.project_collection(project_id)
        pairs: dict[str, DetectedFace] = {}
        unpaired: list[str] = []
        if faces:
            prepared = self._prepare(image)
            response = self._index_faces(
                collection,
                prepared,
                external_image_id=str(photo_id),
                max_faces=min(len(faces), INDEX_MAX_FACES),
            )
            indexed = {
                record["Face"]["FaceId"]: prepared.box(record["Face"]["BoundingBox"])
                for record in response["FaceRecords"]
            }
            pairs = _pair(indexed, faces)
            unpaired = [face_id for face_id in indexed if face_id not in pairs]
        previous = session.scalars(select(PhotoFace).where(PhotoFace.photo_id == photo_id)).all()
        stale: dict[str, list[str]] = {collection: unpaired} if unpaired else {}
        for row in previous:
            if row.external_face_id:
                stale.setdefault(self.project_collection(row.project_id), []).append(
                    row.external_face_id
                )
        for old_collection, face_ids in stale.items():
            self._delete_faces(old_collection, sorted(face_ids))
        session.execute(delete(PhotoFace).where(PhotoFace.photo_id == photo_id))
        _images(session).photos[photo_id] = image
        for face_id, face in pairs.items():
            session.add(
                PhotoFace(
                    id=uuid.uuid4(),
                    photo_id=photo_id,
                    project_id=project_id,
                    box=box_json(face),
                    quality=face.quality,
                    embedding=None,
                    external_face_id=face_id,
                )
            )
        session.flush()

    def candidates_for_user(
        self, session: Session, *, user_id: str, threshold: float
    ) -> list[Candidate]:
        """Search every project collection that holds photo faces with the selfie's face crop
        (one SearchFacesByImage per project)."""
        selfie = session.get(SelfieFace, user_id)
        if selfie is None or not selfie.external_face_id:
            return []
        projects = session.scalars(
            select(PhotoFace.project_id)
            .where(PhotoFace.external_face_id.is_not(None))
            .distinct()
            .order_by(PhotoFace.project_id)
        ).all()
        if not projects:
            return []
        image = _images(session).selfies.get(user_id)
        if image is None:
            raise RuntimeError(
                "RekognitionIndex.candidates_for_user searches by image: call enroll() for "
                f"user {user_id!r} earlier in the same session"
            )
        crop = face_crops(image, {user_id: Box(**selfie.box)}, limits=self.limits)[user_id]
        found: dict[str, tuple[uuid.UUID, float]] = {}
        for project_id in projects:
            for face_id, similarity in self._search(
                self.project_collection(project_id), crop, threshold
            ):
                found[face_id] = (project_id, similarity)
        if not found:
            return []
        rows = session.scalars(
            select(PhotoFace).where(PhotoFace.external_face_id.in_(list(found)))
        ).all()
        return [
            Candidate(
                photo_id=row.photo_id,
                project_id=row.project_id,
                photo_face_id=row.id,
                user_id=user_id,
                similarity=found[row.external_face_id][1],
                box=row.box,
            )
            for row in rows
            if row.external_face_id and found[row.external_face_id][0] == row.project_id
        ]

    def candidates_for_photo(
        self, session: Session, *, photo_id: uuid.UUID, threshold: float
    ) -> list[Candidate]:
        """Search PREFIX-selfies with a crop of each face of the photo (one SearchFacesByImage
        per face; none when nobody has enrolled)."""
        faces = session.scalars(
            select(PhotoFace)
            .where(PhotoFace.photo_id == photo_id, PhotoFace.external_face_id.is_not(None))
            # Reading order, top to bottom then left to right: one order for every run.
            .order_by(
                PhotoFace.box["top"].as_integer(), PhotoFace.box["left"].as_integer(), PhotoFace.id
            )
        ).all()
        if not faces:
            return []
        anyone = session.scalar(select(exists().where(SelfieFace.external_face_id.is_not(None))))
        if not anyone:
            return []
        image = _images(session).photos.get(photo_id)
        if image is None:
            raise RuntimeError(
                "RekognitionIndex.candidates_for_photo searches by image: call add_photo() for "
                f"photo {photo_id} earlier in the same session"
            )
        crops = face_crops(image, {f.id: Box(**f.box) for f in faces}, limits=self.limits)
        matches = {
            face.id: self._search(self.selfies_collection, crops[face.id], threshold)
            for face in faces
        }
        face_ids = {face_id for found in matches.values() for face_id, _ in found}
        if not face_ids:
            return []
        users = {
            row.external_face_id: row.user_id
            for row in session.execute(
                select(SelfieFace.external_face_id, SelfieFace.user_id).where(
                    SelfieFace.external_face_id.in_(sorted(face_ids))
                )
            )
        }
        return [
            Candidate(
                photo_id=photo_id,
                project_id=face.project_id,
                photo_face_id=face.id,
                user_id=users[face_id],
                similarity=similarity,
                box=face.box,
            )
            for face in faces
            for face_id, similarity in matches[face.id]
            if face_id in users
        ]

    def forget_user(self, session: Session, *, user_id: str) -> None:
        """Delete every face of the user from PREFIX-selfies, then their row.

        The row's FaceId, and any stray face a rolled-back enroll left under the user's
        `ExternalImageId`, found by listing the collection (the one place a selfie face is ever
        indexed: searches by image store nothing).
        """
        selfie = session.get(SelfieFace, user_id)
        face_ids = set()
        if selfie is not None and selfie.external_face_id:
            face_ids.add(selfie.external_face_id)
        face_ids.update(self._faces_labelled(self.selfies_collection, external_image_id(user_id)))
        if face_ids:
            self._delete_faces(self.selfies_collection, sorted(face_ids))
        session.execute(delete(SelfieFace).where(SelfieFace.user_id == user_id))
        _images(session).selfies.pop(user_id, None)

    def forget_photos(self, session: Session, *, photo_ids: list[uuid.UUID]) -> None:
        """DeleteFaces of the photos' faces (one call per project collection), then the rows."""
        rows = session.scalars(select(PhotoFace).where(PhotoFace.photo_id.in_(photo_ids))).all()
        stale: dict[str, list[str]] = {}
        for row in rows:
            if row.external_face_id:
                stale.setdefault(self.project_collection(row.project_id), []).append(
                    row.external_face_id
                )
        for collection, face_ids in stale.items():
            self._delete_faces(collection, sorted(face_ids))
        session.execute(delete(PhotoFace).where(PhotoFace.photo_id.in_(photo_ids)))
        for photo_id in photo_ids:
            _images(session).photos.pop(photo_id, None)

    def forget_project(self, session: Session, *, project_id: uuid.UUID) -> None:
        """DeleteCollection of the project: strays a rolled-back run left go with it."""
        try:
            self.client.delete_collection(CollectionId=self.project_collection(project_id))
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        session.execute(delete(PhotoFace).where(PhotoFace.project_id == project_id))

    def forget_vectors(self, session: Session, *, project_id: uuid.UUID) -> int:
        """DeleteCollection of the project (every face vector of it lives there and nowhere
        else); the rows keep their boxes and lose their FaceId."""
        try:
            self.client.delete_collection(CollectionId=self.project_collection(project_id))
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        result = session.execute(
            update(PhotoFace)
            .where(PhotoFace.project_id == project_id, PhotoFace.external_face_id.is_not(None))
            .values(external_face_id=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- calls ------------------------------------------------------------------------------

    def _prepare(self, image: bytes) -> PreparedImage:
        return prepare_image(
            image,
            limits=self.limits,
            max_bytes=self.max_image_bytes,
            max_pixels=self.max_image_pixels,
        )

    def _index_faces(
        self, collection: str, prepared: PreparedImage, *, external_image_id: str, max_faces: int
    ) -> Mapping[str, Any]:
        """IndexFaces, creating the collection on its first use."""
        request: dict[str, Any] = {
            "CollectionId": collection,
            "Image": {"Bytes": prepared.data},
            "ExternalImageId": external_image_id,
            "DetectionAttributes": ["DEFAULT"],
            "MaxFaces": max_faces,
            "QualityFilter": "AUTO",
        }
        try:
            return self.client.index_faces(**request)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                _raise_if_refused(exc)
                raise
        self._create_collection(collection)
        try:
            return self.client.index_faces(**request)
        except ClientError as exc:
            _raise_if_refused(exc)
            raise

    def _create_collection(self, collection: str) -> None:
        """CreateCollection; another worker having just created it is as good."""
        try:
            self.client.create_collection(CollectionId=collection)
            log.info("rekognition collection created", collection=collection)
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise

    def _delete_faces(self, collection: str, face_ids: list[str]) -> None:
        """DeleteFaces; faces (or a collection) already gone are fine."""
        for start in range(0, len(face_ids), PAGE_FACES):
            try:
                response = self.client.delete_faces(
                    CollectionId=collection, FaceIds=face_ids[start : start + PAGE_FACES]
                )
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return
                raise
            for failure in response.get("UnsuccessfulFaceDeletions", ()):
                log.warning(
                    "rekognition face not deleted",
                    collection=collection,
                    face_id=failure.get("FaceId"),
                    reasons=failure.get("Reasons"),
                )

    def _faces_labelled(self, collection: str, label: str) -> list[str]:
        """FaceIds in `collection` whose ExternalImageId is `label` (ListFaces, every page)."""
        found: list[str] = []
        request: dict[str, Any] = {"CollectionId": collection, "MaxResults": PAGE_FACES}
        while True:
            try:
                page = self.client.list_faces(**request)
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return found
                raise
            found += [f["FaceId"] for f in page["Faces"] if f.get("ExternalImageId") == label]
            if not page.get("NextToken"):
                return found
            request["NextToken"] = page["NextToken"]

    def _search(self, collection: str, crop: FaceCrop, threshold: float) -> list[tuple[str, float]]:
        """(FaceId, Similarity) of the faces in `collection` matching the crop's face.

        Nothing when the collection does not exist (yet, or any more), when Rekognition finds
        no face in the crop, or when the face it searched with is not the crop's own (a
        neighbour's face larger in the crop): a match for someone else is worse than none.
        """
        try:
            response = self.client.search_faces_by_image(
                CollectionId=collection,
                Image={"Bytes": crop.data},
                MaxFaces=SEARCH_MAX_FACES,
                FaceMatchThreshold=threshold,
                QualityFilter="NONE",
            )
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                log.warning("rekognition collection missing", collection=collection)
                return []
            if _no_face(exc):
                log.info("rekognition found no face in the crop", collection=collection)
                return []
            _raise_if_refused(exc)
            raise
        if _iou(response["SearchedFaceBoundingBox"], crop.face) < SAME_FACE_IOU:
            log.info("rekognition searched another face of the crop", collection=collection)
            return []
        return [
            (match["Face"]["FaceId"], float(match["Similarity"]))
            for match in response["FaceMatches"]
            if match["Similarity"] >= threshold
        ]


# --- helpers ------------------------------------------------------------------------------------


def external_image_id(user_id: str) -> str:
    """The user's `ExternalImageId`: reversible and unique, in Rekognition's `[a-zA-Z0-9_.\\-:]`.

    Safe characters stay; every other byte of the UTF-8 form is written `:HH` (so
    "auth0|42" is "auth0:7C42"). Above Rekognition's 255 characters it is "sha256:" and the
    digest of the id, which no encoded id can equal (an encoded ":" is ":3A").
    """
    encoded = "".join(
        char if char in _EXTERNAL_ID_SAFE else "".join(f":{b:02X}" for b in char.encode())
        for char in user_id
    )
    if not encoded or len(encoded) > 255:
        return "sha256:" + hashlib.sha256(user_id.encode()).hexdigest()
    return encoded


def _pair(indexed: Mapping[str, Box], faces: Sequence[DetectedFace]) -> dict[str, DetectedFace]:
    """Each indexed FaceId with the engine face it overlaps most (IoU ≥ `SAME_FACE_IOU`),
    best overlaps first, each face at most once."""
    scored = sorted(
        (
            (_iou(_ltwh(box), _ltwh(face.box)), face_id, n, face)
            for face_id, box in indexed.items()
            for n, face in enumerate(faces)
        ),
        key=lambda item: item[0],
        reverse=True,
    )
    pairs: dict[str, DetectedFace] = {}
    taken: set[int] = set()
    for iou, face_id, n, face in scored:
        if iou >= SAME_FACE_IOU and face_id not in pairs and n not in taken:
            pairs[face_id] = face
            taken.add(n)
    return pairs


def _ltwh(box: Box) -> dict[str, float]:
    return {"Left": box.left, "Top": box.top, "Width": box.width, "Height": box.height}


def _iou(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Intersection over union of two boxes given as Left/Top/Width/Height (any one unit)."""
    x0, y0 = max(a["Left"], b["Left"]), max(a["Top"], b["Top"])
    x1 = min(a["Left"] + a["Width"], b["Left"] + b["Width"])
    y1 = min(a["Top"] + a["Height"], b["Top"] + b["Height"])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a["Width"] * a["Height"] + b["Width"] * b["Height"] - inter
    return inter / union if union > 0 else 0.0


def _orientation(header: pyvips.Image) -> int:
    value = header.get("orientation") if header.get_typeof("orientation") else 1
    return value if value in _ORIENT else 1


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _no_face(exc: ClientError) -> bool:
    # SearchFacesByImage answers an input without a face with InvalidParameterException
    # ("There are no faces in the image. Should be at least 1.").
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return _code(exc) == "InvalidParameterException" and "no faces" in message


def _raise_if_refused(exc: ClientError) -> None:
    """Raise `ImageRejected` when Rekognition refuses the input itself: retrying cannot help."""
    if _code(exc) in _IMAGE_ERRORS:
        message = exc.response.get("Error", {}).get("Message", "")
        raise ImageRejected(
            RejectReason.CORRUPT_IMAGE,
            f"Rekognition refused the image ({_code(exc)}: {message})",
        ) from exc
