"""Brains, by kind: ``make_brain("scripted")``, or a coding agent: ``make_brain("claude",
config)`` (``agents/brain.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sisyphus_tui.brains.base import Brain, Thought
from sisyphus_tui.errors import SisyphusError

if TYPE_CHECKING:
    from sisyphus_tui.agents.config import BrainConfig

__all__ = ["BRAINS", "Brain", "Thought", "make_brain"]


def _scripted() -> Brain:
    from sisyphus_tui.brains.scripted import ScriptedBrain

    return ScriptedBrain()


BRAINS: dict[str, Callable[[], Brain]] = {"scripted": _scripted}


def make_brain(kind: str, config: BrainConfig | None = None) -> Brain:
    """A fresh brain of ``kind`` (each actor gets its own: isolated contexts): one of
    BRAINS, or a coding agent on that backend, run as ``config`` says."""
    if kind in BRAINS:
        return BRAINS[kind]()
    from sisyphus_tui.agents import BACKENDS

    if kind in BACKENDS:
        from sisyphus_tui.agents.brain import AgentBrain
        from sisyphus_tui.agents.config import BrainConfig

        return AgentBrain(config if config is not None and config.backend == kind
                          else BrainConfig(backend=kind))
    raise SisyphusError(f"unknown brain {kind!r} (available: "
                        f"{', '.join(sorted(BRAINS) + list(BACKENDS))})")
