"""The state directory and config file as text: spelled exactly as `str(pathlib.Path(...))` spells
them, since `info` answers them from `sidecar.paths` before pathlib is imported and from `Path`s
afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.paths import config_file, state_home

SPELLINGS = [
    "/tmp/x",
    "/tmp/x/",
    "/tmp//x///",
    "//tmp/x",
    "///tmp/x",
    "////tmp/./x/.",
    "/tmp/../x",
    "relative/dir",
    "./relative//dir/",
    ".",
    "./",
    "/",
    "//",
    "~",
    "~/",
    "~/state/./dir/",
    "~//state",
    "a~/b",
    "/tmp/with space/é",
]


@pytest.mark.parametrize("home", SPELLINGS)
def test_state_home_is_what_pathlib_prints(home: str) -> None:
    env = {"SIDECAR_HOME": home}
    assert state_home(env) == str(Path(home).expanduser())
    assert config_file(None, env) == str(Path(home).expanduser() / "config.toml")


@pytest.mark.parametrize("path", SPELLINGS)
def test_a_given_config_path_is_what_pathlib_prints_and_not_expanded(path: str) -> None:
    assert config_file(path) == str(Path(path))
    assert config_file(Path(path)) == str(Path(path))


def test_a_home_that_cannot_be_expanded_fails_as_pathlib_does() -> None:
    user = "~no-such-user-" + str(os.getpid())
    with pytest.raises(RuntimeError) as ours:
        state_home({"SIDECAR_HOME": user + "/x"})
    with pytest.raises(RuntimeError) as theirs:
        Path(user + "/x").expanduser()
    assert str(ours.value) == str(theirs.value)


def test_without_sidecar_home_the_os_data_directory() -> None:
    import platformdirs

    assert state_home({}) == str(Path(platformdirs.user_data_dir("llm-sidecar", appauthor=False)))


@pytest.mark.parametrize(
    ("xdg", "home"),
    [
        (None, "/home/someone"),
        (None, "/home/someone/"),
        (None, "/"),
        ("/data/xdg", "/home/someone"),
        ("/data/xdg/", "/home/someone"),
        ("", "/home/someone"),
        ("relative/xdg", "/home/someone"),
        ("relative/xdg", None),
        (None, "relative-home"),
        ("/data/xdg", "relative-home"),
    ],
)
def test_without_sidecar_home_what_platformdirs_says(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None, home: str | None
) -> None:
    import platformdirs

    for name, value in (("XDG_DATA_HOME", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    try:
        expected = str(Path(platformdirs.user_data_dir("llm-sidecar", appauthor=False)))
    except RuntimeError:  # no home to be found: the same failure either way
        with pytest.raises(RuntimeError):
            state_home({})
        return
    assert state_home({}) == expected
    assert config_file(None, {}) == str(Path(expected) / "config.toml")
