"""Image providers (offline renderer, OpenAI), the content-addressed cache and the per-run budget."""
