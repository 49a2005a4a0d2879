"""A fake Ollama server (native API) on 127.0.0.1, faithful to Ollama's API reference (docs/api.md).

What it is for: the sidecar's Ollama provider and local-model methods, and the official ``ollama``
Python client, talk to ``FakeOllama().url`` as they would to ``ollama serve``. Answers come from the
shared deterministic model (``behaviour.py``); state is kept like the real server keeps it:

* ``installed``: models ``/api/tags`` lists. A successful ``/api/pull`` adds the model (when its
  ``success`` line is sent, so a cancelled pull installs nothing); ``/api/delete`` removes it.
  ``/api/chat`` with a model that is not installed is ``404 {"error":"model 'x' not found"}``
  and a chat loads the model, so ``/api/ps`` lists it.
* ``library``: models ``/api/pull`` can download (by default the recommendation catalog plus a
  few small ones), each with layers. A pull streams ``pulling manifest``, then per layer
  ``pulling <digest[7:19]>`` with ``total`` and then ``progress_lines`` cumulative ``completed``
  figures (the last equals ``total``), paced by ``pull_delay_s`` (``Pause`` parts, so a client that
  goes away is noticed at once), then ``verifying sha256 digest``, ``writing manifest``,
  ``success``. ``interleave=True`` reports all layers round-robin, as parallel downloads do.
  An unknown name: ``pulling manifest`` then ``{"error":"pull model manifest: file does not exist"}``
  in the 200 stream. ``pull_errors[name] = message`` fails a known model after its first layer.
* ``/api/chat``: NDJSON (``application/x-ndjson``, one object per line, no blank lines) when
  ``stream`` is absent or true, one JSON object when false. ``think`` (true or a level) streams
  ``message.thinking`` before the content; a tool call is one line with the whole call
  (``arguments`` an object; ``tool_call_ids`` adds ``id`` as recent Ollama versions do); the last
  line has ``done: true``, ``done_reason`` and the metrics. ``chat_error_after = n`` replaces the
  rest of the stream after ``n`` content lines with an ``{"error": ...}`` line (HTTP status 200).
  ``edit_chat`` may rewrite the parts of a generated stream (insert ``Pause``/``Stall``/``Abort``).
* ``GET /api/version``, ``GET /api/ps``, ``GET /`` ("Ollama is running"); an unknown route is
  gin's ``404 page not found`` (text/plain).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.core.recommend import CATALOG
from tests.fakes import embeddings
from tests.fakes.behaviour import Conversation, Plan, ToolCall, Turn, plan, stable_hex
from tests.fakes.http import (
    FakeUpstream,
    Part,
    Pause,
    RecordedRequest,
    Reply,
    json_reply,
    ndjson_reply,
    paced_whole,
    text_reply,
)

__all__ = [
    "FakeOllama",
    "LibraryModel",
    "default_library",
    "normalize",
]

Json = dict[str, Any]
VERSION = "0.12.6"
NOT_FOUND_PULL = "pull model manifest: file does not exist"
RUN_ERROR = "an error was encountered while running the model"


def normalize(name: str) -> str:
    """Ollama's name matching: case-insensitive, ``:latest`` when no tag is given."""
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _digest(*parts: str) -> str:
    return "sha256:" + stable_hex(*parts, length=64)


@dataclass(frozen=True)
class LibraryModel:
    """A model the fake registry serves: name, details and its layers as (digest, size)."""

    name: str
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization: str = "Q4_K_M"
    layers: tuple[tuple[str, int], ...] = ()

    @property
    def size(self) -> int:
        return sum(size for _, size in self.layers)

    @property
    def manifest_digest(self) -> str:
        return stable_hex("manifest", self.name, length=64)


def _model(
    name: str, family: str, params: str, quant: str = "Q4_K_M", weights: int = 2_019_377_376
) -> LibraryModel:
    layers = (
        (_digest(name, "weights"), weights),
        (_digest(name, "template"), 1_429),
        (_digest(name, "license"), 7_711),
        (_digest(name, "params"), 96),
    )
    return LibraryModel(normalize(name), family, params, quant, layers)


