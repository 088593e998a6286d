"""Backing up a hub and restoring it on a new machine.

The archive (tar.gz) holds the hub home's configuration and keys (docex.toml, ca/, hub/,
tsa/, trust/, audit-checkpoints/, reports/), its content store (content/: the envelopes
kept) and the tracking database as one JSON line per row, table by table, with the
schema revision it was taken at. Rows rather than a database file: the same archive
restores into SQLite or PostgreSQL, and into a newer release (the rows go in at their own
revision, then Alembic upgrades them). The audit chain keeps its
hashes, so `docex audit verify` holds after a restore."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shutil
import tarfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, LargeBinary, MetaData, Table, select, text

from docex.hub.config import CONFIG_NAME, HubConfig
from docex.hub.db import MIGRATIONS, make_engine
from docex.protocols import localtime
from docex.protocols.errors import DocexError

FORMAT = 1
# content/: the envelopes (and chunks) still kept (docex.hub.content_store), without the
# writes in progress under content/tmp.
HOME_PARTS = (CONFIG_NAME, "ca", "hub", "tsa", "trust", "audit-checkpoints", "reports", "content")
SKIP_TABLES = {"alembic_version"}


@dataclass
class BackupInfo:
    path: Path
    revision: str
    rows: dict[str, int] = field(default_factory=dict)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):  # stores keep UTC; SQLite hands it back naive
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return {"$t": aware.astimezone(dt.UTC).isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        if tag == "$b":
            return base64.b64decode(raw)
        if tag == "$t":
            return dt.datetime.fromisoformat(raw)
        if tag == "$d":
            return dt.date.fromisoformat(raw)
    return value


def _revision(engine: Engine) -> str:
    with engine.connect() as conn:
        try:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
        except Exception as exc:  # noqa: BLE001 - no alembic table: not a docex database
            raise DocexError("no_hub", f"the database has no schema revision: {exc}") from None


def _tables(engine: Engine) -> list[Table]:
    meta = MetaData()
    meta.reflect(engine)
    return [t for t in meta.sorted_tables if t.name not in SKIP_TABLES]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(localtime.utcnow().timestamp())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _skip_tmp(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if member.name.startswith("home/content/tmp") else member


def _rows(engine: Engine, table: Table) -> Iterator[bytes]:
    with engine.connect() as conn:
        for row in conn.execute(select(table)).mappings():
            yield json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False).encode() + b"\n"


def backup(config: HubConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> BackupInfo:
    """Write the archive to `out` (written aside and renamed: never a half archive)."""
    target = Path(out)
    tmp = target.with_name(target.name + ".part")
    engine = make_engine(config.database_url)
    try:
        info = BackupInfo(path=target, revision=_revision(engine))
        with tarfile.open(tmp, "w:gz") as tar:
            for part in HOME_PARTS:
                path = config.home / part
                if path.exists():
                    tar.add(path, arcname=f"home/{part}", filter=_skip_tmp)
            for table in _tables(engine):
                if progress is not None:
                    progress(table.name)
                data = b"".join(_rows(engine, table))
                info.rows[table.name] = data.count(b"\n")
                _add_bytes(tar, f"database/{table.name}.jsonl", data)
            manifest = {"format": FORMAT, "prefix": config.prefix, "name": config.name, "revision": info.revision,
                        "created_at": localtime.iso(localtime.utcnow()), "rows": info.rows,
                        "dialect": engine.dialect.name}
            _add_bytes(tar, "backup.json", json.dumps(manifest, ensure_ascii=False, indent=1).encode())
        tmp.chmod(0o600)  # it holds the CA key and the broker passwords
        tmp.replace(target)
    finally:
        engine.dispose()
        tmp.unlink(missing_ok=True)
    return info


def read_manifest(archive: str | Path) -> dict[str, Any]:
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile("backup.json")
        if member is None:
            raise DocexError("bad_backup", f"{archive} is not a docex hub backup (no backup.json)")
        manifest: dict[str, Any] = json.loads(member.read())
    if manifest.get("format") != FORMAT:
        raise DocexError("bad_backup", f"backup format {manifest.get('format')} is not supported by this release")
    return manifest


def _alembic(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)


def _restore_rows(tar: tarfile.TarFile, engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    tables = _tables(engine)
    with engine.begin() as conn:
        for table in tables:
            if conn.execute(select(table).limit(1)).first() is not None:
                raise DocexError("bad_backup", f"the target database is not empty (table {table.name}): "
                                               "restore into a new database")
        for table in tables:
            try:
                member = tar.extractfile(f"database/{table.name}.jsonl")
            except KeyError:
                continue  # a table newer than the backup: Alembic made it, it stays empty
            if member is None:
                continue
            columns = {c.name: c for c in table.columns}
            batch: list[dict[str, Any]] = []
            for line in member:
                raw = json.loads(line)
                row = {k: _decode(v) for k, v in raw.items() if k in columns}
                for name, value in row.items():
                    if isinstance(value, str) and isinstance(columns[name].type, LargeBinary):
                        row[name] = value.encode()
                batch.append(row)
                if len(batch) >= 500:
                    conn.execute(table.insert(), batch)
                    batch = []
            if batch:
                conn.execute(table.insert(), batch)
            counts[table.name] = _count(conn, table)
        if engine.dialect.name == "postgresql":  # ids were inserted explicitly: move the sequences on
            for table in tables:
                for col in table.primary_key.columns:
                    if col.autoincrement is True or (col.autoincrement == "auto" and col.type.python_type is int):
                        conn.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                            f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 1))"
                        ))
    return counts


def _count(conn: Any, table: Table) -> int:
    from sqlalchemy import func

    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def restore(archive: str | Path, home: str | Path, *, database_url: str | None = None) -> tuple[HubConfig, dict[str, int]]:
    """Unpack the home, load the rows into a new database at the backup's revision,
    upgrade it to this release's schema. Returns the config and the rows per table."""
    root = Path(home).resolve()
    if (root / CONFIG_NAME).exists():
        raise DocexError("hub_exists", f"{root} is already a hub home: restore into a new folder")
    manifest = read_manifest(archive)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("home/")]
            for m in members:
                m.name = m.name[len("home/"):]
            tar.extractall(root, members=members, filter="data")  # refuses links and paths outside root
            data = tomllib.loads((root / CONFIG_NAME).read_text("utf-8"))
            old_url = str(data["database_url"])
            if database_url is None:
                if not old_url.startswith("sqlite"):
                    raise DocexError("bad_backup", f"the backup came from {old_url.split('@')[-1]}: "
                                                   "give the new database with --db")
                database_url = f"sqlite:///{root / 'hub.db'}"
            if database_url != old_url:
                import tomli_w

                data["database_url"] = database_url
                (root / CONFIG_NAME).write_bytes(tomli_w.dumps(data).encode())
                (root / CONFIG_NAME).chmod(0o600)
            _alembic(database_url, str(manifest["revision"]))
            engine = make_engine(database_url)
            try:
                counts = _restore_rows(tar, engine)
            finally:
                engine.dispose()
        _alembic(database_url, "head")
        (root / "refused").mkdir(exist_ok=True)
        return HubConfig.load(root), counts
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise


