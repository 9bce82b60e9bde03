"""Brains, by kind: ``make_brain("scripted")``. Real agent brains join this registry."""

from __future__ import annotations

from collections.abc import Callable

from sisyphus_tui.brains.base import Brain, Thought
from sisyphus_tui.errors import SisyphusError

__all__ = ["BRAINS", "Brain", "Thought", "make_brain"]


def _scripted() -> Brain:
    from sisyphus_tui.brains.scripted import ScriptedBrain

    return ScriptedBrain()


BRAINS: dict[str, Callable[[], Brain]] = {"scripted": _scripted}


def make_brain(kind: str) -> Brain:
    """A fresh brain of ``kind`` (each actor gets its own: isolated contexts)."""
    try:
        return BRAINS[kind]()
    except KeyError:
        raise SisyphusError(
            f"unknown brain {kind!r} (available: {', '.join(sorted(BRAINS))})"
        ) from None
