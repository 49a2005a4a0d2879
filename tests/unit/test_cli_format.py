"""The pure parts of the commands for people: tables, sizes, the pull progress bar, the D-Bus check."""

from __future__ import annotations

import sys
import types

import pytest

from sidecar.cli.common import human_bytes, table
from sidecar.cli.doctor import Check, dbus_checks, proxy_check
from sidecar.cli.pull import ProgressBar
from sidecar.config import Http
from sidecar.wire.local import PullProgressParams


def test_table_right_aligns_numbers_and_shows_none_as_a_dash() -> None:
    text = table(("model", "requests", "cost", "ok"), [("a", 3, 0.5, True), ("longer", 1200, None, False)])
    lines = text.splitlines()
    assert lines[0].split() == ["model", "requests", "cost", "ok"]
    assert lines[2] == "a              3   0.5  yes"
    assert lines[3] == "longer     1,200     -  no"


def test_human_bytes_uses_decimal_units() -> None:
    assert human_bytes(None) == "-"
    assert human_bytes(999) == "999 B"
    assert human_bytes(2_019_393_189) == "2.0 GB"
    assert human_bytes(943_718_400) == "943.7 MB"
    assert human_bytes(3_200_000_000_000) == "3.2 TB"


def progress(
    status: str, digest: str | None = None, total: int | None = None, done: int | None = None
) -> PullProgressParams:
    return PullProgressParams(request_id="cli-1", status=status, digest=digest, total=total, completed=done)


def test_progress_bar_sums_layers_against_the_sizes_known_so_far() -> None:
    bar = ProgressBar(live=False)
    bar.update("ollama_pull/progress", progress("pulling manifest"))
    assert bar.line() == "pulling manifest"
    bar.update("ollama_pull/progress", progress("pulling aaa", "sha256:aaa", 300, 300))
    bar.update("ollama_pull/progress", progress("pulling bbb", "sha256:bbb", 100, 0))
    assert bar.line().startswith("[" + "#" * 22 + "." * 8 + "]  75%  300 B / 400 B  pulling bbb")
    bar.update("ollama_pull/progress", progress("pulling bbb", "sha256:bbb", 100, 500))  # clamped to the size
    assert bar.line().startswith("[" + "#" * 30 + "] 100%")
    bar.update("stream/event", object())  # not pull progress: ignored
    assert "100%" in bar.line()


def test_dbus_check_warns_per_missing_variable_on_linux_only() -> None:
    both = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/7/bus", "XDG_RUNTIME_DIR": "/run/user/7"}
    assert [c.status for c in dbus_checks(both, "linux")] == ["ok", "ok"]
    missing = dbus_checks({"XDG_RUNTIME_DIR": "/run/user/7"}, "linux")
    assert [(c.status, c.what) for c in missing] == [
        ("warn", "DBUS_SESSION_BUS_ADDRESS"),
        ("ok", "XDG_RUNTIME_DIR"),
    ]
    assert dbus_checks({}, "darwin") == [] and dbus_checks({}, "win32") == []


def test_proxy_check_names_the_proxy_without_its_password_or_says_why_it_cannot_be_used() -> None:
    env = {"HTTPS_PROXY": "http://corp:s3cret@proxy.corp:3128"}
    assert proxy_check(Http(), env) == Check("-", "proxy", "http://proxy.corp:3128 (from HTTPS_PROXY)")
    assert proxy_check(Http(proxy="none"), env).detail == "none: providers are reached directly"
    bad = proxy_check(Http(), {"https_proxy": "https://corp:s3cret@proxy.corp"})
    assert bad.status == "FAIL" and "only http:// proxies" in bad.detail and "s3cret" not in bad.detail


def test_a_command_module_with_its_own_main_gets_the_raw_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.cli

    seen: list[list[str]] = []
    module = types.ModuleType("sidecar_test_own_main")
    module.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(sidecar.cli.COMMANDS, "own", (module.__name__, "a command that parses for itself"))
    assert sidecar.cli.main(["own", "--port", "3625", "x"]) == 7
    assert seen == [["--port", "3625", "x"]]
