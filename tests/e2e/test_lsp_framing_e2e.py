"""LSP framing (`Content-Length:` headers) detected from the connection's first bytes and spoken
both ways: a stock `vscode-jsonrpc` client (StreamMessageReader/Writer, as a VS Code extension uses
them) calls `info` and `stream`, and hand-written frames check partial headers, bodies split across
writes, an oversize body, a broken header block and a batch. A line-delimited host is unaffected."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR
from tests.node_tools import NODE_TOOLS_DIR

CLIENT = Path(__file__).resolve().parents[1] / "node" / "lsp_client.js"


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "SIDECAR_HOME": str(tmp_path),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }


@pytest.mark.node
def test_a_stock_vscode_jsonrpc_client_talks_to_the_sidecar(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    if shutil.which("node") is None or not (NODE_TOOLS_DIR / "node_modules" / "vscode-jsonrpc").is_dir():
        pytest.fail(f"Node.js or vscode-jsonrpc missing in {NODE_TOOLS_DIR}: run scripts/install-node-tools")
    env = {
        **base_env(tmp_path),
        "NODE_PATH": str(NODE_TOOLS_DIR / "node_modules"),
        "OPENAI_BASE_URL": openai.api_base,
        "OPENAI_API_KEY": "sk-test-valid",
    }
    done = subprocess.run(
        ["node", str(CLIENT), SIDECAR], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout)
    assert seen["info"]["version"] and "stream" in seen["info"]["methods"]
    assert seen["unknown_field"]["code"] == -32602
    assert "did you mean `api_key`?" in seen["unknown_field"]["message"]
    assert seen["unknown_field"]["data"]["field"] == "$.key"
    assert seen["stream"]["text"] == "Echo: Hello from vscode-jsonrpc"
    assert "".join(seen["deltas"]) == seen["stream"]["text"]
    assert seen["exit_code"] == 0


def frame(body: bytes, *, extra: bytes = b"") -> bytes:
    return b"Content-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def request(rid: Any, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


def read_frames(data: bytes) -> list[Any]:
    """Parse LSP frames strictly: every byte of `data` must belong to a well-formed frame."""
    out: list[Any] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"unterminated header block: {data[:200]!r}"
        (line,) = head.split(b"\r\n")
        name, _, value = line.partition(b": ")
        assert name == b"Content-Length", line
        size = int(value)
        body, data = rest[:size], rest[size:]
        assert len(body) == size
        out.append(json.loads(body))
    return out


def test_hand_written_frames_partial_headers_split_bodies_oversize_and_batches(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [SIDECAR, "--max-line-bytes", "4000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=base_env(tmp_path),
    )
    assert proc.stdin is not None
    info = frame(request(1, "info"), extra=b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n")
    writes = [
        info[:3],  # "Con": not yet enough to tell the framing
        info[3:20],  # a header cut in the middle
        info[20:-10],
        info[-10:],  # the body's end in its own write
        frame(request(2, "info", {"x": 1})),  # unknown field: -32602
        frame(b'{"jsonrpc":"2.0","id":3,"method":"info","params":' + b"[" * 1500 + b"]" * 1500 + b"}"),
        frame(b"x" * 5000),  # oversize body: refused, skipped, the stream stays in sync
        b"Content-Length: nope\r\n\r\n",  # a broken header block: -32700
        frame(b"[" + request(5, "info") + b"," + request(6, "nope") + b"]"),  # a batch
        frame(b"1 x"),
        frame(request(7, "info")),
    ]
    for chunk in writes:
        proc.stdin.write(chunk)
        proc.stdin.flush()
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=10)  # closes stdin: EOF ends the process
    assert proc.returncode == 0
    answers = read_frames(out)
    singles = {json.dumps(a.get("id")): a for a in answers if isinstance(a, dict)}
    (batch,) = [a for a in answers if isinstance(a, list)]
    assert singles["1"]["result"]["version"]
    assert singles["2"]["error"]["code"] == -32602 and singles["2"]["error"]["data"]["field"] == "$.x"
    assert singles["3"]["error"]["code"] == -32600  # nested too deeply
    assert singles["7"]["result"]["version"]
    nulls = sorted(a["error"]["code"] for a in answers if isinstance(a, dict) and a["id"] is None)
    assert nulls == [-32700, -32700, -32600]  # bad header, `1 x`, the oversize body
    assert sorted((a["id"], "result" in a) for a in batch) == [(5, True), (6, False)]
    assert len(answers) == 8


def test_a_line_delimited_host_is_still_answered_in_lines(tmp_path: Path) -> None:
    done = subprocess.run(
        [SIDECAR],
        input=b"\n" + request(1, "info") + b"\n",
        capture_output=True,
        env=base_env(tmp_path),
        timeout=10,
        check=False,
    )
    assert done.returncode == 0
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["id"] == 1 and not line.startswith(b"Content-Length")
