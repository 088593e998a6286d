from __future__ import annotations

import io

import pytest
from PIL import Image

from docex.pki.errors import PkiError
from docex.pki.seal_image import draw_seal


def _is_red(px: tuple[int, int, int, int]) -> bool:
    r, g, b, a = px
    return a > 200 and r > 180 and g < 80 and b < 80


def test_round_red_seal_with_star_ring_and_transparent_background() -> None:
    img = Image.open(io.BytesIO(draw_seal("阳山县信息中心", 400)))
    assert img.format == "PNG" and img.size == (400, 400) and img.mode == "RGBA"
    assert img.getpixel((2, 2))[3] == 0  # corners outside the ring are transparent
    assert img.getpixel((200, 195))[3] > 200 and _is_red(img.getpixel((200, 195)))  # the star's centre
    ring = [img.getpixel((x, 200)) for x in range(0, 30)]
    assert any(_is_red(p) for p in ring)  # the ring crosses the left edge's middle
    # Characters sit along the upper arc: red pixels just inside the ring at the top...
    top_band = [img.getpixel((x, y)) for x in range(120, 280) for y in range(40, 110)]
    assert sum(_is_red(p) for p in top_band) > 200
    # ...and the bottom stays empty without a bottom line.
    bottom_band = [img.getpixel((x, y)) for x in range(160, 240) for y in range(300, 350)]
    assert sum(_is_red(p) for p in bottom_band) == 0


def test_bottom_text_is_drawn_under_the_star() -> None:
    img = Image.open(io.BytesIO(draw_seal("阳山县财政局", 400, bottom_text="专用章")))
    bottom_band = [img.getpixel((x, y)) for x in range(140, 260) for y in range(270, 330)]
    assert sum(_is_red(p) for p in bottom_band) > 50


@pytest.mark.parametrize(("name", "size"), [("", 400), ("  ", 400), ("阳" * 25, 400), ("阳山县", 50)])
def test_bad_arguments_are_named_errors(name: str, size: int) -> None:
    with pytest.raises(PkiError) as err:
        draw_seal(name, size)
    assert err.value.code == "seal_image_invalid"
