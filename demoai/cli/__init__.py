"""The ``demoai`` command: one module per noun over ``common`` (error handling, JSON output,
progress bars): ``repo`` (init, query, export, fsck, repair, gc, demo), ``worktree`` (add,
rm, status, diff, commit, checkout, merge), ``history`` (log, show, branch, tag, fork),
``agent``, ``eval`` (evaluation and arena), ``remote`` (remote, push, fetch, pull, clone, login), ``hub``, ``serve``. Faces
parse, call porcelain and print; ``demo`` is the main job.
"""
from demoai.cli import history, repo, worktree  # noqa: F401  (they attach their commands)
from demoai.cli.agent import agent
from demoai.cli.eval import arena_group, eval_group
from demoai.cli.hub import hub
from demoai.cli.main import main
from demoai.cli.remote import clone, fetch, login, pull, push, remote
from demoai.cli.serve import serve

for _cmd in (agent, eval_group, arena_group, remote, push, fetch, pull, clone, login, hub, serve):
    main.add_command(_cmd)

__all__ = ["main"]
from demoai.cli.data import data_group  # noqa: E402
main.add_command(data_group)
from demoai.cli.model import model_group  # noqa: E402
main.add_command(model_group)
from demoai.cli.scan import scan_group  # noqa: E402
main.add_command(scan_group)
from demoai.cli.tui import tui  # noqa: E402
main.add_command(tui)
from demoai.cli.train import train_group  # noqa: E402
main.add_command(train_group)
