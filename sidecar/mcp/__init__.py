"""The MCP face: the official SDK's low-level server on the host's own connection, its tools built
from `METHODS`. `bridge` is what the app imports; it loads `server` (and with it the SDK) off the
event loop on the first MCP request, so a host that never speaks MCP never pays for it.

Must not know: provider details, stdin/stdout (the bridge is handed a write function).
"""
