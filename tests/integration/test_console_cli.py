"""``gateway console users add|list`` and the console's refusals at start, as subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.console_support import PASSWORD
from tests.simproc import bin_path


def gateway(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("gateway"), "console", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_users_add_reads_the_password_from_stdin_and_lists_users(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    out = gateway("users", "add", "wang", "--role", "operator", "--db", db, stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    listed = gateway("users", "list", "--db", db)
    assert listed.returncode == 0 and "wang" in listed.stdout and "operator" in listed.stdout
    assert PASSWORD not in (tmp_path / "c.sqlite").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("users", "add", "li", "--role", "operator"), "short\n", "at least 8"),
        (("users", "add", "li", "--role", "king"), PASSWORD + "\n", "invalid choice"),
        (("users", "add", "li wang", "--role", "viewer"), PASSWORD + "\n", "user name"),
    ],
)
def test_bad_users_are_refused_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], stdin: str, message: str
) -> None:
    db = str(tmp_path / "c.sqlite")
    out = gateway(*args, "--db", db, stdin=stdin)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert "li" not in gateway("users", "list", "--db", db).stdout


def test_console_refuses_a_site_without_mqtt_and_a_bad_listen_address(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: lonely\n"
        "sources: [{id: t, type: modbus_tcp, host: 127.0.0.1, port: 1502}]\n"
        "devices: [{id: d, profile: leakage-monitor, source: t, unit: 1, interval_s: 5}]\n"
    )
    out = gateway(str(site), "--db", str(tmp_path / "c.sqlite"))
    assert out.returncode == 2 and "no sinks.mqtt" in out.stderr, out.stderr
    out = gateway(str(site), "--listen", "localhost")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr


def test_help_names_the_options() -> None:
    out = gateway("--help")
    assert out.returncode == 0 and "--all-sites" in out.stdout and "--listen" in out.stdout
