"""Skills: Markdown files with YAML front matter that define specialised agents.

A skill file starts with a ``---`` line, then YAML fields (``name``, ``description``,
``role``, optionally ``thinking``, ``tools``, ``timeout_s``), then a closing ``---``
line; the Markdown after it is the agent's instructions. The built-in skills ship in
``sisyphus_tui/skills/builtin/``; a workspace adds or overrides them with files in
``<workspace>/.sisyphus/skills/*.md``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

# No type stubs for PyYAML in the environment (types-PyYAML is not a dev dependency).
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.safe_text import printable

__all__ = [
    "FRONT_MATTER_FIELDS",
    "Role",
    "Skill",
    "SkillError",
    "Thinking",
    "UnknownSkill",
    "get_skill",
    "load_skill_file",
    "load_skills",
]

Role = Literal["planner", "validator", "executor", "researcher"]
Thinking = Literal["off", "think", "ultrathink"]

# The fields a file's front matter may set; ``instructions`` and ``source`` come from
# the file itself, so setting them in the front matter is an unknown-field error.
FRONT_MATTER_FIELDS = ("name", "description", "role", "thinking", "tools", "timeout_s")

# Same first-character and length rules as agent names (mail.AGENT_NAME), since a
# skill's name is typed on the command line and often becomes an agent's name.
_SKILL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FENCE = "---"
_WORKSPACE_DIR = Path(".sisyphus") / "skills"


class SkillError(SisyphusError):
    """A skill file cannot be used; the one-line message names the file and the field."""


class UnknownSkill(SisyphusError):
    """No built-in or workspace skill has the asked-for name."""


class Skill(BaseModel):
    """A specialised agent: its role, how hard it thinks, and its instructions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    role: Role
    thinking: Thinking = "off"
    tools: tuple[str, ...] = ()
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    instructions: str
    source: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _SKILL_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid skill name (letters, digits, '-' and '_', "
                "starting with a letter or digit, at most 64 characters)"
            )
        return value

    @field_validator("description", "instructions")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("thinking", mode="before")
    @classmethod
    def _bare_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as the boolean False; that is what the author meant.
        return "off" if value is False else value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools_list(cls, value: object) -> object:
        # A bare `tools: grep` would otherwise be "not a valid tuple", which is
        # pydantic's word, not the YAML author's.
        if isinstance(value, str):
            raise ValueError(f"must be a list of tool names, e.g. [{value}] (got {value!r})")
        return value

    @field_validator("tools")
    @classmethod
    def _named_tools(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not tool.strip() for tool in value):
            raise ValueError("tool names must not be empty")
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _no_bool_timeout(cls, value: object) -> object:
        # pydantic would read `yes` (True) as 1.0 seconds; that is never what was meant.
        if isinstance(value, bool):
            raise ValueError("must be a number of seconds, not a boolean")
        return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice instead of keeping the last."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: PyYAML itself reports it below
            if duplicate:
                raise _DuplicateKey(str(key), key_node.start_mark.line)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class _DuplicateKey(Exception):
    """Raised inside the YAML loader; carries the key and its 0-based line."""

    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key = key
        self.line = line


def _fail(label: str, problem: str) -> SkillError:
    # printable() keeps the message on one line whatever the file name or YAML holds.
    return SkillError(printable(f"{label}: {problem}"))


def _describe(error: ValidationError) -> str:
    """The first validation problem as '<field>: <problem>', with the offending value."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "front matter"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] not in ("missing", "value_error") and isinstance(
        first.get("input"), str | int | float | bool
    ):
        message += f" (got {first['input']!r})"
    return f"{field}: {message}"


def _split(text: str, label: str) -> tuple[str, str]:
    """The front matter's YAML text and the Markdown body of a skill file."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        raise _fail(label, "no front matter (the file must start with a '---' line)")
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == _FENCE:
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    raise _fail(label, "front matter: not closed (no '---' line after the one on line 1)")


