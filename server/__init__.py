"""The HTTP API (installed as ``demoai.server``): runs, forks and replays agents, serves models (a later issue)."""
