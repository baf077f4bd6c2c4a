"""Model loading and caching: bundled weights, Hugging Face ids or paths, device and dtype."""
