"""The protocol fuzz against the spawned sidecar (cases from tests/protocol_fuzz.py, seeded): every
method's params, valid by type and broken; raw bytes (depth bombs, huge ids, invalid UTF-8, NUL,
batches, responses in place of requests); both faces. It asserts that the process lives, that
stdout carries only JSON-RPC messages (or a batch's array of answers), that every request with an
id gets exactly one answer with the right code, and that nothing else is answered.

The same cases also go through LSP framing (`Content-Length` headers, as `vscode-jsonrpc` sends),
where stdout must then hold nothing but well-formed frames.

`SIDECAR_FUZZ_SEED` and `SIDECAR_FUZZ_CASES` explore other seeds and longer runs; CI runs the
defaults (4,000 cases in lines, 1,000 in LSP frames), about 25 s on the 2-core machine."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import LspSidecar, Sidecar
from tests.protocol_fuzz import Case, Fuzzer

SEED = int(os.environ.get("SIDECAR_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("SIDECAR_FUZZ_CASES", "4000"))
WINDOW = 100  # cases sent before waiting for their answers: bounds what is in flight
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}
CLOSED = "http://127.0.0.1:9"  # nothing listens: every other upstream is refused at once
UPSTREAM_VARS = (
    "ANTHROPIC_BASE_URL",
    "GEMINI_BASE_URL",
    "XAI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "OPENROUTER_AUTH_URL",
    "OLLAMA_HOST",
)


def env(fake: FakeOpenAICompat) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.api_base,
        "OPENAI_API_KEY": "sk-test-valid",
        **dict.fromkeys(UPSTREAM_VARS, CLOSED),
        "SIDECAR_OAUTH_TTL_S": "5",
    }


def wellformed(msg: dict[str, Any]) -> bool:
    if "method" in msg:
        return isinstance(msg["method"], str) and "id" not in msg
    if ("result" in msg) == ("error" in msg):
        return False
    error = msg.get("error")
    return error is None or (isinstance(error.get("code"), int) and isinstance(error.get("message"), str))


def key(rid: Any) -> str:
    return json.dumps(rid)


def run_fuzz(sc: Sidecar, fuzzer: Fuzzer, count: int, *, mcp: bool) -> list[Case]:
    """Send `count` cases in windows, each window's answers awaited before the next is sent."""
    sent: list[Case] = []
    for start in range(0, count, WINDOW):
        window = [fuzzer.case(mcp=mcp) for _ in range(min(WINDOW, count - start))]
        for case in window:
            sc.send_raw(case.data + b"\n")
        sent += window
        for case in window:
            for expect in case.expects:
                if expect.id is not None:
                    sc.wait(expect.id, timeout=30)
    return sent


def check_answers(sc: Sidecar, cases: list[Case], seed: int) -> Counter[str]:
    # Answers with id null have nothing to wait on: wait until as many as expected came (bounded;
    # a slow machine may take longer than a fixed pause), then a moment more for any extra one.
    nulls = sum(1 for c in cases for e in c.expects if e.id is None)
    deadline = time.monotonic() + 30
    while sum(1 for m in list(sc.all_messages) if "method" not in m and m.get("id") is None) < nulls:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert sc.bad_lines == [], f"seed {seed}: non-protocol output {sc.bad_lines[:3]!r}"
    assert all(wellformed(m) for m in sc.all_messages), f"seed {seed}: malformed message"
    answers = [m for m in sc.all_messages if "method" not in m]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        by_id.setdefault(key(answer["id"]), []).append(answer)
    problems: list[str] = []
    expected_ids: set[str] = set()
    kinds: Counter[str] = Counter()
    for case in cases:
        kinds[case.what.split(":")[0] or "mcp"] += 1
        for expect in case.expects:
            if expect.id is None:
                continue
            expected_ids.add(key(expect.id))
            got = by_id.get(key(expect.id), [])
            if len(got) != 1:
                problems.append(
                    f"{expect.what}: {len(got)} answers for id {expect.id!r}: {case.data[:200]!r}"
                )
                continue
            why = expect.check(got[0])
            if why:
                problems.append(f"{expect.what}: {why} for {case.data[:300]!r}")
    unexpected = set(by_id) - expected_ids - {key(None), key("m0")}
    if unexpected:
        problems.append(f"answers nobody asked for: {sorted(unexpected)[:5]}")
    # Answers without an id: as many as expected, each with the expected code.
    wanted_nulls = Counter(_null_code(e.check) for c in cases for e in c.expects if e.id is None)
    got_nulls = Counter(a["error"]["code"] for a in by_id.get(key(None), []))
    if wanted_nulls != got_nulls:
        problems.append(f"id-null answers: expected {dict(wanted_nulls)}, got {dict(got_nulls)}")
    # A batch's answers come together, in one array holding exactly its requests' answers.
    arrays = {frozenset(key(a["id"]) for a in batch if a["id"] is not None): batch for batch in sc.batches}
    for case in cases:
        if case.batch_ids and any(rid is not None for rid in case.batch_ids):
            ids = frozenset(key(rid) for rid in case.batch_ids if rid is not None)
            if ids not in arrays or len(arrays[ids]) != len(case.batch_ids):
                problems.append(f"batch not answered as one array: {case.data[:200]!r}")
    assert not problems, f"seed {seed}, {len(problems)} problems:\n" + "\n".join(problems[:20])
    return kinds


# Every method is fuzzed as an MCP tool too, the administration tools included (hidden by default).
CONFIG = "[retry]\nmax_attempts = 1\n[mcp]\nadmin_tools = true\n"


def _null_code(check: Any) -> int:
    for code in (-32700, -32600):
        if check({"error": {"code": code}}) is None:
            return code
    raise AssertionError("an id-null expectation must be a plain error code")


def test_fuzzed_host_and_mcp_input_is_answered_exactly_once_with_the_right_code(
    openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    started = time.monotonic()
    fuzzer = Fuzzer(SEED)
    with Sidecar(env(openai), config=CONFIG) as sc:
        assert "result" in sc.wait(sc.start("initialize", INIT, id="m0"), timeout=30)
        sc.notify("notifications/initialized")
        cases = run_fuzz(sc, fuzzer, CASES, mcp=True)
        kinds = check_answers(sc, cases, SEED)
        assert sc.wait(sc.start("info", id="still-serving"))["result"]["version"]
        sc.close_stdin()
        assert sc.wait_exit(5) == 0
    took = time.monotonic() - started
    print(f"\nfuzz seed {SEED}: {len(cases)} cases in {took:.1f}s: {dict(sorted(kinds.items()))}")


def test_fuzzed_input_in_lsp_framing_is_answered_in_lsp_framing(openai: FakeOpenAICompat) -> None:
    fuzzer = Fuzzer(SEED + 1)
    with LspSidecar(env(openai), config=CONFIG) as sc:
        assert "result" in sc.wait(sc.start("initialize", INIT, id="m0"), timeout=30)
        sc.notify("notifications/initialized")
        cases = run_fuzz(sc, fuzzer, max(CASES // 4, 100), mcp=True)
        check_answers(sc, cases, SEED + 1)
        assert sc.wait(sc.start("info", id="still-serving"))["result"]["version"]
        sc.close_stdin()
        assert sc.wait_exit(5) == 0
