"""``demoai model``: list, show, rm, alias, import, pull, export and merge registered models."""
from __future__ import annotations

import click

from demoai.cli.common import (Bars, esc, handle_errors, human_bytes, json_option, open_repo, out,
                               print_json)
from demoai.porcelain import model as M

__all__ = ["model_group"]


@click.group("model")
def model_group() -> None:
    """Models and adapters in the repository: a registry over commits and refs."""


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


@model_group.command("list")
@click.option("--rev", default="HEAD", show_default=True, help="The revision to list.")
@json_option
@handle_errors
def model_list(rev: str, as_json: bool) -> None:
    """Models and adapters at REV with size, parameters, aliases and best scores."""
    rows = M.list_models(open_repo(), rev)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        out.print(f"no models at {rev} (import one with `demoai model import PATH`)")
        return
    from rich.table import Table
    t = Table(show_edge=False, pad_edge=False)
    for c in ("path", "kind", "format", "size", "params", "quant", "base", "aliases", "best scores"):
        t.add_column(c)
    for r in rows:
        scores = ", ".join(f"{k} {v:.3g}" for k, v in sorted(r.scores.items())[:3])
        t.add_row(esc(r.path), r.kind, r.format, human_bytes(r.size), _params(r.parameters),
                  esc(r.quantization or "-"), esc(r.base_model or "-"), esc(", ".join(r.aliases) or "-"),
                  esc(scores or "-"))
    out.print(t)


@model_group.command("show")
@click.argument("name")
@click.option("--rev", default="HEAD", show_default=True, help="The revision to read.")
@json_option
@handle_errors
def model_show(name: str, rev: str, as_json: bool) -> None:
    """Configuration, files, lineage and evaluations of one model or adapter.

    NAME is a path in the tree, a file or folder name, or an alias."""
    info = M.show_model(open_repo(), name, rev)
    if as_json:
        print_json(info.to_dict())
        return
    e, meta, lin = info.entry, info.meta, info.lineage
    out.print(f"[bold]{esc(e.path)}[/bold]  {e.kind} {e.format}, {human_bytes(e.size)}, "
              f"{_params(e.parameters)} parameters, {esc(e.quantization or 'unquantized')}")
    out.print(f"digest {e.digest}")
    if e.aliases:
        out.print(f"aliases: {esc(', '.join(e.aliases))}")
    out.print(f"architecture: {esc(str(meta.get('architecture') or '-'))}"
              + (f", base {esc(e.base_model)}" if e.base_model else "")
              + (f", license {esc(str(meta['license']))}" if meta.get("license") else ""))
    cfg = meta.get("config") or {}
    if cfg:
        keys = [k for k in cfg if not isinstance(cfg[k], (dict, list))][:12]
        out.print("config: " + esc(", ".join(f"{k}={cfg[k]}" for k in keys)))
    tok = meta.get("tokenizer") or {}
    if tok or meta.get("chat_template_digest"):
        out.print("tokenizer: " + esc(", ".join(f"{k}={v}" for k, v in tok.items() if v is not None))
                  + f"; chat template {meta.get('chat_template_digest') or 'none'}")
    out.print(f"files ({len(info.file_list)}):")
    for f in info.file_list[:20]:
        out.print(f"  {esc(f['path'])}  {human_bytes(f['size'])}  {f['chunks']} chunks")
    out.print(f"added in {lin['commit'][:12]} \"{esc(lin['message'])}\" ({esc(str(lin.get('command')))})")
    for k, v in lin["inputs"].items():
        out.print(f"  input {esc(k)}: {v['digest'][:19]}" + (f" ({esc(v['path'])})" if v["path"] else ""))
    for k, v in (lin.get("parameters") or {}).items():
        if k != "pull":     # said below, as "pulled from"
            out.print(f"  {esc(k)}: {esc(_plain(v))[:200]}")
    if lin.get("adapter_config"):
        out.print("  adapter: " + esc(", ".join(f"{k}={v}" for k, v in lin["adapter_config"].items())))
    src = lin.get("pulled_from")
    if src:
        out.print(f"  pulled from {esc(str(src.get('url')))} {esc(str(src.get('ref') or '-'))} at "
                  f"{str(src.get('commit'))[:12]} (path {esc(str(src.get('path')))})")
    if info.evals:
        out.print("evaluations:")
        for ev in info.evals:
            sc = ", ".join(f"{m} {s['value']:.3g}" for m, s in ev["scores"].items())
            out.print(f"  {esc(ev['path'])}: {esc(sc)}")
    else:
        out.print("evaluations: none at this revision")
    _print_used_by(info.used_by)


