"""Draw a standard round red seal impression (印模) for units that have no scan yet.

The drawing follows the usual shape of a Chinese government seal: a red ring, a
five-pointed star in the centre, the unit's name along the upper arc read clockwise with
each character upright towards the rim, and an optional line below the star (e.g.
"专用章"). Characters are set in the 宋体 stand-in (see ``docex.pki.fonts``). The PNG has
a transparent background so the impression sits over the signature text like ink.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont

from docex.pki.errors import PkiError
from docex.pki.fonts import FontRole, font_face

SEAL_RED = (230, 0, 18, 255)  # the red of 公文 seals and marks (GB/T 9704 "红色")
_SUPERSAMPLE = 2  # draw at 2x and downsample: Pillow's shapes are not antialiased


class SealImageError(PkiError):
    """The seal cannot be drawn from these arguments."""

    def __init__(self, message: str) -> None:
        super().__init__("seal_image_invalid", message)


def _star(cx: float, cy: float, r_out: float) -> list[tuple[float, float]]:
    r_in = r_out * math.sin(math.radians(18)) / math.sin(math.radians(126))  # regular star
    points = []
    for k in range(10):
        r = r_out if k % 2 == 0 else r_in
        a = math.radians(-90 + 36 * k)  # first point straight up
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _glyph(ch: str, font: ImageFont.FreeTypeFont, size: int, width_scale: float) -> Image.Image:
    """One character, colored red on transparent, scaled horizontally by ``width_scale``."""
    box = [int(v) for v in font.getbbox(ch)]
    w, h = max(1, box[2] - box[0]), max(1, box[3] - box[1])
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((-box[0], -box[1]), ch, font=font, fill=SEAL_RED)
    # Normalise every glyph to the same em box so the arc looks even.
    target = (max(1, int(size * width_scale)), size)
    cell = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    cell.paste(img, ((size - w) // 2, (size - h) // 2))
    return cell.resize(target, Image.Resampling.LANCZOS)


def draw_seal(name: str, size_px: int = 600, *, bottom_text: str = "") -> bytes:
    """A round red seal for ``name`` as PNG bytes (``size_px`` square, transparent).

    ``name`` is written along the upper arc; ``bottom_text`` (optional, e.g. "专用章")
    horizontally under the star. Raises :class:`SealImageError` on an empty or overlong
    name or a size too small to read.
    """
    name = name.strip()
    if not name:
        raise SealImageError("seal name is empty")
    if len(name) > 24:
        raise SealImageError(f"seal name too long for a round seal ({len(name)} > 24 characters)")
    if not 120 <= size_px <= 4000:
        raise SealImageError(f"seal size must be 120..4000 px, got {size_px}")

    s = size_px * _SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    c = s / 2
    ring_w = s * 0.035
    radius = s / 2 - ring_w / 2 - s * 0.01
    draw.ellipse(
        (c - radius, c - radius, c + radius, c + radius),
        outline=SEAL_RED,
        width=max(1, round(ring_w)),
    )
    draw.polygon(_star(c, c, radius * 0.33), fill=SEAL_RED)

    face = font_face(FontRole.XBS)
    n = len(name)
    # The arc widens with the name (about 32 degrees per character, 180..260 in all,
    # less when a bottom line needs the room), then characters shrink to fit it; tops
    # point outward like a carved seal.
    span = min(230.0 if bottom_text.strip() else 260.0, max(180.0, 32.0 * n))
    step = math.radians(span / (n - 1)) if n > 1 else 0.0
    char_h = radius * 0.30
    r_text = radius - ring_w - char_h * 0.62
    if n > 1:
        char_h = min(char_h, r_text * step * 1.05)
        r_text = radius - ring_w - char_h * 0.62
    size = max(4, int(char_h))
    font = ImageFont.truetype(str(face.path), size=size, index=face.index)
    width_scale = 0.85 if n > 1 else 1.0  # seal characters are cut slightly narrow
    for i, ch in enumerate(name):
        theta = -math.radians(span) / 2 + i * step if n > 1 else 0.0
        glyph = _glyph(ch, font, size, width_scale).rotate(
            -math.degrees(theta), expand=True, resample=Image.Resampling.BICUBIC
        )
        x = c + r_text * math.sin(theta) - glyph.width / 2
        y = c - r_text * math.cos(theta) - glyph.height / 2
        img.alpha_composite(glyph, (round(x), round(y)))

    if bottom_text.strip():
        text = bottom_text.strip()
        bsize = max(4, int(radius * 0.17))
        bfont = ImageFont.truetype(str(face.path), size=bsize, index=face.index)
        box = draw.textbbox((0, 0), text, font=bfont)
        tw = box[2] - box[0]
        max_w = radius * 1.2
        if tw > max_w:  # condense rather than overflow the ring
            bsize = max(4, int(bsize * max_w / tw))
            bfont = ImageFont.truetype(str(face.path), size=bsize, index=face.index)
            box = draw.textbbox((0, 0), text, font=bfont)
            tw = box[2] - box[0]
        draw.text((c - tw / 2 - box[0], c + radius * 0.40 - box[1]), text, font=bfont, fill=SEAL_RED)

    out = img.resize((size_px, size_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
