"""Request bodies of the HTTP API, as pydantic models (they also make the OpenAPI spec).

Bounds sit here rather than deep in the runtime so that bad input is refused with a 4xx
before any work starts: a seed must fit llama.cpp's 32-bit seed, sampling values stay in
the ranges the backends accept, names are short.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from demoai.errors import ProtocolError
from demoai.porcelain.agent import SEED_MAX

__all__ = ["EmbeddingRequest", "Tool", "ToolCall", "NamedChoice", "RunRequest", "ForkRequest", "ReplayRequest", "ContinueRequest", "ChatMessage",
           "ChatRequest", "CompletionRequest", "ResponseFormat", "SEED_MAX", "Scalar",
           "MAX_TOP_LOGPROBS"]

MAX_TOP_LOGPROBS = 20

Scalar = str | int | float | bool
Name = Field(default=None, min_length=1, max_length=200)
Sandbox = Literal["namespace", "docker"]


class Sampling(BaseModel):
    """Sampling parameters an agent run may override (the agent's own are the defaults)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None

    def given(self) -> dict[str, Any]:
        """The parameters that were set."""
        return self.model_dump(exclude_none=True)


class RunRequest(BaseModel):
    """Start an agent run: the agent's path in the tree (or working tree) and its task."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=1000, examples=["agents/files.agent.yaml"])
    task: str = Field(default="", max_length=100_000)
    instruction: str | None = Field(default=None, max_length=100_000,
                                    description="Same as task (the name forks use).")
    rev: str = Field(default="HEAD", min_length=1, max_length=200)
    name: str | None = Name
    model: str | None = Field(default=None, min_length=1, max_length=1000)
    sandbox: Sandbox | None = None
    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    params: Sampling | None = None


class ForkRequest(BaseModel):
    """Fork a session at a step, with the overrides ``demoai fork`` takes."""

    model_config = ConfigDict(extra="forbid")
    step: int | None = Field(default=None, ge=0, le=10_000_000, description="Default: the last step.")
    name: str | None = Name
    set: dict[str, Scalar] = Field(default_factory=dict, max_length=64,
                                   description="Like --set key=value: instruction, system, seed, "
                                               "max_steps, temperature, ...")
    instruction: str | None = Field(default=None, max_length=100_000)
    model: str | None = Field(default=None, min_length=1, max_length=1000)
    prompt: str | None = Field(default=None, min_length=1, max_length=1000)


class ReplayRequest(BaseModel):
    """Replay a session: ``recorded`` and ``reexecute`` answer at once; ``live`` starts a
    new session in the background (202)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["recorded", "reexecute", "live"] = "recorded"
    from_step: int | None = Field(default=None, ge=0, le=10_000_000)
    sandbox: Sandbox | None = None
    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    name: str | None = Name


class ContinueRequest(BaseModel):
    """Continue a (forked) session from its last step, in the background."""

    model_config = ConfigDict(extra="forbid")
    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    sandbox: Sandbox | None = None


# --- OpenAI-compatible chat -----------------------------------------------------------
class TextPart(BaseModel):
    """A text part of a message's content (the only part type a text model takes)."""

    type: Literal["text"]
    text: str = Field(max_length=1_000_000)


class ToolCallFunction(BaseModel):
    """The function a tool call names, with its arguments as a JSON text."""

    name: str = Field(max_length=64)
    arguments: str = Field(default="{}", max_length=1_000_000)


class ToolCall(BaseModel):
    """An earlier assistant tool call, sent back in the conversation."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(max_length=200)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """One chat message; ``developer`` is read as ``system``, as OpenAI does. An assistant
    message may carry ``tool_calls`` (content then may be null); a ``tool`` message is a
    function's result for ``tool_call_id``."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(default=None, max_length=1_000_000)
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=200)

    def as_dict(self) -> dict[str, Any]:
        """The message as a backend takes it (tool calls and ids kept for the tool porcelain)."""
        if self.content is None and not self.tool_calls:
            raise ProtocolError(f"a {self.role} message needs content", where="messages")
        c = self.content
        text = "" if c is None else c if isinstance(c, str) else "".join(p.text for p in c)
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": text}
        if self.tool_calls:
            out["tool_calls"] = [t.model_dump() for t in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name and self.role == "tool":
            out["name"] = self.name
        return out


class FunctionSpec(BaseModel):
    """A declared function: name, description and a JSON schema of its arguments."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """``tools[]``: a function the model may call."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedChoiceFunction(BaseModel):
    """The function ``tool_choice`` forces."""

    name: str = Field(max_length=64)


class NamedChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"] = "function"
    function: NamedChoiceFunction


class JsonSchemaSpec(BaseModel):
    """``response_format.json_schema``: a named JSON schema the answer must follow."""

    name: str = Field(default="response", max_length=64)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    """``text``, ``json_object`` (any JSON object) or ``json_schema`` (a constrained answer)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaSpec | None = None


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk carrying the usage."""

    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. ``model`` is what ``resolve_model`` takes (``smollm2``,
    ``models/x.gguf``), optionally ``MODEL+ADAPTER_PATH``. Unknown OpenAI fields are ignored;
    ``n`` must be 1. Defaults are DemoAI's: greedy (temperature 0) and 256 new tokens."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=2000, examples=["smollm2"])
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    stop: str | list[str] | None = Field(default=None, max_length=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedChoice | None = None
    parallel_tool_calls: bool | None = None

    def tool_specs(self) -> tuple[list[dict[str, Any]] | None, str | dict[str, Any] | None]:
        """(tools as dicts, tool_choice as a string or dict); ProtocolError for a choice
        with no tools, or tools together with a response_format."""
        choice = self.tool_choice.model_dump() if isinstance(self.tool_choice, NamedChoice) else self.tool_choice
        if not self.tools:
            if choice not in (None, "none"):
                raise ProtocolError("tool_choice needs tools", where="tool_choice")
            return None, None
        if self.response_format is not None and self.response_format.type != "text" and choice != "none":
            raise ProtocolError("tools and a response_format cannot be combined", where="response_format")
        return [t.model_dump(exclude_none=True) for t in self.tools], choice

    def logprobs_k(self) -> int | None:
        """How many alternatives per token to return (None: no logprobs)."""
        if self.top_logprobs is not None and not self.logprobs:
            raise ProtocolError("top_logprobs needs logprobs: true", where="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None

    def params(self, default_max: int) -> dict[str, Any]:
        """Sampling params for the backend (``max_tokens`` always set)."""
        out: dict[str, Any] = {k: v for k, v in {
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "repeat_penalty": self.repeat_penalty, "seed": self.seed,
            "stop": self.stop}.items() if v is not None}
        out["max_tokens"] = self.max_completion_tokens or self.max_tokens or default_max
        return out

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must follow, if any."""
        rf = self.response_format
        if rf is None or rf.type == "text":
            return None
        if rf.type == "json_object" or rf.json_schema is None:
            return {"type": "object"}
        return rf.json_schema.schema_ or {"type": "object"}


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` (OpenAI's legacy completions): a raw prompt, no chat template.
    ``prompt`` is a string, a list of strings, a list of token ids or a list of those (one
    choice each). ``echo`` returns the prompt too; ``logprobs=k`` adds per-token logprobs and
    the ``k`` likeliest alternatives (with ``echo``, the prompt's as well: the first is null).
    ``max_tokens`` defaults to 16, as OpenAI's does, and may be 0 with ``echo``."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=2000, examples=["smollm2"])
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        max_length=256, examples=["The capital of France is"])
    max_tokens: int | None = Field(default=None, ge=0, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    stop: str | list[str] | None = Field(default=None, max_length=16)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    suffix: str | None = None
    user: str | None = None

    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per choice (ProtocolError for an empty one)."""
        p = self.prompt
        if isinstance(p, str):
            out: list[Any] = [p]
        elif p and all(isinstance(x, int) for x in p):
            out = [list(p)]
        else:
            out = list(p)
        if not out or any(len(x) == 0 for x in out):
            raise ProtocolError("prompt must not be empty", where="prompt")
        if self.suffix:
            raise ProtocolError("suffix is not supported", where="suffix")
        if self.stream:
            raise ProtocolError("stream is not supported on /v1/completions", where="stream")
        return out

    def params(self, default_max: int = 16) -> dict[str, Any]:
        """Sampling params for the backend (``max_tokens`` always set)."""
        out: dict[str, Any] = {k: v for k, v in {
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "repeat_penalty": self.repeat_penalty, "seed": self.seed,
            "stop": self.stop}.items() if v is not None}
        out["max_tokens"] = default_max if self.max_tokens is None else self.max_tokens
        if out["max_tokens"] == 0 and not self.echo:
            raise ProtocolError("max_tokens 0 needs echo: true", where="max_tokens")
        return out


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: ``model`` is ``wordllama`` (the shipped static embeddings) or
    a chat model id (its mean-pooled last hidden states); ``input`` a string or a list."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=2000, examples=["wordllama"])
    input: str | list[str] = Field(max_length=2048, examples=["hello world"])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=100_000)
    user: str | None = None

    def texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)
