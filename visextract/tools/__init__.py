"""Vision tools: one module per tool; each takes a batch of images and returns typed results."""

from visextract.tools.base import Tool, ToolOptions
from visextract.tools.registry import build_tools, tool_names

__all__ = ["Tool", "ToolOptions", "build_tools", "tool_names"]
