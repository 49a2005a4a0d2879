"""Where this process keeps its state and reads its configuration, as text, without pathlib.

A host's first request (`info`) names both, and is answered before anything that start-up does not
need is imported (`sidecar.rpc.early`): pathlib brings urllib.parse, ipaddress and fnmatch, a tenth
of the time to that answer. So the two paths are worked out here with `os.path`, spelled exactly as
`str(pathlib.Path(...))` spells them (`config.state_dir` and the services take `Path`s built from
them later).

Must not know: the configuration's contents, the protocol.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Final

CONFIG_NAME: Final = "config.toml"
APP_NAME: Final = "llm-sidecar"


def state_home(env: Mapping[str, str] | None = None) -> str:
    """`SIDECAR_HOME` (with `~` expanded), else the OS's per-user data directory."""
    env = os.environ if env is None else env
    home = env.get("SIDECAR_HOME")
    if home:
        return _as_path(home, expand_user=True)
    return _as_path(_linux_data_dir() or _platform_data_dir())


def _platform_data_dir() -> str:
    import platformdirs

    return platformdirs.user_data_dir(APP_NAME, appauthor=False)


def _linux_data_dir() -> str | None:
    """platformdirs' answer on Linux in the usual cases (an absolute `XDG_DATA_HOME`, else an
    absolute `HOME`), without importing it (with shutil, tempfile, random and pathlib: a fifth of
    the early answer); None for every other case, which platformdirs settles."""
    if sys.platform != "linux" or hasattr(sys, "getandroidapilevel"):
        return None
    environ = os.environ  # platformdirs reads the process's environment, whatever `env` says
    if environ.get("ANDROID_DATA") == "/data" and environ.get("ANDROID_ROOT") == "/system":
        return None
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, APP_NAME)
    if environ.get("HOME", "").startswith("/"):
        return os.path.join(os.path.expanduser("~/.local/share"), APP_NAME)
    return None


def config_file(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> str:
    """`path` (given with `--config`), else `config.toml` in the state directory."""
    if path is not None:
        return _as_path(os.fspath(path))
    home = state_home(env)
    return _as_path(home + CONFIG_NAME if home.endswith("/") else home + "/" + CONFIG_NAME)


def _as_path(text: str, *, expand_user: bool = False) -> str:
    """`str(Path(text))` (after `Path.expanduser()` when `expand_user`), on POSIX without pathlib:
    empty and `.` parts dropped, a leading `//` kept as it is, any other run of leading slashes one."""
    if os.name != "posix":
        from pathlib import Path

        path = Path(text)
        return str(path.expanduser() if expand_user else path)
    if expand_user and text[:1] == "~":
        first, sep, rest = text.partition("/")
        home = os.path.expanduser(first)
        if home[:1] == "~":
            raise RuntimeError("Could not determine home directory.")  # as pathlib says it
        text = home + sep + rest
    stripped = text.lstrip("/")
    root = "//" if len(text) - len(stripped) == 2 else "/" if text != stripped else ""
    parts = [part for part in stripped.split("/") if part and part != "."]
    return root + "/".join(parts) if parts or root else "."