def _plain(v: object) -> str:
    """A parameter as people read it: ``k=v`` pairs for a mapping, commas for a list."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_plain(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v)
    return str(v)


_USED_BY_LABELS = {"agents": "agents", "aliases": "aliases", "adapters": "adapters built on it",
                   "evaluations": "evaluations", "train_configs": "training configs",
                   "deployments": "deployments"}


def _used_by_item(section: str, item: dict) -> str:
    if section == "aliases":
        return item["alias"] + ("" if item.get("current") else f" (an older version, {item['commit'][:12]})")
    if section == "agents":
        return f"{item['path']} ({item['field']}: {item['names']})"
    return str(item.get("path") or item)


def _print_used_by(used: dict[str, list[dict]]) -> None:
    if not any(used.values()):
        out.print("used by: nothing at this revision (no agents, aliases, adapters, evaluations; "
                  "no deployments)")
        return
    out.print("used by:")
    for section, items in used.items():
        label = _USED_BY_LABELS.get(section, section.replace("_", " "))
        if items:
            out.print(f"  {label}: " + esc(", ".join(_used_by_item(section, i) for i in items)))
        elif section == "deployments":
            out.print("  no deployments")


@model_group.command("rm")
@click.argument("name")
@click.option("-m", "--message", default=None, help="Commit message (default: Remove ...).")
@json_option
@handle_errors
def model_rm(name: str, message: str | None, as_json: bool) -> None:
    """Delete a model or adapter from the tree and commit the deletion.

    NAME is a path in the tree, a file or folder name, or an alias."""
    cid = M.remove_model(open_repo(), name, message)
    if as_json:
        print_json({"commit": cid, "removed": name})
    else:
        out.print(f"removed {esc(name)} in {cid[:12]}")


@model_group.command("alias")
@click.argument("name_or_alias")
@click.argument("alias", required=False)
@click.option("--history", is_flag=True, help="Show what the alias named over time.")
@click.option("--delete", is_flag=True, help="Delete the alias ref.")
@click.option("--rev", default="HEAD", show_default=True, help="The revision NAME is read at.")
@json_option
@handle_errors
def model_alias(name_or_alias: str, alias: str | None, history: bool, delete: bool, rev: str,
                as_json: bool) -> None:
    """Point ALIAS at model NAME, or show an alias's history (--history ALIAS).

    NAME_OR_ALIAS is the model (with ALIAS) or, with --history/--delete, the alias."""
    repo = open_repo()
    if history or delete:
        if delete:
            M.remove_alias(repo, name_or_alias)
            print_json({"deleted": name_or_alias}) if as_json else out.print(f"deleted alias {esc(name_or_alias)}")
            return
        events = M.alias_history(repo, name_or_alias)
        if as_json:
            print_json([e.to_dict() for e in events])
            return
        from datetime import datetime
        for e in events:
            when = datetime.fromtimestamp(e.time).strftime("%Y-%m-%d %H:%M:%S")
            out.print(f"{when}  {e.alias_commit[:12]}  {esc(str(e.path))}  {(e.digest or '')[:19]}  "
                      f"at {(e.commit or '')[:12]}")
        return
    if alias is None:
        raise click.UsageError("give NAME ALIAS, or --history ALIAS")
    ev = M.set_alias(repo, name_or_alias, alias, rev)
    print_json(ev.to_dict()) if as_json else out.print(esc(ev.message))


@model_group.command("import")
@click.argument("path", type=click.Path())
@click.option("--as", "dest", default=None, help="Path in the tree (default models/NAME...).")
@click.option("--tag", default=None, help="NAME:TAG of a model in an Ollama store.")
@click.option("-m", "--message", default=None, help="Commit message.")
@click.option("--link", type=click.Choice(M.LINK_MODES), default="auto", show_default=True,
              help="How the working file is made: auto (a copy-on-write clone where the "
                   "filesystem can; a hard link for a Hugging Face, Ollama or installed "
                   "package's file; else a copy), copy, or hardlink (shares the source's bytes: "
                   "edit neither in place).")
@json_option
@handle_errors
def model_import(path: str, dest: str | None, tag: str | None, message: str | None, link: str,
                 as_json: bool) -> None:
    """Import a GGUF, safetensors, HF cache or Ollama model and commit it.

    PATH is a .gguf or .safetensors file, a transformers or peft folder, a Hugging Face
    cache entry (models--ORG--NAME) or snapshot, or an Ollama store (~/.ollama/models)
    or manifest. Bytes the store already has are not stored again."""
    r = M.import_model(open_repo(), path, dest=dest, tag=tag, message=message, link=link)
    if as_json:
        print_json(r.to_dict())
        return
    what = f"committed in {r.commit[:12]}" if r.commit else "already at HEAD, nothing committed"
    out.print(f"{esc(r.path)}: {r.kind} {r.format} from {r.layout}, {human_bytes(r.size)}, "
              f"{human_bytes(r.new_bytes)} new in the store, {what} ({r.seconds:.2f} s)")
    if r.placed == "hardlink":
        out.print("[dim]the working file is a hard link to the source (the same bytes on disk); "
                  "`demoai restore` gives it bytes of its own[/dim]")


@model_group.command("pull")
@click.argument("remote")
@click.argument("name")
@click.option("--rev", default=None, help="Branch or tag on the remote (default: its default branch).")
@click.option("--as", "dest", default=None, help="Path in the tree (default: the path it has there).")
@click.option("-m", "--message", default=None, help="Commit message.")
@click.option("--force", is_flag=True, help="Overwrite local changes to the file at that path.")
@json_option
@handle_errors
def model_pull(remote: str, name: str, rev: str | None, dest: str | None, message: str | None,
               force: bool, as_json: bool) -> None:
    """Fetch a model or adapter from a hub and commit it on the current branch.

    REMOTE is a remote name (see `demoai remote`) or a hub repository URL; NAME the
    model's path there, or its file or folder name. Only chunks this repository lacks
    are transferred; the commit's lineage names the remote commit it came from."""
    with Bars(not as_json) as bars:
        r = M.pull_model(open_repo(), remote, name, rev=rev, dest=dest, message=message,
                         force=force, progress=bars)
    if as_json:
        print_json(r.to_dict())
        return
    what = f"committed in {r.commit[:12]}" if r.commit else "already at HEAD, nothing committed"
    out.print(f"{esc(r.path)}: {r.kind} {r.format}, {human_bytes(r.size)} from {esc(r.remote)} "
              f"{esc(r.ref or r.remote_commit[:12])} at {r.remote_commit[:12]}; {what}")
    out.print(f"[dim]{r.chunks_received} of {r.chunks} chunks transferred, "
              f"{human_bytes(r.bytes_received)} received ({r.seconds:.2f} s)[/dim]")


