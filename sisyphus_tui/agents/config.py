"""Which brain each role thinks with: ``.sisyphus/config.toml`` in the workspace, read
with ``tomllib``, and ``--brain`` over it.

    [brain]                 # every role's default
    backend = "claude"      # scripted, claude, codex, gemini, opencode or acp
    model = "sonnet"
    allow = ["Bash(pytest*)"]

    [roles.validator]       # a role with a backend of its own starts afresh
    backend = "codex"       # (no model carried over from another backend)

    [roles.executor]        # without one, it adds to the default
    args = ["--max-turns", "40"]
    env = { CLAUDE_CODE_MAX_OUTPUT_TOKENS = "16000" }

An ACP agent names its command: ``backend = "acp"``, ``command = ["opencode", "acp"]``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.events import describe_validation

CONFIG_FILE = Path(".sisyphus") / "config.toml"
BRAIN_KINDS = ("scripted", "claude", "codex", "gemini", "opencode", "acp")
ROLES_CONFIGURED = ("kernel", "planner", "validator", "executor", "researcher")


AGENTS_FOLDER = Path(".sisyphus") / "agents"
# The swarm's folder in a repository: its log and its agents' files stay out of version
# control; the config and skills a team shares stay in.
GITIGNORE = ("# sisyphus: the log and the agents' own files stay out of version control\n"
             "*\n!.gitignore\n!config.toml\n!skills/\n")


def agent_folder(workspace: Path, name: str) -> Path:
    """Where agent ``name`` keeps files of its own in ``workspace`` (made, with a
    ``.gitignore`` in ``.sisyphus`` so none of it is committed by accident). Blocking:
    call it off the event loop."""
    folder = workspace / AGENTS_FOLDER / name
    folder.mkdir(parents=True, exist_ok=True)
    ignore = workspace / ".sisyphus" / ".gitignore"
    if not ignore.exists():
        ignore.write_text(GITIGNORE)
    return folder


# An argument that names a secret (``--api-key X``, ``--token=X``, ``KEY=X``): its value
# is kept out of the log.
_SECRET = re.compile(r"(?:key|token|secret|password|passwd|credential)", re.IGNORECASE)


def redacted(args: tuple[str, ...]) -> list[str]:
    """``args`` with the value of anything that names a secret replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            out.append("***")
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        if _SECRET.search(name):
            if eq:
                out.append(f"{name}=***")
                continue
            hide_next = arg.startswith("-")
        out.append(arg)
    return out


class ConfigError(SisyphusError):
    """A config that cannot be used: the message names the file and the field."""


