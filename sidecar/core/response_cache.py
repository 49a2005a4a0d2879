"""The response cache's pure parts: which requests may be cached, the key of a request, and the
stream events that replay a cached answer.

- Opt-in. A request's `response_cache: {ttl_s}` caches it whatever its sampling; an endpoint's or
  provider's `response_cache_ttl_s` in config.toml caches only requests whose temperature is 0
  (a sampled answer is meant to differ each time). `ttl_s = 0` on a request turns it off.
- The key is a SHA-256 of the normalised request: provider, model, messages, tools, tool choice,
  every sampling setting and the response format, as canonical JSON (sorted keys). Tags, run ids,
  fallbacks and timeouts do not change the answer, so they are not in it.

Must not know: I/O, where entries are stored, the protocol.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from sidecar.core.models import ModelRef
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageEvent,
)

_REPLAY_CHUNK = 24


def ttl_for(params: CompleteParams, configured_ttl_s: float | None) -> float | None:
    """How long this request's answer may be kept, or None when it is not cached."""
    asked = params.response_cache
    if asked is not None:
        return asked.ttl_s if asked.ttl_s > 0 else None
    if configured_ttl_s and params.temperature == 0:
        return configured_ttl_s
    return None


def key(ref: ModelRef, params: CompleteParams) -> str:
    normal: dict[str, Any] = {
        "provider": ref.provider,
        "model": ref.model,
        "messages": msgspec.to_builtins(params.messages),
        "tools": msgspec.to_builtins(params.tools) if params.tools else None,
        "tool_choice": msgspec.to_builtins(params.tool_choice),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop": [params.stop] if isinstance(params.stop, str) else params.stop,
        "reasoning": msgspec.to_builtins(params.reasoning),
    }
    if params.response_format is not None:  # only when asked: the keys of other requests stay
        normal["response_format"] = msgspec.to_builtins(params.response_format)
    canonical = msgspec.json.encode(normal, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def replay_events(result: ChatResult) -> list[StreamEvent]:
    """The stream events a live stream of `result` would have carried: thinking, text and tool-call
    deltas in pieces, then usage."""
    events: list[StreamEvent] = []
    if result.thinking:
        events.extend(ThinkingDelta(text=p) for p in _pieces(result.thinking))
    events.extend(TextDelta(text=p) for p in _pieces(result.text))
    for index, call in enumerate(result.tool_calls):
        arguments = call.raw_arguments or msgspec.json.encode(call.arguments).decode()
        events.append(ToolCallDelta(index=index, id=call.id, name=call.name, arguments_delta=""))
        events.extend(ToolCallDelta(index=index, arguments_delta=p) for p in _pieces(arguments))
    u = result.usage
    events.append(
        UsageEvent(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
        )
    )
    return events


def _pieces(text: str) -> list[str]:
    return [text[i : i + _REPLAY_CHUNK] for i in range(0, len(text), _REPLAY_CHUNK)]
