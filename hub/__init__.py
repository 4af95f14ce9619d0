"""The self-hosted hub (installed as ``demoai.hub``): share datasets, prompts, agents (a later issue)."""
