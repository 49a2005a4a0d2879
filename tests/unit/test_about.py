"""`info`'s answer: the same object while nothing in it changes (the stdio face reuses its
encoding), a new one when something does, and never one changed after it was returned."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sidecar import logs
from sidecar.services.about import AboutService
from sidecar.wire.base import Empty
from sidecar.wire.methods import METHODS


def test_info_is_the_same_object_until_the_log_level_changes(tmp_path: Path) -> None:
    assert METHODS["info"].same_result  # what lets the stdio face reuse the encoding
    about = AboutService({"SIDECAR_HOME": str(tmp_path)})
    saved = dict(logs._state)
    logs.configure("warning")
    try:
        first = about.describe()
        assert about.describe() is first and first.log_level == "warning"
        logs.configure("debug")
        second = about.describe()
        assert second is not first and second.log_level == "debug"
        assert first.log_level == "warning"  # the object already returned is left as it was
        assert about.describe() is second
        assert asyncio.run(about.info(Empty(), None)) is second  # type: ignore[arg-type]  # unused
        logs.configure("error")
        third = asyncio.run(about.info(Empty(), None))  # type: ignore[arg-type]
        assert third.log_level == "error" and about.describe() is third and second.log_level == "debug"
        assert (second.state_dir, second.config_path) == (str(tmp_path), str(tmp_path / "config.toml"))
    finally:
        logs._state.update(saved)
