"""The contract every `FaceEngine` passes, whichever engine it is: run once per engine in
`ENGINES` (the `engine` fixture), through `detect()` only.

What an engine promises (engine.py): the faces big and clear enough to match, largest first, in
pixels of the upright original; [] when there are none; `ImageRejected` for bytes that are not
an acceptable image. "Big enough" is at least 50 px wide in the original (the local engine's
`DEFAULT_MIN_FACE_PX`, docs/faces.md says why): a face 30 px wide is not returned, while the
same face at 120 px is.

To add an engine: put a factory in `ENGINES` that returns it ready to answer for the fixtures
(a fake of a remote service answers as the service would for these photos).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips

from mediaplane.faces import Box, DetectedFace, FaceEngine, LocalFaceEngine
from mediaplane.imaging import ImageLimits, ImageRejected

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)

# A point on each person's face (between the eyes, roughly), in pixels of the upright photo:
# any engine's box for that face must contain it, whatever its own idea of a face's extent.
FACE_CENTRES = {
    "biden_1.jpg": [(588, 384)],
    "biden_2.jpg": [(682, 528)],
    "obama_1.jpg": [(483, 276)],
    "obama_2.jpg": [(305, 424)],
    "obama_and_biden.jpg": [(1230, 500), (843, 542)],  # Obama, Biden
}
# The child at the right edge of the group photo, looking down, her face in the shadow of her
# hair: a real face, found by the local engine (HOG score ~0.3) and left out by Rekognition's
# pose filter (pitch). Either answer keeps the contract; a box anywhere else does not.
GROUP_CHILD_CENTRE = (1677, 1140)
PORTRAITS = ["biden_1.jpg", "biden_2.jpg", "obama_1.jpg", "obama_2.jpg"]

# Where obama_1's face is (a box found by dlib), to cut it out at chosen sizes.
OBAMA_1_FACE = Box(left=349, top=142, width=269, height=268)


def local_engine() -> FaceEngine:
    return LocalFaceEngine(limits=LIMITS)


def rekognition_engine() -> FaceEngine:
    # AWS is out of reach here: its client answers DetectFaces with the response recorded for
    # each of these images (tests/faces/test_rekognition.py), and "no face" for any other.
    from tests.faces.test_rekognition import recorded_rekognition_engine

    images = {name: fixture_bytes(name) for name in FACE_CENTRES}
    images.update({f"canvas-{width}": face_on_canvas(width) for width in (30, 120)})
    return recorded_rekognition_engine(images)


ENGINES: dict[str, Callable[[], FaceEngine]] = {
    "local": local_engine,
    "rekognition": rekognition_engine,
}


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> FaceEngine:
    return ENGINES[request.param]()


def fixture_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


def upright_size(data: bytes) -> tuple[int, int]:
    image = pyvips.Image.new_from_buffer(data, "").autorot()
    return image.width, image.height


def contains(box: Box, point: tuple[float, float], *, margin: float = 0.0) -> bool:
    """Is `point` inside `box` grown by `margin` × its size on each side?"""
    x, y = point
    dx, dy = box.width * margin, box.height * margin
    return (
        box.left - dx <= x <= box.left + box.width + dx
        and box.top - dy <= y <= box.top + box.height + dy
    )


def assert_well_formed(face: DetectedFace, width: int, height: int) -> None:
    box = face.box
    assert box.left >= 0 and box.top >= 0, box
    assert box.left + box.width <= width and box.top + box.height <= height, box
    assert 0.5 <= box.width / box.height <= 2, box
    assert len(face.landmarks) >= 5
    # Landmarks (eyes, nose, mouth...) lie on the face: in its box, give or take a quarter.
    for point in face.landmarks:
        assert contains(box, point, margin=0.25), (point, box)
    assert 0.0 <= face.quality <= 1.0


# Where `face_on_canvas` puts the face's centre, whatever its size.
CANVAS_FACE_CENTRE = (600, 450)


def face_on_canvas(face_width: int) -> bytes:
    """obama_1's face scaled to `face_width` px wide, centred on a plain 1200×900 grey
    canvas (JPEG)."""
    photo = pyvips.Image.new_from_file(str(FACES / "obama_1.jpg"))
    margin = OBAMA_1_FACE.width // 2
    face = photo.crop(
        OBAMA_1_FACE.left - margin,
        OBAMA_1_FACE.top - margin,
        OBAMA_1_FACE.width + 2 * margin,
        OBAMA_1_FACE.height + 2 * margin,
    ).resize(face_width / OBAMA_1_FACE.width)
    canvas = pyvips.Image.black(1200, 900, bands=3).linear(1, 128).cast("uchar")
    x, y = CANVAS_FACE_CENTRE
    canvas = canvas.insert(face, x - face.width // 2, y - face.height // 2)
    canvas = canvas.copy(interpretation="srgb")
    return canvas.jpegsave_buffer(Q=92)


# --- cases --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_in_each_portrait(engine: FaceEngine, name: str) -> None:
    data = fixture_bytes(name)
    width, height = upright_size(data)

    faces = engine.detect(data)

    assert len(faces) == 1
    face = faces[0]
    assert_well_formed(face, width, height)
    assert contains(face.box, FACE_CENTRES[name][0])
    # A portrait's face is neither a speck nor the whole frame.
    assert 0.1 * min(width, height) <= face.box.width <= 0.8 * min(width, height)


def test_group_photo_has_both_people_largest_first(engine: FaceEngine) -> None:
    data = fixture_bytes("obama_and_biden.jpg")
    width, height = upright_size(data)

    faces = engine.detect(data)

    for face in faces:
        assert_well_formed(face, width, height)
    obama, biden = FACE_CENTRES["obama_and_biden.jpg"]
    assert [contains(f.box, obama) for f in faces].count(True) == 1
    assert [contains(f.box, biden) for f in faces].count(True) == 1
    others = [f for f in faces if not contains(f.box, obama) and not contains(f.box, biden)]
    assert all(contains(f.box, GROUP_CHILD_CENTRE) for f in others), others
    assert len(others) <= 1
    areas = [f.box.width * f.box.height for f in faces]
    assert areas == sorted(areas, reverse=True)


@pytest.mark.parametrize("pattern", ["gradient", "noise"])
def test_no_face_in_a_picture_without_one(engine: FaceEngine, pattern: str) -> None:
    if pattern == "gradient":
        xy = pyvips.Image.xyz(1200, 800)
        image = xy[0].linear(255 / 1200, 0).bandjoin([xy[1].linear(255 / 800, 0), xy[0] * 0 + 90])
    else:
        image = pyvips.Image.gaussnoise(1200, 800, sigma=60, mean=128).bandjoin_const([128, 128])
    data = image.cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=90)

    assert engine.detect(data) == []


def test_face_too_small_to_match_is_not_returned(engine: FaceEngine) -> None:
    assert engine.detect(face_on_canvas(30)) == []


def test_same_face_big_enough_is_returned(engine: FaceEngine) -> None:
    # The control for the case above: the canvas is not what hides the small face.
    faces = engine.detect(face_on_canvas(120))

    assert len(faces) == 1
    assert contains(faces[0].box, CANVAS_FACE_CENTRE)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(fixture_bytes("obama_1.jpg")[:40_000], id="truncated-jpeg"),
        pytest.param(fixture_bytes("obama_1.jpg")[:20] + bytes(range(256)) * 64, id="garbled-jpeg"),
        pytest.param(b"these are not the pixels you are looking for\n" * 20, id="text"),
        pytest.param(b"", id="empty"),
    ],
)
def test_not_an_image_is_rejected(engine: FaceEngine, data: bytes) -> None:
    with pytest.raises(ImageRejected):
        engine.detect(data)
