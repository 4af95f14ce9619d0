"""``python -m demoai.cli``: the ``demoai`` command."""
from demoai.cli import main

main()
