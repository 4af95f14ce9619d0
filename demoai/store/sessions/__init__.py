"""Agent sessions as stored objects: append-only, hash-chained event logs whose steps are
commits on ``refs/sessions/NAME``.

- :mod:`.events`: the event line format and the BLAKE3 chain check;
- :mod:`.steps`: the git objects of one step (manifest, events, workspace) and walks along
  a session's chain of step commits;
- :mod:`.log`: :class:`SessionLog` (append, commit a step, fork, read through the O(1)
  cache), creating, forking, listing and naming sessions;
- :mod:`.follow`: reading a session from git only, safe while another run appends to it.
"""
from demoai.store.sessions.events import Event, parse_session_step, verify_lines
from demoai.store.sessions.follow import Follower, StepRead, read_events, read_step_at
from demoai.store.sessions.log import (SESSION_REF, SessionInfo, SessionLog, create_session,
                                       fork_session, free_name, list_sessions, live_status,
                                       new_session_name, open_session, session_exists,
                                       session_info, session_tip)
from demoai.store.sessions.steps import (blob_ids, manifest_at, read_workspace, workspace_tree)

__all__ = ["SESSION_REF", "Event", "SessionInfo", "SessionLog", "Follower", "StepRead",
           "create_session", "fork_session", "open_session", "list_sessions", "session_info",
           "session_exists", "session_tip", "live_status", "free_name", "new_session_name",
           "read_events", "read_step_at", "parse_session_step", "verify_lines", "blob_ids",
           "manifest_at", "read_workspace", "workspace_tree"]
