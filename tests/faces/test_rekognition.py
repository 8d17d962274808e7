"""The Rekognition engine and index against botocore's Stubber: the exact requests we send and
the documented responses Rekognition gives, with real images, real libvips and the real database.

AWS cannot be reached from the tests, so no response here was captured from the service. They
are built by `RecordedFace` in the shapes the API reference documents (ratios of the image as
sent, 5 DEFAULT landmarks, Pose, Quality, Confidence; FaceId, ImageId, ExternalImageId for
stored faces; Similarity for matches), with boxes and landmarks where the faces really are in
the fixture photos (measured on them). Pose and Quality values are plausible estimates; the
child in obama_and_biden.jpg, looking down, is given a pitch past AWS's recommended 30°.
Stubber checks every response against the service model, so a shape that drifts fails.

`recorded_rekognition_engine` serves the engine contract suite (test_engine_contract.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import pyvips
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from sqlalchemy import select
from sqlalchemy.orm import Session

from mediaplane.faces import Box, DetectedFace
from mediaplane.faces.index import build_index
from mediaplane.faces.models import PhotoFace, SelfieFace
from mediaplane.faces.rekognition import (
    DEFAULT_LIMITS,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    PreparedImage,
    RekognitionFaceEngine,
    RekognitionIndex,
    external_image_id,
    prepare_image,
    without_app1,
)
from mediaplane.faces.service import SelfieRejected
from mediaplane.imaging import ImageRejected
from mediaplane.runtime import Runtime
from mediaplane.settings import Settings
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus
from tests.imaging import factories

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
PREFIX = "mp-test"
SELFIES = f"{PREFIX}-selfies"
THRESHOLD = 50.0
MODEL_VERSION = "7.0"


def fixture_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


# --- responses, as the API reference documents them -----------------------------------------


@dataclass(frozen=True)
class RecordedFace:
    """One face as Rekognition reports it: ratios of the image as sent."""

    left: float
    top: float
    width: float
    height: float
    landmarks: Mapping[str, tuple[float, float]]
    confidence: float = 99.998
    pose: Mapping[str, float] = field(
        default_factory=lambda: {"Roll": -2.1, "Yaw": 4.3, "Pitch": 5.6}
    )
    quality: Mapping[str, float] = field(
        default_factory=lambda: {"Brightness": 83.6, "Sharpness": 89.9}
    )

    @property
    def bounding_box(self) -> dict[str, float]:
        return {"Width": self.width, "Height": self.height, "Left": self.left, "Top": self.top}

    def detail(self) -> dict[str, Any]:
        """A FaceDetail with the DEFAULT attributes."""
        return {
            "BoundingBox": self.bounding_box,
            "Landmarks": [{"Type": t, "X": x, "Y": y} for t, (x, y) in self.landmarks.items()],
            "Pose": dict(self.pose),
            "Quality": dict(self.quality),
            "Confidence": self.confidence,
        }

    def face(self, face_id: str, external_image_id: str) -> dict[str, Any]:
        """The Face a collection stores for it (IndexFaces, ListFaces, matches)."""
        return {
            "FaceId": face_id,
            "BoundingBox": self.bounding_box,
            "ImageId": str(uuid.uuid5(uuid.NAMESPACE_URL, external_image_id)),
            "ExternalImageId": external_image_id,
            "Confidence": self.confidence,
            "IndexFacesModelVersion": MODEL_VERSION,
        }

    def stored_sideways(self) -> RecordedFace:
        """The same face in the pixels of an image stored turned a quarter to the left and
        tagged EXIF orientation 6 ("rotate 90° clockwise to show"): upright (x, y) is stored
        (y, 1 - x)."""
        return replace(
            self,
            left=self.top,
            top=1 - self.left - self.width,
            width=self.height,
            height=self.width,
            landmarks={t: (y, 1 - x) for t, (x, y) in self.landmarks.items()},
        )


def landmarks(*points: tuple[float, float]) -> dict[str, tuple[float, float]]:
    names = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
    return dict(zip(names, points, strict=True))


OBAMA_1 = RecordedFace(
    0.4055,
    0.1060,
    0.2703,
    0.2704,
    landmarks(
        (0.4877, 0.1892), (0.6024, 0.1889), (0.5462, 0.2401), (0.4758, 0.2841), (0.6099, 0.2806)
    ),
)
GROUP_OBAMA = RecordedFace(
    0.5710,
    0.2554,
    0.0940,
    0.1724,
    landmarks(
        (0.5972, 0.3246), (0.6364, 0.3114), (0.6190, 0.3431), (0.6060, 0.3838), (0.6430, 0.3711)
    ),
    pose={"Roll": -9.8, "Yaw": 6.2, "Pitch": 8.4},
)
GROUP_BIDEN = RecordedFace(
    0.3795,
    0.2985,
    0.0925,
    0.1532,
    landmarks(
        (0.3999, 0.3431), (0.4390, 0.3518), (0.4120, 0.3796), (0.3945, 0.3936), (0.4360, 0.4034)
    ),
    pose={"Roll": 7.5, "Yaw": -11.3, "Pitch": 2.9},
)
GROUP_CHILD = RecordedFace(
    0.8145,
    0.7491,
    0.0735,
    0.1059,
    landmarks(
        (0.8240, 0.7858), (0.8512, 0.7894), (0.8300, 0.8123), (0.8240, 0.8284), (0.8505, 0.8291)
    ),
    confidence=99.41,
    pose={"Roll": 3.2, "Yaw": -14.6, "Pitch": -38.7},
    quality={"Brightness": 34.2, "Sharpness": 46.0},
)

# DetectFaces' FaceDetails for each image of the engine contract suite, largest first as
# Rekognition lists them. "canvas-N": obama_1's face scaled to N px on a grey canvas
# (test_engine_contract.face_on_canvas); Rekognition's box is a little narrower than dlib's.
RECORDED: dict[str, list[RecordedFace]] = {
    "obama_1.jpg": [OBAMA_1],
    "obama_2.jpg": [
        RecordedFace(
            0.3291,
            0.2160,
            0.4473,
            0.3156,
            landmarks(
                (0.4028, 0.3099),
                (0.5900, 0.3189),
                (0.4489, 0.3667),
                (0.3882, 0.4358),
                (0.5639, 0.4408),
            ),
            pose={"Roll": 2.6, "Yaw": -21.4, "Pitch": 9.7},
        )
    ],
    "biden_1.jpg": [
        RecordedFace(
            0.4371,
            0.0935,
            0.2918,
            0.1633,
            landmarks(
                (0.5510, 0.1469),
                (0.6722, 0.1592),
                (0.6144, 0.1815),
                (0.5351, 0.2083),
                (0.6464, 0.2178),
            ),
            pose={"Roll": 6.9, "Yaw": 17.2, "Pitch": 4.1},
        )
    ],
    "biden_2.jpg": [
        RecordedFace(
            0.3508,
            0.2060,
            0.3700,
            0.4448,
            landmarks(
                (0.4703, 0.3382),
                (0.6254, 0.3457),
                (0.5533, 0.4392),
                (0.4450, 0.4925),
                (0.6383, 0.5017),
            ),
            pose={"Roll": 3.0, "Yaw": 8.8, "Pitch": -4.5},
        )
    ],
    "obama_and_biden.jpg": [GROUP_OBAMA, GROUP_BIDEN, GROUP_CHILD],
    "canvas-30": [
        RecordedFace(
            0.4901,
            0.4804,
            0.0229,
            0.0383,
            landmarks(
                (0.4963, 0.4925),
                (0.5060, 0.4924),
                (0.5013, 0.4997),
                (0.4953, 0.5059),
                (0.5067, 0.5054),
            ),
            confidence=99.87,
        )
    ],
    "canvas-120": [
        RecordedFace(
            0.4574,
            0.4235,
            0.0916,
            0.1523,
            landmarks(
                (0.4852, 0.4704),
                (0.5241, 0.4702),
                (0.5050, 0.4991),
                (0.4812, 0.5239),
                (0.5266, 0.5219),
            ),
        )
    ],
}


def detect_response(faces: list[RecordedFace]) -> dict[str, Any]:
    return {"FaceDetails": [face.detail() for face in faces]}


def index_response(
    records: list[tuple[str, RecordedFace]],
    external_id: str,
    *,
    unindexed: Sequence[tuple[list[str], RecordedFace]] = (),
) -> dict[str, Any]:
    return {
        "FaceRecords": [
            {"Face": face.face(face_id, external_id), "FaceDetail": face.detail()}
            for face_id, face in records
        ],
        "FaceModelVersion": MODEL_VERSION,
        "UnindexedFaces": [
            {"Reasons": reasons, "FaceDetail": face.detail()} for reasons, face in unindexed
        ],
    }


# Where the face sits in one of our crops (CROP_MARGIN 0.5 of the larger side all round, so
# about the middle half), as Rekognition reports the face it searched with.
SEARCHED_CENTRE = {"Width": 0.47, "Height": 0.55, "Left": 0.26, "Top": 0.2}


def search_response(
    matches: list[tuple[float, str, str, RecordedFace]],
    *,
    searched: Mapping[str, float] = SEARCHED_CENTRE,
) -> dict[str, Any]:
    """SearchFacesByImage: (similarity, face id, external image id, face) per match."""
    return {
        "SearchedFaceBoundingBox": dict(searched),
        "SearchedFaceConfidence": 99.99,
        "FaceMatches": [
            {"Similarity": similarity, "Face": face.face(face_id, external_id)}
            for similarity, face_id, external_id, face in matches
        ],
        "FaceModelVersion": MODEL_VERSION,
    }


def face_id() -> str:
    return str(uuid.uuid4())


class SentJpeg:
    """Matches (in Stubber's expected_params) image bytes that are a JPEG, and keeps them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, bytes) or not other.startswith(b"\xff\xd8\xff"):
            return False
        self.sent.append(other)
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<a JPEG>"

    @property
    def image(self) -> pyvips.Image:
        return pyvips.Image.new_from_buffer(self.sent[-1], "")


# --- clients ------------------------------------------------------------------------------------


def rekognition_client() -> Any:
    """A real botocore client that never reaches AWS (Stubber or `recorded_rekognition_engine`
    answers before any request is sent)."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    return session.client("rekognition")


@pytest.fixture
def client() -> Any:
    return rekognition_client()


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def engine(client: Any) -> RekognitionFaceEngine:
    return RekognitionFaceEngine(client)


@pytest.fixture
def index(client: Any) -> RekognitionIndex:
    return RekognitionIndex(client, prefix=PREFIX)


def recorded_rekognition_engine(images: Mapping[str, bytes]) -> RekognitionFaceEngine:
    """An engine whose client answers DetectFaces with `RECORDED[name]` when the image sent is
    the one prepared from `images[name]`, and with no face for any other image (a picture
    without a face: Rekognition's answer for those is an empty FaceDetails).

    Like a cassette of recorded HTTP exchanges, it matches requests by their content, as the
    contract suite calls `detect` in an order of its own. Requests are built and validated by
    botocore as for AWS; responses are validated against the service model as Stubber does.
    """
    client = rekognition_client()
    answers = {_sent_digest(data): detect_response(RECORDED[name]) for name, data in images.items()}
    sent: list[bytes] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["Image"]["Bytes"])

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        response = answers.get(_digest(sent.pop()), {"FaceDetails": []})
        report = ParamValidator().validate(response, model.output_shape)
        assert not report.has_errors(), report.generate_report()
        return AWSResponse("https://rekognition.invalid", 200, HTTPHeaders(), None), response

    client.meta.events.register("before-parameter-build.rekognition.DetectFaces", remember)
    client.meta.events.register("before-call.rekognition.DetectFaces", answer)
    return RekognitionFaceEngine(client)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The digest of what the engine sends for an image, by the image's digest: the contract suite
# builds an engine per case, and preparing seven photos each time would be most of its time.
_SENT_DIGESTS: dict[str, str] = {}


def _sent_digest(data: bytes) -> str:
    key = _digest(data)
    if key not in _SENT_DIGESTS:
        _SENT_DIGESTS[key] = _digest(prepare_image(data, limits=DEFAULT_LIMITS).data)
    return _SENT_DIGESTS[key]


# --- the engine: what is sent ----------------------------------------------------------------


def test_detect_sends_the_jpeg_without_its_exif_and_converts_ratios_to_pixels(
    engine: RekognitionFaceEngine, stubber: Stubber
) -> None:
    data = fixture_bytes("obama_1.jpg")  # 910×1137, orientation 1
    stubber.add_response(
        "detect_faces",
        detect_response([OBAMA_1]),
        {"Image": {"Bytes": without_app1(data)}, "Attributes": ["DEFAULT"]},
    )

    [face] = engine.detect(data)

    assert face.box == Box(left=369, top=121, width=246, height=307)
    assert face.landmarks[0] == pytest.approx((0.4877 * 910, 0.1892 * 1137))  # eyeLeft
    assert len(face.landmarks) == 5
    assert face.quality == pytest.approx(0.99998)
    assert face.embedding is None


def test_a_sideways_stored_photo_gives_the_same_upright_box(
    engine: RekognitionFaceEngine, stubber: Stubber
) -> None:
    # obama_1 stored turned left (1137×910) and tagged orientation 6, as a phone writes it.
    upright = pyvips.Image.new_from_buffer(fixture_bytes("obama_1.jpg"), "")
    stored = upright.rot270().copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    data = stored.jpegsave_buffer(Q=92)
    assert pyvips.Image.new_from_buffer(data, "").get("orientation") == 6
    sent = without_app1(data)
    assert sent is not None
    # What Rekognition sees: the stored pixels, and no tag to turn them by.
    seen = pyvips.Image.new_from_buffer(sent, "")
    assert (seen.width, seen.height) == (1137, 910)
    assert not seen.get_typeof("orientation") or seen.get("orientation") == 1
    stubber.add_response(
        "detect_faces",
        detect_response([OBAMA_1.stored_sideways()]),
        {"Image": {"Bytes": sent}, "Attributes": ["DEFAULT"]},
    )

    [face] = engine.detect(data)

    assert face.box == Box(left=369, top=121, width=246, height=307)
    assert face.landmarks[0] == pytest.approx((0.4877 * 910, 0.1892 * 1137))
    assert face.landmarks[4] == pytest.approx((0.6099 * 910, 0.2806 * 1137))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_ratios_follow_every_exif_orientation_as_libvips_shows_it(orientation: int) -> None:
    # One white pixel in a 40×30 black stored image: where libvips shows it upright is where
    # the ratio of its stored position must land.
    stored = pyvips.Image.black(40, 30).draw_rect(255, 7, 4, 1, 1)
    shown = stored.copy()
    shown.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    upright = shown.autorot()
    prepared = PreparedImage(b"", orientation, upright.width, upright.height)

    x, y = prepared.point((7 + 0.5) / 40, (4 + 0.5) / 30)

    assert upright.getpoint(int(x), int(y)) == [255.0]


def test_an_image_over_5_mb_is_shrunk_and_reencoded_before_it_is_sent(
    engine: RekognitionFaceEngine, stubber: Stubber
) -> None:
    data = factories.jpeg_bytes(2200, 1600, noise=True)
    assert len(data) > MAX_IMAGE_BYTES
    sent = SentJpeg()
    # A face in the middle, as ratios of whatever size was sent.
    face = replace(OBAMA_1, left=0.45, top=0.40, width=0.10, height=0.15)
    stubber.add_response(
        "detect_faces",
        detect_response([face]),
        {"Image": {"Bytes": sent}, "Attributes": ["DEFAULT"]},
    )

    [found] = engine.detect(data)

    assert len(sent.sent[0]) <= MAX_IMAGE_BYTES
    assert sent.image.width < 2200 and sent.image.width / sent.image.height == pytest.approx(
        2200 / 1600, rel=0.01
    )
    assert not sent.image.get_typeof("exif-data")
    assert found.box == Box(left=990, top=640, width=220, height=240)  # in the original's pixels


@pytest.mark.parametrize(
    ("make", "size"),
    [
        pytest.param(lambda: factories.jpeg_bytes(5000, 3200), (4841, 3098), id="16-MP-jpeg"),
        pytest.param(lambda: factories.webp_bytes(640, 480), (640, 480), id="webp"),
        pytest.param(lambda: factories.png_bytes(640, 480, alpha=True), (640, 480), id="png-alpha"),
        # An iPhone HEIC, stored turned with an `irot` box: sent upright.
        pytest.param(
            lambda: (FACES.parent / "heic" / "landscape-irot.heic").read_bytes(),
            (320, 213),
            id="heic",
        ),
    ],
)
def test_what_rekognition_cannot_take_is_sent_as_a_jpeg_within_15_mp(
    engine: RekognitionFaceEngine, stubber: Stubber, make: Any, size: tuple[int, int]
) -> None:
    sent = SentJpeg()
    stubber.add_response(
        "detect_faces", {"FaceDetails": []}, {"Image": {"Bytes": sent}, "Attributes": ["DEFAULT"]}
    )

    assert engine.detect(make()) == []

    assert (sent.image.width, sent.image.height) == size
    assert sent.image.width * sent.image.height <= MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(factories.truncated_jpeg(), id="truncated"),
        pytest.param(factories.text_file(), id="text"),
        pytest.param(factories.tiff_bytes(), id="tiff"),
    ],
)
def test_undecodable_input_is_rejected_before_any_call(
    engine: RekognitionFaceEngine, stubber: Stubber, data: bytes
) -> None:
    # Nothing is queued: any call would fail the test with UnStubbedResponseError.
    with pytest.raises(ImageRejected):
        engine.detect(data)


def test_an_image_rekognition_refuses_is_rejected_and_throttling_is_not(
    engine: RekognitionFaceEngine, stubber: Stubber
) -> None:
    data = fixture_bytes("obama_1.jpg")
    stubber.add_client_error(
        "detect_faces", "InvalidImageFormatException", "Request has invalid image format"
    )
    stubber.add_client_error("detect_faces", "ThrottlingException", "Rate exceeded")

    with pytest.raises(ImageRejected, match="InvalidImageFormatException"):
        engine.detect(data)
    with pytest.raises(ClientError, match="ThrottlingException"):
        engine.detect(data)


def test_detect_keeps_clear_big_faces_largest_first(
    engine: RekognitionFaceEngine, stubber: Stubber
) -> None:
    data = fixture_bytes("obama_and_biden.jpg")  # 2000×1428
    blurry_poster = replace(GROUP_BIDEN, left=0.05, top=0.05, confidence=62.0)
    profile = replace(
        GROUP_BIDEN, left=0.15, top=0.05, pose={"Roll": 0.0, "Yaw": 71.0, "Pitch": 0.0}
    )
    speck = replace(GROUP_BIDEN, left=0.70, top=0.05, width=0.02, height=0.03)  # 40 px wide
    stubber.add_response(
        "detect_faces",
        detect_response([GROUP_BIDEN, blurry_poster, profile, GROUP_CHILD, speck, GROUP_OBAMA]),
    )

    faces = engine.detect(data)

    assert [f.box for f in faces] == [
        Box(left=1142, top=365, width=188, height=246),  # Obama
        Box(left=759, top=426, width=185, height=219),  # Biden
    ]


# --- the index ------------------------------------------------------------------------------


def photo_upload(session: Session, *, project_id: uuid.UUID) -> uuid.UUID:
    """A photo upload row (photo faces reference one)."""
    now = datetime.now(UTC)
    upload = PendingUpload(
        kind=UploadKind.PHOTO,
        owner_id="photographer",
        project_id=project_id,
        key=f"photos/{project_id}/{uuid.uuid4()}.jpg",
        content_type="image/jpeg",
        max_bytes=50 * 1024 * 1024,
        status=UploadStatus.UPLOADED,
        url_expires_at=now + timedelta(minutes=10),
        created_at=now,
    )
    session.add(upload)
    session.flush()
    return upload.id


def upright_face(recorded: RecordedFace, name: str) -> DetectedFace:
    """The engine's DetectedFace for a recorded face of a fixture photo."""
    header = pyvips.Image.new_from_buffer(fixture_bytes(name), "")
    return PreparedImage(b"", 1, header.width, header.height).face(recorded.detail())


def index_params(collection: str, image: bytes, external_id: str, max_faces: int) -> dict:
    return {
        "CollectionId": collection,
        "Image": {"Bytes": without_app1(image)},
        "ExternalImageId": external_id,
        "DetectionAttributes": ["DEFAULT"],
        "MaxFaces": max_faces,
        "QualityFilter": "AUTO",
    }


def search_params(collection: str, crop: SentJpeg) -> dict:
    return {
        "CollectionId": collection,
        "Image": {"Bytes": crop},
        "MaxFaces": 4096,
        "FaceMatchThreshold": THRESHOLD,
        "QualityFilter": "NONE",
    }


def test_index_round_trip_selfie_and_photo_find_each_other(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    selfie, photo = fixture_bytes("obama_1.jpg"), fixture_bytes("obama_and_biden.jpg")
    project = uuid.uuid4()
    collection = f"{PREFIX}-project-{project}"
    selfie_face, photo_obama, photo_biden = face_id(), face_id(), face_id()
    now = datetime.now(UTC)
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=project)
    photo_faces = [upright_face(GROUP_OBAMA, "obama_and_biden.jpg")]
    photo_faces.append(upright_face(GROUP_BIDEN, "obama_and_biden.jpg"))
    stubber.add_response(
        "index_faces",
        index_response([(selfie_face, OBAMA_1)], "obama"),
        index_params(SELFIES, selfie, "obama", 1),
    )
    stubber.add_response(
        "index_faces",
        index_response([(photo_obama, GROUP_OBAMA), (photo_biden, GROUP_BIDEN)], str(photo_id)),
        index_params(collection, photo, str(photo_id), 2),
    )
    # The photo's faces, in reading order: Obama (higher up), then Biden.
    obama_crop, biden_crop, selfie_crop = SentJpeg(), SentJpeg(), SentJpeg()
    stubber.add_response(
        "search_faces_by_image",
        search_response([(99.21, selfie_face, "obama", OBAMA_1)]),
        search_params(SELFIES, obama_crop),
    )
    stubber.add_response(
        "search_faces_by_image", search_response([]), search_params(SELFIES, biden_crop)
    )
    stubber.add_response(
        "search_faces_by_image",
        search_response([(99.37, photo_obama, str(photo_id), GROUP_OBAMA)]),
        search_params(collection, selfie_crop),
    )

    with runtime.database.transaction() as session:
        index.enroll(
            session,
            user_id="obama",
            selfie_id=uuid.uuid4(),
            face=upright_face(OBAMA_1, "obama_1.jpg"),
            image=selfie,
            now=now,
        )
        index.add_photo(
            session, photo_id=photo_id, project_id=project, faces=photo_faces, image=photo
        )
        for_photo = index.candidates_for_photo(session, photo_id=photo_id, threshold=THRESHOLD)
        for_user = index.candidates_for_user(session, user_id="obama", threshold=THRESHOLD)

    with runtime.database.transaction() as session:
        row = session.get(SelfieFace, "obama")
        assert row is not None and row.external_face_id == selfie_face and row.embedding is None
        stored = {f.external_face_id: f for f in session.scalars(select(PhotoFace))}
    assert set(stored) == {photo_obama, photo_biden}
    obama_row = stored[photo_obama]
    assert obama_row.box == {"left": 1142, "top": 365, "width": 188, "height": 246}
    assert obama_row.embedding is None
    assert [(c.user_id, c.photo_face_id, c.similarity) for c in for_photo] == [
        ("obama", obama_row.id, 99.21)
    ]
    assert [(c.user_id, c.photo_id, c.photo_face_id, c.similarity) for c in for_user] == [
        ("obama", photo_id, obama_row.id, 99.37)
    ]
    assert for_user[0].project_id == project and for_user[0].box == obama_row.box
    # The crops: each face with context, within Rekognition's 80 px minimum and our 800 max.
    for crop in (obama_crop, biden_crop, selfie_crop):
        assert min(crop.image.width, crop.image.height) >= 80
        assert max(crop.image.width, crop.image.height) <= 800


def test_a_search_on_another_face_of_the_crop_is_no_match(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    photo = fixture_bytes("obama_and_biden.jpg")
    project = uuid.uuid4()
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=project)
        session.add(
            SelfieFace(
                user_id="someone",
                selfie_id=uuid.uuid4(),
                box={"left": 1, "top": 1, "width": 90, "height": 90},
                external_face_id="face-of-someone",
                created_at=datetime.now(UTC),
            )
        )
    stubber.add_response(
        "index_faces",
        index_response([(face_id(), GROUP_BIDEN)], str(photo_id)),
        index_params(f"{PREFIX}-project-{project}", photo, str(photo_id), 1),
    )
    # Rekognition searched with a face at the crop's lower left, not the one in its middle.
    stubber.add_response(
        "search_faces_by_image",
        search_response(
            [(97.0, "face-of-someone", "someone", OBAMA_1)],
            searched={"Width": 0.2, "Height": 0.25, "Left": 0.0, "Top": 0.72},
        ),
        search_params(SELFIES, SentJpeg()),
    )

    with runtime.database.transaction() as session:
        index.add_photo(
            session,
            photo_id=photo_id,
            project_id=project,
            faces=[upright_face(GROUP_BIDEN, "obama_and_biden.jpg")],
            image=photo,
        )
        assert index.candidates_for_photo(session, photo_id=photo_id, threshold=THRESHOLD) == []


def test_enroll_indexes_the_new_face_then_deletes_the_old(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    selfie = fixture_bytes("obama_1.jpg")
    first, second = face_id(), face_id()
    selfie_ids = uuid.uuid4(), uuid.uuid4()
    face = upright_face(OBAMA_1, "obama_1.jpg")
    user = "auth0|5f2b"  # "|" is outside ExternalImageId's alphabet
    stubber.add_response(
        "index_faces",
        index_response([(first, OBAMA_1)], "auth0:7C5f2b"),
        index_params(SELFIES, selfie, "auth0:7C5f2b", 1),
    )
    stubber.add_response(
        "index_faces",
        index_response([(second, OBAMA_1)], "auth0:7C5f2b"),
        index_params(SELFIES, selfie, "auth0:7C5f2b", 1),
    )
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [first], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": SELFIES, "FaceIds": [first]},
    )

    for selfie_id in selfie_ids:
        with runtime.database.transaction() as session:
            index.enroll(
                session,
                user_id=user,
                selfie_id=selfie_id,
                face=face,
                image=selfie,
                now=datetime.now(UTC),
            )

    with runtime.database.transaction() as session:
        row = session.get(SelfieFace, user)
        assert row is not None
        assert (row.external_face_id, row.selfie_id) == (second, selfie_ids[1])
        assert row.box == {"left": 369, "top": 121, "width": 246, "height": 307}


def test_a_face_rekognition_will_not_index_rejects_the_selfie_and_keeps_the_old_one(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    selfie = fixture_bytes("obama_1.jpg")
    with runtime.database.transaction() as session:
        session.add(
            SelfieFace(
                user_id="obama",
                selfie_id=uuid.uuid4(),
                box={"left": 369, "top": 121, "width": 246, "height": 307},
                external_face_id="the-old-face",
                created_at=datetime.now(UTC),
            )
        )
    stubber.add_response(
        "index_faces",
        index_response([], "obama", unindexed=[(["LOW_SHARPNESS", "LOW_BRIGHTNESS"], OBAMA_1)]),
        index_params(SELFIES, selfie, "obama", 1),
    )
    # No DeleteFaces queued: deleting the old face would fail the test.

    with pytest.raises(SelfieRejected) as refused, runtime.database.transaction() as session:
        index.enroll(
            session,
            user_id="obama",
            selfie_id=uuid.uuid4(),
            face=upright_face(OBAMA_1, "obama_1.jpg"),
            image=selfie,
            now=datetime.now(UTC),
        )

    assert refused.value.reason == "no_face"
    assert "LOW_BRIGHTNESS, LOW_SHARPNESS" in refused.value.message
    with runtime.database.transaction() as session:
        row = session.get(SelfieFace, "obama")
        assert row is not None and row.external_face_id == "the-old-face"


@pytest.mark.parametrize("race", [False, True], ids=["created", "created-by-another-worker"])
def test_a_projects_first_photo_creates_its_collection(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber, race: bool
) -> None:
    photo = fixture_bytes("obama_1.jpg")
    project = uuid.uuid4()
    collection = f"{PREFIX}-project-{project}"
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=project)
    new_face = face_id()
    params = index_params(collection, photo, str(photo_id), 1)
    stubber.add_client_error(
        "index_faces",
        "ResourceNotFoundException",
        f"The collection id: {collection} does not exist",
        expected_params=params,
    )
    if race:
        stubber.add_client_error(
            "create_collection",
            "ResourceAlreadyExistsException",
            f"The collection id: {collection} already exists",
            expected_params={"CollectionId": collection},
        )
    else:
        stubber.add_response(
            "create_collection",
            {
                "StatusCode": 200,
                "CollectionArn": f"aws:rekognition:eu-west-1:123456789012:collection/{collection}",
                "FaceModelVersion": MODEL_VERSION,
            },
            {"CollectionId": collection},
        )
    stubber.add_response(
        "index_faces", index_response([(new_face, OBAMA_1)], str(photo_id)), params
    )

    with runtime.database.transaction() as session:
        index.add_photo(
            session,
            photo_id=photo_id,
            project_id=project,
            faces=[upright_face(OBAMA_1, "obama_1.jpg")],
            image=photo,
        )

    with runtime.database.transaction() as session:
        [row] = session.scalars(select(PhotoFace).where(PhotoFace.photo_id == photo_id))
        assert row.external_face_id == new_face and row.project_id == project


def test_a_rerun_replaces_the_photos_faces_and_drops_faces_the_engine_did_not_keep(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    photo = fixture_bytes("obama_and_biden.jpg")
    project = uuid.uuid4()
    collection = f"{PREFIX}-project-{project}"
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=project)
    old_obama, old_biden, new_obama, child = face_id(), face_id(), face_id(), face_id()
    obama = upright_face(GROUP_OBAMA, "obama_and_biden.jpg")
    biden = upright_face(GROUP_BIDEN, "obama_and_biden.jpg")
    stubber.add_response(
        "index_faces",
        index_response([(old_obama, GROUP_OBAMA), (old_biden, GROUP_BIDEN)], str(photo_id)),
        index_params(collection, photo, str(photo_id), 2),
    )
    # The re-run's engine kept one face; Rekognition indexed another (the child) as its one.
    stubber.add_response(
        "index_faces",
        index_response([(child, GROUP_CHILD)], str(photo_id)),
        index_params(collection, photo, str(photo_id), 1),
    )
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [child, old_obama, old_biden], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": collection, "FaceIds": sorted([child, old_obama, old_biden])},
    )
    # A third run: Rekognition indexes the face the engine kept.
    stubber.add_response(
        "index_faces",
        index_response([(new_obama, GROUP_OBAMA)], str(photo_id)),
        index_params(collection, photo, str(photo_id), 1),
    )

    for faces in ([obama, biden], [obama], [obama]):
        with runtime.database.transaction() as session:
            index.add_photo(
                session, photo_id=photo_id, project_id=project, faces=faces, image=photo
            )

    with runtime.database.transaction() as session:
        rows = session.scalars(select(PhotoFace).where(PhotoFace.photo_id == photo_id)).all()
        assert [r.external_face_id for r in rows] == [new_obama]


def test_a_photo_without_faces_calls_nothing(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=uuid.uuid4())
    with runtime.database.transaction() as session:
        index.add_photo(
            session,
            photo_id=photo_id,
            project_id=uuid.uuid4(),
            faces=[],
            image=factories.jpeg_bytes(),
        )
        assert index.candidates_for_photo(session, photo_id=photo_id, threshold=THRESHOLD) == []


def test_searches_need_the_image_from_the_same_session(
    runtime: Runtime, index: RekognitionIndex
) -> None:
    with runtime.database.transaction() as session:
        photo_id = photo_upload(session, project_id=uuid.uuid4())
        session.add(
            SelfieFace(
                user_id="obama",
                selfie_id=uuid.uuid4(),
                box={"left": 369, "top": 121, "width": 246, "height": 307},
                external_face_id="face-of-obama",
                created_at=datetime.now(UTC),
            )
        )
        session.add(
            PhotoFace(
                photo_id=photo_id,
                project_id=uuid.uuid4(),
                box={"left": 1142, "top": 365, "width": 188, "height": 246},
                quality=0.99,
                external_face_id="face-in-photo",
            )
        )

    with runtime.database.transaction() as session:
        with pytest.raises(RuntimeError, match="enroll"):
            index.candidates_for_user(session, user_id="obama", threshold=THRESHOLD)
        with pytest.raises(RuntimeError, match="add_photo"):
            index.candidates_for_photo(session, photo_id=photo_id, threshold=THRESHOLD)


def test_forget_user_deletes_the_face_and_any_stray_of_the_user(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    user = "auth0|5f2b"
    label = "auth0:7C5f2b"
    with runtime.database.transaction() as session:
        session.add(
            SelfieFace(
                user_id=user,
                selfie_id=uuid.uuid4(),
                box={"left": 369, "top": 121, "width": 246, "height": 307},
                external_face_id="aaaa-current",
                created_at=datetime.now(UTC),
            )
        )
    # Two pages of the selfies collection: the user's face, another user's, and a stray the
    # user's rolled-back enroll left behind.
    stubber.add_response(
        "list_faces",
        {
            "Faces": [OBAMA_1.face("aaaa-current", label), OBAMA_1.face("bbbb-other", "biden")],
            "NextToken": "page-2",
            "FaceModelVersion": MODEL_VERSION,
        },
        {"CollectionId": SELFIES, "MaxResults": 4096},
    )
    stubber.add_response(
        "list_faces",
        {"Faces": [OBAMA_1.face("cccc-stray", label)], "FaceModelVersion": MODEL_VERSION},
        {"CollectionId": SELFIES, "MaxResults": 4096, "NextToken": "page-2"},
    )
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["aaaa-current", "cccc-stray"], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": SELFIES, "FaceIds": ["aaaa-current", "cccc-stray"]},
    )

    with runtime.database.transaction() as session:
        index.forget_user(session, user_id=user)

    with runtime.database.transaction() as session:
        assert session.get(SelfieFace, user) is None


def test_forget_user_without_a_selfies_collection_deletes_nothing(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    stubber.add_client_error(
        "list_faces",
        "ResourceNotFoundException",
        f"The collection id: {SELFIES} does not exist",
        expected_params={"CollectionId": SELFIES, "MaxResults": 4096},
    )

    with runtime.database.transaction() as session:
        index.forget_user(session, user_id="never-enrolled")


# --- identifiers and construction ---------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        ("9b2c6e7a-1f3d-4c55-8a9e-0d1b2c3d4e5f", "9b2c6e7a-1f3d-4c55-8a9e-0d1b2c3d4e5f"),
        ("auth0|5f2b", "auth0:7C5f2b"),
        ("jane@example.com", "jane:40example.com"),
        ("a:b", "a:3Ab"),
        ("zoë", "zo:C3:AB"),
    ],
)
def test_external_image_id_is_reversible_within_rekognitions_alphabet(
    user_id: str, expected: str
) -> None:
    assert external_image_id(user_id) == expected


