"""llm-sidecar: one stdio JSON-RPC and MCP interface to LLM providers."""

__version__ = "0.1.0"
