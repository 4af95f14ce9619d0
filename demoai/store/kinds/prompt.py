"""Prompts (``*.prompt.yaml``): browsing shows the template rendered with a row of a dataset
in the same commit, and the sessions of agents that use the prompt."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import Prompt, decode_manifest
from demoai.objects.textspec import PLACEHOLDER
from demoai.store.kinds.base import artifacts_using, handler_for, handlers, register_handler
from demoai.store.kinds.text import TextHandler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["PromptHandler", "rendered_example"]


def rendered_example(repo: "Repository", commit: str, prompt: Prompt) -> tuple[str, dict | None]:
    """The prompt rendered with the first row of a table (in ``commit``) that has every
    variable as a column, and where that row came from; else the template with
    ``<variable>`` placeholders and None."""
    variables = prompt.meta["variables"]
    if variables:
        # Cheap pre-filter: only manifests naming a tabular kind are decoded.
        needles = [f'"{k}"'.encode() for k, h in handlers().items() if h.tabular]
        for path, raw in sorted(repo.tree_entries(commit).items()):
            if not any(n in raw for n in needles):
                continue
            art = decode_manifest(raw, path)
            h = handler_for(art)
            if h.tabular and set(variables) <= set(h.columns(art)):
                rows = h.preview_rows(repo, art, 1)
                if rows:
                    return prompt.render(**{v: rows[0][v] for v in variables}), {"path": path, "row": 0}
    return PLACEHOLDER.sub(lambda m: f"<{m.group(1)}>", prompt.meta["template"]), None


@register_handler
class PromptHandler(TextHandler[Prompt]):
    """A prompt template."""

    kind = "prompt"
    artifact = Prompt

    def detail(self, repo: "Repository", art: Prompt, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Template, system text, variables, model, parameters and a rendered example."""
        m = art.meta
        example, source = rendered_example(repo, commit, art)
        return {"prompt": {"name": m.get("name"), "template": m["template"], "system": m.get("system"),
                           "variables": m["variables"], "model": m.get("model"),
                           "parameters": m.get("parameters") or {}, "rendered_example": example,
                           "example_source": source, "text": art.text}}

    def session_agents(self, repo: "Repository", commit: str, path: str,
                       art: Prompt) -> tuple[set[str], set[str]] | None:
        """The agents (in the same commit) whose ``prompt:`` is this one."""
        digests, paths = set(), set()
        for p, a in artifacts_using(repo, commit, path):
            if handler_for(a).runs_sessions:
                digests.add(a.digest)
                paths.add(p)
        return digests, paths
