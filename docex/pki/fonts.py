"""The CJK fonts docex draws with (seal impressions, GB/T 9704 documents).

GB/T 9704 asks for 仿宋 (body), 小标宋 (titles), 黑体 and 楷体 (headings). Debian has no
free 仿宋 or 小标宋, so the nearest installed faces stand in:

| 公文 face | stand-in                                  | package              |
| --------- | ----------------------------------------- | -------------------- |
| 仿宋/宋体 | Noto Serif CJK SC Regular                 | fonts-noto-cjk       |
| 小标宋    | Noto Serif CJK SC Bold                    | fonts-noto-cjk       |
| 黑体      | Noto Sans CJK SC Bold                     | fonts-noto-cjk       |
| 楷体      | AR PL UKai CN                             | fonts-arphic-ukai    |

The Noto faces are OpenType/CFF collections; index 2 of each collection is the Simplified
Chinese (SC) face, whose glyph shapes follow the mainland standard. (AR PL KaitiM GB was
tried for 楷体: its metrics render small and uneven next to Noto; UKai CN, index 0 of its
collection, is a full-size Kaiti with mainland glyph shapes.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from docex.pki.errors import PkiError

NOTO_DIR = Path("/usr/share/fonts/opentype/noto")
_SC_FACE = 2  # index of "Noto ... CJK SC" inside the .ttc collections


class FontRole(enum.Enum):
    SONG = "song"  # 仿宋/宋体 stand-in: body text
    XBS = "xbs"  # 小标宋 stand-in: issuing-authority mark, title, seal text
    HEI = "hei"  # 黑体: 份号, 密级, level-1 headings
    KAI = "kai"  # 楷体: 签发人 name, level-2 headings


@dataclass(frozen=True)
class FontFace:
    path: Path
    index: int = 0  # face number inside a .ttc collection
    package: str = "fonts-noto-cjk"


_FACES: dict[FontRole, FontFace] = {
    FontRole.SONG: FontFace(NOTO_DIR / "NotoSerifCJK-Regular.ttc", _SC_FACE),
    FontRole.XBS: FontFace(NOTO_DIR / "NotoSerifCJK-Bold.ttc", _SC_FACE),
    FontRole.HEI: FontFace(NOTO_DIR / "NotoSansCJK-Bold.ttc", _SC_FACE),
    FontRole.KAI: FontFace(Path("/usr/share/fonts/truetype/arphic/ukai.ttc"), 0, "fonts-arphic-ukai"),
}


class FontMissingError(PkiError):
    """A CJK font docex needs is not installed (names the Debian package)."""

    def __init__(self, message: str) -> None:
        super().__init__("font_missing", message)


def font_face(role: FontRole) -> FontFace:
    """The installed face for ``role``."""
    face = _FACES[role]
    if face.path.is_file():
        return face
    raise FontMissingError(
        f"CJK font missing: {face.path} (apt-get install {face.package}; "
        "scripts/setup-machine.sh installs it)"
    )