class BrainConfig(BaseModel):
    """One brain: its backend and how to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "scripted"
    model: str | None = None
    thinking: Literal["off", "think", "ultrathink"] | None = None  # None: the skill's
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    allow: tuple[str, ...] = ()  # tools beyond editing the workspace, allowed
    deny: tuple[str, ...] = ()
    command: tuple[str, ...] = ()  # ACP: the agent's command; else a binary's path
    timeout_s: float = Field(default=1800.0, gt=0)
    # The permission policy beyond allow/deny: tools that ask a person (anything no
    # rule names asks too), how long a question waits (None: until answered) and what
    # the answer is then.
    ask: tuple[str, ...] = ()
    ask_timeout_s: float | None = Field(default=None, gt=0)
    on_timeout: Literal["allow", "deny"] = "deny"
    # A turn with no output for this long shows ``stalled``.
    stall_s: float = Field(default=300.0, gt=0)
    # A turn found in doubt after a crash is done again by resuming its backend
    # session (with a note that it was interrupted), or in a fresh one.
    on_interrupt: Literal["resume", "fresh"] = "resume"

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        from sisyphus_tui.brains import BRAINS

        if value not in BRAIN_KINDS and value not in BRAINS:
            raise ValueError(f"unknown brain {value!r} (available: {', '.join(BRAIN_KINDS)})")
        return value

    @field_validator("command", "args", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """A command (or its arguments) may be one string, split as a shell would
        (never run by one)."""
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("allow", "deny", "ask", mode="before")
    @classmethod
    def _one_tool(cls, value: Any) -> Any:
        """One tool may be written without the list around it."""
        return [value] if isinstance(value, str) else value

    def record(self) -> dict[str, Any]:
        """What AGENT_SPAWNED keeps of it, so a resume rebuilds the same brain: all but
        the environment's values and any secret in its arguments (the user's secrets
        stay out of the log)."""
        data = self.model_dump(mode="json", exclude={"env"})
        data["env_names"] = sorted(self.env)
        data["args"] = redacted(self.args)
        data["command"] = redacted(self.command)
        return data

    @classmethod
    def from_record(cls, record: dict[str, Any], current: BrainConfig | None = None,
                    ) -> BrainConfig:
        """The brain AGENT_SPAWNED recorded; its environment's values, and its
        arguments and command where the record hid a secret, from ``current`` (the
        config as it is now) when that is on the same backend."""
        fields = {k: v for k, v in record.items() if k in cls.model_fields and k != "env"}
        same = current is not None and current.backend == fields.get("backend")
        env = dict(current.env) if current is not None and same else {}
        for name in ("args", "command"):
            if same and "***" in " ".join(map(str, fields.get(name) or ())):
                fields[name] = getattr(current, name)
        names = record.get("env_names") or []
        return cls.model_validate({**fields, "env": {n: env[n] for n in names if n in env}})


class Price(BaseModel):
    """A model's price in USD per million tokens: what a backend that reports tokens
    but no cost is estimated at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached: float = Field(default=0.0, ge=0)


class BudgetConfig(BaseModel):
    """What a run may spend, in USD: the whole run, and each agent (None: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_usd: float | None = Field(default=None, gt=0)
    agent_usd: float | None = Field(default=None, gt=0)


class RunConfig(BaseModel):
    """A workspace's config: a default brain and one per role; prices (by model name),
    the budget, and how many agents each backend may run at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    brain: BrainConfig = BrainConfig()
    roles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    budget: BudgetConfig = BudgetConfig()
    concurrency: dict[str, int] = Field(default_factory=dict)  # backend -> at most

    @field_validator("concurrency")
    @classmethod
    def _caps(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cap in value.items():
            if cap < 1:
                raise ValueError(f"concurrency.{name} must be at least 1")
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for role, table in value.items():
            if role not in ROLES_CONFIGURED:
                raise ValueError(f"unknown role {role!r} (roles: "
                                 f"{', '.join(ROLES_CONFIGURED)})")
            if not isinstance(table, dict):
                raise ValueError(f"roles.{role} must be a table")
            try:
                BrainConfig.model_validate(table)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{role}.{where}: {first['msg']}") from None
        return value

    def for_role(self, role: str) -> BrainConfig:
        """The brain ``role`` thinks with."""
        table = self.roles.get(role)
        if table is None:
            return self.brain
        if "backend" in table and table["backend"] != self.brain.backend:
            return BrainConfig.model_validate(table)
        return BrainConfig.model_validate({**self.brain.model_dump(), **table})

    def overridden(self, backend: str) -> RunConfig:
        """Every role on ``backend`` (``--brain``): the config's settings for that
        backend still apply, those of any other are dropped."""
        if backend not in BRAIN_KINDS:
            raise ConfigError(f"unknown brain {backend!r} (available: "
                              f"{', '.join(BRAIN_KINDS)})")
        default = self.brain if self.brain.backend == backend else BrainConfig(
            backend=backend)
        roles = {role: table for role, table in self.roles.items()
                 if self.for_role(role).backend == backend}
        return RunConfig(brain=default, roles=roles, prices=self.prices,
                         budget=self.budget, concurrency=self.concurrency)


def load_config(workspace: Path) -> RunConfig:
    """The workspace's ``.sisyphus/config.toml`` (the scripted default without one);
    ConfigError names the file and what is wrong."""
    path = workspace / CONFIG_FILE
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return RunConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation(exc)}") from None
