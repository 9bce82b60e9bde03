"""The OpenAI Chat Completions API (``POST /v1/chat/completions``, server-sent events),
as opencode's ``@ai-sdk/openai-compatible`` provider calls it: ``stream: true`` with
``stream_options.include_usage``; chunks whose ``choices[0].delta`` carries the role,
``reasoning_content``, ``content`` and ``tool_calls`` (``index``, ``id``, ``type``,
``function{name, arguments}``, the arguments sent in pieces), a chunk with the
``finish_reason`` (``tool_calls`` or ``stop``), a last chunk with no choices and the
``usage`` (``prompt_tokens``, ``completion_tokens``,
``prompt_tokens_details.cached_tokens``), then ``data: [DONE]``.

The generic tools of a ``Step`` become the CLI's own, as the request's ``tools``
declare them (opencode 1.18: ``read`` {filePath}, ``write`` {filePath, content},
``edit`` {filePath, oldString, newString}, ``bash`` {command, description}): the
parameter names are read from the declarations, so a renamed parameter is noticed
(KeyError in the server, a failed test) rather than sent blindly. Relative paths are
made absolute against the working directory the CLI states in its system prompt.

A request without tools (opencode's title generation for a new session) gets a short
plain title and leaves the script alone.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from tests.agents.fakemodel import FakeModel, Protocol, Reply, Step

# opencode's environment block: "Working directory: /abs/path" (1.18).
CWD_RE = re.compile(r"Working directory:\s*(\S+)")

# generic tool -> (the CLI's tool name, generic argument -> the CLI's parameter name)
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "read": ("read", {"path": "filePath"}),
    "write": ("write", {"path": "filePath", "content": "content"}),
    "edit": ("edit", {"path": "filePath", "old": "oldString", "new": "newString"}),
    "shell": ("bash", {"command": "command"}),
}


def assistant_turns(body: dict[str, Any]) -> int:
    """How many assistant messages the request's history holds (the step to answer)."""
    return sum(1 for message in body.get("messages") or []
               if isinstance(message, dict) and message.get("role") == "assistant")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict))
    return ""


def working_directory(body: dict[str, Any]) -> str | None:
    """The cwd the CLI told the model (in a system message), if it did."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "system":
            found = CWD_RE.search(_content_text(message.get("content")))
            if found:
                return found.group(1)
    return None


def declared_tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The request's tools: name -> its JSON-schema ``parameters``."""
    tools: dict[str, dict[str, Any]] = {}
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            tools[str(function["name"])] = dict(function.get("parameters") or {})
    return tools


class OpenAIChat(Protocol):
    """Chat Completions, streamed."""

    name = "openai-chat"

    def handle(self, server: FakeModel, path: str, body: dict[str, Any],
               reply: Reply) -> None:
        if not path.rstrip("/").endswith("/chat/completions"):
            reply.json({"error": {"message": f"no such endpoint {path}"}}, status=404)
            return
        if not body.get("tools"):
            self._stream(reply, body, Step(text="Fake session title", input_tokens=10,
                                           output_tokens=3))
            return
        self._stream(reply, body, server.step(assistant_turns(body)))

    def tool_call(self, step: Step, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The step's generic tool as the CLI's declared tool name and arguments."""
        tools = declared_tools(body)
        cwd = working_directory(body)
        tool = str(step.tool)
        if tool not in TOOLS:
            return tool, dict(step.args)  # a CLI tool the generic set lacks, as is
        name, params = TOOLS[tool]
        declared = tools.get(name)
        if declared is None:
            raise KeyError(f"the CLI declares no {name!r} tool (it has {sorted(tools)})")
        properties = declared.get("properties") or {}
        arguments: dict[str, Any] = {}
        for generic, param in params.items():
            if param not in properties:
                raise KeyError(f"{name!r} declares no {param!r} (it has {sorted(properties)})")
            value = step.args[generic]
            if generic == "path" and cwd and not str(value).startswith("/"):
                value = f"{cwd.rstrip('/')}/{value}"
            arguments[param] = value
        if name == "bash" and "description" in properties:
            arguments.setdefault("description", "run a command")
        return name, arguments

    def _stream(self, reply: Reply, body: dict[str, Any], step: Step) -> None:
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        model = str(body.get("model") or "fake-model")
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            reply.event({"id": ident, "object": "chat.completion.chunk", "created": created,
                         "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        chunk({"role": "assistant", "content": ""})
        if step.thinking:
            chunk({"reasoning_content": step.thinking})
        if step.text:
            # Sent in two chunks, so a client that does not join deltas shows it.
            half = len(step.text) // 2
            for piece in (step.text[:half], step.text[half:]):
                if piece:
                    chunk({"content": piece})
        finish = "stop"
        if step.tool:
            name, arguments = self.tool_call(step, body)
            encoded = json.dumps(arguments)
            half = len(encoded) // 2
            call_id = f"call_{uuid.uuid4().hex[:20]}"
            chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                   "function": {"name": name, "arguments": encoded[:half]}}]})
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": encoded[half:]}}]})
            finish = "tool_calls"
        chunk({}, finish)
        reply.event({"id": ident, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [],
                     "usage": {"prompt_tokens": step.input_tokens,
                               "completion_tokens": step.output_tokens,
                               "total_tokens": step.input_tokens + step.output_tokens,
                               "prompt_tokens_details": {"cached_tokens": step.cached_tokens}}})
        reply.event("[DONE]")
