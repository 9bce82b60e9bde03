"""Benchmarks for sisyphus-tui; run ``uv run python -m benchmarks.stream`` from the project root."""
