"""The ledger module's file helpers on real files: atomic writes and start-up cleanup
never act through a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sisyphus_tui.ledger import remove_leftovers, write_atomically


def test_cleanup_removes_planted_links_not_their_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("theirs\n")
    root = tmp_path / "workspace"
    (root / "inventory").mkdir(parents=True)
    dangling = root / "inventory" / ".repository.py.sisyphus-tmp"
    dangling.symlink_to(outside / "x")
    to_file = root / ".notes.md.sisyphus-tmp"
    to_file.symlink_to(outside / "kept")
    to_folder = root / ".dir.sisyphus-tmp"
    to_folder.symlink_to(outside, target_is_directory=True)
    crashed = root / ".a.py.1234abcd.sisyphus-tmp"
    crashed.write_text("half")
    removed = remove_leftovers(root)
    assert sorted(removed) == sorted([dangling, to_file, to_folder, crashed])
    assert os.listdir(root / "inventory") == []
    assert sorted(os.listdir(root)) == ["inventory"]
    assert sorted(os.listdir(outside)) == ["kept"]
    assert (outside / "kept").read_text() == "theirs\n"


def test_an_atomic_write_replaces_a_link_never_writes_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("theirs\n")
    ledger = tmp_path / "SISYPHUS_LEDGER.md"
    ledger.symlink_to(outside)
    write_atomically(ledger, "# ledger\n")
    write_atomically(tmp_path / "data.bin", b"\x00\x01", mode=0o644)
    assert not ledger.is_symlink() and ledger.read_text() == "# ledger\n"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    assert (tmp_path / "data.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((tmp_path / "data.bin").stat().st_mode) == 0o644
    assert outside.read_text() == "theirs\n"
    assert sorted(os.listdir(tmp_path)) == ["SISYPHUS_LEDGER.md", "data.bin", "outside.md"]