def _parse_front_matter(source: str, label: str) -> dict[str, Any]:
    """The front matter as a mapping of field names, or a SkillError saying why not."""
    try:
        data = yaml.load(source, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        # +2: the YAML starts on the file's second line and marks count from 0.
        raise _fail(label, f"{exc.key}: given twice (again on line {exc.line + 2})") from None
    except yaml.MarkedYAMLError as exc:
        raise _fail(label, f"front matter is not valid YAML ({_yaml_problem(exc)})") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise _fail(label, f"front matter is not valid YAML ({problem})") from None
    if data is None:
        raise _fail(label, "front matter: empty (it needs at least name, description and role)")
    if not isinstance(data, dict):
        raise _fail(
            label,
            "front matter: must be a mapping of fields ('key: value' lines), "
            f"not a {_yaml_kind(data)}",
        )
    fields = {str(key): value for key, value in data.items()}
    for key in fields:
        if key not in FRONT_MATTER_FIELDS:
            raise _fail(label, f"{key}: unknown field (allowed: {', '.join(FRONT_MATTER_FIELDS)})")
    return fields


def _yaml_problem(exc: Any) -> str:
    """A MarkedYAMLError as 'line N: problem (while ... on line M)', in file lines."""

    # +2: the YAML starts on the file's second line and marks count from 0.
    def line(mark: Any) -> str:
        return f"line {mark.line + 2}"

    problem = " ".join(str(exc.problem or exc.context or "").split())
    if exc.problem_mark is not None:
        problem = f"{line(exc.problem_mark)}: {problem}"
    # The context ("while parsing a flow sequence") points at where the mistake began,
    # which is often a line earlier than where PyYAML noticed it.
    if exc.problem and exc.context and exc.context_mark is not None:
        context = " ".join(str(exc.context).split())
        problem += f" ({context} that starts on {line(exc.context_mark)})"
    return problem


def _yaml_kind(value: object) -> str:
    """How a YAML author would name the kind of ``value``."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _parse(text: str, label: str, stem: str, source: str) -> Skill:
    """A validated Skill from a file's text; ``label`` names the file in errors."""
    front_matter, body = _split(text.removeprefix("\ufeff"), label)
    fields = _parse_front_matter(front_matter, label)
    try:
        skill = Skill.model_validate({**fields, "instructions": body, "source": source})
    except ValidationError as exc:
        message = _describe(exc)
        if message.startswith("instructions: "):
            message = "instructions: empty (write them as Markdown after the closing '---')"
        raise _fail(label, message) from None
    if skill.name != stem:
        raise _fail(label, f"name: {skill.name!r} does not match the file name (expected {stem!r})")
    return skill


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            label, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_skill_file(path: Path) -> Skill:
    """Load and validate one skill file; SkillError names the file and the field."""
    label = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(label, f"cannot read ({exc.strerror or exc})") from None
    return _parse(_decode(data, label), label, path.stem, source=label)


def _builtin_dir() -> Traversable:
    return resources.files("sisyphus_tui.skills") / "builtin"


@functools.cache
def _builtins() -> dict[str, Skill]:
    # Shipped with the package and never change while running, so read them once.
    skills: dict[str, Skill] = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".md") or not entry.is_file():
            continue
        label = f"builtin/{entry.name}"
        stem = entry.name.removesuffix(".md")
        skills[stem] = _parse(_decode(entry.read_bytes(), label), label, stem, "builtin")
    return skills


def load_skills(workspace: Path | None = None) -> dict[str, Skill]:
    """The built-in skills, overridden by name by ``workspace/.sisyphus/skills/*.md``.

    Sorted by name. A broken workspace file is a SkillError, never silently skipped.
    """
    skills = dict(_builtins())
    if workspace is not None:
        folder = workspace / _WORKSPACE_DIR
        if folder.is_dir():
            for path in sorted(folder.glob("*.md")):
                if path.is_file():
                    skill = load_skill_file(path)
                    skills[skill.name] = skill
    return dict(sorted(skills.items()))


def get_skill(name: str, workspace: Path | None = None) -> Skill:
    """The skill called ``name`` (a workspace one wins over a built-in); else UnknownSkill."""
    skills = load_skills(workspace)
    try:
        return skills[name]
    except KeyError:
        raise UnknownSkill(
            printable(f"unknown skill {name!r} (available: {', '.join(skills)})")
        ) from None
