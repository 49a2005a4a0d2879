"""The base of every wire type, and the shared payloads (errors, usage) several method groups use.

Wire types are msgspec Structs: keyword-only, defaults omitted on output. New fields always get
defaults so an older host keeps working. What a host sends (every method's params and the structs
inside them) derives from `Params`, which refuses unknown fields: a misspelt `max_token` or a
`key` meant as `api_key` is answered -32602 naming the field, instead of being silently ignored.
What the sidecar sends (results, notifications) stays permissive for clients that decode it with
these types. Free-form values keep their own type (`dict[str, Any]`: a tool's `parameters` JSON
Schema, a tool call's `arguments`, a message's `continuation`), which any keys fit. They are treated as
immutable (`msgspec.structs.replace` makes changed copies) but not declared `frozen`: mypy reads
msgspec's dataclass transform per class, so a frozen base would force `frozen=True` on every
subclass for strict type checking to pass, for no gain at run time.

Must not know: anything else in the package.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every params, result, event and error payload."""


class Params(Wire, forbid_unknown_fields=True):
    """Base of everything a host sends: unknown fields are refused (-32602, naming the field)."""


class Empty(Params):
    """Params of a method that takes none: `{}` or no params at all; any field is refused."""


class ErrorData(Wire):
    """`error.data` of every non-protocol error, and the `error` of a `valid: false` key check."""

    kind: str
    message: str
    provider: str | None = None
    retry_after_s: float | None = None
    field: str | None = None
    details: dict[str, Any] | None = None
    status: int | None = None  # the upstream's HTTP status, when an upstream answered


class Usage(Wire):
    """Token counts with one meaning for every provider.

    `input_tokens` counts every prompt token, cached or not (cache reads and writes included);
    `output_tokens` counts every generated token, reasoning included. The other three break
    those totals down and are never added to them again.
    """

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


ZERO_USAGE = Usage(
    input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
)
