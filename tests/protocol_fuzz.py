"""A seeded generator of protocol input, each case with what its answer must be.

`Fuzzer(seed)` makes `Case`s: the bytes to send (one line, or LSP frames are built by the caller)
and an `Expect` for every answer the sidecar owes: the id (or None for an id it cannot know), and
a check of the answer. Cases cover:

- every method of `METHODS` with params generated from its wire type (valid by type, so any answer
  but a protocol fault is fine), with an unknown field put into one of its objects (-32602 naming
  that exact path), with a field of the wrong type (-32602 naming the field), or with params that
  are not an object (-32602);
- raw bytes: depth bombs (valid: -32600 with the id; truncated: -32700), huge ids (echoed) and ids
  too long for any integer (-32600), invalid UTF-8 and NUL bytes (-32700), text that is not JSON,
  JSON that is no request, notifications and responses in place of requests (no answer), and
  batches of all of these (one array);
- the MCP face: `tools/call` of every tool with generated or broken arguments (an `isError` result
  naming the field), `ping` and `tools/list` with params that are not objects (-32602).

Request ids are unique per fuzzer (`f<n>` strings, or integers), so "exactly one answer per id"
can be checked on the whole output.

Must not know: how the output is read (tests/e2e and tests/unit drive it).
"""

from __future__ import annotations

import itertools
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msgspec import inspect as mi

from sidecar.wire.methods import METHODS

Check = Callable[[dict[str, Any]], str | None]  # None when the answer is right, else why not

PROTOCOL_CODES = {-32700, -32600, -32601, -32602, -32603}
ALPHABET = string.ascii_letters + string.digits + ' _-:/.é漢🙂"\\\n\t'


@dataclass
class Expect:
    id: Any  # None: an answer with id null
    check: Check
    what: str


@dataclass
class Case:
    data: bytes
    expects: list[Expect] = field(default_factory=list)
    batch_ids: list[Any] | None = None  # a batch: the ids its one array must hold
    what: str = ""


def error_code(code: int) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        got = answer.get("error", {}).get("code")
        return None if got == code else f"expected error {code}, got {answer}"

    return check


def invalid_params_at(path: str) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        error = answer.get("error") or {}
        if error.get("code") != -32602 or (error.get("data") or {}).get("field") != path:
            return f"expected -32602 naming {path}, got {answer}"
        return None

    return check


def not_a_protocol_fault(answer: dict[str, Any]) -> str | None:
    """Params valid by type: a result, or an error the method reports (with its kind)."""
    if "result" in answer:
        return None
    error = answer.get("error") or {}
    kind = (error.get("data") or {}).get("kind")
    if error.get("code") == -32603 or kind == "internal_error":
        return f"internal error: {answer}"
    if error.get("code") in PROTOCOL_CODES and kind != "invalid_request":
        return f"a protocol fault for params valid by type: {answer}"
    return None if kind else f"an error without a kind: {answer}"


def tool_error_at(path: str) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        result = answer.get("result") or {}
        if not result.get("isError"):
            return f"expected an isError result naming {path}, got {answer}"
        body = json.loads(result["content"][0]["text"])["error"]
        return None if body.get("field") == path else f"expected field {path}, got {body}"

    return check


def tool_answered(answer: dict[str, Any]) -> str | None:
    result = answer.get("result")
    if not isinstance(result, dict) or "content" not in result:
        return f"expected a CallToolResult, got {answer}"
    if result.get("isError"):
        kind = json.loads(result["content"][0]["text"])["error"].get("kind")
        if kind == "internal_error":
            return f"internal error: {answer}"
    return None