def default_library() -> dict[str, LibraryModel]:
    """Every model of the recommendation catalog (with its aliases) plus two small extras."""
    models: dict[str, LibraryModel] = {}
    for entry in CATALOG:
        family = entry.name.split(":")[0].rstrip("0123456789.").rstrip("-") or "llama"
        item = _model(entry.name, family, entry.parameter_size, entry.quantization, entry.download_bytes)
        for name in (entry.name, *entry.aliases):
            models[normalize(name)] = LibraryModel(
                normalize(name), item.family, item.parameter_size, item.quantization, item.layers
            )
    for name, family, params in (("tinyllama:latest", "llama", "1.1B"), ("smollm2:135m", "llama", "134.52M")):
        models[normalize(name)] = _model(name, family, params, weights=91_000_000)
    return models


@dataclass
class _Installed:
    model: LibraryModel
    modified_at: str


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="microseconds")


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# --- request -> Conversation ------------------------------------------------------------------------


def _thinks(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value not in ("", "false", "none"))


def conversation_from_chat(body: Json) -> Conversation:
    system: list[str] = []
    turns: list[Turn] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        text = str(message.get("content") or "")
        if role == "system":
            system.append(text)
        elif role == "user":
            turns.append(Turn("user", text))
        elif role == "assistant":
            calls = tuple(
                ToolCall(
                    str(c.get("id", "")),
                    str(c["function"]["name"]),
                    dict(c["function"].get("arguments") or {}),
                )
                for c in message.get("tool_calls") or []
            )
            turns.append(Turn("assistant", text, tool_calls=calls))
        elif role == "tool":
            turns.append(Turn("tool", tool_result=text, tool_call_id=message.get("tool_call_id")))
    tools = [
        str(t["function"]["name"]) for t in body.get("tools") or [] if isinstance(t.get("function"), dict)
    ]
    options = body.get("options") or {}
    num_predict = options.get("num_predict")
    fmt = body.get("format")
    return Conversation(
        system="\n".join(system) if system else None,
        turns=turns,
        tools=tools,
        want_reasoning=_thinks(body.get("think")),
        max_tokens=num_predict if isinstance(num_predict, int) and num_predict > 0 else None,
        json_schema=fmt if isinstance(fmt, dict) else None,
        json_mode=fmt == "json",
    )


def _chat_problem(body: Any) -> str | None:
    """Why Ollama answers 400 (None when the body is fine)."""
    if not isinstance(body, dict):
        return "missing request body"
    if not body.get("model"):
        return "model is required"
    fmt = body.get("format")
    if fmt is not None and fmt != "json" and fmt != "" and not isinstance(fmt, dict):
        return f'invalid format: expected "json" or a valid JSON schema, got {json.dumps(fmt)}'  # assumed wording
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "tool",
        ):
            return "invalid message role"
        for image in message.get("images") or []:
            try:
                base64.b64decode(str(image), validate=True)
            except (binascii.Error, ValueError):
                return "illegal base64 data at input byte 0"
        for call in message.get("tool_calls") or []:
            args = (call.get("function") or {}).get("arguments")
            if not isinstance(args, dict):
                return (
                    "json: cannot unmarshal string into Go struct field "
                    "ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments"
                )
    return None