def ensure_broker(config: HubConfig, units: list[tuple[str, str]], links: list[str],
                  *, disabled: frozenset[str] = frozenset(), link_users: dict[str, str] | None = None) -> list[str]:
    """On a fresh broker (or a fresh vhost): the vhost, the hub's own login (its password is
    in docex.toml), the rights on the vhost of each unit and link whose login exists (none
    for a disabled unit or a paused link) and the topology. Returns the units whose broker
    login is missing (their homes must be re-issued; a unit's password is kept only in its
    own home)."""
    from urllib.parse import unquote, urlsplit

    from docex.broker.topology import hub_permissions, link_permissions, unit_permissions
    from docex.hub import broker

    parts = urlsplit(config.broker.url)
    hub_user, hub_password = unquote(parts.username or ""), unquote(parts.password or "")
    with broker.management(config) as mgmt:
        if not mgmt.vhost_exists(config.broker.vhost):
            mgmt.create_vhost(config.broker.vhost, description=f"docex hub {config.prefix} (restored)")
        if not mgmt.user_exists(hub_user):
            mgmt.create_user(hub_user, hub_password or None, tags=("monitoring",))
        mgmt.set_permissions(config.broker.vhost, hub_user, *hub_permissions())
        mgmt.set_permissions(config.broker.vhost, config.broker.management_user, ".*", ".*", ".*")
        missing = [address for address, user in units if user and not mgmt.user_exists(user)]
        for address, user in units:  # a vhost made anew holds no rights for the logins there are
            if user and address not in missing and address not in disabled:
                mgmt.set_permissions(config.broker.vhost, user, *unit_permissions(address))
        for name, user in (link_users or {}).items():
            if user and mgmt.user_exists(user):
                mgmt.set_permissions(config.broker.vhost, user, *link_permissions(name))
    broker.declare(config, units=tuple(a for a, _ in units), links=tuple(links))
    return missing
