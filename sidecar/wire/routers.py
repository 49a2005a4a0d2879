"""Wire types of routers: `router_list`, `router_set`, `router_delete`, `router_preview`.

Must not know: how candidates are ranked, where routers are stored, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sidecar.config import RouterSettings
from sidecar.wire.base import Params, Wire
from sidecar.wire.chat import Message, Reasoning, Tool

RouterName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class RouterInfo(Wire):
    """`source`: `builtin` (cheapest, best), `config` (config.toml, read-only here) or `stored`
    (made with router_set)."""

    name: str
    source: Literal["builtin", "config", "stored"]
    settings: RouterSettings


class RouterListResult(Wire):
    routers: list[RouterInfo]


class RouterSetParams(Params):
    name: RouterName
    settings: RouterSettings


class RouterSetResult(Wire):
    router: RouterInfo


class RouterDeleteParams(Params):
    name: str


class RouterDeleteResult(Wire):
    deleted: bool


class RouterPreviewRequest(Params):
    """What a request would need: tools, images in its messages, reasoning."""

    messages: list[Message] | None = None
    tools: list[Tool] | None = None
    reasoning: Reasoning | None = None


class RouterPreviewParams(Params):
    router: str
    request: RouterPreviewRequest | None = None


class RouterCandidate(Wire):
    """One candidate in the order it would be tried; `available` false says why in `unavailable_because`."""

    position: int
    model: str
    provider: str
    why: str
    available: bool
    unavailable_because: str | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None


class RouterPreviewResult(Wire):
    router: str
    candidates: list[RouterCandidate]
    chosen: str | None = None
