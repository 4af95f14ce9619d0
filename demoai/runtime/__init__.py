"""Agent runtime: sessions as forkable, replayable event logs run in a sandbox (a later issue)."""
