"""Agent definitions (``*.agent.yaml``): the YAML fields, tools and model, and the sessions
run with the agent."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import Agent
from demoai.objects.textspec import parse_yaml
from demoai.store.kinds.base import register_handler
from demoai.store.kinds.text import TextHandler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["AgentHandler"]


@register_handler
class AgentHandler(TextHandler[Agent]):
    """An agent definition; sessions name the agent they ran by digest."""

    kind = "agent"
    artifact = Agent
    runs_sessions = True

    def detail(self, repo: "Repository", art: Agent, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """The parsed YAML, the text, the tools and the model."""
        return {"agent": {"fields": parse_yaml(art.text, path), "text": art.text,
                          "tools": art.meta["tools"], "model": art.meta["model"]}}

    def uses(self, art: Agent) -> set[str]:
        """The prompt, model and adapter the definition names."""
        return {v for v in (art.meta.get("prompt"), art.meta.get("model"), art.meta.get("adapter"))
                if isinstance(v, str)}

    def session_agents(self, repo: "Repository", commit: str, path: str,
                       art: Agent) -> tuple[set[str], set[str]] | None:
        """The sessions of this agent: by its digest, or by its path (``meta.agent``)."""
        return {art.digest}, {path}
