"""Workspace checkpoints in a shadow git repository: what the workspace held at each
checkpoint of an acting agent, and putting it back.

The shadow repository lives in ``<workspace>/.sisyphus/shadow.git``, with its own
index, and is driven through environment variables only (GIT_DIR, GIT_WORK_TREE,
GIT_INDEX_FILE), so the workspace's own repository, if it has one, is never read or
written: not its index, HEAD, branches, stash or config. Every call runs with the
system and global git config shut out, no hooks, no automatic gc, no fsmonitor, no
line-ending or filter conversion (the bytes are kept as they are), and a fixed author.

What is snapshotted: every file git would call untracked-but-not-ignored or tracked
(the workspace's .gitignore files, its ``.git/info/exclude`` and the user's global
excludes file decide, as they do for the user's own git), minus the swarm's own
folder, version control folders, the caches and environments tools make and the
ledger the swarm writes. A nested repository or submodule (a folder with its own
``.git``) is its own: left out, never changed by a restore. Ignored files stay out of
every snapshot and a restore never deletes or changes one.

Commits are chained on ``refs/sisyphus/checkpoints`` so every one stays reachable (and
gc never runs). A snapshot costs little when little changed: git's index keeps each
file's stat data, and only files whose stat changed are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sisyphus_tui.agents.config import GITIGNORE
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.faults import describe, is_passing

T = TypeVar("T")

REF = "refs/sisyphus/checkpoints"
SHADOW_DIR = "shadow.git"
AUTHOR = ("sisyphus", "sisyphus@localhost")
# Left out of every snapshot, whatever the workspace's .gitignore says (given on the
# command line, the place whose patterns no .gitignore can negate): the swarm's own
# folder and ledger, version control, and the caches and environments tools rebuild.
EXCLUDED = ("/.sisyphus/", "/SISYPHUS_LEDGER.md", "/.SISYPHUS_LEDGER.md.*", ".git",
            ".hg/", ".svn/", "__pycache__/", ".pytest_cache/", ".mypy_cache/",
            ".ruff_cache/", ".venv/", "venv/", "node_modules/", ".tox/", ".nox/")
# Options on every call (the shadow's config says the same; these win over anything).
OPTIONS = ("core.autocrlf=false", "core.safecrlf=false",
           "core.fsmonitor=false", "core.hooksPath=/dev/null", "core.attributesFile=/dev/null",
           "core.quotePath=false", "core.bare=false", "core.sparseCheckout=false",
           "gc.auto=0", "maintenance.auto=false", "commit.gpgSign=false",
           "advice.addEmbeddedRepo=false", "core.excludesFile=/dev/null")
# Highest-precedence attributes: no text conversion, filter, ident or re-encoding, so a
# restore writes back the bytes that were snapshotted, whatever .gitattributes says.
ATTRIBUTES = "* -text -eol -filter -ident -working-tree-encoding -crlf\n"
_SHA = re.compile(r"^[0-9a-f]{4,64}$")
# The exclusions again, on the command line, where no .gitignore can negate them (for
# the check of what is tracked: what a rule covers is dropped).
_CMDLINE = tuple(f"--exclude={pattern}" for pattern in EXCLUDED)
# What, in the list of what ``git add -A`` took, says the rules may cover a tracked
# file now: a .gitignore changed, or something under an excluded folder was taken.
_RULE_WORDS = (b".gitignore", *{p.strip("/*").split("/")[-1].encode() for p in EXCLUDED})
# git's words for faults that pass: another git holds the index, a full disk, I/O.
_PASSING = ("index.lock", ".lock': File exists", "No space left", "Disk quota",
            "Input/output error", "Resource temporarily unavailable", "Too many open files")


class ShadowError(SisyphusError):
    """A checkpoint could not be taken, read or restored (one line says why)."""

    def __init__(self, text: str, *, passing: bool = False) -> None:
        super().__init__(text)
        # faults.is_passing reads this: a lock or a full disk may pass, so it is retried.
        self.passing = passing


class GitMissing(ShadowError):
    """git is not installed: workspace checkpoints cannot be taken at all."""


class UnknownCommit(ShadowError):
    """The commit asked for is not a checkpoint of this workspace's shadow repository."""


