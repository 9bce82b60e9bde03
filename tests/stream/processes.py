"""Helpers to run tests/stream/worker.py as real child processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")


class Child:
    """A worker process whose stdout lines are collected by a reader thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.first_line = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            self.first_line.set()
        self.first_line.set()

    def finish(self, timeout: float = 120) -> list[str]:
        """Wait for the process to exit by itself; return every line it printed."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert code == 0, f"worker exited {code}: {err}"
        return self.lines

    def kill(self, signal_number: int) -> list[str]:
        """Send a signal, reap the process, return every line it printed."""
        self.proc.send_signal(signal_number)
        self.proc.wait(60)
        self._reader.join(60)
        return self.lines
