"""Porcelain for agents and their sessions: one module per verb, each returning dataclasses
whose ``to_dict()`` is what the faces print or answer.

- :mod:`.run`: ``run_agent``, ``continue_session``, ``check_run``;
- :mod:`.fork`: ``fork_session`` (the one fork, overrides checked);
- :mod:`.sessions`: ``list_sessions``, ``session_log``, ``session_step``, ``workspace_files``,
  ``session_events``, ``event_summary``, ``event_fields``,
  ``follow_session``, ``session_running``, ``session_status`` (read from git: safe while a
  run appends);
- :mod:`.replay`: ``replay`` (recorded, reexecute, live), ``start_live_replay``,
  ``diff_sessions``;
- :mod:`.catalog`: ``list_agents``, ``list_models``, ``artifact_digests``, the embedded
  defaults;
- :mod:`.chat`: ``open_chat_model``, ``complete_chat`` and ``complete_text`` over the shared
  ``ModelPool``;
- :mod:`.results`: the result types.
"""
from demoai.porcelain.agent.catalog import (AdapterEntry, AgentEntry, ModelCatalog, ModelEntry,
                                            artifact_digests, default_model_path, list_agents,
                                            list_models, sample_data_dir)
from demoai.porcelain.agent.chat import (ChatCompletion, ChatModel, ChatResult, Completion,
                                         TextCompletion, TokenLogprob, complete_chat,
                                         complete_text, open_chat_model)
from demoai.porcelain.agent.fork import fork_session
from demoai.porcelain.agent.replay import REPLAY_MODES, diff_sessions, replay, start_live_replay
from demoai.porcelain.agent.results import (Divergence, DivergentEvent, Event, EventLine, LiveReplay,
                                            RecordedReplay, ReexecutedStep, ReexecuteReplay,
                                            Replay, ReplayStep, RunResult, SessionDiff, SessionFork,
                                            SessionInfo, SessionStep, SessionTimeline)
from demoai.porcelain.agent.run import ModelPool, OnEvent, check_run, continue_session, run_agent
from demoai.porcelain.agent.sessions import (STATUS_TEXT, SessionFollower, event_fields,
                                             event_summary, follow_session, one_line, shorten,
                                             list_sessions, session_events, session_exists,
                                             session_info, session_log, session_running,
                                             session_status, session_step, workspace_files)
from demoai.runtime.settings import SEED_MAX

__all__ = [
    # verbs
    "run_agent", "continue_session", "check_run", "fork_session",
    "list_sessions", "session_info", "session_log", "session_step", "workspace_files",
    "session_events",
    "follow_session", "session_exists", "session_running", "session_status", "event_summary",
    "event_fields", "one_line", "shorten", "replay", "start_live_replay", "diff_sessions", "list_agents", "list_models",
    "artifact_digests", "default_model_path", "sample_data_dir", "open_chat_model",
    "complete_chat", "complete_text",
    # types and constants
    "RunResult", "SessionFork", "SessionInfo", "SessionTimeline", "EventLine", "Event",
    "SessionStep", "ReplayStep", "RecordedReplay", "ReexecutedStep", "ReexecuteReplay",
    "LiveReplay", "Replay", "SessionDiff", "Divergence", "DivergentEvent", "SessionFollower",
    "AgentEntry", "ModelEntry", "AdapterEntry", "ModelCatalog", "ChatCompletion", "ChatModel",
    "ChatResult", "TextCompletion", "Completion", "TokenLogprob", "ModelPool", "OnEvent", "REPLAY_MODES", "SEED_MAX", "STATUS_TEXT",
]
