"""`docex evidence`: delivery evidence a third party can check without our servers.

    export  --home (AGENTDIR|HUBDIR) MESSAGE_ID -o BUNDLE.zip
    verify  BUNDLE.zip --ca CA.crt [--ca CITY_CA.crt] [--at DATE] [--json]   (offline)
    archive --home HUBDIR [MESSAGE_ID ...] [--replace]   (into [hub] evidence_archive)
    renew   BUNDLE.zip -o RENEWED.zip (--home (HUBDIR|AGENTDIR) | --tsa URL --ca CA.crt) [--crl CRL.pem]
    opened  --home AGENTDIR MESSAGE_ID [--person DIR]   (evidence that a person opened it)
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)

STATUS_ZH = {"VALID": "有效", "RENEWAL_DUE": "有效（需尽快续期）", "INDETERMINATE": "无法确定（需续期）",
             "INVALID": "无效"}


def _is_hub(home: str) -> bool:
    """A hub home's docex.toml names the prefix it owns; an agent home's does not."""
    import tomllib

    from docex.hub.config import CONFIG_NAME

    path = Path(home) / CONFIG_NAME
    try:
        return path.exists() and "prefix" in tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def _hub_passphrase(home: str, passphrase: PassphraseSource) -> bytes | None:
    from docex.hub.config import HubConfig

    if passphrase.file or passphrase.env or passphrase.insecure:
        return passphrase.get()
    return HubConfig.load(home).keys.passphrase()


def _hub_parts(home: str, passphrase: PassphraseSource) -> Any:
    from docex.hub.config import HubConfig
    from docex.hub.service import make_context

    ctx = make_context(HubConfig.load(home), _hub_passphrase(home, passphrase))
    ctx.db.after_operator_action = None
    return ctx


def _stamper(home: str | None, tsa: str | None, passphrase: PassphraseSource) -> Any:
    from docex.pki.timestamps import http_stamper
    from docex.protocols.errors import DocexError

    if tsa:
        return http_stamper(tsa)
    if home and _is_hub(home):
        ctx = _hub_parts(home, passphrase)
        if ctx.stamper is None:
            raise DocexError("timestamp_failed", f"the hub at {home} runs no TSA (HUBDIR/tsa): give --tsa URL")
        return ctx.stamper
    if home:
        from docex.cli.agent import _ctx

        url = _ctx(home, passphrase).config.seal.tsa_url
        if url:
            return http_stamper(url)
    raise DocexError("timestamp_failed", "no time-stamping authority: give --tsa URL (the hub's /tsa)")


@click.group()
def evidence() -> None:
    """证据 Delivery evidence: export, verify offline, renew, archive."""


@evidence.command()
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Agent or hub home.")
@click.argument("message_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The bundle to write (.zip).")
@click.option("--tsa", help="RFC 3161 TSA URL for the bundle's archive timestamp (default: the home's own).")
@json_option
@passphrase_options
@handles_errors
def export(home: str, message_id: str, output: str, tsa: str | None, as_json: bool,
           passphrase: PassphraseSource) -> None:
    """导出证据包 Write the evidence bundle of one document (envelope, inner package, every
    evidence with its timestamp, certificates and CRLs, audit entries and checkpoint, timeline)."""
    from docex.protocols.bundle import read_files

    if _is_hub(home):
        from docex.hub.evidence import export as hub_export

        ctx = _hub_parts(home, passphrase)
        stamper = _stamper(None, tsa, passphrase) if tsa else ctx.stamper
        if stamper is None:
            from docex.protocols.errors import DocexError

            raise DocexError("timestamp_failed", "this hub runs no TSA (HUBDIR/tsa): give --tsa URL")
        data = hub_export(ctx, message_id, stamper)
    else:
        from docex.agent.evidence import export as agent_export
        from docex.cli.agent import _ctx

        actx = _ctx(home, passphrase)
        data = agent_export(actx, message_id, _stamper(home, tsa, passphrase))
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    names = sorted(read_files(data))
    count = sum(1 for n in names if n.startswith("evidence/") and n.endswith(".p7s"))
    if as_json:
        echo_json({"ok": True, "bundle": str(path), "bytes": len(data), "evidences": count, "files": names})
    else:
        click.echo(f"证据包已导出 evidence bundle written: {path} ({count} evidence(s), {len(data)} bytes)")


def _parse_at(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)") from exc
    if parsed.tzinfo is None:
        from docex.protocols import localtime

        parsed = parsed.replace(tzinfo=localtime.zone())
    return parsed.astimezone(dt.UTC)


@evidence.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--ca", "cas", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A trusted CA certificate (PEM); repeat for the city's, an archive CA...")
@click.option("--at", "at", help="Evaluate at this date instead of now (YYYY-MM-DD or ISO 8601).")
@json_option
@handles_errors
def verify(bundle: str, cas: tuple[str, ...], at: str | None, as_json: bool) -> None:
    """离线核验证据包 Check a bundle with no server and no network; prints the timeline."""
    from docex.pki.keys import load_certificates
    from docex.protocols import localtime
    from docex.protocols.bundle import verify as verify_bundle

    anchors = [c for path in cas for c in load_certificates(Path(path))]
    report = verify_bundle(Path(bundle).read_bytes(), anchors, at=_parse_at(at))
    if as_json:
        echo_json({"ok": report.ok, "status": report.status, "message_id": report.message_id,
                   "envelope_sha256": report.envelope_sha256, "doc_number": report.doc_number,
                   "title": report.title, "sender": report.sender, "exported_by": report.exported_by,
                   "archive": report.archive, "timeline": report.timeline, "checks": report.checks,
                   "problems": report.problems})
    else:
        click.echo(f"公文 {report.doc_number} 《{report.title}》 发文单位 {report.sender}")
        click.echo(f"信封摘要 envelope SHA-256 {report.envelope_sha256}")
        click.echo("时间线：")
        for r in report.timeline:
            when = localtime.show(dt.datetime.fromisoformat(r["at"])) if r["at"] else "（无时间戳）"
            extra = "".join(f"  {zh}：{r[k]}" for k, zh in (("person", "签收人"), ("reason", "理由"), ("code", "代码"))
                            if r.get(k))
            click.echo(f"  {when}  {r['zh']}  {r['issuer_name']}（{r['issuer']}）{extra}")
        click.echo("Timeline:")
        for r in report.timeline:
            extra = "".join(f"  {k}: {r[k]}" for k in ("person", "reason", "code") if r.get(k))
            click.echo(f"  {r['at'] or 'no timestamp'}  {r['en']}  {r['issuer_name']} ({r['issuer']}){extra}")
        for check in report.checks:
            click.echo(f"  ✓ {check}")
        for problem in report.problems:
            click.echo(f"  ✗ [{problem['code']}] {problem['message']}", err=True)
        click.echo(f"结论 result: {STATUS_ZH.get(report.status, report.status)} {report.status}"
                   f" — {report.archive.get('message', '')}")
    if not report.ok:
        sys.exit(1)


def _renewal_inputs(home: str | None, cas: tuple[str, ...], crl_paths: tuple[str, ...], cert_paths: tuple[str, ...],
                    passphrase: PassphraseSource) -> tuple[list[Any], list[Any], list[Any]]:
    """Anchors, CRLs and CA certificates for a renewal: the home's own (a hub issues a fresh
    CRL of its CA; an agent has its CA's CRL, kept fresh from the directory), plus files."""
    from docex.pki.keys import load_certificates, load_crl
    from docex.protocols.errors import DocexError

    anchors: list[Any] = [c for path in cas for c in load_certificates(Path(path))]
    crls: list[Any] = [load_crl(Path(path)) for path in crl_paths]
    certs: list[Any] = [c for path in cert_paths for c in load_certificates(Path(path))]
    if home and _is_hub(home):
        from docex.hub.evidence import renewal_inputs

        more = renewal_inputs(_hub_parts(home, passphrase), _hub_passphrase(home, passphrase))
    elif home:
        from docex.cli.agent import _ctx

        trust = _ctx(home, passphrase).trust
        more = (list(trust.anchors), list(trust.crls), [])
    else:
        more = ([], [], [])
    anchors, crls, certs = [*anchors, *more[0]], [*crls, *more[1]], [*certs, *more[2]]
    if not anchors:
        raise DocexError("certificate_untrusted", "no trust anchor: give --home or --ca CA.crt")
    return anchors, crls, certs


