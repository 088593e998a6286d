"""Render docs/compose-example.png and docs/sealed-example.png (page 1, 100 dpi) with a
throw-away CA. Run: .venv/bin/python docs/seal_examples.py docs"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from docex.documents.compose import compose
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.seal import apply_seal
from docex.pki.seal_image import draw_seal
from docex.pki.tsa import TimeStampAuthority

META = {
    "copy_number": "000012",
    "priority": "特急",
    "issuer": "阳山县人民政府",
    "doc_number": "阳府〔2011〕12号",
    "title": "阳山县人民政府关于推行电子公文交换系统的通知",
    "main_recipients": ["各乡镇人民政府", "县府直属各单位"],
    "attachments": ["阳山县电子公文交换系统实施方案"],
    "signature_name": "阳山县人民政府",
    "date": "2011-09-16",
    "cc": ["县委办公室", "县人大常委会办公室"],
    "printer": "阳山县人民政府办公室",
    "print_date": "2011-09-16",
}
BODY = """为提高公文传输效率，县人民政府决定自2011年10月1日起在全县推行电子公文交换系统。
各单位要指定专人负责公文的收发和签收工作，确保按时完成各阶段工作任务。"""


def main(out: Path) -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = CertificateAuthority.init(d / "ca", "阳山县信息中心", None)
        ca.issue_unit("qingyuan.yangshan.zfb", "阳山县人民政府", d / "u", None)
        ca.issue_tsa("阳山县信息中心时间戳服务", d / "tsa", None)
        unit = UnitCredentials.load(d / "u", None)
        full = compose(META, BODY)
        # The sealed example is a one-page notice, so that page 1 shows the head and the seal.
        short = {k: v for k, v in META.items() if k not in ("cc", "printer", "print_date", "attachments")}
        short["title"] = "关于推行电子公文交换系统的通知"
        sealed = apply_seal(
            compose(short, BODY),
            cert=unit.sign_cert,
            key=unit.sign_key,
            image_png=draw_seal(unit.name),
            chain=[ca.certificate],
            crls=[ca.crl()],
            timestamper=TimeStampAuthority.load(d / "tsa", None).timestamper(),
        )
        for name, data in (("compose-example", full), ("sealed-example", sealed)):
            (d / "x.pdf").write_bytes(data)
            subprocess.run(
                ["pdftoppm", "-r", "100", "-f", "1", "-l", "1", "-png", "-singlefile", str(d / "x.pdf"), str(out / name)],
                check=True,
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
