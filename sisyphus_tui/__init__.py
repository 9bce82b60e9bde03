"""sisyphus-tui: supervise swarms of coding agents on a durable event log."""

__version__ = "0.1.0"
