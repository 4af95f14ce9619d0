"""Skip a test whose backend is missing, or fail it when CI says the backend must be there."""
from __future__ import annotations

import os

import pytest


def unavailable(reason: str, env: str) -> None:
    """Skip with ``reason``; fail instead when the environment variable ``env`` is ``1``."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but the backend is unavailable: {reason}")
    pytest.skip(reason)
