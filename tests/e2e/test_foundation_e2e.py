"""`llm-sidecar` spawned over pipes as a host would: complete, stream, cancel, protocol faults,
shutdown; every stdout line checked to be one JSON-RPC message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.http import Pause, Stall
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply, midstream_error_reply
from tests.harness import EXIT_BOUND_S, Sidecar, run_once

KEY = "sk-test-valid"
NO_RETRY = "[retry]\nmax_attempts = 1\n"


@pytest.fixture
def sidecar(openai: FakeOpenAICompat) -> Iterator[Sidecar]:
    with Sidecar({"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}, config=NO_RETRY) as sc:
        yield sc
        assert sc.bad_lines == [], f"stdout held non-protocol lines: {sc.bad_lines!r}"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_complete_returns_text_usage_and_cost(sidecar: Sidecar, openai: FakeOpenAICompat) -> None:
    result = sidecar.result("complete", {"model": "openai:gpt-4o-mini", "messages": user("hello there")})
    assert result["text"] == "Echo: hello there"
    assert result["finish_reason"] == "stop"
    assert result["provider"] == "openai" and result["model"] == "gpt-4o-mini"
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert result["cost_usd"] > 0 and result["pricing_date"]
    sent = openai.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json()["stream"] is True  # complete streams from the upstream too, and assembles


def test_stream_relays_events_whose_text_equals_the_result(
    sidecar: Sidecar, openai: FakeOpenAICompat
) -> None:
    rid = sidecar.start("stream", {"model": "gpt-4o-mini", "messages": user("stream me please")})
    result = sidecar.wait(rid)["result"]
    events = sidecar.events(rid)
    texts = [e["text"] for e in events if e["type"] == "text_delta"]
    assert len(texts) > 2 and "".join(texts) == result["text"] == "Echo: stream me please"
    assert events[-1]["type"] == "usage" and events[-1]["input_tokens"] == result["usage"]["input_tokens"]
    body = openai.requests[-1].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_assembles_tool_calls(sidecar: Sidecar) -> None:
    tools = [
        {
            "name": "lookup",
            "description": "Look it up",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
        }
    ]
    rid = sidecar.start(
        "stream", {"model": "openai:gpt-4o-mini", "messages": user("weather in Paris"), "tools": tools}
    )
    result = sidecar.wait(rid)["result"]
    assert result["finish_reason"] == "tool_calls"
    call = result["tool_calls"][0]
    assert call["name"] == "lookup" and call["arguments"] == {"input": "weather in Paris"}
    deltas = [e for e in sidecar.events(rid) if e["type"] == "tool_call_delta"]
    assert deltas[0]["id"] == call["id"] and deltas[0]["name"] == "lookup"
    assert json.loads("".join(d.get("arguments_delta", "") for d in deltas)) == call["arguments"]
    # The next turn: the tool's answer goes back and the model answers with it.
    follow = sidecar.result(
        "complete",
        {
            "model": "openai:gpt-4o-mini",
            "tools": tools,
            "messages": [
                *user("weather in Paris"),
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
            ],
        },
    )
    assert follow["text"] == "The tool said: sunny"


@pytest.mark.parametrize("how", ["$/cancelRequest", "notifications/cancelled"])
def test_cancel_mid_stream_closes_the_upstream_connection(
    sidecar: Sidecar, openai: FakeOpenAICompat, how: str
) -> None:
    openai.edit_stream = lambda events: [*events[:3], Stall()]
    rid = sidecar.start("stream", {"model": "openai:gpt-4o-mini", "messages": user("a long answer please")})
    sidecar.wait_notification("stream/event", lambda n: n["params"]["request_id"] == rid)
    params = {"id": rid} if how == "$/cancelRequest" else {"requestId": rid}
    sidecar.notify(how, params)
    answer = sidecar.wait(rid, timeout=5)
    assert answer["error"]["code"] == -32800 and answer["error"]["data"]["kind"] == "cancelled"
    assert openai.wait_for_disconnect(timeout=5)
    # The process keeps serving.
    assert sidecar.result("info")["version"]


def test_protocol_faults_are_answered_and_the_process_keeps_serving(sidecar: Sidecar) -> None:
    sidecar.send_raw(b"this is not json\n")
    sidecar.send_raw(b'{"jsonrpc":"2.0","id":"x1","method":"no_such_method"}\n')
    sidecar.send_raw(b'{"jsonrpc":"1.0","id":"x2","method":"info"}\n')
    sidecar.send_raw(
        b'{"jsonrpc":"2.0","id":"x3","method":"complete","params":{"model":"gpt-4o","messages":[{"role":"bot"}]}}\n'
    )
    sidecar.send_raw(b'{"jsonrpc":"2.0","id":"x4","method":"complete","params":[1,2]}\n')
    sidecar.send_raw(b'{"jsonrpc":"2.0","method":"info"}\n')  # a notification: never answered
    sidecar.send_raw(b"[]\n")
    assert sidecar.wait("x1")["error"]["code"] == -32601
    assert sidecar.wait("x2")["error"]["code"] == -32600
    bad_role = sidecar.wait("x3")["error"]
    assert bad_role["code"] == -32602 and bad_role["data"]["field"] == "$.messages[0].role"
    assert sidecar.wait("x4")["error"]["code"] == -32602
    assert sidecar.result("info")["methods"]
    nulls = [m for m in sidecar.all_messages if m.get("id") is None and "error" in m]
    assert sorted(m["error"]["code"] for m in nulls) == [-32700, -32600]
    assert not [m for m in sidecar.all_messages if m.get("id") is None and "result" in m]


def test_integer_zero_and_string_ids_and_many_in_flight(sidecar: Sidecar) -> None:
    ids: list[Any] = [0, "0", "a", 7, -1]
    for rid in ids:
        sidecar.start("complete", {"model": "openai:gpt-4o-mini", "messages": user(f"req {rid!r}")}, id=rid)
    for n in range(20):
        sidecar.start("complete", {"model": "openai:gpt-4o-mini", "messages": user(f"many {n}")}, id=f"m{n}")
    for rid in ids:
        assert sidecar.wait(rid)["result"]["text"] == f"Echo: req {rid!r}"
    for n in range(20):
        assert sidecar.wait(f"m{n}")["result"]["text"] == f"Echo: many {n}"


def test_upstream_errors_map_to_contract_kinds(sidecar: Sidecar, openai: FakeOpenAICompat) -> None:
    openai.enqueue(error_reply(429, "openai", "rate_limit", retry_after_s=3))
    err = sidecar.call("complete", {"model": "openai:gpt-4o-mini", "messages": user("hi")})["error"]
    assert err["data"]["kind"] == "rate_limited" and err["data"]["retry_after_s"] == pytest.approx(
        3, abs=0.01
    )
    assert err["data"]["provider"] == "openai"
    openai.enqueue(midstream_error_reply("openai"))
    rid = sidecar.start("stream", {"model": "openai:gpt-4o-mini", "messages": user("hi")})
    err = sidecar.wait(rid)["error"]
    assert err["data"]["kind"] == "provider_error" and "in the stream" in err["data"]["message"]
    assert [e["text"] for e in sidecar.events(rid) if e["type"] == "text_delta"] == ["Partial", " answer"]


def test_bad_key_and_missing_key(openai: FakeOpenAICompat) -> None:
    with Sidecar(
        {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": "sk-wrong-key-0123456789abcdef"},
        config=NO_RETRY,
    ) as sc:
        err = sc.call("complete", {"model": "openai:gpt-4o-mini", "messages": user("hi")})["error"]
        assert err["data"]["kind"] == "auth_failed"
        assert "sk-wrong-key-0123456789abcdef" not in json.dumps(sc.all_messages) + sc.stderr_text
    with Sidecar({"OPENAI_BASE_URL": openai.api_base}) as sc:
        err = sc.call("complete", {"model": "openai:gpt-4o-mini", "messages": user("hi")})["error"]
        assert err["data"]["kind"] == "missing_key" and "OPENAI_API_KEY" in err["data"]["message"]
        assert "set_key" in err["data"]["message"]


def test_custom_endpoint_from_config_with_no_code(openai: FakeOpenAICompat) -> None:
    config = f"""
