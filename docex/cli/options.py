"""Options and error handling shared by every docex command."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from docex.pki.errors import PkiError
from docex.pki.keys import resolve_passphrase
from docex.protocols.errors import describe

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 2  # a named refusal (bad input, failed verification)


def passphrase_options(func: F) -> F:
    """--passphrase-file / --passphrase-env / --insecure-no-passphrase, resolved into a
    `passphrase` argument. The passphrase itself never appears on a command line."""

    @click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False), help="File holding the key passphrase.")
    @click.option("--passphrase-env", metavar="VAR", help="Environment variable holding the passphrase (default DOCEX_PASSPHRASE).")
    @click.option("--insecure-no-passphrase", is_flag=True, help="Keys unencrypted: tests and demos only.")
    @functools.wraps(func)
    def wrapper(*args: Any, passphrase_file: str | None, passphrase_env: str | None, insecure_no_passphrase: bool, **kwargs: Any) -> Any:
        kwargs["passphrase"] = PassphraseSource(passphrase_file, passphrase_env, insecure_no_passphrase)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PassphraseSource:
    """Resolved only when a key is touched, so read-only commands need no passphrase."""

    def __init__(self, file: str | None, env: str | None, insecure: bool) -> None:
        self.file, self.env, self.insecure = file, env, insecure

    def get(self) -> bytes | None:
        return resolve_passphrase(passphrase_file=self.file, passphrase_env=self.env, insecure_no_passphrase=self.insecure)


def handles_errors(func: F) -> F:
    """Named refusals become one clear line and exit code 2, never a stack trace."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PkiError as exc:
            _fail(exc.code, exc.message, kwargs.get("as_json", False))
        except BrokenPipeError:
            raise  # `docex ... | head`: click ends quietly
        except OSError as exc:  # a missing or unreadable file, a full disk: one line, no traceback
            _fail("io_error", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), kwargs.get("as_json", False))
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            from docex.broker.errors import BrokerError

            if isinstance(exc, BrokerError):
                _fail("broker_unavailable", str(exc), kwargs.get("as_json", False))
            if os.environ.get("DOCEX_DEBUG"):
                raise
            # never a traceback for a clerk: one line, the detail on request
            _fail("internal", f"{type(exc).__name__}: {exc} (DOCEX_DEBUG=1 shows the details)", kwargs.get("as_json", False))

    return wrapper  # type: ignore[return-value]


def _fail(code: str, message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "code": code, "message": message}, ensure_ascii=False))
    else:
        label = describe(code)
        click.echo(f"错误 [{code}] {label + '：' if label else ''}{message}", err=True)
    sys.exit(EXIT_REFUSED)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(func)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