class FakeOllama(FakeUpstream):
    """A fake ``ollama serve`` (see the module docstring)."""

    def __init__(
        self,
        *,
        installed: Sequence[str] = ("llama3.2:latest",),
        library: dict[str, LibraryModel] | None = None,
        behaviour: Callable[[Conversation], Plan] = plan,
        progress_lines: int = 8,
        pull_delay_s: float = 0.0,
        interleave: bool = False,
        chunk_delay_s: float = 0.0,
        tool_call_ids: bool = False,
        version: str = VERSION,
    ) -> None:
        super().__init__()
        self.library = library if library is not None else default_library()
        self.behaviour = behaviour
        self.progress_lines = progress_lines
        self.pull_delay_s = pull_delay_s
        self.interleave = interleave
        self.chunk_delay_s = chunk_delay_s
        self.tool_call_ids = tool_call_ids
        self.version = version
        self.pull_errors: dict[str, str] = {}
        self.chat_error_after: int | None = None
        self.edit_chat: Callable[[list[Part]], list[Part]] | None = None
        self.loaded: dict[str, str] = {}  # name -> expires_at
        self.pull_lines_sent: list[Json] = []  # every pull line written, for assertions
        self._state = threading.Lock()
        self._installed: dict[str, _Installed] = {}
        for name in installed:
            self.install(name)
        self.route("GET", "/", lambda req: text_reply(200, "Ollama is running"))
        self.route("HEAD", "/", lambda req: text_reply(200, "Ollama is running"))
        self.route("GET", "/api/version", lambda req: json_reply(200, {"version": self.version}))
        self.route("GET", "/api/tags", self._tags)
        self.route("GET", "/api/ps", self._ps)
        self.route("DELETE", "/api/delete", self._delete)
        self.route("POST", "/api/pull", self._pull)
        self.route("POST", "/api/chat", self._chat)
        self.route("POST", "/api/embed", self._embed)

    # -- state

    def install(self, name: str) -> None:
        key = normalize(name)
        model = self.library.get(key) or _model(key, "llama", "3.2B")
        with self._state:
            self._installed[key] = _Installed(model, _now_iso())

    @property
    def installed(self) -> list[str]:
        with self._state:
            return list(self._installed)

    def pull_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/api/pull"]

    def not_found(self, req: RecordedRequest) -> Reply:
        return text_reply(404, "404 page not found")

    @staticmethod
    def _body(req: RecordedRequest) -> Any:
        try:
            return req.json()
        except ValueError:
            return None

    # -- listing

    def _tags(self, req: RecordedRequest) -> Reply:
        with self._state:
            entries = list(self._installed.items())
        return json_reply(200, {"models": [self._tag(name, item) for name, item in entries]})

    @staticmethod
    def _details(model: LibraryModel) -> Json:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": model.quantization,
        }

    def _tag(self, name: str, item: _Installed) -> Json:
        return {
            "name": name,
            "model": name,
            "modified_at": item.modified_at,
            "size": item.model.size,
            "digest": item.model.manifest_digest,
            "details": self._details(item.model),
        }

    def _ps(self, req: RecordedRequest) -> Reply:
        with self._state:
            running = [
                (name, self._installed[name], exp)
                for name, exp in self.loaded.items()
                if name in self._installed
            ]
        models = [
            {
                "name": name,
                "model": name,
                "size": item.model.size + 500_000_000,
                "digest": item.model.manifest_digest,
                "details": self._details(item.model),
                "expires_at": expires,
                "size_vram": 0,
                "context_length": 4096,
            }
            for name, item, expires in running
        ]
        return json_reply(200, {"models": models})

    def _delete(self, req: RecordedRequest) -> Reply:
        body = self._body(req)
        if not isinstance(body, dict):
            return json_reply(400, {"error": "missing request body"})
        name = body.get("model") or body.get("name")
        if not name:
            return json_reply(400, {"error": "model is required"})
        with self._state:
            removed = self._installed.pop(normalize(name), None)
            self.loaded.pop(normalize(name), None)
        if removed is None:
            return json_reply(404, {"error": f"model '{name}' not found"})
        return Reply(status=200, headers={"content-type": "application/json; charset=utf-8"}, body=b"")

    # -- pull

    def _pull(self, req: RecordedRequest) -> Reply:
        body = self._body(req)
        if not isinstance(body, dict):
            return json_reply(400, {"error": "missing request body"})
        name = body.get("model") or body.get("name")
        if not name:
            return json_reply(400, {"error": "model is required"})
        if body.get("stream") is False:
            return self._pull_whole(str(name))
        return Reply(
            status=200, headers={"content-type": "application/x-ndjson"}, chunks=self._pull_stream(str(name))
        )

    def _pull_whole(self, name: str) -> Reply:
        model = self.library.get(normalize(name))
        if model is None:
            return json_reply(500, {"error": NOT_FOUND_PULL})
        self.install(name)
        return json_reply(200, {"status": "success"})

    def _emit(self, obj: Json) -> bytes:
        with self._state:
            self.pull_lines_sent.append(obj)
        return _dumps(obj)

    def _layer_lines(self, digest: str, size: int) -> list[Json]:
        status = f"pulling {digest[7:19]}"
        lines: list[Json] = [{"status": status, "digest": digest, "total": size}]
        steps = max(1, self.progress_lines)
        lines += [
            {"status": status, "digest": digest, "total": size, "completed": size * (i + 1) // steps}
            for i in range(steps)
        ]
        return lines

    def _pull_stream(self, name: str) -> Iterator[Part]:
        yield self._emit({"status": "pulling manifest"})
        model = self.library.get(normalize(name))
        if model is None:
            yield self._emit({"error": NOT_FOUND_PULL})
            return
        per_layer = [self._layer_lines(d, s) for d, s in model.layers]
        if self.interleave:
            order = [line for group in _round_robin(per_layer) for line in group]
        else:
            order = [line for lines in per_layer for line in lines]
        failure = self.pull_errors.get(normalize(name))
        first_layer = len(per_layer[0]) if per_layer else 0
        for i, line in enumerate(order):
            if failure is not None and i == first_layer:
                yield self._emit({"error": failure})
                return
            if self.pull_delay_s and i:
                yield Pause(self.pull_delay_s)
            yield self._emit(line)
        for status in ("verifying sha256 digest", "writing manifest"):
            yield self._emit({"status": status})
        self.install(name)
        yield self._emit({"status": "success"})

    # -- embeddings

    def _embed(self, req: RecordedRequest) -> Reply:
        """``/api/embed``: ``input`` a string or a list; the model must be installed; answers
        ``{"model", "embeddings": [[...]], "total_duration", "load_duration", "prompt_eval_count"}``."""
        body = self._body(req)
        name = str(body.get("model", ""))
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            return json_reply(400, {"error": "invalid input type"})
        with self._state:
            known = normalize(name) in self._installed
        if not known:
            return json_reply(404, {"error": f"model '{name}' not found"})
        dims = int(body.get("dimensions") or embeddings.DIMENSIONS)
        return json_reply(200, {"model": name, "embeddings": [embeddings.vector(t, dims) for t in inputs],
                                "total_duration": 14143917, "load_duration": 1019500,
                                "prompt_eval_count": sum(embeddings.tokens(t) for t in inputs)})  # fmt: skip

    # -- chat

    def _chat(self, req: RecordedRequest) -> Reply:
        body = self._body(req)
        problem = _chat_problem(body)
        if problem is not None:
            return json_reply(400, {"error": problem})
        name = str(body["model"])
        key = normalize(name)
        with self._state:
            known = key in self._installed
            if known:
                expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
                self.loaded[key] = expires.astimezone().isoformat(timespec="microseconds")
        if not known:
            return json_reply(404, {"error": f"model '{name}' not found"})
        answer = self.behaviour(conversation_from_chat(body))
        if body.get("stream", True) is False:
            whole = json_reply(200, self._whole(name, answer))
            return paced_whole(whole, lambda: self._lines(name, answer), self.chunk_delay_s)
        parts: list[Part] = [_dumps(line) for line in self._lines(name, answer)]
        if self.edit_chat is not None:
            parts = self.edit_chat(parts)
        return ndjson_reply(parts, delay_s=self.chunk_delay_s)

    def _call(self, call: ToolCall) -> Json:
        out: Json = {"function": {"index": 0, "name": call.name, "arguments": call.arguments}}
        if self.tool_call_ids:
            out = {"id": call.id, **out}
        return out

    @staticmethod
    def _metrics(answer: Plan) -> Json:
        return {
            "total_duration": 182_242_375,
            "load_duration": 41_295_167,
            "prompt_eval_count": answer.input_tokens,
            "prompt_eval_duration": 24_573_166,
            "eval_count": answer.output_tokens,
            "eval_duration": 115_959_084,
        }

    def _line(self, name: str, message: Json, **extra: Any) -> Json:
        return {"model": name, "created_at": _now_iso(), "message": {"role": "assistant", **message}, **extra}

    def _lines(self, name: str, answer: Plan) -> list[Json]:
        content: list[Json] = [
            self._line(name, {"content": "", "thinking": piece}, done=False)
            for piece in answer.thinking_pieces
        ]
        content += [self._line(name, {"content": piece}, done=False) for piece in answer.text_pieces]
        if answer.tool_call is not None:
            content.append(
                self._line(name, {"content": "", "tool_calls": [self._call(answer.tool_call)]}, done=False)
            )
        if self.chat_error_after is not None:
            return [*content[: self.chat_error_after], {"error": RUN_ERROR}]
        reason = "length" if answer.finish == "length" else "stop"
        final = self._line(name, {"content": ""}, done=True, done_reason=reason, **self._metrics(answer))
        return [*content, final]

    def _whole(self, name: str, answer: Plan) -> Json:
        message: Json = {"content": answer.text}
        if answer.thinking:
            message["thinking"] = answer.thinking
        if answer.tool_call is not None:
            message["tool_calls"] = [self._call(answer.tool_call)]
        reason = "length" if answer.finish == "length" else "stop"
        return self._line(name, message, done=True, done_reason=reason, **self._metrics(answer))


def _round_robin(groups: list[list[Json]]) -> Iterator[list[Json]]:
    """One line of each layer in turn (parallel downloads interleave their progress)."""
    longest = max((len(g) for g in groups), default=0)
    for i in range(longest):
        yield [g[i] for g in groups if i < len(g)]
