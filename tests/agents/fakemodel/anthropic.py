"""The Anthropic Messages API (``POST /v1/messages``, server-sent events), as Claude Code
calls it: ``message_start``, a ``content_block_start``/``_delta``/``_stop`` triple per
block (thinking, text, tool_use with ``input_json_delta``), ``message_delta`` with the
stop reason and usage, ``message_stop``.

The generic tools of a ``Step`` become Claude Code's own: ``read`` -> ``Read``
{file_path}, ``write`` -> ``Write`` {file_path, content}, ``edit`` -> ``Edit``
{file_path, old_string, new_string}, ``shell`` -> ``Bash`` {command}. Claude Code's
file tools want absolute paths: a relative path is joined to the working directory the
CLI states in its system prompt.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tests.agents.fakemodel import FakeModel, Protocol, Reply, Step

# Claude Code's system prompt says "Primary working directory: /abs/path" (2.1.x).
CWD_RE = re.compile(r"(?:Primary working directory|Working directory):\s*(\S+)")


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(block.get("text", "")) for block in system
                         if isinstance(block, dict))
    return ""


def _messages_text(body: dict[str, Any]) -> str:
    """The text of every message (Claude Code may move the environment section, cwd
    included, into the first user message)."""
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(block.get("text", "")) for block in content
                         if isinstance(block, dict) and block.get("type") == "text")
    return "\n".join(parts)


def working_directory(body: dict[str, Any]) -> str | None:
    """The cwd the CLI told the model, if it did."""
    found = CWD_RE.search(_system_text(body)) or CWD_RE.search(_messages_text(body))
    return found.group(1) if found else None


def assistant_turns(body: dict[str, Any]) -> int:
    """How many assistant messages the request's history holds (the step to answer)."""
    return sum(1 for message in body.get("messages") or []
               if isinstance(message, dict) and message.get("role") == "assistant")


class Anthropic(Protocol):
    """The Messages API, streamed. A request without tools (a side call of the CLI:
    a title, a quota check) gets a short plain answer and leaves the script alone."""

    name = "anthropic"

    def handle(self, server: FakeModel, path: str, body: dict[str, Any],
               reply: Reply) -> None:
        if not path.startswith("/v1/messages") or "count_tokens" in path:
            reply.json({"input_tokens": 100})
            return
        if not body.get("tools"):
            self._stream(reply, body, Step(text="ok", input_tokens=10, output_tokens=1))
            return
        self._stream(reply, body, server.step(assistant_turns(body)))

    def tool_call(self, step: Step, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The step's generic tool as Claude Code's tool name and input."""
        args = dict(step.args)
        cwd = working_directory(body)

        def absolute(path: str) -> str:
            if path.startswith("/") or cwd is None:
                return path
            return f"{cwd.rstrip('/')}/{path}"

        if step.tool == "read":
            return "Read", {"file_path": absolute(args["path"])}
        if step.tool == "write":
            return "Write", {"file_path": absolute(args["path"]),
                             "content": args["content"]}
        if step.tool == "edit":
            return "Edit", {"file_path": absolute(args["path"]),
                            "old_string": args["old"], "new_string": args["new"]}
        if step.tool == "shell":
            return "Bash", {"command": args["command"],
                            "description": "run a command"}
        # Any other name is passed through as is (a CLI tool the generic set lacks).
        return str(step.tool), args

    def _stream(self, reply: Reply, body: dict[str, Any], step: Step) -> None:
        model = str(body.get("model") or "claude-fake")
        reply.event({"type": "message_start", "message": {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": step.input_tokens, "output_tokens": 1,
                      "cache_read_input_tokens": step.cached_tokens,
                      "cache_creation_input_tokens": 0}}}, "message_start")
        index = 0
        if step.thinking:
            self._block(reply, index, {"type": "thinking", "thinking": "", "signature": ""},
                        [{"type": "thinking_delta", "thinking": step.thinking},
                         {"type": "signature_delta", "signature": "fake-signature"}])
            index += 1
        if step.text:
            # Sent in two chunks, so a client that does not join deltas shows it.
            half = len(step.text) // 2
            self._block(reply, index, {"type": "text", "text": ""},
                        [{"type": "text_delta", "text": piece}
                         for piece in (step.text[:half], step.text[half:]) if piece])
            index += 1
        stop_reason = "end_turn"
        if step.tool:
            name, tool_input = self.tool_call(step, body)
            encoded = json.dumps(tool_input)
            half = len(encoded) // 2
            self._block(reply, index, {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}",
                                       "name": name, "input": {}},
                        [{"type": "input_json_delta", "partial_json": piece}
                         for piece in (encoded[:half], encoded[half:])])
            stop_reason = "tool_use"
        reply.event({"type": "message_delta",
                     "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                     "usage": {"output_tokens": step.output_tokens}}, "message_delta")
        reply.event({"type": "message_stop"}, "message_stop")

    @staticmethod
    def _block(reply: Reply, index: int, start: dict[str, Any],
               deltas: list[dict[str, Any]]) -> None:
        reply.event({"type": "content_block_start", "index": index, "content_block": start},
                    "content_block_start")
        for delta in deltas:
            reply.event({"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta")
        reply.event({"type": "content_block_stop", "index": index}, "content_block_stop")
