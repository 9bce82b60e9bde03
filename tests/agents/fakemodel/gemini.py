"""The Gemini API (``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse``), as the
Gemini CLI calls it: server-sent events, each a ``GenerateContentResponse`` chunk
(``candidates[0].content.parts``: thought parts, text parts, ``functionCall``), the last
with ``finishReason`` and ``usageMetadata``. ``:generateContent`` (the CLI's JSON-mode
side calls: routing with model "auto", next-speaker checks) gets one plain JSON
answer, ``:countTokens`` a count.

The generic tools of a ``Step`` become the CLI's own, with the parameter names its
request declares: ``read`` -> ``read_file`` {absolute_path or file_path}, ``write`` ->
``write_file`` {file_path, content}, ``edit`` -> ``replace`` {file_path, old_string,
new_string}, ``shell`` -> ``run_shell_command`` {command}. Its file tools want absolute
paths: a relative one is joined to the working directory the CLI tells the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.agents.fakemodel import FakeModel, Protocol, Reply, Step

# The CLI's session context: "- **Workspace Directories:**\n  - /abs/path" (0.61).
CWD_RE = re.compile(r"(?:working in the directory|Workspace Directories?)[:*\s-]*(/\S+)")
PATH_KEYS = ("absolute_path", "file_path", "path")


def _texts(body: dict[str, Any]) -> str:
    """Every text part of the request (system instruction and contents)."""
    parts: list[str] = []
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    contents = [system] if isinstance(system, dict) else []
    contents += [c for c in body.get("contents") or [] if isinstance(c, dict)]
    for content in contents:
        for part in content.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "\n".join(parts)


def working_directory(body: dict[str, Any]) -> str | None:
    """The cwd the CLI told the model, if it did."""
    found = CWD_RE.search(_texts(body))
    return found.group(1).rstrip(".,") if found else None


def model_turns(body: dict[str, Any]) -> int:
    """How many ``model`` contents the request's history holds (the step to answer)."""
    return sum(1 for content in body.get("contents") or []
               if isinstance(content, dict) and content.get("role") == "model")


def declared(body: dict[str, Any]) -> dict[str, set[str]]:
    """The tools the request declares: name -> its parameter names."""
    tools: dict[str, set[str]] = {}
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if not isinstance(decl, dict) or "name" not in decl:
                continue
            schema = (decl.get("parametersJsonSchema") or decl.get("parameters")
                      or {})
            props = schema.get("properties") if isinstance(schema, dict) else None
            tools[str(decl["name"])] = set(props or {})
    return tools


def fitting(schema: Any) -> Any:
    """A small value of a (Gemini-flavoured, upper-case types) JSON schema."""
    if not isinstance(schema, dict):
        return None
    kind = str(schema.get("type") or "object").lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        return {key: fitting(sub) for key, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [fitting(schema.get("items"))]
    return {"string": "fake", "integer": 1, "number": 1, "boolean": False}.get(kind)


class Gemini(Protocol):
    """The Gemini API, streamed. A request with no tools (a side call of the CLI) gets a
    short plain answer and leaves the script alone."""

    name = "gemini"

    def handle(self, server: FakeModel, path: str, body: dict[str, Any],
               reply: Reply) -> None:
        if ":countTokens" in path:
            reply.json({"totalTokens": 100})
            return
        if ":generateContent" in path:
            # A JSON-mode side call (with model "auto": the routing's complexity score):
            # an answer that fits the schema it asks for.
            config = body.get("generationConfig") or {}
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
            answer = json.dumps(fitting(schema)) if schema else "ok"
            reply.json(self.chunk(Step(text=answer, input_tokens=10, output_tokens=1),
                                  body, last=True))
            return
        if not declared(body):
            self._stream(reply, body, Step(text="ok", input_tokens=10, output_tokens=1))
            return
        self._stream(reply, body, server.step(model_turns(body)))

    def tool_call(self, step: Step, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The step's generic tool as the CLI's tool name and arguments, with the
        parameter names the request declares."""
        args = dict(step.args)
        tools = declared(body)
        cwd = working_directory(body)

        def absolute(path: str) -> str:
            if path.startswith("/") or cwd is None:
                return path
            return f"{cwd.rstrip('/')}/{path}"

        def path_key(tool: str) -> str:
            params = tools.get(tool, set())
            return next((key for key in PATH_KEYS if key in params), "file_path")

        if step.tool == "read":
            return "read_file", {path_key("read_file"): absolute(args["path"])}
        if step.tool == "write":
            return "write_file", {path_key("write_file"): absolute(args["path"]),
                                  "content": args["content"]}
        if step.tool == "edit":
            call = {path_key("replace"): absolute(args["path"]),
                    "old_string": args["old"], "new_string": args["new"]}
            if "instruction" in tools.get("replace", set()):
                call["instruction"] = "make the edit"
            return "replace", call
        if step.tool == "shell":
            call = {"command": args["command"]}
            if "description" in tools.get("run_shell_command", set()):
                call["description"] = "run a command"
            return "run_shell_command", call
        # Any other name is passed through as is (a CLI tool the generic set lacks).
        return str(step.tool), args

    def chunk(self, step: Step, body: dict[str, Any], *, last: bool,
              parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One GenerateContentResponse: ``parts`` (default: the step's text), and on the
        last chunk the finish reason and the usage."""
        if parts is None:
            parts = [{"text": step.text}]
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts},
                                     "index": 0}
        out: dict[str, Any] = {"candidates": [candidate],
                               "modelVersion": "gemini-fake", "responseId": "fake"}
        if last:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = {
                "promptTokenCount": step.input_tokens,
                "candidatesTokenCount": step.output_tokens,
                "cachedContentTokenCount": step.cached_tokens,
                "totalTokenCount": step.input_tokens + step.output_tokens,
            }
        return out

    def _stream(self, reply: Reply, body: dict[str, Any], step: Step) -> None:
        chunks: list[list[dict[str, Any]]] = []
        if step.thinking:
            chunks.append([{"text": step.thinking, "thought": True}])
        if step.text:
            # Sent in two chunks, so a client that does not join deltas shows it.
            half = len(step.text) // 2
            chunks += [[{"text": piece}] for piece in (step.text[:half], step.text[half:])
                       if piece]
        if step.tool:
            name, call = self.tool_call(step, body)
            chunks.append([{"functionCall": {"name": name, "args": call}}])
        if not chunks:
            chunks.append([{"text": ""}])
        for index, parts in enumerate(chunks):
            reply.event(self.chunk(step, body, last=index == len(chunks) - 1, parts=parts))
