"""MNIST-style digit images made from scikit-learn's bundled 8x8 digits.

Azure ML's ParallelRunStep MNIST tutorial scores 28x28 grayscale PNGs of handwritten digits that it
downloads from a public blob. That data cannot be fetched here, so this module makes an equivalent
data set from ``sklearn.datasets.load_digits()`` (1,797 images, shipped inside scikit-learn):

* :func:`render_digit` turns one 8x8 image (values 0..16) into a 28x28 ``"L"`` image laid out the
  way MNIST is: white ink on black, the digit in a 20x20 box centred in a 28x28 canvas;
* :func:`image_to_features` is the exact preprocessing the model expects (and that the entry
  script ``code/digit_identification.py`` repeats inline): 784 float32 pixels scaled to 0..1;
* :func:`write_digit_pngs` writes every image as ``digit_<index>_label_<digit>.png`` so that the
  true label can be recovered from a result line (:func:`label_from_filename`).

Importing this module has no side effects. Command line::

    python examples/mnist/digits.py OUT_DIR [--limit N]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 28          # MNIST canvas, pixels a side
BOX = 20           # MNIST fits each digit into a 20x20 box centred in the canvas
N_FEATURES = SIZE * SIZE
_LABEL_RE = re.compile(r"_label_(\d)\.png$", re.IGNORECASE)


def render_digit(pixels_8x8: np.ndarray) -> Image.Image:
    """One sklearn 8x8 digit (values 0..16) as a 28x28 grayscale MNIST-style image."""
    pixels = np.asarray(pixels_8x8, dtype=np.float64).reshape(8, 8)
    scaled = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    small = Image.fromarray(scaled)  # uint8 2-D -> mode "L"
    box = small.resize((BOX, BOX), resample=Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIZE, SIZE), color=0)
    offset = (SIZE - BOX) // 2
    canvas.paste(box, (offset, offset))
    return canvas


def image_to_features(img: Image.Image) -> np.ndarray:
    """The model's input for one image: 784 float32 values in 0..1 (row-major pixels / 255.0).

    Images of another size are resized to 28x28 first, so any grayscale digit image can be scored.
    """
    gray = img.convert("L")
    if gray.size != (SIZE, SIZE):
        gray = gray.resize((SIZE, SIZE), resample=Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.float32).reshape(N_FEATURES) / np.float32(255.0)


def label_from_filename(name: str | os.PathLike[str]) -> int:
    """The true digit encoded in a file name such as ``digit_00042_label_7.png`` (or a path to it)."""
    base = os.path.basename(os.fspath(name))
    match = _LABEL_RE.search(base)
    if match is None:
        raise ValueError(f"{base!r} does not name a label (expected '..._label_<digit>.png')")
    return int(match.group(1))


def digit_filename(index: int, label: int) -> str:
    """The file name for image ``index`` of ``load_digits()``; lexical order == index order."""
    return f"digit_{index:05d}_label_{int(label)}.png"


def load_features(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 784) float32 and labels (n,) int64 of the rendered digits, in dataset order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = len(digits.target) if limit is None else min(int(limit), len(digits.target))
    x = np.stack([image_to_features(render_digit(digits.images[i])) for i in range(n)])
    return x, digits.target[:n].astype(np.int64)


def write_digit_pngs(out_dir: str | os.PathLike[str], limit: int | None = None) -> list[tuple[str, int]]:
    """Write the digits of ``load_digits()`` (all 1,797, or the first ``limit``) as PNG files.

    Returns ``(path, label)`` for every file written, in index order.
    """
    from sklearn.datasets import load_digits

    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    digits = load_digits()
    n = len(digits.target) if limit is None else min(int(limit), len(digits.target))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, int]] = []
    for i in range(n):
        label = int(digits.target[i])
        path = out / digit_filename(i, label)
        render_digit(digits.images[i]).save(path, format="PNG")
        written.append((str(path), label))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write scikit-learn's digits as 28x28 MNIST-style PNGs named digit_<index>_label_<digit>.png.")
    parser.add_argument("out_dir", help="folder to write the PNG files into (created if missing)")
    parser.add_argument("--limit", type=int, default=None, help="write only the first N images")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    written = write_digit_pngs(args.out_dir, limit=args.limit)
    print(f"wrote {len(written)} PNG files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
