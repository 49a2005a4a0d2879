"""Redaction remembers a bounded set of secrets: the most recent ones, plus pinned ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import redact


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    saved = (redact._recent.copy(), set(redact._pinned), redact._snapshot)
    redact._recent.clear()
    redact._pinned.clear()
    redact._snapshot = ()
    yield
    redact._recent.clear()
    redact._recent.update(saved[0])
    redact._pinned.clear()
    redact._pinned.update(saved[1])
    redact._snapshot = saved[2]


def _secret(i: int) -> str:
    return f"zz-secret-{i:08d}-tail"


def test_only_the_most_recent_secrets_are_kept() -> None:
    for i in range(redact.MAX_REMEMBERED * 3):
        redact.remember(_secret(i))
    assert redact.remembered_count() == redact.MAX_REMEMBERED
    newest = _secret(redact.MAX_REMEMBERED * 3 - 1)
    assert newest not in redact.redact(f"said {newest}")
    oldest = _secret(0)
    assert oldest in redact.redact(f"said {oldest}")  # forgotten (it was not used again)


def test_a_secret_in_use_stays_and_a_pinned_one_is_never_dropped() -> None:
    pinned, used = "zz-pinned-secret-0001", "zz-in-use-secret-0002"
    redact.remember(pinned, pin=True)
    redact.remember(used)
    for i in range(redact.MAX_REMEMBERED * 2):
        redact.remember(_secret(i))
        redact.remember(used)  # every read of a key remembers it again
    text = redact.redact(f"{pinned} / {used}")
    assert pinned not in text and used not in text


def test_a_secret_containing_another_is_masked_whole() -> None:
    short, long = "zz-abcdefgh", "zz-abcdefgh-and-more-0123"
    redact.remember(short)
    redact.remember(long)
    assert redact.redact(f"x {long} y") == f"x {redact.mask(long)} y"


_PIECES = (
    "sk-",
    "sk",
    "xai-",
    "AIza",
    "gsk_",
    "Bearer ",
    "bearer ",
    "?key=",
    "&key=",
    "ke",
    "***",
    "-",
    "_",
    ".",
    " ",
    "=",
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(alphabet="aZ09-_.*? =&", max_size=24)), max_size=12)
)
def test_the_marker_screen_never_skips_a_key_shape(parts: list[str]) -> None:
    """`redact` skips the key-shape regex for a text without any of its markers: it must give what
    the regex alone gives, whatever the text."""
    text = "".join(parts)
    expected = redact._key_shapes().sub(lambda m: redact.mask(m.group(0)), text)
    assert redact.redact(text) == expected


def test_key_shapes_are_masked_with_and_without_markers_elsewhere() -> None:
    key = "sk-proj-" + "A1b2C3d4" * 4
    assert key not in redact.redact(f'{{"model":"openai:gpt-4o","note":"{key}"}}')
    assert "abcdefghijklmnop" not in redact.redact("Authorization: Bearer abcdefghijklmnop")
    line = (
        '{"ts":"2026-01-02T03:04:05.678Z","request_id":"gw-1","client":"bench","model":"openai:gpt-4o-mini"}'
    )
    assert redact.redact(line) == line