def test_an_external_image_id_too_long_is_a_digest() -> None:
    long_id = "|" * 100  # 300 characters once encoded
    assert external_image_id(long_id) == "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()


def test_without_app1_drops_exif_and_xmp_and_keeps_the_rest() -> None:
    data = factories.jpeg_with_metadata()  # EXIF with GPS, XMP, IPTC, ICC

    stripped = without_app1(data)

    assert stripped is not None
    image = pyvips.Image.new_from_buffer(stripped, "")
    assert not image.get_typeof("exif-data") and not image.get_typeof("xmp-data")
    assert image.get_typeof("icc-profile-data")
    assert image.avg() == pytest.approx(pyvips.Image.new_from_buffer(data, "").avg())
    assert without_app1(data[:100] + b"\x00" * 50) is None


def test_built_from_settings_with_the_region_and_prefix() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        face_engine="rekognition",
        rekognition_region="eu-central-1",
        rekognition_collection_prefix="acme-prod",
    )

    index = build_index(settings)

    assert isinstance(index, RekognitionIndex)
    assert index.client.meta.region_name == "eu-central-1"
    assert index.selfies_collection == "acme-prod-selfies"
    assert RekognitionFaceEngine.from_settings(settings).client.meta.region_name == "eu-central-1"


@pytest.mark.parametrize("prefix", ["", "acme prod", "acme/prod", "x" * 201])
def test_a_prefix_rekognition_cannot_take_is_refused(client: Any, prefix: str) -> None:
    with pytest.raises(ValueError, match="REKOGNITION_COLLECTION_PREFIX"):
        RekognitionIndex(client, prefix=prefix)
