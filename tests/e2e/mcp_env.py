"""How the MCP end-to-end tests start `llm-sidecar`: as an MCP client would, with an explicit env.

MCP clients (the SDK's `stdio_client`, the Inspector) start servers with a filtered environment,
so everything the sidecar needs (its home, the keyring backend, the fake's base URL and key) is
passed explicitly, exactly as a user's `claude_desktop_config.json` would have to.
"""

from __future__ import annotations

from pathlib import Path

from mcp import StdioServerParameters

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR

ASK = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]
OPENAI_KEY = "sk-test-valid"


def sidecar_env(home: Path, fake: FakeOpenAICompat | None = None) -> dict[str, str]:
    env = {"SIDECAR_HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    if fake is not None:
        env |= {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": OPENAI_KEY}
    return env


def server_params(home: Path, fake: FakeOpenAICompat | None = None) -> StdioServerParameters:
    return StdioServerParameters(command=SIDECAR, args=[], env=sidecar_env(home, fake))
