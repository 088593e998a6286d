"""The desk API's latency on one terminal: real agent homes, real envelopes, the real
uvicorn server over HTTP; the median of several calls. `python -m bench.desk_api` (DOCS=N
documents in the inbox, default 200). Standalone (no broker): what a clerk waits for."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from docex.agent.desk.auth import add_person
from docex.agent.desk.server import DeskServer
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, queue_document
from docex.pki.ca import CertificateAuthority
from tests.agent.homes import build_county, outgoing
from tests.conftest import Pki

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"


def median_ms(call: Callable[[], object], n: int = 7) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="docex-bench-desk-"))
    try:
        pki = Pki(root, CertificateAuthority.init(root / "county-ca", "阳山县信息中心", None),
                  CertificateAuthority.init(root / "city-ca", "清远市信息中心", None),
                  CertificateAuthority.init(root / "stranger-ca", "不明机构", None))
        county = build_county(pki, root / "county")
        pki.county.issue_person(ZFB, "张三", root / "person", b"pw")
        ident, _ = add_person(county.context(ZFB), root / "person")
        sender, me = county.context(XXZX), county.context(ZFB)
        docs = int(os.environ.get("DOCS", "200"))
        mid = ""
        for i in range(docs):
            mid = queue_document(sender, Draft(to=(ZFB,), title=f"通知{i}", doc_number=f"阳信发〔2011〕{i}号",
                                               files={"正文.pdf": b"%PDF-1.4\n" + os.urandom(20000)}))
            Receiver(me).document(outgoing(sender, mid).body)
        server = DeskServer(me, port=0)
        server.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as c:
                creds = {"person": ident, "passphrase": "pw"}
                login = median_ms(lambda: c.post("/api/login", json=creds).raise_for_status())
                csrf = c.post("/api/login", json=creds).json()["csrf"]
                inbox = median_ms(lambda: c.get("/api/inbox", params={"state": ""}).raise_for_status())
                one = median_ms(lambda: c.get(f"/api/inbox/{mid}").raise_for_status())
                big = os.urandom(2 * 1024 * 1024)
                meta = json.dumps({"to": [XXZX], "title": "t"})
                send = median_ms(lambda: c.post("/api/send", data={"meta": meta},
                                                files=[("files", ("a.pdf", big)), ("files", ("b.bin", b"x"))],
                                                headers={"X-CSRF-Token": csrf}).raise_for_status(), 5)
        finally:
            server.stop()
        print(f"documents in the inbox: {docs}; load average {os.getloadavg()[0]:.1f}")
        print(f"POST /api/login (decrypt the key, chain + CRL, PSS proof): {login:.0f} ms")
        print(f"GET /api/inbox (all {docs}): {inbox:.0f} ms")
        print(f"GET /api/inbox/ID: {one:.0f} ms")
        print(f"POST /api/send, 2 MB + 1 file, 1 recipient (pack, store): {send:.0f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
