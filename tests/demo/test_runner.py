"""Starting a run's workspace on real folders: copy_sample never acts through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sisyphus_tui.demo.runner import WorkspaceConflict, copy_sample


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample"
    (path / "inventory").mkdir(parents=True)
    (path / "inventory" / "repository.py").write_text("REPO = 1\n")
    return path


def test_links_at_the_staging_names_are_removed_not_followed(
    tmp_path: Path, sample: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    parent = tmp_path / "runs"
    parent.mkdir()
    ours = parent / f".ws.{os.getpid()}.sisyphus-tmp"
    ours.symlink_to(outside, target_is_directory=True)
    dangling = parent / ".ws.1.sisyphus-tmp"
    dangling.symlink_to(tmp_path / "nowhere")
    workspace = parent / "ws"
    copy_sample(sample, workspace)
    assert not workspace.is_symlink()
    assert (workspace / "inventory" / "repository.py").read_text() == "REPO = 1\n"
    assert os.listdir(parent) == ["ws"]
    assert os.listdir(outside) == []


def test_a_workspace_that_is_a_link_is_refused(tmp_path: Path, sample: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workspace = tmp_path / "ws"
    workspace.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(WorkspaceConflict, match=f"workspace is a symbolic link: {workspace}"):
        copy_sample(sample, workspace)
    assert os.listdir(elsewhere) == []
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "sample", "ws"]


def test_a_workspace_holding_a_link_is_not_the_sample(tmp_path: Path, sample: Path) -> None:
    """The comparison with the sample does not read through a link out of the workspace."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "repository.py").write_text("REPO = 1\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "inventory").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WorkspaceConflict, match="is not empty"):
        copy_sample(sample, workspace)