@model_group.command("export")
@click.argument("name")
@click.argument("out_path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(M.EXPORT_FORMATS), default=None,
              help="gguf or folder (default: the model's own form).")
@click.option("--rev", default="HEAD", show_default=True, help="The revision to export from.")
@click.option("--force", is_flag=True, help="Replace an existing OUT_PATH.")
@json_option
@handle_errors
def model_export(name: str, out_path: str, fmt: str | None, rev: str, force: bool,
                 as_json: bool) -> None:
    """Write a model or adapter as a plain GGUF file or folder.

    NAME is a path in the tree, a file or folder name, or an alias; OUT_PATH the file or
    folder to write."""
    p = M.export_model(open_repo(), name, out_path, fmt=fmt, rev=rev, force=force)
    print_json({"path": str(p)}) if as_json else out.print(f"wrote {esc(str(p))}")


@model_group.command("merge")
@click.argument("spec")
@click.argument("out_path")
@click.option("--threads", default=1, show_default=True, help="Torch CPU threads.")
@click.option("-m", "--message", default=None, help="Commit message.")
@json_option
@handle_errors
def model_merge(spec: str, out_path: str, threads: int, message: str | None, as_json: bool) -> None:
    """Bake ADAPTER into BASE (SPEC is BASE+ADAPTER) and commit the model at OUT_PATH."""
    r = M.merge_model(open_repo(), spec, out_path, threads=threads, message=message)
    if as_json:
        print_json(r.to_dict())
    else:
        out.print(f"{esc(r.path)}: merged model, {human_bytes(r.size)}, committed in {(r.commit or '')[:12]}")
