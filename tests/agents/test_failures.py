"""Which agent failures pass (tried again after a wait, never a verdict) and which say
something about the setup; and which say the session to resume is gone (then a new one
starts). The messages are the real CLIs' own, as their backends report them."""

from __future__ import annotations

import pytest

from sisyphus_tui.agents.brain import AgentFailed
from sisyphus_tui.agents.runner import AgentResult, session_missing
from sisyphus_tui.faults import is_passing


def failed(error: str, **fields: object) -> AgentResult:
    return AgentResult("x", 1, error=error, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [
    "claude: API Error: 529 {\"type\":\"overloaded_error\"}",
    "claude: API Error: Unable to connect to API (ConnectionRefused)",
    "codex: We're currently experiencing high demand, which may cause temporary errors.",
    "codex: Reconnecting... waiting for network (Connection failed: error sending request)",
    "codex: stream disconnected before completion: idle timeout waiting for SSE",
    "gemini: API error 500 (INTERNAL): the fake model server fails on purpose",
    "gemini: API error: exception TypeError: fetch failed sending request",
    "opencode: HTTP 503: Service Unavailable (http://127.0.0.1:1/v1/chat/completions)",
    "gemini ended without finishing its turn",
    "claude exited with -9",
])
def test_a_failure_that_may_pass_is_tried_again(error: str) -> None:
    result = failed(error)
    assert result.passing
    assert is_passing(AgentFailed(error, passing=result.passing))


@pytest.mark.parametrize("error", [
    "claude: Not logged in · Please run /login",
    "claude: API Error: 401 {\"error\":{\"message\":\"invalid x-api-key\"}}",
    "codex: unexpected status 401 Unauthorized: bad key",
    "codex: Missing environment variable: `FAKE_API_KEY`.",
    "codex exited with 2: error: unexpected argument '--no-such-flag' found",
    "gemini exited with 41: When using Gemini API, you must specify the GEMINI_API_KEY",
    "opencode exited with 1: ProviderModelNotFoundError: Model not found: fake/nope",
    "claude: something nobody has seen before",
])
def test_a_failure_that_will_not_pass_is_not_retried(error: str) -> None:
    assert not failed(error).passing
    assert not is_passing(AgentFailed(error))


def test_a_timed_out_turn_may_pass() -> None:
    assert failed("claude timed out after 1800s", timed_out=True).passing


@pytest.mark.parametrize(("error", "missing"), [
    ("claude: No conversation found with session ID: 4eb37364", True),
    ("opencode exited with 1: Error: Session not found", True),
    ("gemini exited with 42: Error resuming session: No previous sessions found", True),
    ("codex exited with 1: Error: thread/resume failed: no rollout found for thread id x",
     True),
    ("claude: API Error: 529 overloaded", False),
    ("codex: unexpected status 401 Unauthorized", False),
])
def test_only_a_missing_session_starts_a_new_one(error: str, missing: bool) -> None:
    assert session_missing(failed(error)) is missing


async def test_a_passing_agent_fault_is_waited_out_a_bounded_number_of_times() -> None:
    from sisyphus_tui.faults import retrying

    tries: list[float] = []

    class Quick(AgentFailed):
        retry_after_s = 0.0  # (the wait itself is not what is tested)

    async def attempt() -> None:
        raise Quick("claude: API Error: Unable to connect to API (ConnectionRefused)",
                    passing=True)

    with pytest.raises(Quick):
        await retrying(attempt, lambda exc, n, delay: tries.append(delay))
    assert len(tries) == AgentFailed.max_retries  # then the host stops: exit 4, resumable
