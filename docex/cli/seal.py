"""`docex seal` (draw, apply, verify), `docex compose` and `docex tsa run`: electronic seals
on PDF documents, GB/T 9704 layout, and the information centre's time-stamping service."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from docex.cli.options import (
    EXIT_REFUSED,
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificates, load_crl
from docex.protocols import localtime

if TYPE_CHECKING:
    from pyhanko.sign.timestamps import TimeStamper

# pyHanko warns that CRLs will not be fetched: on the intranet that is the design.
logging.getLogger("pyhanko").setLevel(logging.ERROR)


def _parse_at(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        x, y = (float(v) for v in value.replace("，", ",").split(","))
    except ValueError:
        raise click.BadParameter("expected X,Y in millimetres from the page's top-left corner, e.g. 140,200") from None
    return x, y


@click.group()
def seal() -> None:
    """电子印章 Draw, apply and verify electronic seals on PDF documents."""


@seal.command()
@click.option("--name", required=True, help="The unit's name, written along the arc, e.g. 阳山县信息中心.")
@click.option("--bottom-text", default="", help="Optional line under the star, e.g. 专用章.")
@click.option("--size", "size_px", default=600, show_default=True, help="Image size in pixels.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@json_option
@handles_errors
def draw(name: str, bottom_text: str, size_px: int, output: str, as_json: bool) -> None:
    """生成印模 Draw a standard round red seal impression (印模) as a transparent PNG."""
    from docex.pki.seal_image import draw_seal

    Path(output).write_bytes(draw_seal(name, size_px, bottom_text=bottom_text))
    if as_json:
        echo_json({"ok": True, "output": output})
        return
    click.echo(f"印模已生成 seal image written: {output}")


def _agent_tsa_url(unit: Path) -> str | None:
    """An agent home's docex.toml names the hub's TSA (`[seal] tsa_url`, written by `unit add`)."""
    import tomllib

    config = unit / "docex.toml"
    if not config.exists():
        return None
    try:
        seal_conf = tomllib.loads(config.read_text("utf-8")).get("seal", {})
    except tomllib.TOMLDecodeError:
        return None
    url = seal_conf.get("tsa_url") if isinstance(seal_conf, dict) else None
    return str(url) if url else None


def _timestamper(tsa_url: str | None, tsa_dir: str | None, passphrase: PassphraseSource) -> TimeStamper:
    from docex.pki.tsa import TimeStampAuthority, http_timestamper

    if tsa_url:
        return http_timestamper(tsa_url)
    if tsa_dir:
        return TimeStampAuthority.load(tsa_dir, passphrase.get()).timestamper()
    raise PkiError(
        "timestamp_unavailable",
        "每个印章都需要时间戳：请给出 --tsa URL（docex tsa run）或 --tsa-dir (a seal needs a timestamp)",
    )


@seal.command()
@click.option("--unit", "unit_dir", required=True, type=click.Path(exists=True, file_okay=False), help="The unit's folder (sign.crt, sign.key, ca.crt; seal.png if registered).")
@click.argument("input_pdf", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--page", type=int, help="Page to seal, 1 = first (default: the seal field, else the last page).")
@click.option("--at", "at", help="Seal centre X,Y in mm from the page's top-left corner.")
@click.option("--person", "person_dir", type=click.Path(exists=True, file_okay=False), help="签发人 folder (person.crt, person.key): adds the officer's signature.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Seal impression PNG (default: UNIT/seal.png, else one drawn from the unit's name).")
@click.option("--tsa", "tsa_url", envvar="DOCEX_TSA_URL", help="Time-stamping service URL (docex tsa run) [env DOCEX_TSA_URL; default: [seal] tsa_url of UNIT/docex.toml].")
@click.option("--tsa-dir", type=click.Path(exists=True, file_okay=False), help="Use a TSA folder in-process instead (information centre).")
@click.option("--crl", "crl_paths", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Current CRL to embed (default: UNIT/crl.pem if present).")
@passphrase_options
@json_option
@handles_errors
def apply(unit_dir: str, input_pdf: str, output: str, page: int | None, at: str | None, person_dir: str | None,
          image: str | None, tsa_url: str | None, tsa_dir: str | None, crl_paths: tuple[str, ...],
          passphrase: PassphraseSource, as_json: bool) -> None:
    """加盖电子印章 Seal INPUT_PDF with the unit's seal certificate (PAdES, timestamped, B-LT/B-LTA)."""
    from docex.pki.credentials import PersonCredentials, UnitCredentials
    from docex.pki.seal import apply_seal
    from docex.pki.seal_image import draw_seal

    unit = Path(unit_dir)
    tsa_url = tsa_url or (None if tsa_dir else _agent_tsa_url(unit))
    secret = passphrase.get()
    creds = UnitCredentials.load(unit, secret)
    chain = load_certificates(unit / "ca.crt") if (unit / "ca.crt").exists() else []
    crl_files = list(crl_paths) or ([str(unit / "crl.pem")] if (unit / "crl.pem").exists() else [])
    crls = [load_crl(p) for p in crl_files]
    notes = []
    if image:
        png = Path(image).read_bytes()
    elif (unit / "seal.png").exists():
        png = (unit / "seal.png").read_bytes()
    else:
        png = draw_seal(creds.name)
        notes.append("未登记印模，已按单位名称生成标准印模 (no registered seal image: drew one)")
    if not crls:
        notes.append("未提供证书吊销列表，印章为 B-T 级 (no CRL: seal is PAdES B-T, not B-LT)")
    person = None
    if person_dir:
        p = PersonCredentials.load(person_dir, secret)
        person = (p.cert, p.key)
    out = apply_seal(
        Path(input_pdf).read_bytes(),
        cert=creds.sign_cert,
        key=creds.sign_key,
        image_png=png,
        chain=chain,
        crls=crls,
        timestamper=_timestamper(tsa_url, tsa_dir, passphrase),
        page=page,
        at=_parse_at(at),
        person=person,
    )
    Path(output).write_bytes(out)
    if as_json:
        echo_json({"ok": True, "output": output, "unit": creds.address, "bytes": len(out), "notes": notes})
        return
    for note in notes:
        click.echo(f"注意: {note}", err=True)
    click.echo(f"已盖章 sealed by {creds.name} ({creds.address}) -> {output}")


