"""Agent runtime: sessions as forkable, replayable event logs, run with a model from the
shared pool (``demoai.engines.llm``) and tools in a sandbox (``demoai.engines.sandbox``).

- :mod:`.settings`: what a run depends on, and the overrides a fork may carry;
- :mod:`.agent`: the loop (model call, tool call, observation, one commit per step), run
  and continue;
- :mod:`.fork`: forking a session at a step with checked overrides;
- :mod:`.replay`: the three replay modes and the comparison of two sessions;
- :mod:`.tools`: the tools' schema, running a call in the sandbox, observations;
- :mod:`.inspect`: one summary line per event, the timeline rows.

Faces reach all of it through :mod:`demoai.porcelain`.
"""

__all__: list[str] = []
