"""``python -m demoai``: the ``demoai`` command."""
from demoai.cli import main

main()
