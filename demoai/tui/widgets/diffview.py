"""Typed diffs as Rich renderables: what ``demoai diff`` prints, for the TUI's diff screen.

One function per shape of change (see :mod:`demoai.porcelain.diff`): dataset rows added,
removed and modified (the changed cells highlighted, ``key=value``), prompt and agent text
diffs, model/adapter chunk share, eval metric deltas with their paired tests and flips,
and the generic fields of other kinds.
"""
from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from demoai.porcelain.tui_data.rows import cell_text

__all__ = ["render_change", "change_line", "dataset_diff", "text_diff", "eval_diff"]

_STATUS = {"added": "green", "deleted": "red", "modified": "yellow", "retyped": "magenta"}


def change_line(d: dict[str, Any]) -> Text:
    """One line for a change list: status, kind, path, counts."""
    t = Text()
    t.append(f"{d['status'][:1].upper()} ", style=_STATUS.get(d["status"], ""))
    t.append(f"{d['kind']:<8} ", style="dim")
    t.append(d["path"])
    counts = [f"+{d['added']:,}" if d.get("added") else "", f"-{d['removed']:,}" if d.get("removed") else "",
              f"~{d['modified']:,}" if d.get("modified") else ""]
    if "changed_share" in d:
        counts = [f"{d['changed_share']:.1%} chunks changed"]
    c = " ".join(x for x in counts if x)
    if c:
        t.append(f"  {c}", style="dim")
    return t


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def dataset_diff(d: dict[str, Any]) -> RenderableType:
    """Rows added/removed/modified by key, the modified cells highlighted."""
    head = Text(f"rows: +{d.get('added', 0):,} added, -{d.get('removed', 0):,} removed, "
                f"~{d.get('modified', 0):,} modified" + (f" (key {d['key']})" if d.get("key") else ""))
    parts: list[RenderableType] = [head]
    if d.get("reordered"):
        parts.append(Text("rows were reordered", style="dim"))
    for s in d.get("schema_changes") or []:
        parts.append(Text(f"schema: {cell_text(s)}", style="magenta"))
    if d.get("column_changes"):
        parts.append(Text("cells changed per column: " + ", ".join(
            f"{c} {n:,}" for c, n in d["column_changes"].items()), style="dim"))
    samples = d.get("samples") or {}
    key = d.get("key")
    mods = samples.get("modified") or []
    if mods:
        t = Table(title="modified", title_justify="left", show_edge=False, expand=False)
        cols: list[str] = []
        for m in mods:
            for c in list((m.get("before") or {})) + list((m.get("after") or {})):
                if c not in cols:
                    cols.append(c)
        for c in cols:
            t.add_column(c)
        for m in mods:
            changed = set(m.get("changed") or [])
            before, after = m.get("before") or {}, m.get("after") or {}
            cells = []
            for c in cols:
                if c in changed:
                    cell = Text()
                    cell.append(cell_text(before.get(c)), style="red strike")
                    cell.append(" → ")
                    cell.append(cell_text(after.get(c)), style="bold green")
                else:
                    cell = Text(cell_text(after.get(c, before.get(c))))
                cells.append(cell)
            t.add_row(*cells)
        parts.append(t)
    for kind, style in (("added", "green"), ("removed", "red")):
        rows = samples.get(kind) or []
        if not rows:
            continue
        t = Table(title=kind, title_justify="left", show_edge=False, style=style)
        cols = list(rows[0])
        for c in cols:
            t.add_column(c, style=style)
        for r in rows:
            t.add_row(*[cell_text(r.get(c)) for c in cols])
        parts.append(t)
        if key:
            parts.append(Text("  " + ", ".join(f"{key}={cell_text(r.get(key))}" for r in rows), style="dim"))
    return Group(*parts)


def text_diff(d: dict[str, Any]) -> RenderableType:
    """A unified text diff, added lines green and removed ones red."""
    out = Text()
    for line in (d.get("text") or "").splitlines():
        style = ("green" if line.startswith("+") and not line.startswith("+++")
                 else "red" if line.startswith("-") and not line.startswith("---")
                 else "cyan" if line.startswith("@@") else "")
        out.append(line + "\n", style=style)
    return out


def eval_diff(d: dict[str, Any]) -> RenderableType:
    """Per metric: base, candidate, the paired difference with its 95% interval and
    p-value, McNemar's p, and the flipped examples."""
    paired = d.get("paired") or {}
    t = Table(show_edge=False)
    for c in ("metric", "base", "cand.", "delta [95% CI]", "p", "McNemar p", "flips", "n"):
        t.add_column(c)
    flipped: list[Text] = []
    for m, v in (d.get("metrics") or {}).items():
        p = paired.get(m) or {}
        bs, mn, fl = p.get("bootstrap") or {}, p.get("mcnemar") or {}, p.get("flips") or {}
        delta = f"{bs['delta']:+.4g} [{bs['lower']:+.3g}, {bs['upper']:+.3g}]" if bs else "-"
        style = "" if not bs else "green" if bs["lower"] > 0 else "red" if bs["upper"] < 0 else ""
        nf = f"-{len(fl.get('pass_to_fail', []))} +{len(fl.get('fail_to_pass', []))}" if fl else "-"
        t.add_row(m, _num(v.get("old") if isinstance(v, dict) else None),
                  _num(v.get("new") if isinstance(v, dict) else None), Text(delta, style=style),
                  _num(bs.get("p_value")), _num(mn.get("p_value")), nf, str(p.get("n_shared", "")))
        if fl.get("pass_to_fail") or fl.get("fail_to_pass"):
            flipped.append(Text(f"{m}: pass→fail {', '.join(map(str, fl.get('pass_to_fail', [])[:20])) or '-'}; "
                                f"fail→pass {', '.join(map(str, fl.get('fail_to_pass', [])[:20])) or '-'}"))
    parts: list[RenderableType] = [t, *flipped]
    if d.get("inputs_changed"):
        parts.append(Text("inputs that differ: " + ", ".join(d["inputs_changed"]), style="dim"))
    return Group(*parts)


def render_change(d: dict[str, Any]) -> RenderableType:
    """The typed view of one change (``demoai.porcelain.diff`` dict)."""
    title = Text.assemble((f"{d['kind']} ", "bold"), (d["path"], "bold"), f"  ({d['status']})")
    if d["kind"] == "dataset":
        body = dataset_diff(d)
    elif "text" in d:
        body = text_diff(d)
    elif d["kind"] == "eval" and "metrics" in d:
        body = eval_diff(d)
    elif "changed_share" in d:
        size = d.get("size")
        old, new = (size if isinstance(size, (list, tuple)) else (None, size))
        body = Text(f"size {_num(old)} → {_num(new)} bytes; {d['added']:,} bytes in new chunks "
                    f"({d['changed_share']:.2%} of the chunks changed); files changed: "
                    f"{cell_text(d.get('files_changed'))}")
    else:
        rest = {k: v for k, v in d.items() if k not in ("path", "kind", "status")}
        body = Text("\n".join(f"{k}: {cell_text(v)}" for k, v in rest.items()))
    return Group(title, body)
