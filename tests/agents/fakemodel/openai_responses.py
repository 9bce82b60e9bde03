"""The OpenAI Responses API (``POST {base_url}/responses``, server-sent events), as Codex
calls it: ``response.created``, then per output item ``response.output_item.added``, its
deltas (``response.reasoning_summary_text.delta``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ``response.custom_tool_call_input.delta``)
and ``response.output_item.done``, then ``response.completed`` with the usage
(``input_tokens_details.cached_tokens`` included).

The generic tools of a ``Step`` become the tools the request offers (Codex 0.171.0 with a
model it knows, e.g. ``gpt-5.5``: the function ``exec_command`` {cmd} and the freeform
custom tool ``apply_patch``; with a model it does not know, no ``apply_patch``): ``read``
-> ``exec_command`` ``cat PATH``; ``write`` -> ``apply_patch`` ``*** Add File``;
``edit`` -> ``apply_patch`` ``*** Update File``; ``shell`` -> ``exec_command``. Without
``apply_patch`` a write or an edit is done by a shell command instead.

The step to answer is the number of model turns already in ``body["input"]``: runs of
consecutive model output items (reasoning, assistant message, tool calls), each ended by
an item the client wrote (a user message, a tool's output).
"""

from __future__ import annotations

import json
import shlex
import uuid
from typing import Any

from tests.agents.fakemodel import FakeModel, Protocol, Reply, Step

MODEL_ITEMS = ("reasoning", "function_call", "custom_tool_call", "local_shell_call")
CHUNK = 65536  # a long text goes out in deltas of this size


def _is_model_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    if item.get("type") == "message":
        return item.get("role") == "assistant"
    return item.get("type") in MODEL_ITEMS


def model_turns(body: dict[str, Any]) -> int:
    """How many model answers the request's history holds (the step to answer)."""
    turns = 0
    inside = False
    for item in body.get("input") or []:
        if _is_model_item(item):
            if not inside:
                turns += 1
            inside = True
        else:
            inside = False
    return turns


def tool_names(body: dict[str, Any]) -> set[str]:
    """The names of the tools the request offers (namespaces' tools included)."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("name"):
            names.add(str(tool["name"]))
        for inner in tool.get("tools") or []:
            if isinstance(inner, dict) and inner.get("name"):
                names.add(str(inner["name"]))
    return names


def patch_lines(text: str, prefix: str) -> list[str]:
    """``text``'s lines, each with the patch prefix (``+``, ``-``)."""
    return [prefix + line for line in text.split("\n")]


def write_patch(path: str, content: str) -> str:
    """An apply_patch that creates ``path`` (a trailing newline is the patch's own)."""
    body = content[:-1] if content.endswith("\n") else content
    return "\n".join(["*** Begin Patch", f"*** Add File: {path}",
                      *patch_lines(body, "+"), "*** End Patch", ""])


def edit_patch(path: str, old: str, new: str) -> str:
    """An apply_patch that replaces the lines ``old`` with ``new`` in ``path``."""
    return "\n".join(["*** Begin Patch", f"*** Update File: {path}", "@@",
                      *patch_lines(old.rstrip("\n"), "-"),
                      *patch_lines(new.rstrip("\n"), "+"), "*** End Patch", ""])


