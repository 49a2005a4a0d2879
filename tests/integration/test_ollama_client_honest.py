"""The fake Ollama is honest: the official ``ollama`` Python client works against it exactly as
against ``ollama serve`` (chat, pull, list, ps, delete, errors), and its answers have the shape
of the documented examples in tests/fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import ollama
import pytest

from tests.fakes.ollama import FakeOllama

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(progress_lines=3) as upstream:
        yield upstream


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[ollama.Client]:
    c = ollama.Client(host=fake.url, timeout=10)
    yield c
    c._client.close()


def test_chat_whole_and_streamed(client: ollama.Client, fake: FakeOllama) -> None:
    whole = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}])
    assert whole.message.role == "assistant" and whole.message.content == "Echo: hello there"
    assert whole.done and whole.done_reason == "stop"
    assert whole.prompt_eval_count == 5 and whole.eval_count == 5
    assert fake.requests[-1].json()["stream"] is False
    parts = list(
        client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}], stream=True)
    )
    assert "".join(p.message.content or "" for p in parts) == "Echo: hello there"
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].eval_count == 5 and parts[-1].done_reason == "stop"


def test_chat_thinking_and_tools(client: ollama.Client) -> None:
    parts = list(
        client.chat(model="llama3.2", messages=[{"role": "user", "content": "why"}], think=True, stream=True)
    )
    thinking = "".join(p.message.thinking or "" for p in parts)
    assert thinking == "Thinking about: why"
    first_text = next(i for i, p in enumerate(parts) if p.message.content)
    assert all(not p.message.content for p in parts[:first_text]) and parts[0].message.thinking
    answer = client.chat(model="llama3.2", messages=[{"role": "user", "content": "Tokyo"}], tools=TOOLS)
    [call] = answer.message.tool_calls or []
    assert call.function.name == "get_weather" and dict(call.function.arguments) == {"input": "Tokyo"}
    follow = client.chat(
        model="llama3.2",
        messages=[
            {"role": "user", "content": "Tokyo"},
            answer.message,
            {"role": "tool", "content": "Sunny", "tool_name": "get_weather"},
        ],
        tools=TOOLS,
    )
    assert follow.message.content == "The tool said: Sunny"


def test_pull_list_ps_delete(client: ollama.Client, fake: FakeOllama) -> None:
    progress = list(client.pull("gemma3:1b", stream=True))
    statuses = list(dict.fromkeys(p.status for p in progress))
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    layers = [p for p in progress if p.digest]
    assert layers and all(p.status == f"pulling {(p.digest or '')[7:19]}" for p in layers)
    per_digest: dict[str, list[int]] = {}
    for p in layers:
        per_digest.setdefault(p.digest or "", []).append(p.completed or 0)
    assert all(figures == sorted(figures) for figures in per_digest.values())
    assert client.pull("smollm2:135m").status == "success"  # "stream": false
    names = [m.model for m in client.list().models]
    assert names == ["llama3.2:latest", "gemma3:1b", "smollm2:135m"]
    gemma = client.list().models[1]
    assert gemma.details is not None and gemma.details.parameter_size == "1B" and (gemma.size or 0) > 0
    client.chat(model="gemma3:1b", messages=[{"role": "user", "content": "hi"}])
    assert [m.model for m in client.ps().models] == ["gemma3:1b"]
    assert client.delete("gemma3:1b").status == "success"
    assert "gemma3:1b" not in [m.model for m in client.list().models]
    assert client.ps().models == []


def test_errors_are_response_errors(client: ollama.Client, fake: FakeOllama) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and err.value.error == "model 'nope' not found"
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("nope")
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        list(client.pull("nope:1b", stream=True))
    assert err.value.error == "pull model manifest: file does not exist"  # a line in a 200 stream
    fake.chat_error_after = 1
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as err:
        for part in client.chat(
            model="llama3.2", messages=[{"role": "user", "content": "hello"}], stream=True
        ):
            seen.append(part.message.content or "")
    assert seen == ["Echo"] and err.value.error == "an error was encountered while running the model"


def test_connection_refused_is_what_the_client_expects() -> None:
    with FakeOllama() as gone:
        url = gone.url
    with pytest.raises(ConnectionError):
        ollama.Client(host=url, timeout=5).list()


def test_wire_details_match_the_documented_examples(fake: FakeOllama) -> None:
    with httpx2.Client(base_url=fake.url, timeout=10) as http:
        streamed = http.post(
            "/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
        )
        assert streamed.headers["content-type"] == "application/x-ndjson"
        lines = streamed.text.split("\n")
        assert lines[-1] == "" and all(lines[:-1])  # one object per line, no blank lines
        ours = [json.loads(line) for line in lines[:-1]]
        theirs = [
            json.loads(line)
            for line in (FIXTURES / "ollama-constructed-api-chat-stream.ndjson").read_text().splitlines()
        ]
        assert set(ours[0]) == set(theirs[0]) and set(ours[-1]) == set(theirs[-1])
        tags = http.get("/api/tags").json()["models"][0]
        documented = json.loads((FIXTURES / "ollama-constructed-api-tags.json").read_text())["models"][0]
        assert set(tags) == set(documented) and set(tags["details"]) == set(documented["details"])
        assert http.get("/api/version").json() == {"version": fake.version}
        assert http.get("/").text == "Ollama is running"
        missing = http.get("/api/nothing")
        assert missing.status_code == 404 and missing.text == "404 page not found"
        pulled = http.post("/api/pull", json={"model": "gemma3:1b"})
        pull_lines = [json.loads(line) for line in pulled.text.splitlines()]
        documented_pull = [
            json.loads(line)
            for line in (FIXTURES / "ollama-constructed-api-pull-stream.ndjson").read_text().splitlines()
        ]
        assert [set(x) for x in pull_lines[:3]] == [set(x) for x in documented_pull[:3]]
        assert pull_lines[-1] == {"status": "success"}