class Shadow:
    """The shadow repository of one workspace: ``snapshot``, ``changes``, ``restore``."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace)

    @property
    def git_dir(self) -> Path:
        """Where the shadow repository is kept."""
        return self.workspace / ".sisyphus" / SHADOW_DIR

    async def snapshot(self, label: str) -> str:
        """Commit the workspace as it is now (chained on REF, ``label`` its message);
        returns the commit's sha."""
        return await self._off_loop(self._locked_snapshot, label)

    async def changes(self, sha: str) -> list[tuple[str, str]]:
        """What restoring ``sha`` would do to the workspace now, sorted by path: ``A``
        (made again), ``M`` (content, mode or kind changed back), ``D`` (removed: a file
        made since, or one ``sha`` did not have)."""
        return await self._off_loop(self._locked_changes, sha)

    async def restore(self, sha: str) -> list[tuple[str, str]]:
        """Put the workspace's non-ignored files back as they were in ``sha`` (contents,
        executable bits, symbolic links; files made since removed, removed ones made
        again); returns what it changed, as ``changes`` does. The workspace as it was
        just before is committed on REF first, so a restore can be undone."""
        return await self._off_loop(self._locked_restore, sha)

    async def compare(self, shas: Sequence[str]) -> dict[str, list[tuple[str, str]] | None]:
        """``changes`` for many commits, the workspace read once: by sha, None for one
        the shadow repository does not have."""
        return await self._off_loop(self._locked_compare, list(shas))

    async def latest(self) -> str | None:
        """The last checkpoint's commit, or None before the first."""
        return await self._off_loop(self._locked_latest)

    async def _off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` in a thread; an error of the operating system (a folder that
        cannot be written, a full disk) becomes a ShadowError, passing if it may pass."""
        try:
            return await asyncio.to_thread(work, *args)
        except OSError as exc:
            raise ShadowError(f"shadow repository {self.git_dir}: {describe(exc)}",
                              passing=is_passing(exc)) from None

    # The work, in a thread, under a lock on the shadow repository (across processes).

    def _locked_snapshot(self, label: str) -> str:
        with self._lock():
            return self._commit(self._stage(), label)

    def _locked_changes(self, sha: str) -> list[tuple[str, str]]:
        self._require()
        with self._lock():
            target = self._resolve(sha)
            return self._diff(self._stage(), target + "^{tree}")

    def _locked_compare(self, shas: list[str]) -> dict[str, list[tuple[str, str]] | None]:
        if not self._made():
            return dict.fromkeys(shas)
        with self._lock():
            now = self._stage()
            found: dict[str, list[tuple[str, str]] | None] = {}
            for sha in shas:
                try:
                    found[sha] = self._diff(now, self._resolve(sha) + "^{tree}")
                except UnknownCommit:
                    found[sha] = None
            return found

    def _locked_restore(self, sha: str) -> list[tuple[str, str]]:
        self._require()
        with self._lock():
            target = self._resolve(sha)
            now = self._stage()
            changed = self._diff(now, target + "^{tree}")
            if not changed:
                return []
            undo = self._commit(now, f"before restoring {target}")
            # A checkout from ``now`` (HEAD, and the index, just staged): git changes only
            # the files that differ, removes what ``target`` lacks, prunes the folders
            # that leaves empty, and refuses, before changing anything, to overwrite or
            # remove a file it does not track (an ignored one in the way; read-tree -u
            # and a plain checkout would overwrite it).
            self._git("update-ref", "--no-deref", "HEAD", undo)
            self._git("checkout", "-q", "--detach", "--no-overwrite-ignore",
                      "--no-recurse-submodules", target)
            return changed

    def _locked_latest(self) -> str | None:
        if not self._made():
            return None
        with self._lock():
            return self._head()

    def _made(self) -> bool:
        """Whether the shadow repository exists (reading never makes one)."""
        return (self.git_dir / "HEAD").is_file()

    def _require(self) -> None:
        if not self._made():
            if not self.workspace.is_dir():
                raise ShadowError(f"workspace not found: {self.workspace}")
            raise UnknownCommit(f"no checkpoints in {self.workspace}: it has no shadow "
                                f"repository ({self.git_dir})")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        root = self.workspace.resolve()
        if not root.is_dir():
            raise ShadowError(f"workspace not found: {root}")
        if shutil.which("git") is None:
            raise GitMissing("git is not installed (workspace checkpoints need it)")
        own = root / ".sisyphus"
        own.mkdir(mode=0o700, exist_ok=True)
        ignore = own / ".gitignore"
        if not ignore.exists():  # the user's git does not list the shadow as new files
            ignore.write_text(GITIGNORE)
        fd = os.open(own / "shadow.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Only this module drives the shadow repository, always under this lock: a
            # lock file of git's found now was left by a process killed mid-call.
            for stale in ("index.lock", REF + ".lock", "HEAD.lock", "config.lock"):
                (self.git_dir / stale).unlink(missing_ok=True)
            self._init(root)
            yield
        finally:
            os.close(fd)

    def _init(self, root: Path) -> None:
        """Make the shadow repository if there is none: made beside, then renamed into
        place, so a repository that is there is a whole one."""
        if (self.git_dir / "HEAD").is_file():
            return
        fresh = self.git_dir.with_name(f"{SHADOW_DIR}.new-{os.getpid()}")
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(self.git_dir, ignore_errors=True)  # half made by a killed process
        self._run(["init", "-q", "--bare", "--template=", str(fresh)], root, git_dir=None)
        os.chmod(fresh, 0o700)  # it holds a copy of every file of the workspace
        for option in OPTIONS:
            key, value = option.split("=", 1)
            self._run(["config", key, value], root, git_dir=fresh)
        (fresh / "info").mkdir(exist_ok=True)
        (fresh / "info" / "attributes").write_text(ATTRIBUTES)
        os.rename(fresh, self.git_dir)

    def _write_excludes(self, root: Path) -> bool:
        """The shadow's ``info/exclude``: the swarm's own exclusions, the user's global
        excludes file, the workspace repository's ``.git/info/exclude`` (read only) and
        the nested repositories found; returns whether it changed."""
        parts = [b"# sisyphus: left out of every checkpoint", *(p.encode() for p in EXCLUDED)]
        for source in _global_excludes(), _user_git_dir(root):
            if source is None:
                continue
            path = source if source.name == "ignore" else source / "info" / "exclude"
            with contextlib.suppress(OSError):
                parts += [b"# " + os.fsencode(path), path.read_bytes()]
        nested = self._nested(root)
        if nested:
            parts += [b"# nested repositories (their own)", *map(_pattern, nested)]
        enclosing = _enclosing_ignored(root)
        if enclosing:
            parts += [b"# ignored by the repository the workspace is in", *enclosing]
        text = b"\n".join(parts) + b"\n"
        target = self.git_dir / "info" / "exclude"
        try:
            if target.read_bytes() == text:
                return False
        except OSError:
            pass
        target.write_bytes(text)
        return True

    def _nested(self, root: Path, found: Sequence[bytes] = ()) -> list[bytes]:
        """The nested repositories known (``found`` added; those whose ``.git`` is gone
        dropped: a folder again, taken like any other)."""
        path = self.git_dir / "info" / "sisyphus-nested"
        try:
            known = [p for p in path.read_bytes().split(b"\0") if p]
        except OSError:
            known = []
        kept = sorted({p.rstrip(b"/") for p in [*known, *found]
                       if os.path.lexists(root / os.fsdecode(p.rstrip(b"/")) / ".git")})
        if kept != known:
            path.write_bytes(b"\0".join(kept))
        return kept

    def _stage(self) -> str:
        """Bring the shadow index to the workspace as it is now; returns its tree.

        One ``git add -A`` does it (the index's stat cache says which files to read
        again) unless something needs looking into: a nested repository git would take
        as a submodule, or ignore rules changed (a tracked file they now cover is
        dropped: never restored over)."""
        root = self.workspace.resolve()
        rules_changed = self._write_excludes(root)
        for _ in range(5):
            done = self._run_raw(["add", "-A", "-v"], root, git_dir=self.git_dir)
            if done.returncode == 0:
                break
            if b"does not have a commit checked out" not in done.stderr:
                raise _failure(["add"], done)
            # A repository with no commit yet, which git cannot take: left out, as any
            # other nested repository (ls-files lists each as its folder, "sub/").
            others = self._git("ls-files", "-z", "-o", "--exclude-standard", *_CMDLINE)
            self._nested(root, [p for p in others.split(b"\0") if p.endswith(b"/")])
            self._write_excludes(root)
        else:
            raise _failure(["add"], done)
        if b"adding embedded git repository" in done.stderr:
            entries = self._git("ls-files", "-z", "-s").split(b"\0")
            links = [e.split(b"\t", 1)[1] for e in entries if e.startswith(b"160000 ")]
            self._git("update-index", "--force-remove", "-z", "--stdin",
                      stdin=b"".join(link + b"\0" for link in links))
            self._nested(root, links)
            self._write_excludes(root)
        if rules_changed or any(word in done.stdout for word in _RULE_WORDS):
            ignored = self._git("ls-files", "-z", "-c", "-i", "--exclude-standard", *_CMDLINE)
            if ignored:
                self._git("update-index", "--force-remove", "-z", "--stdin", stdin=ignored)
        return self._git("write-tree").decode().strip()

    def _commit(self, tree: str, label: str) -> str:
        parent = self._head()
        argv = ["commit-tree", tree, *(["-p", parent] if parent else []), "-F", "-"]
        message = label.replace("\0", "").encode("utf-8", "surrogateescape") or b"checkpoint"
        sha = self._git(*argv, stdin=message).decode().strip()
        # Compare-and-swap on the chain (the lock makes it uncontested; this says so).
        self._git("update-ref", "-m", "checkpoint", REF, sha, parent or "0" * len(sha))
        return sha

    def _head(self) -> str | None:
        out = self._git("rev-parse", "-q", "--verify", REF + "^{commit}", ok=(0, 1))
        return out.decode().strip() or None

    def _resolve(self, sha: str) -> str:
        """The full sha of a commit of the shadow repository (abbreviated accepted)."""
        text = sha.strip().lower()
        if not _SHA.match(text):
            raise UnknownCommit(f"not a commit sha: {sha!r}")
        out = self._git("rev-parse", "-q", "--verify", text + "^{commit}", ok=(0, 1, 128))
        full = out.decode().strip()
        if not full:
            raise UnknownCommit(f"unknown checkpoint commit: {text} (not in {self.git_dir})")
        return full

    def _diff(self, now: str, target: str) -> list[tuple[str, str]]:
        out = self._git("diff-tree", "-r", "-z", "--no-renames", now, target)
        fields = out.split(b"\0")
        changed: list[tuple[str, str]] = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(b":"):
                continue
            old_mode, new_mode, _old, _new, letter = meta[1:].decode().split(" ")
            if "160000" in (old_mode, new_mode):
                continue  # a nested repository's commit: its own, never restored
            changed.append(({"T": "M"}.get(letter[0], letter[0]),
                            os.fsdecode(path)))
        return sorted(changed, key=lambda item: item[1])

    def _git(self, *args: str, stdin: bytes | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
        return self._run(list(args), self.workspace.resolve(), git_dir=self.git_dir,
                         stdin=stdin, ok=ok)

    def _run(self, args: list[str], root: Path, *, git_dir: Path | None,
             stdin: bytes | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
        done = self._run_raw(args, root, git_dir=git_dir, stdin=stdin)
        if done.returncode not in ok:
            raise _failure(args, done)
        return done.stdout if done.returncode == 0 else b""

    def _run_raw(self, args: list[str], root: Path, *, git_dir: Path | None,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        git = shutil.which("git")
        if git is None:
            raise GitMissing("git is not installed (workspace checkpoints need it)")
        argv = [git]
        for option in OPTIONS:
            argv += ["-c", option]
        try:
            return subprocess.run(argv + args, input=stdin, capture_output=True, cwd=root,
                                  env=_environment(root, git_dir), check=False)
        except FileNotFoundError:
            raise GitMissing("git is not installed (workspace checkpoints need it)") from None


def _failure(args: list[str], done: subprocess.CompletedProcess[bytes]) -> ShadowError:
    """The one line that says why a git call failed (and whether that may pass)."""
    error = done.stderr.decode("utf-8", "replace").strip()
    lines = error.splitlines()
    first = next((i for i, part in enumerate(lines) if part.startswith(("fatal:", "error:"))),
                 0)
    line = lines[first] if lines else f"exit {done.returncode}"
    # git lists the paths a refusal is about on the lines after it, one a line, indented.
    named = [part.strip() for part in lines[first + 1:first + 6] if part.startswith("\t")]
    if named:
        line = f"{line.rstrip(':')}: {', '.join(named)}"
    return ShadowError(f"shadow git {args[0]} failed: {line}",
                       passing=any(word in error for word in _PASSING))


def _global_excludes() -> Path | None:
    """The user's global excludes file where git looks by default (the user's own git
    config is shut out, so a core.excludesFile set there is not seen)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                               ".config")
    path = Path(base, "git", "ignore")
    return path if path.is_file() else None


def _enclosing_ignored(root: Path) -> list[bytes]:
    """What the repository the workspace sits inside (a folder above it holds the
    ``.git``) ignores within the workspace, as exact patterns: its .gitignore files
    above the workspace are outside the shadow's work tree, so only that repository's
    git can say (``ls-files``, which reads its index and never writes it). Empty when
    the workspace is no such folder, or that git cannot tell."""
    if _user_git_dir(root) is not None:
        return []  # (the workspace's own repository: its rules are in the work tree)
    if not any((folder / ".git").exists() for folder in root.parents):
        return []
    git = shutil.which("git")
    if git is None:
        return []
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    try:
        done = subprocess.run([git, "-c", "core.quotePath=false", "ls-files", "-z",
                               "--others", "--ignored", "--exclude-standard", "--directory"],
                              cwd=root, env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    out = []
    for path in filter(None, done.stdout.split(b"\0")):
        folder = path.endswith(b"/")
        pattern = _pattern(path.rstrip(b"/"))
        out.append(pattern if folder else pattern[:-1])
    return out


def _pattern(path: bytes) -> bytes:
    """An exclude pattern that matches exactly the folder ``path`` (from the top)."""
    escaped = re.sub(rb"([\\*?\[!#])", rb"\\\1", path)
    escaped = escaped.replace(b"\n", b"?").replace(b"\r", b"?")  # (no way to write them)
    if escaped.endswith(b" "):
        escaped = escaped[:-1] + b"\\ "
    return b"/" + escaped + b"/"


def _environment(root: Path, git_dir: Path | None) -> dict[str, str]:
    """The environment of every git call: nothing of the caller's git settings (a hook
    or an editor may have set GIT_DIR and its kin), the shadow repository's own paths."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1],
        "GIT_ADVICE": "0", "LC_ALL": "C", "LANGUAGE": "C",
    })
    if git_dir is not None:
        env.update({"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(root),
                    "GIT_INDEX_FILE": str(git_dir / "index")})
    return env


def _user_git_dir(root: Path) -> Path | None:
    """The folder of the workspace's own repository (``.git``, or where a ``.git`` file
    points), or None when the workspace is not one."""
    dot = root / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text("utf-8", "replace")
    except OSError:
        return None
    if text.startswith("gitdir:"):
        found = Path(text[len("gitdir:"):].strip())
        return found if found.is_absolute() else root / found
    return None
