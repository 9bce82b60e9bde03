"""Actors by role: the kernel and the roles skills can spawn."""

from __future__ import annotations

from sisyphus_tui.actors.base import SisyphusActor, SwarmContext, Turn
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.actors.kernel import Kernel
from sisyphus_tui.actors.planner import Planner
from sisyphus_tui.actors.researcher import Researcher
from sisyphus_tui.actors.validator import Validator

ROLES: dict[str, type[SisyphusActor]] = {
    "kernel": Kernel,
    "planner": Planner,
    "validator": Validator,
    "executor": Executor,
    "researcher": Researcher,
}

__all__ = ["ROLES", "SisyphusActor", "SwarmContext", "Turn"]