@evidence.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--home", type=click.Path(exists=True, file_okay=False),
              help="A hub or agent home: its TSA, trust anchors and current CRLs.")
@click.option("--tsa", help="RFC 3161 TSA URL for the renewal timestamp.")
@click.option("--ca", "cas", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A trusted CA certificate (PEM); repeat. Default: the home's.")
@click.option("--crl", "crl_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A current CRL to put into the bundle (PEM or DER); repeat. Added to the home's.")
@click.option("--cert", "cert_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A CA certificate the chains need (PEM); repeat.")
@json_option
@passphrase_options
@handles_errors
def renew(bundle: str, output: str, home: str | None, tsa: str | None, cas: tuple[str, ...],
          crl_paths: tuple[str, ...], cert_paths: tuple[str, ...], as_json: bool, passphrase: PassphraseSource) -> None:
    """证据包续期 Renew a bundle before its newest archive timestamp expires: add the current
    CRLs and CA certificates (validation data), then a fresh archive timestamp over them."""
    from docex.protocols.bundle import renew as renew_bundle

    anchors, crls, certs = _renewal_inputs(home, cas, crl_paths, cert_paths, passphrase)
    done = renew_bundle(Path(bundle).read_bytes(), _stamper(home, tsa, passphrase), anchors=anchors, crls=crls,
                        certificates=certs)
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(done.data)
    tmp.replace(path)
    if as_json:
        echo_json({"ok": True, "bundle": str(path), "bytes": len(done.data), "archive_timestamp": done.number,
                   "crls_of": done.refreshed, "not_refreshed": done.not_refreshed})
    else:
        click.echo(f"证据包已续期 evidence bundle renewed: {path} (存证时间戳 archive timestamp {done.number:04d}；"
                   f"吊销列表 CRLs of: {'、'.join(done.refreshed)})")
        if done.not_refreshed:
            click.echo(f"  ! 无当前吊销列表 no current CRL at hand for: {'、'.join(done.not_refreshed)}", err=True)


@evidence.command()
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Hub home (HUBDIR).")
@click.argument("message_ids", nargs=-1)
@click.option("--replace", is_flag=True, help="Write again a bundle that is in the archive already.")
@json_option
@passphrase_options
@handles_errors
def archive(home: str, message_ids: tuple[str, ...], replace: bool, as_json: bool,
            passphrase: PassphraseSource) -> None:
    """归档证据包 Write bundles into `[hub] evidence_archive` now: the documents named, or (none
    named) every document closed since the last sweep, as the hub does every 5 minutes."""
    from docex.hub import evidence_archive
    from docex.protocols.errors import DocexError
    from docex.protocols.identifiers import check_message_id

    if not _is_hub(home):
        raise DocexError("no_hub", f"{home} is not a hub home: the evidence archive is the hub's")
    ctx = _hub_parts(home, passphrase)
    root = evidence_archive.folder(ctx)
    if root is None:
        raise DocexError("no_archive", "no evidence archive: set evidence_archive = \"FOLDER\" in docex.toml")
    if ctx.stamper is None:
        raise DocexError("timestamp_failed", "this hub runs no TSA (HUBDIR/tsa): bundles cannot be sealed")
    written: list[str] = []
    present: list[str] = []
    failed: dict[str, str] = {}
    if message_ids:
        for mid in message_ids:
            check_message_id(mid, code="bad_metadata")
            path = evidence_archive.archive_one(ctx, root, mid, ctx.stamper, replace=replace)
            (written if path is not None else present).append(mid)
    else:
        result = evidence_archive.sweep(ctx, root, ctx.stamper)
        written, failed = result.written, result.failed
        if result.stopped:
            raise DocexError("timestamp_failed", result.stopped)
    if as_json:
        echo_json({"ok": not failed, "archive": str(root), "written": written, "present": present, "failed": failed})
    else:
        click.echo(f"证据包已归档 bundles written: {len(written)}；已存在 already there: {len(present)}；"
                   f"失败 failed: {len(failed)} ({root})")
        for mid, code in failed.items():
            click.echo(f"  ✗ {mid}: [{code}]", err=True)
    if failed:
        sys.exit(1)


@evidence.command()
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Agent home (AGENTDIR).")
@click.argument("message_id")
@click.option("--person", "person_dir", type=click.Path(exists=True, file_okay=False),
              help="The staff member's certificate folder: who opened it.")
@json_option
@passphrase_options
@handles_errors
def opened(home: str, message_id: str, person_dir: str | None, as_json: bool, passphrase: PassphraseSource) -> None:
    """记录已打开 Record that a received document was opened (signed evidence, sent to the sender)."""
    from docex.agent.evidence import record_opened
    from docex.cli.agent import _ctx

    ctx = _ctx(home, passphrase)
    made = record_opened(ctx, message_id, person_dir=person_dir, passphrase=passphrase.get() if person_dir else None)
    if as_json:
        echo_json({"ok": True, "message_id": message_id, "recorded": bool(made)})
        return
    click.echo("已记录打开 opened recorded" if made else "已记录过 already recorded")
