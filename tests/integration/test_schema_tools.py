"""The generated contract files pass the tools a host developer would point at them:
`parseOpenRPCDocument` from @open-rpc/schema-utils-js reads schemas/openrpc.json, the TypeScript
declarations are what json-schema-to-typescript makes of the wire types today (no drift) and
compile with `tsc --noEmit`, and they type a host's calls (a wrong params object does not compile).
The tools are pinned by tests/node/package-lock.json and installed by scripts/install-node-tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_tools import NODE_TOOLS_DIR, node_tool

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
PARSE_OPENRPC = """
const { parseOpenRPCDocument } = require("@open-rpc/schema-utils-js");
const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
parseOpenRPCDocument(doc).then(
  (parsed) => console.log(JSON.stringify({ ok: true, methods: parsed.methods.map((m) => m.name),
    firstParams: parsed.methods[0].params })),
  (err) => { console.log(JSON.stringify({ ok: false, error: String((err && err.message) || err) })); },
);
"""


def parse_openrpc(path: Path) -> dict[str, object]:
    node_tool("tsc")  # fails with the install hint when the tools are missing
    out = subprocess.run(
        ["node", "-e", PARSE_OPENRPC, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"NODE_PATH": str(NODE_TOOLS_DIR / "node_modules"), "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    parsed: dict[str, object] = json.loads(out.stdout)
    return parsed


def test_openrpc_document_passes_parse_openrpc_document() -> None:
    parsed = parse_openrpc(SCHEMAS / "openrpc.json")
    assert parsed["ok"] is True, parsed.get("error")
    methods = json.loads((SCHEMAS / "openrpc.json").read_text())["methods"]
    assert parsed["methods"] == [m["name"] for m in methods]
    # by-name params are the fields of the params object, dereferenced by the parser.
    first = parsed["firstParams"]
    assert isinstance(first, list)
    assert [p["name"] for p in first][:2] == ["model", "messages"]
    assert first[1]["schema"]["items"]["type"] == "object"


def test_parse_openrpc_document_rejects_a_dangling_ref(tmp_path: Path) -> None:
    doc = json.loads((SCHEMAS / "openrpc.json").read_text())
    doc["methods"][0]["result"]["schema"] = {"$ref": "#/$defs/ChatResult"}  # the old, broken form
    broken = tmp_path / "openrpc.json"
    broken.write_text(json.dumps(doc))
    parsed = parse_openrpc(broken)
    assert parsed["ok"] is False and "$defs" in str(parsed["error"])


def test_typescript_declarations_match_the_wire_types() -> None:
    node_tool("json2ts")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schemas.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


HOST = """
import type { Methods, ParamsOf, ResultOf, Notifications } from "./llm-sidecar";

declare function call<M extends keyof Methods>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>>;

async function host(): Promise<string> {
  const answer = await call("complete", {
    model: "openai:gpt-4o-mini",
    messages: [{ role: "user", content: "Hi" }],
  });
  const info = await call("info", {});
  const event: Notifications["stream/event"] = { request_id: 1, event: { type: "text_delta", text: "x" } };
  return answer.text + info.version + answer.usage.input_tokens + String(event.request_id);
}
host();
"""


def tsc(tmp_path: Path, host: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "llm-sidecar.d.ts").write_bytes((SCHEMAS / "llm-sidecar.d.ts").read_bytes())
    (tmp_path / "host.ts").write_text(host)
    return subprocess.run(
        [
            str(node_tool("tsc")),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            str(tmp_path / "llm-sidecar.d.ts"),
            str(tmp_path / "host.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )


def test_declarations_compile_and_type_a_host(tmp_path: Path) -> None:
    proc = tsc(tmp_path, HOST)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_wrong_params_object_does_not_compile(tmp_path: Path) -> None:
    wrong = HOST.replace('model: "openai:gpt-4o-mini",', "model: 42,")
    proc = tsc(tmp_path, wrong)
    assert proc.returncode != 0
    assert "host.ts" in proc.stdout and "number" in proc.stdout
