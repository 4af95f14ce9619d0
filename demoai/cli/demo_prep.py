"""The data-preparation part of the main job (``demoai demo``): clean a customer-feedback
sample with planted PII, junk and duplicates, explain every change, deduplicate, measure,
split with a contamination check, and generate a few self-instruct rows with SmolLM2."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as esc

from demoai import porcelain as P
from demoai.porcelain import agent as A
from demoai.porcelain import data as D

__all__ = ["prep_tour"]

PATH = "data/feedback.jsonl"


def prep_tour(repo: Any, root: Path, console: Console, step: Any) -> bool:
    """Clean, explain, dedup, stats, split + contamination, self-instruct; False when broken."""
    shutil.copy(A.sample_data_dir() / "feedback.jsonl", root / PATH)
    P.add(repo, [root / PATH], key="id")
    P.commit(repo, "Customer feedback sample (with planted PII, junk and duplicates)")

    step("data clean data/feedback.jsonl: whitespace, PII redaction, too-short rows")
    res = D.clean(repo, PATH, ["whitespace", "pii", {"name": "length", "unit": "words", "min": 3}],
                  column="text")
    console.print(f"  {res.rows_in} -> {res.rows_out} rows, committed {(res.commit or '-')[:12]}; "
                  f"{esc(str(res.summary.get('redactions') or {}))}")
    for key in ("fb025", "fb026", "fb027", "fb028"):
        for w in D.why(repo, PATH, key)[0][:1]:
            console.print(f"  why {key}: {w.action} by rule {esc(w.rule)} ({esc(w.detail or '')})")

    step("data dedup data/feedback.jsonl: exact and MinHash near-duplicates")
    dd = D.dedup(repo, PATH, column="text", threshold=0.5)
    console.print(f"  {dd.rows_in} -> {dd.rows_out} rows, committed {(dd.commit or '-')[:12]}")
    for key in ("fb022", "fb023", "fb024"):
        for w in [w for w in D.why(repo, PATH, key)[0] if w.verb == "dedup"][:1]:
            console.print(f"  why {key}: {w.action} as a duplicate of {esc(str(w.duplicate_of))} "
                          f"({esc(w.rule)}" + (f", similarity {w.similarity:.2f})" if w.similarity else ")"))

    step("data stats data/feedback.jsonl")
    rep = D.stats(repo, PATH, column="text", label="channel", diversity=False, save=True)
    st = rep.stats
    keep = ("rows", "vocabulary", "distinct_1", "distinct_2", "type_token_ratio", "duplicate_rate")
    console.print("  " + ", ".join(f"{k} {st[k]:.3g}" if isinstance(st.get(k), float) else f"{k} {st.get(k)}"
                                   for k in keep if k in st))
    langs = ", ".join(f"{d['language']} {d['share']:.0%}" for d in st.get("languages") or [])
    console.print(f"  languages: {esc(langs or st.get('language_note', '-'))}; report stored at "
                  f"{PATH}.prep/stats.parquet ({(rep.saved or 'unchanged')[:12]})")

    step("data split 0.8/0.2 by key hash, then a contamination check of test against train")
    sp = D.split(repo, PATH, "0.8,0.2", seed=1)
    console.print(f"  wrote {', '.join(esc(o) for o in sp.outputs)}")
    tests = [o for o in sp.outputs if ".test." in o]
    trains = [o for o in sp.outputs if ".train." in o]
    if tests and trains:
        rep = D.contamination(repo, tests[0], trains, column="text")
        console.print(f"  {rep.contaminated} of {rep.rows} test rows overlap the training split")

    step("data self-instruct: new instructions from the sample prompts with SmolLM2")
    si = D.self_instruct(repo, "data/train.jsonl", "data/generated.jsonl", column="prompt", n=3,
                         seed=1, max_tokens=96)
    console.print(f"  {si.calls} model calls: {si.kept} kept, {si.rejected} rejected "
                  f"{esc(str(si.reasons))}; committed {(si.commit or '-')[:12]}")
    return True
