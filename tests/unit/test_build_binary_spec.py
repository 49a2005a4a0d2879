"""scripts/build_binary.py's edit of the spec file PyInstaller writes: the one-folder build keeps
its modules as files, both builds leave out the runtime hooks the sidecar does not need, and a spec
file of another shape stops the build instead of building something else."""

from __future__ import annotations

import pytest

from scripts.build_binary import DROPPED_RUNTIME_HOOKS, SpecError, edit_spec

# The part of a spec file `pyi-makespec` writes (PyInstaller 6) that the edit is about.
SPEC = """a = Analysis(
    ['sidecar/__main__.py'],
    runtime_hooks=[],
    noarchive=False,
    optimize=0,
)
pyz = PYZ(a.pure)
exe = EXE(pyz, a.scripts, [], name='llm-sidecar')
"""


class _Analysis:
    """Stands in for PyInstaller's Analysis when the edited spec is run: its runtime hooks and
    the main script, as PyInstaller lists them in `scripts`."""

    def __init__(self, *_: object, noarchive: bool, **__: object) -> None:
        self.noarchive = noarchive
        self.scripts = [
            ("pyi_rth_inspect", "inspect.py", "PYSOURCE"),
            ("pyi_rth_multiprocessing", "mp.py", "PYSOURCE"),
            ("pyi_rth_pkgutil", "pkgutil.py", "PYSOURCE"),
            ("__main__", "sidecar/__main__.py", "PYSOURCE"),
        ]
        self.pure: list[object] = []


def _run(spec: str) -> dict[str, object]:
    built: dict[str, object] = {}
    names = {
        "Analysis": _Analysis,
        "PYZ": lambda pure: ("pyz", pure),
        "EXE": lambda pyz, scripts, *_, **__: built.setdefault("scripts", [s[0] for s in scripts]),
    }
    exec(compile(spec, "spec", "exec"), names)
    built["noarchive"] = names["a"].noarchive  # type: ignore[attr-defined]
    return built


def test_the_one_folder_build_keeps_modules_as_files_and_drops_the_hooks() -> None:
    built = _run(edit_spec(SPEC, onefile=False))
    assert built["noarchive"] is True
    assert built["scripts"] == ["pyi_rth_inspect", "__main__"]
    assert set(DROPPED_RUNTIME_HOOKS) == {"pyi_rth_multiprocessing", "pyi_rth_pkgutil"}


def test_the_one_file_build_keeps_its_archive_and_drops_the_hooks() -> None:
    # A one-file build unpacks whatever it holds at every start: thousands of module files would
    # cost more than the archive saves.
    built = _run(edit_spec(SPEC, onefile=True))
    assert built["noarchive"] is False
    assert built["scripts"] == ["pyi_rth_inspect", "__main__"]


@pytest.mark.parametrize("missing", ["noarchive=False,", "pyz = PYZ(a.pure)"])
def test_a_spec_of_another_shape_stops_the_build(missing: str) -> None:
    with pytest.raises(SpecError, match="no single"):
        edit_spec(SPEC.replace(missing, ""), onefile=False)
