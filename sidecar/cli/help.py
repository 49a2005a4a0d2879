"""Help text shared by every `llm-sidecar` command: the environment it reads and where its files
are. Plain strings, so `llm-sidecar --help` imports nothing for them."""

from __future__ import annotations

from typing import Final

ENVIRONMENT: Final = """\
environment:
  SIDECAR_HOME              state directory (config.toml, sidecar.db); default: the OS's
                            per-user data directory (Linux ~/.local/share/llm-sidecar, macOS
                            ~/Library/Application Support/llm-sidecar, Windows %LOCALAPPDATA%\\llm-sidecar)
  SIDECAR_LOG_LEVEL         debug, info, warning or error (JSON log lines on stderr)
  <PROVIDER>_API_KEY        a key in the environment wins over the keychain: OPENAI_API_KEY,
                            ANTHROPIC_API_KEY, GEMINI_API_KEY, XAI_API_KEY, OPENROUTER_API_KEY
  *_BASE_URL, OLLAMA_HOST   API bases: OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GEMINI_BASE_URL,
                            XAI_BASE_URL, OPENROUTER_BASE_URL; Ollama's own OLLAMA_HOST
  PYTHON_KEYRING_BACKEND    force a keyring backend (keys live under service "llm-sidecar")
  DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR
                            Linux: how the Secret Service (the keychain) is reached

files:
  config file               $SIDECAR_HOME/config.toml, or --config PATH
  usage ledger, audit       $SIDECAR_HOME/sidecar.db"""


def paths_in_use() -> str:
    """The paths a subcommand uses here and now, for its `--help` (resolves the state dir)."""
    from sidecar.config import CONFIG_NAME, state_dir

    home = state_dir()
    return (
        f"in use here:\n  state directory           {home}\n"
        f"  config file               {home / CONFIG_NAME} (unless --config)"
    )
