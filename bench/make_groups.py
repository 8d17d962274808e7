"""Build the labelled group-photo set of bench/data/groups/ (run once; the output is committed).

    .venv/bin/python bench/make_groups.py

What goes in (every image ships with this repository, see bench/data/groups/README.md):

- `fixture_group.jpg`: tests/fixtures/faces/obama_and_biden.jpg, three faces labelled by hand
  (the two men, and the child at the right edge looking down, her face in the shadow of her
  hair).
- `landscape_N.jpg`: the six landscapes of /work/shared/testdata/exif-orientation (EXIF
  orientations 1–5 kept: the labels are in upright pixels), no face.
- `texture_N.jpg`: no face: noise, gradients and blurred landscapes (skin-coloured too).
- `crowd_NN.jpg`: synthetic group photos. Faces cut from the five fixture photos (seven faces of
  three people, with hair and neck: an ellipse feathered into the background) are pasted on a
  landscape, each scaled to a chosen width (40–220 px), turned in the image plane (±25°),
  mirrored, darkened or lit (×0.45–1.25), half in shadow, or blurred; seeded, so the set is
  the same on every run. A face's label is where its face box (dlib's box in the source photo)
  lands, axis-aligned around the turned box.

Labels (`labels.json`): per photo, `faces: [{x, y, width, height, note}]` in pixels of the
upright image, plus `width`/`height`. What counts as a face found is decided in bench/faces.py.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pyvips

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "data" / "groups"
FIXTURES = ROOT / "tests" / "fixtures" / "faces"
LANDSCAPES = Path("/work/shared/testdata/exif-orientation")

# Face boxes in the upright fixtures (dlib's HOG boxes, checked by eye), as (x, y, w, h).
SOURCES = {
    "biden_1.jpg": [(439, 233, 311, 310)],
    "biden_2.jpg": [(435, 286, 447, 447)],
    "obama_1.jpg": [(366, 136, 259, 259)],
    "obama_2.jpg": [(164, 302, 311, 310)],
    "obama_and_biden.jpg": [(751, 453, 180, 180), (1149, 393, 181, 180), (1587, 1050, 180, 180)],
}
# Hand labels of the real group photo: Biden, Obama, and the child (shadowed, looking down).
FIXTURE_GROUP_LABELS = [
    {"x": 751, "y": 453, "width": 180, "height": 180, "note": "Biden"},
    {"x": 1149, "y": 393, "width": 181, "height": 180, "note": "Obama"},
    {"x": 1587, "y": 1050, "width": 180, "height": 180, "note": "child, looking down, shadow"},
]


def upright(path: Path) -> pyvips.Image:
    image = pyvips.Image.new_from_file(str(path)).autorot()
    if image.hasalpha():
        image = image.flatten(background=255)
    return image.colourspace("srgb")


def to_array(image: pyvips.Image) -> np.ndarray:
    data = image.write_to_memory()
    return np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.width, image.bands)


def from_array(array: np.ndarray) -> pyvips.Image:
    height, width, bands = array.shape
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(array, dtype=np.uint8).tobytes(), width, height, bands, "uchar"
    )
    return image.copy(interpretation="srgb")


def face_cuts() -> list[tuple[np.ndarray, tuple[float, float, float, float], str]]:
    """Each fixture face with 0.7× its size around it: (pixels, face box in the cut, name)."""
    cuts = []
    for name, boxes in SOURCES.items():
        photo = upright(FIXTURES / name)
        for i, (x, y, w, h) in enumerate(boxes):
            m = int(0.7 * w)
            left, top = max(0, x - m), max(0, y - m)
            right, bottom = min(photo.width, x + w + m), min(photo.height, y + h + m)
            cut = to_array(photo.crop(left, top, right - left, bottom - top))
            cuts.append((cut, (x - left, y - top, w, h), f"{name}#{i}"))
    return cuts


def transformed(
    cut: np.ndarray, box: tuple[float, float, float, float], rng: random.Random, width: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float], str]:
    """The cut scaled so its face is `width` px wide, then turned, mirrored, lit, blurred.
    Returns (rgb, alpha 0–1, face box in the result, what was done)."""
    x, y, w, h = box
    scale = width / w
    image = from_array(cut).resize(scale, kernel="lanczos3")
    x, y, w, h = x * scale, y * scale, w * scale, h * scale
    notes = [f"{width}px"]
    # Alpha: an ellipse around the face and hair, feathered.
    yy, xx = np.mgrid[0 : image.height, 0 : image.width].astype(np.float32)
    cx, cy = x + w / 2, y + h / 2 - 0.05 * h
    ellipse = ((xx - cx) / (0.95 * w)) ** 2 + ((yy - cy) / (1.2 * h)) ** 2
    alpha = np.clip((1.0 - ellipse) / 0.25, 0.0, 1.0)
    rgb = to_array(image).astype(np.float32)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        x = image.width - x - w
        notes.append("mirrored")
    level = rng.choice([1.0, 1.0, 0.45, 0.6, 1.25])
    if level != 1.0:
        rgb = rgb * level
        notes.append(f"light×{level}")
    if rng.random() < 0.25:
        # Half the face in shadow, from one side.
        ramp = np.clip((xx - cx) / (0.5 * w) + 0.5, 0.0, 1.0)
        if rng.random() < 0.5:
            ramp = ramp[:, ::-1]
        rgb = rgb * (0.35 + 0.65 * ramp)[..., None]
        notes.append("half shadow")
    rgb = np.clip(rgb, 0, 255)
    out = from_array(np.ascontiguousarray(rgb)).bandjoin(
        from_array(np.ascontiguousarray(alpha * 255)[..., None].repeat(1, axis=2))[0]
    )
    if rng.random() < 0.2:
        out = out.gaussblur(max(0.6, width / 120))
        notes.append("blurred")
    angle = rng.choice([0, 0, 0, -8, 8, -15, 15, -25, 25])
    if angle:
        before_w, before_h = out.width, out.height
        out = out.rotate(angle, background=[0, 0, 0, 0])
        # The face box's centre moves with the rotation about the image centre.
        rad = math.radians(angle)
        ox, oy = before_w / 2, before_h / 2
        fx, fy = x + w / 2 - ox, y + h / 2 - oy
        nx = fx * math.cos(rad) - fy * math.sin(rad) + out.width / 2
        ny = fx * math.sin(rad) + fy * math.cos(rad) + out.height / 2
        # The label keeps the face box's size, centred where the face went: a detector's box
        # is square around the features, not the turned box's hull.
        x, y = nx - w / 2, ny - h / 2
        notes.append(f"turned {angle}°")
    arr = to_array(out).astype(np.float32)
    return arr[..., :3], arr[..., 3] / 255.0, (x, y, w, h), ", ".join(notes)


def compose(
    background: pyvips.Image, cuts: list, rng: random.Random, widths: list[int]
) -> tuple[pyvips.Image, list[dict]]:
    canvas = to_array(background).astype(np.float32)
    height, width = canvas.shape[:2]
    labels: list[dict] = []
    taken: list[tuple[float, float, float, float]] = []
    for face_width in widths:
        cut, box, name = rng.choice(cuts)
        rgb, alpha, (x, y, w, h), notes = transformed(cut, box, rng, face_width)
        for _ in range(200):
            left = rng.randint(0, width - rgb.shape[1])
            top = rng.randint(0, height - rgb.shape[0])
            fx, fy = left + x, top + y
            if fx < 0 or fy < 0 or fx + w > width or fy + h > height:
                continue
            # Keep faces apart (their cut-outs may overlap, the faces themselves not).
            if all(
                fx + w * 1.3 < ox or ox + ow * 1.3 < fx or fy + h * 1.3 < oy or oy + oh * 1.3 < fy
                for ox, oy, ow, oh in taken
            ):
                break
        else:
            continue
        a = alpha[..., None]
        region = canvas[top : top + rgb.shape[0], left : left + rgb.shape[1]]
        region[:] = region * (1 - a) + rgb * a
        taken.append((fx, fy, w, h))
        labels.append(
            {
                "x": round(fx),
                "y": round(fy),
                "width": round(w),
                "height": round(h),
                "note": f"{name}: {notes}",
            }
        )
    return from_array(np.clip(canvas, 0, 255)), labels


def save(image: pyvips.Image, name: str, labels: list[dict], index: dict, q: int = 85) -> None:
    image.jpegsave(str(OUT / name), Q=q, strip=True)
    index[name] = {"width": image.width, "height": image.height, "faces": labels}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(14)
    index: dict[str, dict] = {}
    shutil.copyfile(FIXTURES / "obama_and_biden.jpg", OUT / "fixture_group.jpg")
    index["fixture_group.jpg"] = {"width": 2000, "height": 1428, "faces": FIXTURE_GROUP_LABELS}
    landscapes = []
    for i in range(6):
        source = LANDSCAPES / f"Landscape_{i}.jpg"
        shutil.copyfile(source, OUT / f"landscape_{i}.jpg")
        image = upright(source)
        index[f"landscape_{i}.jpg"] = {"width": image.width, "height": image.height, "faces": []}
        landscapes.append(image)
    shutil.copyfile(LANDSCAPES / "LICENSE", OUT / "LICENSE-landscapes")
    shutil.copyfile(FIXTURES / "LICENSE-face_recognition", OUT / "LICENSE-faces")
    # Faceless textures: the kind of pixels that fool detectors (noise, skin tones, blur).
    textures = [
        pyvips.Image.gaussnoise(1200, 800, sigma=50, mean=128).bandjoin_const([128, 128]),
        pyvips.Image.gaussnoise(1200, 800, sigma=30, mean=170).linear([1, 0.8, 0.65], [0, 0, 0]),
        landscapes[0].gaussblur(6),
        landscapes[3].resize(1.6).crop(200, 200, 1600, 1067),
    ]
    for i, texture in enumerate(textures):
        save(texture.cast("uchar").copy(interpretation="srgb"), f"texture_{i}.jpg", [], index, q=70)
    cuts = face_cuts()
    # Twenty crowds: faces from tiny to large; photos from 1280 to 2400 px wide.
    for n in range(20):
        background = landscapes[n % 6]
        target = rng.choice([1280, 1600, 2000, 2400])
        background = background.resize(target / max(background.width, background.height))
        count = rng.randint(3, 9)
        widths = [rng.choice([40, 50, 60, 70, 85, 100, 130, 170, 220]) for _ in range(count)]
        image, labels = compose(background, cuts, rng, widths)
        save(image, f"crowd_{n:02d}.jpg", labels, index)
    (OUT / "labels.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    total = sum(len(v["faces"]) for v in index.values())
    print(f"{len(index)} photos, {total} faces → {OUT}")


if __name__ == "__main__":
    main()
