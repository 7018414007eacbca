"""Serving: an OpenAI-compatible HTTP API over a continuous-batching engine, a streaming chat CLI and a web page.

`omnifuse serve --model DIR` starts it; `omnifuse chat --model DIR` talks to a model from the terminal.
Modules: `engine` (one thread owns the model; requests join the running batch between decoding steps),
`batch` (KV-cache merging), `media_cache` (encoded media by content hash), `api` (FastAPI routes),
`parts` (OpenAI content parts to processor parts), `fetch` (media URLs), `limits`, `metrics`, `server`.
"""