class OpenAIResponses(Protocol):
    """The Responses API, streamed. A request without tools (a side call of the CLI: a
    compaction, a title) gets a short plain answer and leaves the script alone."""

    name = "openai-responses"

    def handle(self, server: FakeModel, path: str, body: dict[str, Any],
               reply: Reply) -> None:
        if not path.rstrip("/").endswith("/responses"):
            reply.json({"object": "list", "data": []})
            return
        if not body.get("tools"):
            self._stream(reply, body, Step(text="ok", input_tokens=10, output_tokens=1))
            return
        self._stream(reply, body, server.step(model_turns(body)))

    def tool_call(self, step: Step, body: dict[str, Any]) -> dict[str, Any]:
        """The step's generic tool as a Responses output item of the CLI's own tool."""
        args = dict(step.args)
        offered = tool_names(body)
        call_id = f"call_{uuid.uuid4().hex[:20]}"

        def command(cmd: str) -> dict[str, Any]:
            return {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:20]}",
                    "call_id": call_id, "name": "exec_command",
                    "arguments": json.dumps({"cmd": cmd})}

        def patch(text: str) -> dict[str, Any]:
            return {"type": "custom_tool_call", "id": f"ctc_{uuid.uuid4().hex[:20]}",
                    "call_id": call_id, "name": "apply_patch", "input": text}

        if step.tool == "read":
            return command(f"cat {shlex.quote(args['path'])}")
        if step.tool == "write":
            if "apply_patch" in offered:
                return patch(write_patch(args["path"], args["content"]))
            return command(f"printf %s {shlex.quote(args['content'])} > "
                           f"{shlex.quote(args['path'])}")
        if step.tool == "edit":
            if "apply_patch" in offered:
                return patch(edit_patch(args["path"], args["old"], args["new"]))
            script = ("import sys,pathlib; p=pathlib.Path(sys.argv[1]); "
                      "p.write_text(p.read_text().replace(sys.argv[2], sys.argv[3], 1))")
            return command(" ".join(shlex.quote(word) for word in (
                "python3", "-c", script, args["path"], args["old"], args["new"])))
        if step.tool == "shell":
            return command(str(args["command"]))
        # Any other name is passed through as a function call (a tool the set lacks).
        return {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:20]}",
                "call_id": call_id, "name": str(step.tool), "arguments": json.dumps(args)}

    def _stream(self, reply: Reply, body: dict[str, Any], step: Step) -> None:
        model = str(body.get("model") or "gpt-fake")
        response_id = f"resp_{uuid.uuid4().hex[:24]}"
        base = {"id": response_id, "object": "response", "model": model,
                "status": "in_progress", "output": []}
        reply.event({"type": "response.created", "response": base}, "response.created")
        output: list[dict[str, Any]] = []
        if step.thinking:
            item_id = f"rs_{uuid.uuid4().hex[:20]}"
            self._item(reply, output, {"type": "reasoning", "id": item_id, "summary": []},
                       [{"type": "response.reasoning_summary_text.delta", "item_id": item_id,
                         "summary_index": 0, "delta": step.thinking}],
                       {"type": "reasoning", "id": item_id,
                        "summary": [{"type": "summary_text", "text": step.thinking}],
                        "encrypted_content": None})
        if step.text:
            item_id = f"msg_{uuid.uuid4().hex[:20]}"
            self._item(reply, output,
                       {"type": "message", "id": item_id, "role": "assistant",
                        "status": "in_progress", "content": []},
                       [{"type": "response.output_text.delta", "item_id": item_id,
                         "content_index": 0, "delta": step.text[start:start + CHUNK]}
                        for start in range(0, len(step.text), CHUNK)],
                       {"type": "message", "id": item_id, "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": step.text,
                                     "annotations": []}]})
        if step.tool:
            done = self.tool_call(step, body)
            added = dict(done)
            if done["type"] == "function_call":
                added["arguments"] = ""
                encoded = str(done["arguments"])
                kind, field = "response.function_call_arguments.delta", "delta"
            else:
                added["input"] = ""
                encoded = str(done["input"])
                kind, field = "response.custom_tool_call_input.delta", "delta"
            half = len(encoded) // 2
            self._item(reply, output, added,
                       [{"type": kind, "item_id": done["id"], field: piece}
                        for piece in (encoded[:half], encoded[half:]) if piece], done)
        usage = {"input_tokens": step.input_tokens,
                 "input_tokens_details": {"cached_tokens": step.cached_tokens},
                 "output_tokens": step.output_tokens,
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": step.input_tokens + step.output_tokens}
        reply.event({"type": "response.completed",
                     "response": {**base, "status": "completed", "output": output,
                                  "usage": usage}}, "response.completed")

    @staticmethod
    def _item(reply: Reply, output: list[dict[str, Any]], added: dict[str, Any],
              deltas: list[dict[str, Any]], done: dict[str, Any]) -> None:
        index = len(output)
        reply.event({"type": "response.output_item.added", "output_index": index,
                     "item": added}, "response.output_item.added")
        for delta in deltas:
            reply.event({**delta, "output_index": index}, str(delta["type"]))
        reply.event({"type": "response.output_item.done", "output_index": index,
                     "item": done}, "response.output_item.done")
        output.append(done)
