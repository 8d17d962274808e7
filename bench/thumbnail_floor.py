"""What 400 + 800 px thumbnails cannot cost less than, next to issue 13's goal against Sharp.

    .venv/bin/python bench/thumbnail_floor.py           # ~2 min on 2 cores
    .venv/bin/python bench/thumbnail_floor.py --quick   # ~40 s

Issue 13 asks for thumbnails at 1.2× the photos per CPU-second of Sharp decoding once (the
"sharp, one decode" row of bench/derivatives.py), the same output: 400 and 800 px wide,
progressive JPEG Q82, upright, sRGB, stripped. Whatever makes that output pays two codec costs
that no pipeline design removes: decoding the JPEG at the largest DCT shrink that still covers
800 px, and encoding two progressive JPEGs. This bench times those parts alone, each with the
two JPEG codecs on this machine (libvips' mozjpeg from pyvips-binary, the one Sharp ships too,
and the libjpeg-turbo in Pillow's wheel), and sets their sum, taking the cheaper codec at each
end, against the goal measured in the same run:

- decode: the DCT-scaled decode alone (libvips `shrink=`, Pillow `draft()`), and the 1/8 decode,
  which reads every entropy-coded byte as any scale does but runs the smallest IDCT: the cost of
  the Huffman decoding, which no libjpeg shrink skips;
- encode: the two progressive encodes, from pixels already at 800 and 400 px;
- hybrid: a whole pipeline with the cheaper codec at both ends (Pillow's libjpeg-turbo decode
  and encode) around libvips' resize, as a contender would build it.

Every contender and every part runs in a child pinned to one core (bench/derivatives.py's
launcher: `taskset`, `VIPS_CONCURRENCY=1`, `sharp.concurrency(1)`); a contender's figure is the
median of its rounds, a part's the best. "codec floor" is the cheaper decode plus the cheaper
pair of encodes, with no resize, orientation or copy at all: if a peer's cost divided by the
goal is below it, no pipeline built on these codecs reaches the goal. "we spend" is what
Mediaplane spends outside the two codecs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import derivatives as bench  # bench/derivatives.py: the photos, the launcher and Sharp

PEERS = tuple(bench.GOALS)  # "sharp, one decode" and Pillow, with their goals
PARTS = ("decode_vips", "decode_turbo", "huffman", "encode_vips", "encode_turbo", "hybrid")
PART_LABELS = {
    "decode_vips": "decode, libvips",
    "decode_turbo": "decode, turbo",
    "huffman": "1/8 decode",
    "encode_vips": "encodes, libvips",
    "encode_turbo": "encodes, turbo",
    "hybrid": "hybrid",
}


# --- the parts (in a pinned child: `thumbnail_floor.py --child JOB.json`) ----------------------


def prepared(data: bytes) -> dict[str, Any]:
    """One photo's facts the parts need: Pillow's draft size for the 800 px box (the DCT scale
    both decoders use), the same as a 1/8 draft, and the two outputs' pixels."""
    import pyvips
    from PIL import Image

    from mediaplane.imaging import ImageLimits, make_thumbnails

    im = Image.open(io.BytesIO(data))
    orientation = im.getexif().get(0x0112, 1)
    turned = orientation in (5, 6, 7, 8)
    stored = im.size
    up_w, up_h = (stored[1], stored[0]) if turned else stored
    widest = min(max(bench.WIDTHS), up_w)
    need = (widest, max(1, round(up_h * widest / up_w)))
    draft = need[::-1] if turned else need
    im.draft("RGB", draft)
    shrink = stored[0] // im.size[0]
    limits = ImageLimits(max_pixels=bench.MAX_PIXELS, max_bytes=bench.MAX_BYTES)
    outputs = make_thumbnails(data, widths=bench.WIDTHS, quality=bench.QUALITY, limits=limits)
    pixels = [pyvips.Image.new_from_buffer(r.data, "").copy_memory() for r in outputs.values()]
    return {
        "draft": draft,
        "shrink": shrink,
        "eighth": (max(1, stored[0] // 8), max(1, stored[1] // 8)),
        "orientation": orientation,
        "pixels": pixels,
        # The same pixels as Pillow images, made here so the timed encodes do not copy them.
        "pillow": [
            Image.frombuffer("RGB", (p.width, p.height), p.write_to_memory()) for p in pixels
        ],
    }


def part(name: str) -> Callable[[bytes, dict[str, Any]], object]:
    import pyvips
    from PIL import Image

    from mediaplane.imaging.derivatives import narrow

    def turbo_decode(data: bytes, size: tuple[int, int]) -> Image.Image:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", size)
        im.load()
        return im

    def vips_encode(image: pyvips.Image) -> bytes:
        return bytes(
            image.jpegsave_buffer(
                Q=bench.QUALITY, interlace=True, optimize_coding=True, keep="none"
            )
        )

    def turbo_encode(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=bench.QUALITY, progressive=True)
        return buf.getvalue()

    def as_pillow(image: pyvips.Image) -> Image.Image:
        return Image.frombuffer("RGB", (image.width, image.height), image.write_to_memory())

    quarter_turns = {3: "d180", 6: "d90", 8: "d270"}

    def hybrid(data: bytes, facts: dict[str, Any]) -> list[bytes]:
        im = turbo_decode(data, facts["draft"])
        if im.mode != "RGB":  # greyscale, CMYK
            im = im.convert("RGB")
        # Kept referenced until the pixels are copied: the wrapping image holds on to them, but
        # not the lazy rotation of it.
        raw = im.tobytes()
        image = pyvips.Image.new_from_memory(raw, im.width, im.height, 3, "uchar")
        if facts["orientation"] in quarter_turns:
            image = image.rot(quarter_turns[facts["orientation"]])
        out = []
        for width in sorted(bench.WIDTHS, reverse=True):
            image = narrow(image, width).copy_memory()
            out.append(turbo_encode(as_pillow(image)))
        del raw
        return out

    parts: dict[str, Callable[[bytes, dict[str, Any]], object]] = {
        "decode_vips": lambda data, facts: pyvips.Image.new_from_buffer(
            data, "", shrink=facts["shrink"]
        ).copy_memory(),
        "decode_turbo": lambda data, facts: turbo_decode(data, facts["draft"]),
        "huffman": lambda data, facts: turbo_decode(data, facts["eighth"]),
        "encode_vips": lambda data, facts: [vips_encode(p) for p in facts["pixels"]],
        "encode_turbo": lambda data, facts: [turbo_encode(im) for im in facts["pillow"]],
        "hybrid": hybrid,
    }
    return parts[name]


def run_child(job_path: Path) -> int:
    """Time every part on one class of photos: CPU ms per photo, the best of the rounds."""
    job = json.loads(job_path.read_text())
    os.sched_setaffinity(0, {job["cpu"]})
    import pyvips

    pyvips.cache_set_max(0)
    inputs = [Path(f).read_bytes() for f in job["files"]]
    facts = [prepared(data) for data in inputs]
    figures = {}
    for name in PARTS:
        work = part(name)
        for data, fact in zip(inputs, facts, strict=True):
            work(data, fact)  # warm-up
        best = float("inf")
        for _ in range(job["rounds"]):
            started = time.process_time()
            passes = 0
            while passes == 0 or time.process_time() - started < job["seconds"]:
                for data, fact in zip(inputs, facts, strict=True):
                    work(data, fact)
                passes += 1
            best = min(best, (time.process_time() - started) / (passes * len(inputs)))
        figures[name] = best * 1000
    print(json.dumps(figures))
    return 0


def parts_of(files: list[Path], *, cpu: int, seconds: float, rounds: int, work: Path) -> Any:
    job = work / "floor-job.json"
    job.write_text(
        json.dumps(
            {"files": [str(f) for f in files], "cpu": cpu, "seconds": seconds, "rounds": rounds}
        )
    )
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(job)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    env = {**os.environ, "VIPS_CONCURRENCY": "1", "PYTHONPATH": str(bench.ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"parts child exited with {proc.returncode}: {proc.stderr[-600:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the run ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sharp_cmd, note = bench.ensure_sharp()
    if sharp_cmd is None:
        raise SystemExit(f"Sharp is needed for the goal: {note}")
    classes = bench.input_classes()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    others = os.sched_getaffinity(0) - {cpu}
    if others:
        os.sched_setaffinity(0, others)
    report: dict[str, Any] = {"loadavg_at_start": os.getloadavg(), "classes": {}}
    with tempfile.TemporaryDirectory(prefix="mediaplane-floor-") as tmp:
        work = Path(tmp)
        for cls, files in classes.items():
            whole: dict[str, list[float]] = {c: [] for c in (*PEERS, "mediaplane")}
            for rnd in range(args.rounds):
                for contender in sorted(whole, reverse=rnd % 2 == 1):
                    bench.log(f"round {rnd + 1}/{args.rounds}: {cls} {contender}")
                    result = bench.run_contender(
                        contender,
                        files,
                        seconds=args.seconds,
                        cpu=cpu,
                        out_dir=None,
                        sharp_cmd=sharp_cmd,
                        work=work,
                    )
                    whole[contender].append(1000 * result["cpu_seconds"] / result["photos"])
            bench.log(f"{cls}: the parts")
            parts = parts_of(files, cpu=cpu, seconds=args.seconds, rounds=args.rounds, work=work)
            report["classes"][cls] = {
                **{name: statistics.median(values) for name, values in whole.items()},
                **parts,
            }
    report["loadavg_at_end"] = os.getloadavg()
    return report


def render(report: dict[str, Any]) -> str:
    head = (
        f"{'CPU ms per photo':<13}"
        + "".join(f" {bench.LABELS[p]:>17} {'goal':>6}" for p in PEERS)
        + f" {'mediaplane':>10}"
        + "".join(f" {PART_LABELS[p]:>16}" for p in PARTS)
        + f" {'codec floor':>11} {'we spend':>8}"
    )
    goals = ", ".join(f'{goal}× "{bench.LABELS[p]}"' for p, goal in bench.GOALS.items())
    lines = [f"Thumbnails 400 + 800 px: the codec floor against the goals ({goals})", "", head]
    lines.append("-" * len(head))
    for cls, row in report["classes"].items():
        floor = min(row["decode_vips"], row["decode_turbo"]) + min(
            row["encode_vips"], row["encode_turbo"]
        )
        row.update(
            floor_ms=floor, rest_ms=row["mediaplane"] - row["decode_vips"] - row["encode_vips"]
        )
        lines.append(
            f"{bench.CLASS_LABELS[cls]:<13}"
            + "".join(f" {row[p]:>17.1f} {row[p] / bench.GOALS[p]:>6.1f}" for p in PEERS)
            + f" {row['mediaplane']:>10.1f}"
            + "".join(f" {row[p]:>16.1f}" for p in PARTS)
            + f" {floor:>11.1f} {row['rest_ms']:>8.1f}"
        )
    lines += [
        "",
        'Ratios (photos per CPU-second) to each peer, same run; "codecs alone" is the codec floor:',
        "the cheaper decode and the cheaper pair of encodes, with no resize, orientation or copy.",
    ]
    for cls, row in report["classes"].items():
        for peer, goal in bench.GOALS.items():
            ceiling = row[peer] / row["floor_ms"]
            # What the goal leaves beyond the two codecs, for the resize, the orientation
            # and the copies (Mediaplane spends `rest_ms` there).
            left = row[peer] / goal - row["floor_ms"]
            lines.append(
                f"  {bench.CLASS_LABELS[cls]:<12} {bench.LABELS[peer]:<18}"
                f" mediaplane {row[peer] / row['mediaplane']:.2f}×"
                f"   hybrid {row[peer] / row['hybrid']:.2f}×"
                f"   codecs alone {ceiling:.2f}× (goal {goal}×)"
                + (
                    f": leaves {left:.1f} ms for the rest, we spend {row['rest_ms']:.1f}"
                    if left > 0
                    else f": out of reach by {-left:.1f} ms before any resize"
                )
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s (~40 s)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, default=0, help="timed seconds per pass")
    parser.add_argument("--cpu", type=int, default=None, help="the core to pin to")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (1.0 if args.quick else 2.0)
    report = measure(args)
    print(render(report))
    results = bench.ROOT / "bench" / "results" / "thumbnail_floor.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
