"""The ``demoai`` command: one module per noun over ``common`` (error handling, JSON output,
progress bars): ``repo`` (init, query, export, fsck, repair, gc, demo), ``worktree`` (add,
rm, status, diff, commit, checkout, merge), ``history`` (log, show, branch, tag, fork),
``agent``, ``eval`` (evaluation and arena), ``remote`` (remote, push, fetch, pull, clone, login), ``hub``, ``serve``. Faces
parse, call porcelain and print; ``demo`` is the main job.

Command modules are imported when their command is used (see
:class:`demoai.cli.main.LazyCommands`), so ``demoai tui`` does not pay for the others;
``--help`` and any listing import them all. A module appended below with
``main.add_command`` is imported at once, which works too.
"""
from demoai.cli.main import main

for _name, _target in (("log", "history:log"), ("show", "history:show"), ("branch", "history:branch"),
                       ("tag", "history:tag"), ("fork", "history:fork"), ("init", "repo:init"),
                       ("query", "repo:query"), ("export", "repo:export"), ("fsck", "repo:fsck"),
                       ("repair", "repo:repair"), ("gc", "repo:gc"), ("demo", "repo:demo_command"),
                       ("add", "worktree:add"), ("rm", "worktree:rm"), ("status", "worktree:status"),
                       ("commit", "worktree:commit"), ("diff", "worktree:diff"),
                       ("checkout", "worktree:checkout"), ("restore", "worktree:restore"),
                       ("merge", "worktree:merge"), ("agent", "agent:agent"), ("eval", "eval:eval_group"), ("arena", "eval:arena_group"),
                       ("remote", "remote:remote"), ("push", "remote:push"), ("fetch", "remote:fetch"),
                       ("pull", "remote:pull"), ("clone", "remote:clone"), ("login", "remote:login"),
                       ("hub", "hub:hub"), ("serve", "serve:serve"), ("data", "data:data_group"),
                       ("train", "train:train_group"), ("model", "model:model_group"),
                       ("scan", "scan:scan_group"), ("tui", "tui:tui")):
    main.commands.lazy(_name, f"demoai.cli.{_target}")

__all__ = ["main"]
