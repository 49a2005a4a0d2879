"""A direct request's head (`pool._head`) is byte for byte what aiohttp's own serialization of the
same headers gives, the first time and from the per-target cache alike."""

from __future__ import annotations

import pytest
from aiohttp.http_writer import _serialize_headers
from multidict import CIMultiDict

from sidecar.providers import pool

LINE = "POST /v1/chat/completions HTTP/1.1"
DEFAULTS = CIMultiDict(
    {
        "Host": "127.0.0.1:9",
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "llm-sidecar/1",
    }
)


def _aiohttp_head(headers: dict[str, str], length: int) -> bytes:
    head = DEFAULTS.copy()
    head.update(headers)
    if "Content-Type" not in head:
        head["Content-Type"] = "application/octet-stream"
    head["Content-Length"] = str(length)
    return _serialize_headers(LINE, head)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-x", "accept": "text/event-stream", "content-type": "application/json"},
        {"User-Agent": "mine", "x-extra": "1"},
        {"content-length": "999", "content-type": "application/json"},
    ],
)
def test_the_head_is_aiohttps_for_any_headers_and_any_length(headers: dict[str, str]) -> None:
    heads: dict[tuple[tuple[str, str], ...], bytes] = {}
    for length in (0, 7, 123_456, 7):
        assert pool._head(LINE, DEFAULTS, heads, headers, length) == _aiohttp_head(headers, length)


def test_heads_are_kept_per_set_of_headers_up_to_a_bound() -> None:
    heads: dict[tuple[tuple[str, str], ...], bytes] = {}
    for i in range(pool._HEADS_MAX + 10):
        headers = {"authorization": f"Bearer key-{i}"}
        assert pool._head(LINE, DEFAULTS, heads, headers, 5) == _aiohttp_head(headers, 5)
    assert len(heads) == pool._HEADS_MAX


def test_a_header_injection_is_refused_as_aiohttp_refuses_it() -> None:
    with pytest.raises(ValueError):
        pool._head(LINE, DEFAULTS, {}, {"x-bad": "a\r\nInjected: yes"}, 3)
