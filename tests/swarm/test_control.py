"""Gates that block, the review loop's bound, a failing actor, liveness, and the swarm
steered from a second process through control events."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.brains import BRAINS, Brain
from sisyphus_tui.brains.base import Thought
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.demo.script import load_script
from sisyphus_tui.errors import HostFault
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import Event, EventStore, open_store
from tests.conftest import run_cli
from tests.swarm.conftest import demo_argv, run_demo
from tests.swarm.inprocess import run_swarm


def demo_spec(**changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(load_script().spec))
    extra = changes.pop("extra_gates", [])
    spec["gates"] = spec["gates"] + extra
    return spec | changes


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_a_plan_rejected_too_often_blocks_the_run(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(demo_spec(max_review_rounds=1)))
    db = tmp_path / "swarm.db"
    result = run_demo(db, tmp_path / "ws", "--spec", str(spec_file))
    assert result.returncode == 3
    assert result.stderr.startswith("sisyphus: blocked: the plan was rejected 1 times")
    assert count(db, "SELECT count(*) FROM events WHERE type = 'FILE_EDIT'") == 0
    ledger = (tmp_path / "ws" / "SISYPHUS_LEDGER.md").read_text()
    assert "**Phase:** blocked" in ledger and "needs_changes" in ledger


async def test_a_gate_that_stays_red_blocks_after_its_fixes(tmp_path: Path) -> None:
    red = {"name": "always-red", "argv": ["{python}", "-c", "import sys; print('red'); "
                                          "sys.exit(1)"], "timeout_s": 30}
    db = tmp_path / "swarm.db"
    ledger = await run_swarm(db, tmp_path / "ws",
                             spec=demo_spec(extra_gates=[red], max_gate_fixes=1))
    assert ledger.phase == "blocked"
    assert ledger.phase_reason == "gate always-red still fails after 1 fixes"
    runs = count(db, "SELECT count(*) FROM events WHERE type = 'GATE_RESULT' "
                     "AND json_extract(payload, '$.gate') = 'always-red'")
    assert runs == 2, "the first failure, then once more after the executor's fix"
    assert ledger.gates["always-red"].output_tail.strip() == "red"
    assert count(db, "SELECT count(*) FROM events WHERE type = 'MESSAGE' AND "
                     "json_extract(payload, '$.kind') = 'fix_gate'") == 2


class EscapingBrain(ScriptedBrain):
    """A misbehaving brain (a plugin, as a third party could add): at step 2 it tries to
    write outside the workspace."""

    kind = "escaping"

    async def think(self, thought: Thought) -> dict[str, Any]:
        answer = await super().think(thought)
        if thought.purpose == "red" and thought.data.get("step") == 2:
            return {"files": {"../outside.py": "print('escaped')\n"}, "test": answer["test"]}
        return answer


async def test_a_failing_actor_is_recorded_and_stops_the_host_resumably(tmp_path: Path) -> None:
    BRAINS["escaping"] = EscapingBrain
    try:
        db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
        async with await open_store(db) as store:
            await prepare_demo(store, workspace)
            swarm = Swarm(store, workspace, brain="escaping")
            with pytest.raises(HostFault, match="executor failed: WorkspaceError"):
                await swarm.run()
            ledger = swarm.ledger
    finally:
        del BRAINS["escaping"]
    assert not (tmp_path / "outside.py").exists()
    assert ledger.agents["executor"].state == "failed"
    assert "path escapes the workspace" in ledger.agents["executor"].detail
    # A failure is on the record, not a verdict: the run is where it was, for the same
    # command to resume, and no other agent was taken down.
    assert ledger.phase == "execute"
    assert {a.state for name, a in ledger.agents.items()
            if name in ("planner", "validator")} <= {"idle", "waiting"}


async def first(store: EventStore, predicate: Any, start: int = 1,
                within: float = 120) -> Event:
    async def scan() -> Event:
        async for event in store.tail(start):
            if predicate(event):
                return event
        raise AssertionError("unreachable")

    return await asyncio.wait_for(scan(), within)


async def test_liveness_marks_a_silent_agent_stale(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        # Paused from the start: the kernel has its TASK_INIT pending and stays silent.
        await store.append("CONTROL", {"action": "pause"}, actor="human", to="swarm")
        swarm = Swarm(store, workspace, stale_after_s=0.2)
        running = asyncio.create_task(swarm.run())
        stale = await first(store, lambda e: e.type == "AGENT_STALE")
        assert stale.payload["agent"] == "kernel"
        assert stale.payload["silent_s"] >= 0.2
        listed = await asyncio.to_thread(run_cli, "agents", "--json", db=db)
        rows = {r["agent"]: r for r in map(json.loads, listed.stdout.splitlines())}
        assert rows["kernel"]["state"] == "stale" and rows["kernel"]["pending"] == 1
        await store.append("CONTROL", {"action": "stop"}, actor="human", to="swarm")
        await asyncio.wait_for(running, 60)


async def test_a_second_process_steers_the_swarm(tmp_path: Path) -> None:
    """The swarm runs in one process (the real demo command); every request here is a
    real `sisyphus` command in another process."""
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(demo_spec(extra_gates=[{"name": "signoff",
                                                            "human": True}])))
    async with await open_store(db) as store:  # made here, so it can be tailed at once
        host = await asyncio.to_thread(
            subprocess.Popen, demo_argv(db, workspace, "--spec", str(spec_file)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            await first(store, lambda e: e.type == "STATUS_UPDATE"
                        and "awaits `sisyphus approve signoff`" in e.payload["detail"])

            async def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return await asyncio.to_thread(run_cli, *args, db=db)

            refused = await cli("approve", "tests")
            assert refused.returncode == 2 and "command gate" in refused.stderr
            assert (await cli("approve", "nope")).returncode == 2
            assert "unknown agent 'ghost'" in (await cli("wipe", "ghost")).stderr

            spawned = await cli("spawn", "researcher", "r1", "ItemRepository")
            assert spawned.returncode == 0, spawned.stderr
            assert "inventory/repository.py:" in spawned.stdout

            head = await store.head()
            assert (await cli("wipe", "planner")).returncode == 0
            await first(store, lambda e: e.type == "RESUMED"
                        and e.payload["agent"] == "planner", head)

            head = await store.head()
            assert (await cli("wipe", "validator", "--hold")).returncode == 0
            await first(store, lambda e: e.type == "CONTEXT_WIPED"
                        and e.payload["agent"] == "validator", head)
            listed = await cli("agents", "--json")
            states = {r["agent"]: r["state"] for r in map(json.loads, listed.stdout.splitlines())}
            assert states["validator"] == "wiped"
            assert (await cli("resume", "validator")).returncode == 0
            await first(store, lambda e: e.type == "RESUMED"
                        and e.payload["agent"] == "validator", head)

            assert (await cli("pause")).returncode == 0
            assert (await cli("approve", "signoff")).returncode == 0
            assert (await cli("send", "--to", "kernel", "carry on")).returncode == 0
            assert (await cli("unpause")).returncode == 0
            out, err = await asyncio.to_thread(host.communicate, timeout=120)
        finally:
            if host.poll() is None:
                host.kill()
                host.communicate()
    assert host.returncode == 0, err
    assert "swarm paused" in out and "swarm running" in out
    assert "gate signoff: pass" in out
    ledger = (workspace / "SISYPHUS_LEDGER.md").read_text()
    assert "| signoff | pass |" in ledger
    assert "| r1 | researcher | researcher | done |" in ledger
    assert count(db, "SELECT count(*) FROM events WHERE type = 'CONTEXT_WIPED'") == 2


def test_brains_are_pluggable() -> None:
    assert issubclass(EscapingBrain, Brain)
    assert set(BRAINS) >= {"scripted"}


async def test_skill_agent_in_the_background_and_the_foreground(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    skills = workspace / ".sisyphus" / "skills"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        skills.mkdir(parents=True)
        (skills / "sql-scout.md").write_text(
            "---\nname: sql-scout\ndescription: Finds SQL.\nrole: researcher\n"
            "thinking: think\n---\nFind every SQL statement.\n")
        swarm = Swarm(store, workspace)
        running = asyncio.create_task(swarm.run())
        name = await swarm.skill_agent("sql-scout", "scout", "SELECT", run_in_background=True)
        assert name == "scout"
        text = await swarm.skill_agent("researcher", "r2", "check_sql", run_in_background=False,
                                       thinking="ultrathink")
        assert "tools/check_sql.py:" in text
        background = await first(store, lambda e: e.type == "MESSAGE" and e.to == "human"
                                 and e.payload["data"].get("agent") == "scout")
        assert "inventory/" in background.payload["text"]
        spawned = {e.payload["agent"]: e.payload for e in
                   (await store.read(types=["AGENT_SPAWNED"])).events}
        assert spawned["scout"] | {"skill": "sql-scout", "role": "researcher",
                                   "thinking": "think"} == spawned["scout"]
        assert spawned["r2"]["thinking"] == "ultrathink"
        await store.append("CONTROL", {"action": "stop"}, actor="human", to="swarm")
        await asyncio.wait_for(running, 60)


def test_spawn_names_a_broken_skill_file(tmp_path: Path) -> None:
    skills = tmp_path / ".sisyphus" / "skills"
    skills.mkdir(parents=True)
    (skills / "broken.md").write_text("---\nname: broken\ndescription: x\nrole: wizard\n---\nx\n")
    db = tmp_path / "swarm.db"
    assert run_cli("init", db=db).returncode == 0
    result = run_cli("spawn", "broken", "b1", "hello", "--workspace", str(tmp_path), db=db)
    assert result.returncode == 2
    assert str(skills / "broken.md") in result.stderr and "role" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    unknown = run_cli("spawn", "nope", "b1", "hi", db=db)
    assert unknown.returncode == 2 and "unknown skill 'nope'" in unknown.stderr


def test_run_headless_hosts_an_interrupted_swarm(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    started = subprocess.Popen(demo_argv(db, workspace), stdout=subprocess.PIPE, text=True)
    assert started.stdout is not None
    for line in started.stdout:
        if "phase validate" in line:
            break
    started.kill()
    started.communicate()
    result = subprocess.run([*run_cli_argv(), "run", "--headless", "--db", str(db)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming at offset" in result.stdout and "done: 4/4 steps" in result.stdout
    missing = subprocess.run([*run_cli_argv(), "run", "--headless", "--db",
                              str(tmp_path / "new.db")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no task yet" in missing.stderr


def run_cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "sisyphus_tui"]
