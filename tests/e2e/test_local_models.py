"""Local models end to end: the spawned sidecar (OLLAMA_HOST = the fake Ollama) recommends a model
for this machine, pulls it with progress notifications, streams with it, lists and deletes; pulls
fail, get cancelled, and share one download; with nothing listening, status reports and the other
methods raise ollama_unavailable."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.core.recommend import CATALOG
from tests.fakes.ollama import FakeOllama, normalize
from tests.harness import Sidecar

PROGRESS = "ollama_pull/progress"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def sidecar(fake: FakeOllama) -> Iterator[Sidecar]:
    with Sidecar(env={"OLLAMA_HOST": fake.url}) as proc:
        yield proc
        assert proc.bad_lines == []


@pytest.fixture(autouse=True)
def _reset(fake: FakeOllama) -> None:
    fake.pull_delay_s = 0.0
    fake.pull_errors.clear()


def progress_of(sidecar: Sidecar, rid: Any) -> list[dict[str, Any]]:
    return [n["params"] for n in sidecar.notifications(PROGRESS) if n["params"]["request_id"] == rid]


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert "error" in answer, answer
    return dict(answer["error"])


def check_progress(notes: list[dict[str, Any]], lines_sent: list[dict[str, Any]]) -> None:
    """Figures never go back per digest and end at the total; every status the fake sent was seen,
    in order; the last notification is success."""
    last: dict[str, int] = {}
    for note in notes:
        if note.get("digest") and note.get("completed") is not None:
            assert note["completed"] >= last.get(note["digest"], 0)
            last[note["digest"]] = note["completed"]
    totals = {line["digest"]: line["total"] for line in lines_sent if "digest" in line}
    assert last == totals
    statuses = [line["status"] for line in lines_sent if "status" in line]
    assert list(dict.fromkeys(n["status"] for n in notes)) == list(dict.fromkeys(statuses))
    assert notes[-1]["status"] == "success"


def test_status_list_delete(sidecar: Sidecar, fake: FakeOllama) -> None:
    status = sidecar.result("ollama_status", {})
    assert status["running"] is True and status["version"] == fake.version and status["base_url"] == fake.url
    fake.install("tinyllama")
    names = [m["name"] for m in sidecar.result("ollama_list", {})["models"]]
    assert "llama3.2:latest" in names and "tinyllama:latest" in names
    entry = next(m for m in sidecar.result("ollama_list", {})["models"] if m["name"] == "llama3.2:latest")
    assert (
        entry["family"] == "llama" and entry["parameter_size"] == "3.2B" and entry["quantization"] == "Q4_K_M"
    )
    assert sidecar.result("ollama_delete", {"model": "tinyllama"}) == {"model": "tinyllama", "deleted": True}
    error = error_of(sidecar.call("ollama_delete", {"model": "tinyllama"}))
    assert error["data"]["kind"] == "model_not_found" and error["code"] == 1005


def test_recommend_pull_then_chat_with_it(sidecar: Sidecar, fake: FakeOllama) -> None:
    rec = sidecar.result("recommend_models", {}, timeout=15)
    assert rec["tier"] in ("low", "medium", "high")
    assert rec["hardware"]["total_ram_bytes"] > 0 and rec["hardware"]["usable_memory_bytes"] > 0
    installed = set(fake.installed)
    tags = {f"ollama:{m.name}": {normalize(n) for n in (m.name, *m.aliases)} for m in CATALOG}
    for item in rec["recommendations"]:
        assert item["installed"] == bool(tags[item["model"]] & installed), item
    if rec["recommendations"]:
        choice = next(
            (r["model"] for r in rec["recommendations"] if not r["installed"]),
            rec["recommendations"][0]["model"],
        )
    else:
        assert rec["note"]  # nothing fits this machine: the note says why
        choice = "ollama:gemma3:1b"
    before = len(fake.pull_lines_sent)
    rid = sidecar.start("ollama_pull", {"model": choice})
    answer = sidecar.wait(rid, timeout=15)
    assert answer["result"] == {"model": choice.removeprefix("ollama:"), "status": "success"}
    check_progress(progress_of(sidecar, rid), fake.pull_lines_sent[before:])
    chat = sidecar.call("stream", {"model": choice, "messages": [{"role": "user", "content": "hi there"}]})
    assert chat["result"]["text"] == "Echo: hi there" and chat["result"]["provider"] == "ollama"
    assert (
        "".join(e["text"] for e in sidecar.events(chat["id"]) if e["type"] == "text_delta")
        == "Echo: hi there"
    )
    names = [m["name"] for m in sidecar.result("ollama_list", {})["models"]]
    assert choice.removeprefix("ollama:") in names
    loaded = sidecar.result("ollama_status", {})["loaded"]
    assert choice.removeprefix("ollama:") in [m["name"] for m in loaded]


def test_pull_of_an_unknown_model(sidecar: Sidecar) -> None:
    error = error_of(sidecar.call("ollama_pull", {"model": "no-such-model:3b"}))
    assert error["data"]["kind"] == "model_not_found"
    assert "no-such-model:3b" in error["data"]["message"]


def test_cancel_a_slow_pull(sidecar: Sidecar, fake: FakeOllama) -> None:
    fake.pull_delay_s = 1.0  # a pull left to run would take more than ten seconds
    disconnects = fake.disconnects
    rid = sidecar.start("ollama_pull", {"model": "qwen2.5-coder:1.5b"})
    sidecar.wait_notification(
        PROGRESS, lambda n: n["params"]["request_id"] == rid and "digest" in n["params"]
    )
    started = time.monotonic()
    sidecar.notify("$/cancelRequest", {"id": rid})
    error = error_of(sidecar.wait(rid, timeout=10))
    assert error["code"] == -32800 and error["data"]["kind"] == "cancelled"
    assert fake.wait_for_disconnect(timeout=10, count=disconnects + 1)
    assert time.monotonic() - started < 5
    assert "qwen2.5-coder:1.5b" not in fake.installed


def test_concurrent_pulls_share_one_download(sidecar: Sidecar, fake: FakeOllama) -> None:
    fake.pull_delay_s = 0.01
    before = len(fake.pull_requests())
    first = sidecar.start("ollama_pull", {"model": "phi4-mini:3.8b"})
    sidecar.wait_notification(PROGRESS, lambda n: n["params"]["request_id"] == first)
    second = sidecar.start("ollama_pull", {"model": "ollama:phi4-mini:3.8b"})
    assert sidecar.wait(first, timeout=10)["result"]["status"] == "success"
    assert sidecar.wait(second, timeout=10)["result"]["status"] == "success"
    assert len(fake.pull_requests()) == before + 1
    assert progress_of(sidecar, second)[-1]["status"] == "success"


def test_a_shared_download_survives_cancelling_its_first_requester(
    sidecar: Sidecar, fake: FakeOllama
) -> None:
    fake.pull_delay_s = 0.02
    before, disconnects, completed = len(fake.pull_requests()), fake.disconnects, fake.completed_streams
    first = sidecar.start("ollama_pull", {"model": "gemma3:4b"})
    sidecar.wait_notification(PROGRESS, lambda n: n["params"]["request_id"] == first)
    second = sidecar.start("ollama_pull", {"model": "gemma3:4b"})
    sidecar.wait_notification(PROGRESS, lambda n: n["params"]["request_id"] == second)
    sidecar.notify("$/cancelRequest", {"id": first})
    assert error_of(sidecar.wait(first, timeout=5))["data"]["kind"] == "cancelled"
    assert sidecar.wait(second, timeout=10)["result"] == {"model": "gemma3:4b", "status": "success"}
    assert len(fake.pull_requests()) == before + 1
    # The fake counts the finished stream on its own thread, just after the last chunk went out.
    assert fake.wait_for_completed_streams(completed + 1)
    assert fake.disconnects == disconnects and fake.completed_streams == completed + 1
    assert "gemma3:4b" in fake.installed


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with Sidecar(env={"OLLAMA_HOST": url}) as proc:
        status = proc.result("ollama_status", {})
        assert status["running"] is False and status["base_url"] == url
        assert url in status["hint"] and "ollama serve" in status["hint"]
        for method, params in (
            ("ollama_list", {}),
            ("ollama_pull", {"model": "gemma3:1b"}),
            ("ollama_delete", {"model": "gemma3:1b"}),
            ("stream", {"model": "ollama:llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
            ("complete", {"model": "ollama:llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
        ):
            error = error_of(proc.call(method, params))
            assert error["data"]["kind"] == "ollama_unavailable", method
            assert url in error["data"]["message"]
        rec = proc.result("recommend_models", {"limit": 3}, timeout=15)
        assert len(rec["recommendations"]) <= 3 and rec["ollama_running"] is False
        assert "not reachable" in rec["note"]
        assert not any(r["installed"] for r in rec["recommendations"])
        bad = error_of(proc.call("recommend_models", {"use": "painting"}))
        assert bad["data"]["kind"] == "invalid_request"
        assert proc.bad_lines == []
