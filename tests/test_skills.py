"""Skills: the built-ins, workspace skills that add or override, and every broken file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.skills import (
    Skill,
    SkillError,
    UnknownSkill,
    get_skill,
    load_skill_file,
    load_skills,
)

BUILTINS = {
    "executor": ("executor", "off"),
    "planner": ("planner", "think"),
    "researcher": ("researcher", "off"),
    "sql-refactor": ("executor", "off"),
    "validator": ("validator", "ultrathink"),
}

GOOD_FRONT_MATTER = "name: {name}\ndescription: Does one thing well.\nrole: researcher\n"


def write_skill(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``folder/<name>.md`` (creating the folder) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def workspace_skills(workspace: Path) -> Path:
    return workspace / ".sisyphus" / "skills"


def test_builtins_load_with_their_roles_and_thinking() -> None:
    skills = load_skills()
    assert list(skills) == sorted(BUILTINS)
    for name, (role, thinking) in BUILTINS.items():
        skill = skills[name]
        assert (skill.name, skill.role, skill.thinking) == (name, role, thinking)
        assert skill.source == "builtin"
        assert skill.description
        # The body is the prompt: stripped, and long enough to be real instructions.
        assert skill.instructions == skill.instructions.strip()
        assert len(skill.instructions) > 500


def test_builtin_instructions_say_what_the_role_is_for() -> None:
    skills = load_skills()
    assert "memory-lane" in skills["planner"].instructions
    assert "approve" in skills["validator"].instructions
    assert "needs_changes" in skills["validator"].instructions
    assert "sha256" in skills["executor"].instructions
    assert "CHECKPOINT" in skills["executor"].instructions
    assert "memory-lane" in skills["researcher"].instructions
    assert "parameter" in skills["sql-refactor"].instructions


def test_builtin_files_are_package_resources() -> None:
    folder = resources.files("sisyphus_tui.skills") / "builtin"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".md"))
    assert names == [f"{name}.md" for name in sorted(BUILTINS)]


def test_a_skill_file_loads_every_field(tmp_path: Path) -> None:
    path = write_skill(
        tmp_path,
        "auditor",
        "---\n"
        "name: auditor\n"
        "description: Audits dependencies.\n"
        "role: validator\n"
        "thinking: think\n"
        "tools: [read_file, search]\n"
        "timeout_s: 90\n"
        "---\n\n"
        "  Check every pinned version.\n\n",
    )
    assert load_skill_file(path) == Skill(
        name="auditor",
        description="Audits dependencies.",
        role="validator",
        thinking="think",
        tools=("read_file", "search"),
        timeout_s=90.0,
        instructions="Check every pinned version.",
        source=str(path),
    )


@pytest.mark.parametrize("spelling", ["off", "'off'", "false"])
def test_thinking_off_in_any_yaml_spelling(tmp_path: Path, spelling: str) -> None:
    path = write_skill(
        tmp_path,
        "quiet",
        f"---\n{GOOD_FRONT_MATTER.format(name='quiet')}thinking: {spelling}\n---\nBody.\n",
    )
    assert load_skill_file(path).thinking == "off"


def test_crlf_line_endings_and_a_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "windows.md"
    text = f"\ufeff---\n{GOOD_FRONT_MATTER.format(name='windows')}---\nBody.\n"
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    skill = load_skill_file(path)
    assert (skill.name, skill.instructions) == ("windows", "Body.")


def test_a_workspace_skill_is_added_and_one_overrides_a_builtin(tmp_path: Path) -> None:
    folder = workspace_skills(tmp_path)
    added = write_skill(
        folder, "auditor", f"---\n{GOOD_FRONT_MATTER.format(name='auditor')}---\nAudit.\n"
    )
    override = write_skill(
        folder,
        "planner",
        "---\nname: planner\ndescription: Plans in haiku.\nrole: planner\n"
        "thinking: ultrathink\n---\nPlan in three lines.\n",
    )
    (folder / "notes.txt").write_text("not a skill", encoding="utf-8")

    skills = load_skills(tmp_path)
    assert list(skills) == sorted([*BUILTINS, "auditor"])
    assert skills["auditor"].source == str(added)
    assert skills["planner"].source == str(override)
    assert skills["planner"].thinking == "ultrathink"
    assert skills["planner"].instructions == "Plan in three lines."
    assert skills["validator"].source == "builtin"
    assert get_skill("planner", tmp_path) == skills["planner"]
    # Without the workspace the built-in is untouched.
    assert get_skill("planner").source == "builtin"


def test_a_workspace_without_skills_has_the_builtins(tmp_path: Path) -> None:
    assert list(load_skills(tmp_path)) == sorted(BUILTINS)


def test_a_broken_workspace_skill_is_an_error_not_skipped(tmp_path: Path) -> None:
    path = write_skill(workspace_skills(tmp_path), "broken", "no front matter\n")
    with pytest.raises(SkillError, match="broken.md"):
        load_skills(tmp_path)
    with pytest.raises(SkillError, match="broken.md"):
        get_skill("planner", tmp_path)
    assert path.exists()


def test_unknown_skill_lists_the_available_names(tmp_path: Path) -> None:
    write_skill(
        workspace_skills(tmp_path),
        "auditor",
        f"---\n{GOOD_FRONT_MATTER.format(name='auditor')}---\nAudit.\n",
    )
    with pytest.raises(UnknownSkill) as caught:
        get_skill("foo")
    assert str(caught.value) == (
        "unknown skill 'foo' (available: executor, planner, researcher, sql-refactor, validator)"
    )
    with pytest.raises(UnknownSkill, match=r"available: auditor, executor, "):
        get_skill("foo", tmp_path)
    assert isinstance(caught.value, SisyphusError)


BROKEN = [
    pytest.param("Just a body, no front matter.\n", "no front matter", id="no-front-matter"),
    pytest.param("", "no front matter", id="empty-file"),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\nBody, but no closing line.\n",
        "front matter: not closed",
        id="unterminated",
    ),
    pytest.param(
        "---\nname: broken\ndescription: [unclosed\nrole: planner\n---\nBody.\n",
        "front matter is not valid YAML (line 4: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts on line 3))",
        id="invalid-yaml",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\n---\nBody.\n",
        "role: Field required",
        id="missing-role",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: coder\n---\nBody.\n",
        "role: Input should be 'planner', 'validator', 'executor' or 'researcher' (got 'coder')",
        id="wrong-role",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\nthinking: hard\n---\nBody.\n",
        "thinking: Input should be 'off', 'think' or 'ultrathink' (got 'hard')",
        id="bad-thinking",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\nthinking: on\n---\nBody.\n",
        "thinking: Input should be 'off', 'think' or 'ultrathink' (got True)",
        id="thinking-on-is-not-a-level",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\nmodel: big\n---\nBody.\n",
        "model: unknown field (allowed: name, description, role, thinking, tools, timeout_s)",
        id="unknown-field",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\ninstructions: hi\n---\nBody.\n",
        "instructions: unknown field",
        id="instructions-only-from-the-body",
    ),
    pytest.param(
        "---\nname: other\ndescription: x\nrole: planner\n---\nBody.\n",
        "name: 'other' does not match the file name (expected 'broken')",
        id="name-not-stem",
    ),
    pytest.param(
        "---\ndescription: x\nrole: planner\n---\nBody.\n",
        "name: Field required",
        id="missing-name",
    ),
    pytest.param(
        "---\nname: broken\ndescription: '   '\nrole: planner\n---\nBody.\n",
        "description: must not be empty",
        id="empty-description",
    ),
    pytest.param(
        "---\nname: broken\ndescription:\nrole: planner\n---\nBody.\n",
        "description: Input should be a valid string",
        id="null-description",
    ),
    pytest.param(
        "---\n- name: broken\n- role: planner\n---\nBody.\n",
        "front matter: must be a mapping of fields ('key: value' lines), not a list",
        id="list-front-matter",
    ),
    pytest.param(
        "---\njust words\n---\nBody.\n",
        "front matter: must be a mapping of fields ('key: value' lines), not a string",
        id="string-front-matter",
    ),
    pytest.param("---\n---\nBody.\n", "front matter: empty", id="empty-front-matter"),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\nrole: executor\n---\nBody.\n",
        "role: given twice (again on line 5)",
        id="duplicate-field",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\ntools: grep\n---\nBody.\n",
        "tools: must be a list of tool names, e.g. [grep] (got 'grep')",
        id="tools-not-a-list",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\ntimeout_s: 0\n---\nBody.\n",
        "timeout_s: Input should be greater than 0 (got 0)",
        id="timeout-not-positive",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\ntimeout_s: yes\n---\nBody.\n",
        "timeout_s: must be a number of seconds, not a boolean",
        id="timeout-boolean",
    ),
    pytest.param(
        "---\nname: broken\ndescription: x\nrole: planner\n---\n   \n",
        "instructions: empty",
        id="empty-body",
    ),
]


@pytest.mark.parametrize(("text", "problem"), BROKEN)
def test_a_broken_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write_skill(tmp_path, "broken", text)
    with pytest.raises(SkillError) as caught:
        load_skill_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_a_bad_name_is_refused_even_when_it_matches_the_file(tmp_path: Path) -> None:
    path = write_skill(
        tmp_path, "has space", "---\nname: has space\ndescription: x\nrole: planner\n---\nB\n"
    )
    with pytest.raises(SkillError, match=r"has space\.md: name: 'has space' is not a valid"):
        load_skill_file(path)


def test_a_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.md"
    path.write_bytes(
        "---\nname: latin\ndescription: caf\xe9\nrole: planner\n---\nB\n".encode("latin-1")
    )
    with pytest.raises(SkillError) as caught:
        load_skill_file(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 32)"


def test_a_missing_file_is_a_skill_error(tmp_path: Path) -> None:
    path = tmp_path / "ghost.md"
    with pytest.raises(SkillError, match=r"ghost\.md: cannot read \(No such file"):
        load_skill_file(path)


def test_control_characters_cannot_break_the_one_line_message(tmp_path: Path) -> None:
    path = write_skill(
        tmp_path, "broken", '---\nname: broken\ndescription: x\nrole: "a\\nb\\x1b[2J"\n---\nB\n'
    )
    with pytest.raises(SkillError) as caught:
        load_skill_file(path)
    assert "\n" not in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_skills_are_frozen() -> None:
    skill = get_skill("planner")
    with pytest.raises(ValueError, match="frozen"):
        skill.role = "executor"
