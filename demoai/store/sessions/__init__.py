"""Agent sessions as stored objects: the append-only, hash-chained event log whose steps are
commits on ``refs/sessions/NAME`` (``log``)."""
