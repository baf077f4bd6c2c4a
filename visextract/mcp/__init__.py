"""`visextract mcp`: query the results from any MCP chat client (Claude Desktop, Cursor, VS Code, ...).

    from visextract.mcp import build_server, serve_stdio
    serve_stdio(build_server("sqlite:////abs/path/visextract.db"))

The package is named after the command; `import mcp` inside it is the official SDK (absolute imports).
"""

from __future__ import annotations

from visextract.mcp.server import build_server, serve_http, serve_stdio

__all__ = ["build_server", "serve_http", "serve_stdio"]