def any_answer(answer: dict[str, Any]) -> str | None:
    return None if ("result" in answer) != ("error" in answer) else f"not an answer: {answer}"


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._ids = itertools.count(1)
        self.methods = sorted(METHODS)

    # --- ids and plain values -----------------------------------------------------------------

    def new_id(self) -> int | str:
        n = next(self._ids)
        return n if self.rng.random() < 0.4 else f"f{n}"

    def text(self, max_len: int = 12) -> str:
        return "".join(self.rng.choice(ALPHABET) for _ in range(self.rng.randint(0, max_len)))

    def json_value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 3 or r < 0.5:
            return self.rng.choice([None, True, False, self.rng.randint(-(10**6), 10**6), 1.5, self.text()])
        if r < 0.75:
            return [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.text(6): self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))}

    # --- values of a wire type, with the paths of the objects (structs) inside them --------------

    def value(
        self, t: mi.Type, path: str, structs: list[tuple[str, dict[str, Any]]], fields: list[Any]
    ) -> Any:
        rng = self.rng
        if isinstance(t, mi.StructType):
            obj: dict[str, Any] = {}
            if t.tag_field is not None:
                obj[t.tag_field] = t.tag
            for f in t.fields:
                if f.required or rng.random() < 0.4:
                    obj[f.encode_name] = self.value(f.type, f"{path}.{f.encode_name}", structs, fields)
                    fields.append((f"{path}.{f.encode_name}", obj, f.encode_name, f.type))
            structs.append((path, obj))
            return obj
        if isinstance(t, mi.UnionType):
            members = [m for m in t.types if not isinstance(m, mi.NoneType)] or list(t.types)
            return self.value(rng.choice(members), path, structs, fields)
        if isinstance(t, mi.StrType):
            low, high = t.min_length or 0, t.max_length if t.max_length is not None else 12
            if t.pattern is not None:
                # Names with a pattern (endpoints, routers) take letters and digits, which every
                # such pattern here accepts: the case's one intended fault must be the only one.
                size = rng.randint(max(1, low), max(1, low, min(high, 12)))
                return "".join(rng.choice(_NAME_CHARS) for _ in range(size))
            s = self.text(high)[:high]
            return s + "a" * max(0, low - len(s))
        if isinstance(t, mi.BoolType):
            return rng.random() < 0.5
        if isinstance(t, mi.IntType):
            low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -5)
            high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else low + 1000)
            return rng.randint(low, max(low, high))
        if isinstance(t, mi.FloatType):
            low = t.ge if t.ge is not None else (t.gt + 0.01 if t.gt is not None else 0.0)
            high = t.le if t.le is not None else low + 100.0
            return round(rng.uniform(low, high), 3)
        if isinstance(t, mi.LiteralType):
            return rng.choice(list(t.values))
        if isinstance(t, mi.NoneType):
            return None
        if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            count = (
                max(t.min_length or 0, rng.randint(0, 2)) if isinstance(t, mi.ListType) else rng.randint(0, 2)
            )
            return [self.value(t.item_type, f"{path}[{i}]", structs, fields) for i in range(count)]
        if isinstance(t, mi.DictType):
            # Values of the declared type (a header is a string); faults are placed elsewhere.
            return {self.text(6): self.value(t.value_type, path, [], []) for _ in range(rng.randint(0, 2))}
        return self.json_value(1)

    def params(self, method: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], list[Any]]:
        structs: list[tuple[str, dict[str, Any]]] = []
        fields: list[Any] = []
        params = self.value(mi.type_info(METHODS[method].params), "$", structs, fields)
        if method in ("complete", "stream") and self.rng.random() < 0.6:
            params["model"] = "openai:gpt-4o-mini"  # a model the fake upstream serves
        return params, structs, fields

    # --- host methods ----------------------------------------------------------------------------

    def host_request(self) -> Case:
        method = self.rng.choice(self.methods)
        params, structs, fields = self.params(method)
        rid = self.new_id()
        r = self.rng.random()
        sent: Any = params
        if r < 0.35:
            path, obj = self.rng.choice(structs)
            name = "zz_" + self.rng.choice(["max_token", "key", "extra", "modle", "tag_"])
            obj[name] = self.json_value(1)
            check, what = invalid_params_at(f"{path}.{name}"), f"{method}: unknown field at {path}"
        elif r < 0.5 and fields:
            simple = [f for f in fields if _plain(f[3])]
            if simple:
                path, obj, name, _ = self.rng.choice(simple)
                obj[name] = {"zz": [1]}
                check, what = invalid_params_at(path), f"{method}: wrong type at {path}"
            else:
                check, what = not_a_protocol_fault, f"{method}: valid by type"
        elif r < 0.55:
            sent = self.rng.choice([[1], 5, "text", None, [], True])
            check, what = error_code(-32602), f"{method}: params not an object"
        else:
            check, what = not_a_protocol_fault, f"{method}: valid by type"
        line = _dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": sent})
        return Case(line, [Expect(rid, check, what)], what=what)

    # --- raw bytes -----------------------------------------------------------------------------

    def raw(self) -> Case:
        rng = self.rng
        kind = rng.choice(
            [
                "bomb",
                "bomb_truncated",
                "huge_id",
                "endless_id",
                "utf8",
                "nul",
                "not_json",
                "not_request",
                "notification",
                "response",
                "unknown_method",
                "bad_jsonrpc",
            ]
        )
        rid = self.new_id()
        if kind == "bomb":
            depth = rng.choice([1000, 3000, 20000])
            nest = rng.choice([("[", "]"), ('{"a":', "}")])
            body = nest[0] * depth + "1" + nest[1] * depth
            line = b'{"jsonrpc":"2.0","id":' + _dumps(rid) + b',"method":"info","x":' + body.encode() + b"}"
            return Case(line, [Expect(rid, error_code(-32600), kind)], what=kind)
        if kind == "bomb_truncated":
            line = b'{"jsonrpc":"2.0","id":' + _dumps(rid) + b',"method":"info","x":' + b"[" * 5000
            return Case(line, [Expect(None, error_code(-32700), kind)], what=kind)
        if kind == "huge_id":
            big = rng.choice([2**63, 10**30, -(10**25)]) + next(self._ids)
            line = _dumps({"jsonrpc": "2.0", "id": big, "method": "info"})
            return Case(line, [Expect(big, any_answer, kind)], what=kind)
        if kind == "endless_id":
            line = b'{"jsonrpc":"2.0","id":1' + b"7" * 5000 + b',"method":"info"}'
            return Case(line, [Expect(None, error_code(-32600), kind)], what=kind)
        if kind == "utf8":
            good = _dumps({"jsonrpc": "2.0", "id": rid, "method": "info", "params": {}})
            at = rng.randrange(1, len(good) - 1)
            bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            return Case(good[:at] + bad + good[at:], [Expect(None, error_code(-32700), kind)], what=kind)
        if kind == "nul":
            good = _dumps({"jsonrpc": "2.0", "id": rid, "method": "info", "x": "ab"})
            at = good.index(b"ab") + 1
            return Case(good[:at] + b"\x00" + good[at:], [Expect(None, error_code(-32700), kind)], what=kind)
        if kind == "not_json":
            line = rng.choice(
                [b"1 x", b"[}", b"{", b"nul", b"{'a':1}", b'{"a":1,}', b"NaN", b"\x0b", b'"\\ud800"']
            )
            return Case(line, [Expect(None, error_code(-32700), kind)], what=kind)
        if kind == "not_request":
            line = _dumps(
                rng.choice([5, "text", None, True, {"jsonrpc": "2.0", "id": [1], "method": "info"}])
            )
            return Case(line, [Expect(None, error_code(-32600), kind)], what=kind)
        if kind == "notification":
            method = rng.choice([*self.methods, "nope", "notifications/initialized"])
            return Case(_dumps({"jsonrpc": "2.0", "method": method, "params": self.json_value()}), what=kind)
        if kind == "response":
            answer = rng.choice([{"result": self.json_value()}, {"error": {"code": 1, "message": "x"}}])
            return Case(_dumps({"jsonrpc": "2.0", "id": rid, **answer}), what=kind)
        if kind == "unknown_method":
            line = _dumps({"jsonrpc": "2.0", "id": rid, "method": "no_such/" + self.text(5)})
            return Case(line, [Expect(rid, error_code(-32601), kind)], what=kind)
        line = _dumps({"jsonrpc": rng.choice(["1.0", 2, None]), "id": rid, "method": "info"})
        return Case(line, [Expect(rid, error_code(-32600), kind)], what=kind)

    def batch(self) -> Case:
        """A JSON array of host requests, raw JSON cases and notifications: one array back."""
        parts: list[bytes] = []
        expects: list[Expect] = []
        for _ in range(self.rng.randint(1, 6)):
            r = self.rng.random()
            if r < 0.5:
                case = self.host_request()
            elif r < 0.7:
                case = Case(
                    _dumps(self.rng.choice([1, "x", None, []])),
                    [Expect(None, error_code(-32600), "in batch")],
                )
            else:
                case = self.raw()
                if case.what not in ("notification", "response", "unknown_method", "bad_jsonrpc", "huge_id"):
                    continue
            parts.append(case.data)
            expects += case.expects
        if not parts:
            return Case(b"[]", [Expect(None, error_code(-32600), "empty batch")], what="empty batch")
        return Case(b"[" + b",".join(parts) + b"]", expects, [e.id for e in expects], what="batch")

    # --- MCP -----------------------------------------------------------------------------------

    def mcp_request(self) -> Case:
        rid = f"m{next(self._ids)}"
        r = self.rng.random()
        if r < 0.2:
            method = self.rng.choice(["ping", "tools/list"])
            params = self.rng.choice([[1], 5, "x", True])
            line = _dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            return Case(line, [Expect(rid, error_code(-32602), f"mcp {method} bad params")])
        if r < 0.3:
            line = _dumps({"jsonrpc": "2.0", "id": rid, "method": self.rng.choice(["ping", "tools/list"])})
            return Case(line, [Expect(rid, any_answer, "mcp ping/list")])
        method = self.rng.choice(self.methods)
        arguments, structs, _ = self.params(method)
        check: Check = tool_answered
        if self.rng.random() < 0.4:
            path, obj = self.rng.choice(structs)
            obj["zz_unknown"] = 1
            check = tool_error_at(f"{path}.zz_unknown")
        call = {"name": method, "arguments": arguments}
        line = _dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": call})
        return Case(line, [Expect(rid, check, f"mcp tools/call {method}")])

    # --- a mix -------------------------------------------------------------------------------

    def case(self, *, mcp: bool) -> Case:
        r = self.rng.random()
        if mcp and r < 0.2:
            return self.mcp_request()
        if r < 0.55:
            return self.host_request()
        if r < 0.9:
            return self.raw()
        return self.batch()


_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _plain(t: mi.Type) -> bool:
    """A type no JSON object can be: replacing its value with one must fail to decode."""
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    return all(
        isinstance(
            m,
            mi.StrType | mi.IntType | mi.FloatType | mi.BoolType | mi.LiteralType | mi.ListType | mi.NoneType,
        )
        for m in members
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
