"""Multimodal LLM backends for the extraction graph: OpenAI-compatible servers and local VLMs."""
