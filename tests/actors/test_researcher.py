"""The researcher's workspace search on real files: links are never followed out."""

from __future__ import annotations

import os
from pathlib import Path

from sisyphus_tui.actors.researcher import search_workspace


def test_links_out_of_the_workspace_are_not_searched(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "docs").mkdir(parents=True)
    (outside / "secret.md").write_text("the repository password is hunter2\n")
    (outside / "secret.bin").write_text("repository password in a binary-named file\n")
    (outside / "docs" / "more.md").write_text("repository password again\n")
    root = tmp_path / "workspace"
    (root / "inventory").mkdir(parents=True)
    (root / "inventory" / "repository.py").write_text("# repository password: none\n")
    (root / "notes.md").symlink_to(outside / "secret.md")
    (root / "other.md").symlink_to(outside / "secret.bin")
    (root / "docs").symlink_to(outside / "docs", target_is_directory=True)
    os.mkfifo(root / "pipe.md")  # reading it would block the search forever
    hits = search_workspace(root, "repository password")
    assert hits == [{"path": "inventory/repository.py", "line": 1,
                     "text": "# repository password: none"}]
