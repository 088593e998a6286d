"""Looking at PDFs the way a person would: rendered by poppler's pdftoppm."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from PIL import Image


def render_page(pdf: bytes, page: int, tmp_path: Path, dpi: int = 50) -> Image.Image:
    """Page ``page`` (1-based) rendered by poppler's pdftoppm, as RGB."""
    src = tmp_path / "render.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", str(src)],
        check=True,
        capture_output=True,
    ).stdout
    return Image.open(io.BytesIO(out)).convert("RGB")


def red_fraction(img: Image.Image, center_mm: tuple[float, float], radius_mm: float, dpi: int = 50) -> float:
    """Share of seal-red pixels in the square around ``center_mm`` (mm from top-left)."""
    px = dpi / 25.4
    cx, cy, r = center_mm[0] * px, center_mm[1] * px, radius_mm * px
    box = img.crop((int(cx - r), int(cy - r), int(cx + r), int(cy + r)))
    pixels = list(box.getdata())
    red = sum(1 for (r_, g, b) in pixels if r_ > 180 and g < 110 and b < 110)
    return red / max(1, len(pixels))