RENEWAL_DAYS = 60  # docex.pki.seal.RENEWAL_MARGIN, in days (imported lazily there)
_CHANGES = {"form_filling": "表单填写 form filled", "annotations": "批注 annotations", "other": "其他 other"}
_KINDS = {"seal": "印章", "person": "签发人", "document_timestamp": "文档时间戳", "other": "其他签名"}
_REVOCATION = {"good": "正常", "revoked": "已吊销", "revoked_later": "盖章后吊销", "unknown": "未知"}


def _parse_now(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO date or time, e.g. 2036-01-01") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@seal.command()
@click.argument("pdf", type=click.Path(exists=True, dir_okay=False))
@click.option("--ca", "ca_paths", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="Trusted CA certificate (county, city...); repeat.")
@click.option("--crl", "crl_paths", multiple=True, type=click.Path(exists=True, dir_okay=False), help="A current CRL (newer than the embedded one); repeat.")
@click.option("--expect", "expected", multiple=True, help="Unit address the document must be sealed by; repeat for a joint issue (联合行文): every one must have sealed it.")
@click.option("--renewal-days", default=RENEWAL_DAYS, show_default=True, type=click.IntRange(0, 3650),
              help="Report INDETERMINATE when the newest timestamp's certificate expires within this many days.")
@click.option("--at-time", "at_time", help="Evaluate at this time instead of now (ISO date/time; for audits and tests).")
@json_option
@handles_errors
def verify(pdf: str, ca_paths: tuple[str, ...], crl_paths: tuple[str, ...], expected: tuple[str, ...],
           renewal_days: int, at_time: str | None, as_json: bool) -> None:
    """核验电子印章 Verify every seal and signature of PDF, offline, at the current time with proofs of
    existence (ETSI EN 319 102-1). Exit 0 if VALID, 2 if INVALID or INDETERMINATE (e.g. the
    archive timestamp needs renewal: `docex seal renew`)."""
    from docex.pki.seal import verify_seals

    anchors = [c for p in ca_paths for c in load_certificates(p)]
    report = verify_seals(
        Path(pdf).read_bytes(), anchors, [load_crl(p) for p in crl_paths], list(expected) or None,
        long_term=True, now=_parse_now(at_time), renewal_margin=dt.timedelta(days=renewal_days),
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        if report.ok:
            verdict = "有效 VALID"
        elif report.status == "INDETERMINATE":
            verdict = f"待定 INDETERMINATE [{report.error}]"
        else:
            verdict = f"无效 INVALID [{report.error}]"
        click.echo(f"文件 {pdf}: {verdict} — {report.message}")
        for i, s in enumerate(report.signatures, 1):
            mark = "✓" if s.ok else "✗"
            who = f"{s.signer}" + (f" ({s.address})" if s.address else "")
            click.echo(f"  {mark} {i}. {_KINDS.get(s.kind, s.kind)}: {who}  [{s.field_name}]")
            when = localtime.show(s.signed_at) or "-"
            source = {"tsa": "可信时间戳", "signer": "签名者自称", "none": "无"}[s.time_source]
            click.echo(f"       时间 time: {when} ({source})")
            changed = "否 no" if s.changed_after in ("none", "signatures_only") else f"是 yes ({_CHANGES.get(s.changed_after, s.changed_after)})"
            click.echo(f"       盖章后修改 changed after: {changed}; 完整 intact: {'是' if s.intact else '否'}")
            chain = " ← ".join(s.chain) if s.chain else "-"
            click.echo(f"       证书链 chain: {chain}; 吊销 revocation: {_REVOCATION.get(s.revocation, s.revocation)}"
                       + (f" ({s.revoked_at})" if s.revoked_at else ""))
            if s.pades_level:
                click.echo(f"       PAdES: {s.pades_level}")
            if not s.ok:
                click.echo(f"       错误 [{s.error}] {s.message}")
        for warning in report.warnings:
            click.echo(f"  注意 warning: {warning}")
        if report.renew_by:
            click.echo(f"  存证有效至 proofs valid until: {report.renew_by[:10]}（之前续期 renew before）")
    if not report.ok:
        sys.exit(EXIT_REFUSED)


@seal.command()
@click.argument("input_pdf", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The renewed PDF (with IN.pdf).")
@click.option("--folder", type=click.Path(exists=True, file_okay=False),
              help="Renew, in place, every sealed PDF in this folder (recursively) that is due.")
@click.option("--ca", "ca_paths", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="Trusted CA certificate; repeat.")
@click.option("--crl", "crl_paths", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="The current CRL of every CA in the chains; repeat.")
@click.option("--tsa", "tsa_url", envvar="DOCEX_TSA_URL", help="Time-stamping service URL [env DOCEX_TSA_URL].")
@click.option("--tsa-dir", type=click.Path(exists=True, file_okay=False), help="Use a TSA folder in-process instead.")
@click.option("--renewal-days", default=RENEWAL_DAYS, show_default=True, type=click.IntRange(0, 3650),
              help="With --folder: renew files whose newest timestamp expires within this many days.")
@passphrase_options
@json_option
@handles_errors
def renew(input_pdf: str | None, output: str | None, folder: str | None, ca_paths: tuple[str, ...],
          crl_paths: tuple[str, ...], tsa_url: str | None, tsa_dir: str | None, renewal_days: int,
          passphrase: PassphraseSource, as_json: bool) -> None:
    """存证续期 LTA renewal: add current validation data and a fresh document timestamp, so
    that the seals stay verifiable after the last timestamp's certificate expires."""
    from docex.pki.seal import renew_seal, verify_seals

    if (input_pdf is None) == (folder is None) or (input_pdf is not None and not output):
        raise click.UsageError("give IN.pdf -o OUT.pdf, or --folder DIR")
    anchors = [c for p in ca_paths for c in load_certificates(p)]
    crls = [load_crl(p) for p in crl_paths]
    stamper = _timestamper(tsa_url, tsa_dir, passphrase)
    if input_pdf is not None and output is not None:
        renewed = renew_seal(Path(input_pdf).read_bytes(), anchors=anchors, crls=crls, timestamper=stamper)
        tmp = Path(output).with_name(Path(output).name + ".part")
        tmp.write_bytes(renewed)
        tmp.replace(output)
        report = verify_seals(renewed, anchors, crls, long_term=True)
        if as_json:
            echo_json({"ok": True, "output": output, "renew_by": report.renew_by})
        else:
            click.echo(f"已续期 renewed -> {output}; 存证有效至 proofs valid until {(report.renew_by or '-')[:10]}")
        return
    assert folder is not None
    margin = dt.timedelta(days=renewal_days)
    done, skipped, failed = [], [], []
    for path in sorted(Path(folder).rglob("*.pdf")):
        pdf = path.read_bytes()
        report = verify_seals(pdf, anchors, crls, long_term=True, renewal_margin=margin, require_crl=False)
        if report.error != "seal_renewal_needed":
            skipped.append(str(path))
            continue
        try:
            renewed = renew_seal(pdf, anchors=anchors, crls=crls, timestamper=stamper)
        except PkiError as exc:
            failed.append({"file": str(path), "error": exc.code, "message": exc.message})
            continue
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(renewed)
        tmp.replace(path)  # atomic: a crash leaves the old file or the new one, never half
        done.append(str(path))
        if not as_json:
            click.echo(f"已续期 renewed {path}")
    if as_json:
        echo_json({"ok": not failed, "renewed": done, "not_due": len(skipped), "failed": failed})
    else:
        click.echo(f"续期 {len(done)} 份，未到期 {len(skipped)} 份，失败 {len(failed)} 份 "
                   f"(renewed {len(done)}, not due {len(skipped)}, failed {len(failed)})")
        for f in failed:
            click.echo(f"  ✗ {f['file']}: [{f['error']}] {f['message']}", err=True)
    if failed:
        sys.exit(EXIT_REFUSED)


@click.command()
@click.option("--meta", "meta_path", required=True, type=click.Path(exists=True, dir_okay=False), help="META.json: the manifest's GB/T 9704 fields.")
@click.option("--body", "body_path", required=True, type=click.Path(exists=True, dir_okay=False), help="BODY.txt: one paragraph per line (UTF-8).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@json_option
@handles_errors
def compose(meta_path: str, body_path: str, output: str, as_json: bool) -> None:
    """公文排版 Lay out a GB/T 9704 official document as PDF (seal field at 署名/成文日期)."""
    from docex.documents.compose import ComposeError
    from docex.documents.compose import compose as compose_pdf
    from docex.pki.seal import seal_position

    try:
        meta = json.loads(Path(meta_path).read_text("utf-8"))
        body = Path(body_path).read_text("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ComposeError(f"META.json 或 BODY.txt 不是 UTF-8 JSON/文本 ({exc})") from exc
    if not isinstance(meta, dict):
        raise ComposeError("META.json must hold one JSON object")
    pdf = compose_pdf(meta, body)
    Path(output).write_bytes(pdf)
    pos = seal_position(pdf)
    if as_json:
        echo_json({"ok": True, "output": output, "bytes": len(pdf),
                   "seal": None if pos is None else {"page": pos.page, "center_mm": pos.center_mm, "diameter_mm": pos.diameter_mm}})
    else:
        where = f"，印章位置第 {pos.page} 页 ({pos.center_mm[0]:.0f}, {pos.center_mm[1]:.0f}) mm" if pos else ""
        click.echo(f"已排版 composed -> {output}{where}")


@click.group()
def tsa() -> None:
    """时间戳服务 The information centre's RFC 3161 time-stamping authority."""


@tsa.command()
@click.option("--dir", "tsa_dir", required=True, type=click.Path(exists=True, file_okay=False), help="TSA folder (tsa.crt, tsa.key, ca.crt from issue_tsa).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3161, show_default=True, type=int)
@click.option("--metrics-port", type=int, help="Prometheus /metrics port (default $DOCEX_METRICS_PORT or 9474; 0 off).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="Serve HTTPS with this server certificate (the hub's HUBDIR/hub/server.crt); required off localhost.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its key (same passphrase as the TSA's).")
@passphrase_options
@handles_errors
def run(tsa_dir: str, host: str, port: int, metrics_port: int | None, tls_cert: str | None, tls_key: str | None,
        passphrase: PassphraseSource) -> None:
    """运行时间戳服务 Serve RFC 3161 time-stamps over HTTP(S) (POST application/timestamp-query); plain HTTP
    only on localhost."""
    from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics
    from docex.pki.tsa import TimeStampAuthority, serve, server_tls_context

    pw = passphrase.get()
    authority = TimeStampAuthority.load(tsa_dir, pw)
    context = server_tls_context(tls_cert, tls_key or tls_cert, pw) if tls_cert else None
    server = serve(authority, host, port, context)
    metrics_host, resolved = metrics_address("tsa", port=metrics_port)
    if resolved:
        registry, _ = service_metrics("tsa")
        serve_metrics(registry, metrics_host, resolved)
    click.echo(f"时间戳服务已启动 TSA listening on {server.url} (Ctrl-C to stop)", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


@seal.command("register")
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Hub home.")
@click.option("--unit", "address", required=True, help="The unit's address.")
@click.option("--image", required=True, type=click.Path(exists=True, dir_okay=False), help="The seal impression (PNG).")
@json_option
@passphrase_options
@handles_errors
def register(home: str, address: str, image: str, as_json: bool, passphrase: PassphraseSource) -> None:
    """登记印模 Register a unit's seal impression (印模) and send it to the unit's agent."""
    from docex.hub.config import HubConfig
    from docex.hub.db import Database
    from docex.hub.identity import HubIdentity
    from docex.hub.seals import register_seal

    config = HubConfig.load(home)
    pw = passphrase.get() if (passphrase.file or passphrase.env or passphrase.insecure) else config.keys.passphrase()
    db = Database(config.database_url)
    digest = register_seal(config, db, HubIdentity.load(config, pw), address, Path(image).read_bytes())
    if as_json:
        echo_json({"ok": True, "address": address, "sha256": digest})
        return
    click.echo(f"{address}: 印模已登记 seal registered ({digest[:16]}); sent to the unit's agent by the running hub")