[endpoints.localai]
base_url = "{openai.api_base}"
api_key_env = "LOCALAI_KEY"
models = ["gpt-4o-mini"]
"""
    with Sidecar({"LOCALAI_KEY": KEY}, config=config) as sc:
        result = sc.result("complete", {"model": "localai:gpt-4o-mini", "messages": user("custom")})
        assert result["text"] == "Echo: custom" and result["provider"] == "localai"
        providers = {p["id"]: p for p in sc.result("list_providers")["providers"]}
        assert providers["localai"]["custom"] is True and providers["localai"]["models"] == ["gpt-4o-mini"]


def test_an_endpoint_without_the_keychain_takes_its_key_from_the_environment_only(
    openai: FakeOpenAICompat,
) -> None:
    config = f"""
[endpoints.localai]
base_url = "{openai.api_base}"
api_key_env = "LOCALAI_KEY"
keychain = false
models = ["gpt-4o-mini"]
"""
    ask = {"model": "localai:gpt-4o-mini", "messages": user("custom")}
    with Sidecar({"LOCALAI_KEY": None}, config=config) as sc:
        error = sc.call("complete", ask)["error"]["data"]
        assert error["kind"] == "missing_key" and "set LOCALAI_KEY" in error["message"]
    assert openai.requests == []
    with Sidecar({"LOCALAI_KEY": KEY}, config=config) as sc:
        assert sc.result("complete", ask)["text"] == "Echo: custom"
    assert openai.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_eof_ends_the_process_cleanly_within_two_seconds(openai: FakeOpenAICompat) -> None:
    with Sidecar({"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}) as sc:
        assert sc.result("info")
        started = time.monotonic()
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
        assert time.monotonic() - started < EXIT_BOUND_S
        assert sc.bad_lines == []


def test_sigterm_cancels_in_flight_requests_and_exits_zero(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [*events[:2], Pause(30)]
    with Sidecar({"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}) as sc:
        rid = sc.start("stream", {"model": "openai:gpt-4o-mini", "messages": user("slow")})
        openai.wait_for_requests(1)
        time.sleep(0.2)
        started = time.monotonic()
        sc.terminate()
        assert sc.wait_exit(10) == 0
        assert time.monotonic() - started < EXIT_BOUND_S  # not the upstream's 30 s pause
        assert sc.wait(rid, timeout=1)["error"]["code"] == -32800
        assert openai.wait_for_disconnect(timeout=3)


def test_oversize_line_is_refused_with_an_error_not_a_crash(openai: FakeOpenAICompat) -> None:
    with Sidecar(
        {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}, args=["--max-line-bytes", "1000"]
    ) as sc:
        big = {
            "jsonrpc": "2.0",
            "id": "big",
            "method": "complete",
            "params": {"model": "gpt-4o", "messages": user("x" * 5000)},
        }
        sc.send(big)
        err = sc.wait("big")["error"]
        assert err["code"] == -32600 and "1000 byte limit" in err["message"]
        assert sc.result("info")["version"]


def test_stdin_from_a_regular_file_is_served(tmp_path: Any) -> None:
    # A file is read to its end (over several 64 KiB reads) and every message in it answered, then
    # the process exits 0. EOF comes at once with a file, so a request still running when the
    # contract's EOF grace ends is answered -32800: whether `info` and `list_providers` (cold first
    # calls) finish in time depends on the machine's load, so either answer is right for them.
    # Unknown methods and unreadable lines are answered as they are read, whatever the load.
    lines = ['{"jsonrpc":"2.0","id":1,"method":"info"}', '{"jsonrpc":"2.0","id":2,"method":"list_providers"}']
    lines += [f'{{"jsonrpc":"2.0","id":"u{i}","method":"no_such_method"}}' for i in range(3000)]
    lines.insert(1500, "{not json")
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    assert requests.stat().st_size > 2 * 64 * 1024
    with requests.open("rb") as stdin:
        proc = run_once(tmp_path, stdin, timeout=30)
    assert proc.returncode == 0
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for answer in answers:
        by_id.setdefault(answer["id"], []).append(answer)
    assert len(answers) == 3003 and len(by_id) == 3003  # each once; the unreadable line's id is null
    assert [a["error"]["code"] for a in by_id[None]] == [-32700]
    assert all(by_id[f"u{i}"][0]["error"]["code"] == -32601 for i in range(3000))
    for request_id in (1, 2):
        (answer,) = by_id[request_id]
        assert "result" in answer or answer["error"]["code"] == -32800, answer


def test_malformed_config_fails_fast_naming_the_file(tmp_path: Any) -> None:
    (tmp_path / "config.toml").write_text("[timeouts]\nidle_s = 'soon'\n")
    proc = run_once(tmp_path, timeout=10)
    assert proc.returncode == 2 and proc.stdout == b""
    assert str(tmp_path / "config.toml") in proc.stderr.decode() and "idle_s" in proc.stderr.decode()


def test_stray_prints_and_child_processes_cannot_reach_the_protocol_stream() -> None:
    code = (
        "import os, sys\n"
        "from sidecar.rpc.stdio import protect_stdout\n"
        "fd = protect_stdout()\n"
        "print('noise from a dependency')\n"
        "os.system('echo noise from a child process')\n"
        "os.write(1, b'raw fd 1 write\\n')\n"
        'os.write(fd, b\'{"jsonrpc":"2.0","method":"x"}\\n\')\n'
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10)
    assert proc.stdout == b'{"jsonrpc":"2.0","method":"x"}\n'
    assert b"noise from a dependency" in proc.stderr and b"noise from a child process" in proc.stderr


def test_logs_are_json_on_stderr_with_the_request_id_and_no_content(openai: FakeOpenAICompat) -> None:
    with Sidecar(
        {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY},
        args=["--log-level", "debug"],
        config=NO_RETRY,
    ) as sc:
        openai.enqueue(error_reply(401, "openai", "auth", key=KEY))
        sc.call(
            "complete", {"model": "openai:gpt-4o-mini", "messages": user("secret prompt text")}, timeout=10
        )
        sc.stop()
        lines = [json.loads(line) for line in sc.stderr_text.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "request failed"]
    assert failed and failed[0]["request_id"] == 1 and failed[0]["kind"] == "auth_failed"
    assert "secret prompt text" not in sc.stderr_text
    assert KEY not in sc.stderr_text


def test_streams_read_to_their_end_keep_the_upstream_connection_pooled(
    sidecar: Sidecar, openai: FakeOpenAICompat
) -> None:
    for n in range(3):
        rid = sidecar.start("stream", {"model": "openai:gpt-4o-mini", "messages": user(f"pooled {n}")})
        assert sidecar.wait(rid)["result"]["text"] == f"Echo: pooled {n}"
    assert sidecar.result("complete", {"model": "openai:gpt-4o-mini", "messages": user("and one more")})
    assert openai.connections_accepted == 1


def test_info_names_the_config_file_state_directory_and_log_level(tmp_path: Any) -> None:
    custom = tmp_path / "elsewhere.toml"
    custom.write_text(NO_RETRY)
    with Sidecar({"SIDECAR_LOG_LEVEL": "warning"}) as sc:
        info = sc.result("info")
        assert info["state_dir"] == str(sc.home)
        assert info["config_path"] == str(sc.home / "config.toml")
        assert info["log_level"] == "warning"
    with Sidecar(args=["--config", str(custom), "--log-level", "debug"]) as sc:
        info = sc.result("info")
        assert info["config_path"] == str(custom)
        assert info["state_dir"] == str(sc.home)
        assert info["log_level"] == "debug"
