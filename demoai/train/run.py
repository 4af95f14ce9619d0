"""A training run as a chain of commits on its own branch, ``train/<run>``.

The run starts from the current HEAD: its first commit is HEAD's tree plus the config (so
the run's branch holds exactly what trained it), each save interval adds a commit with the
checkpoint (``runs/<run>/checkpoint``: the peft adapter plus optimizer, scheduler and
generator state) and the curve table so far (``runs/<run>/curve.jsonl``: step, loss,
learning rate, gradient norm, validation loss, tokens; with ``scan_every``, the scan table
``runs/<run>/scan.jsonl`` of per-module weight and gradient statistics, see
:mod:`demoai.train.watch`), and the last commit holds the final
Adapter (``runs/<run>/adapter``) and the whole curve, with the lineage: base model, dataset,
config, chat template and code digests, seed, versions, hardware, wall time, tokens/s.

A run is a branch so that it can be checked out, diffed, merged into main (bringing the
adapter with it) and pushed like any other. HEAD, the index and the working tree are never
touched. A killed run resumes from its branch's last commit (:func:`resume_run`); a loss
that turns NaN stops the run and leaves the branch at its last good checkpoint.
"""
from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import InvalidArtifact, RefConflict, RefNotFound, TrainingDiverged
from demoai.objects import Adapter, Dataset, TrainConfig, decode_manifest, encode_manifest
from demoai.store.git.lineage import make_lineage
from demoai.store.git.names import check_ref_name
from demoai.store.git.repo import Repository
from demoai.store.kinds import import_path, load_table, materialize
from demoai.train.config import TrainPlan, load_config, plan_training
from demoai.train.data import encode_rows, template_digest
from demoai.train.lora import OnStep, load_base, save_adapter, total_steps, train_loop
from demoai.train.watch import SCAN_FILE, TrainingWatch

__all__ = ["RunResult", "RunInfo", "train_run", "resume_run", "list_runs", "run_info", "run_curve",
           "RUN_PREFIX", "RUNS_DIR", "run_ref"]

RUN_PREFIX = "refs/heads/train/"
"""Where run branches live: ``train/<run>``."""
RUNS_DIR = "runs"
"""Where a run's artifacts sit in its tree: ``runs/<run>/``."""

OnPhase = Callable[[str], None] | None


@dataclass
class RunResult:
    """A finished run: its name and branch, the final commit and adapter, speed and losses."""

    name: str
    ref: str
    commit: str
    adapter_path: str
    adapter_digest: str
    steps: int
    tokens: int
    tokens_per_s: float
    train_s: float
    wall_s: float
    final_loss: float | None
    val_loss: float | None
    checkpoints: list[str] = field(default_factory=list)
    resumed_from: int | None = None
    warnings: list[str] = field(default_factory=list)
    scan_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class RunInfo:
    """A run as its branch records it: status, steps, losses, what it trained on."""

    name: str
    ref: str
    commit: str
    status: str
    step: int
    total: int
    config: str
    base: str
    dataset: str
    loss: float | None
    val_loss: float | None
    tokens_per_s: float | None
    wall_s: float | None
    adapter: str | None
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


def run_ref(name: str) -> str:
    """The branch ref of run ``name`` (``train/`` prefix optional)."""
    name = name.removeprefix(RUN_PREFIX).removeprefix("train/")
    check_ref_name(name, "run")
    return RUN_PREFIX + name


def _changes(old: dict[str, bytes], new: dict[str, bytes]) -> list[dict[str, str]]:
    out = []
    for p in sorted(set(old) | set(new)):
        if old.get(p) != new.get(p):
            out.append({"path": p, "change": "added" if p not in old else
                        "deleted" if p not in new else "modified"})
    return out


class _Chain:
    """Commits on one run branch: each is the previous tree plus changes, compare-and-swap."""

    def __init__(self, repo: Repository, ref: str, tip: str, params: dict[str, Any],
                 inputs: dict[str, str]) -> None:
        self.repo, self.ref, self.tip = repo, ref, tip
        self.entries = repo.tree_entries(tip)
        self.params, self.inputs = params, inputs
        self.commits: list[str] = []

    def commit(self, updates: dict[str, Any], message: str, *, drop: tuple[str, ...] = (),
               outputs: dict[str, str] | None = None, params: dict[str, Any] | None = None,
               create: bool = False) -> str:
        new = dict(self.entries)
        for p, art in updates.items():
            new[p] = encode_manifest(art)
        for p in drop:
            new.pop(p, None)
        inputs = dict(self.inputs)
        for p, art in updates.items():
            inputs[p] = art.digest
        lineage = make_lineage(self.params.get("command", "demoai train"), inputs=inputs,
                               outputs=outputs or {}, parameters={**self.params, **(params or {})},
                               extra={"changes": _changes(self.entries, new), "parents": [self.tip]})
        tree = self.repo.write_tree(new, lineage)
        c = self.repo.make_commit(tree, [self.tip], message)
        self.repo.set_ref(self.ref, c, None if create else self.tip, f"train: {message}")
        self.tip, self.entries = c, new
        self.commits.append(c)
        return c


def _curve_artifact(repo: Repository, workdir: Path, rows: list[dict[str, Any]],
                    base: Any) -> Dataset:
    # written whole each time (a few hundred rows): a column that was all null so far
    # (val_loss before the first evaluation) changes type, which a delta would refuse
    del base
    f = workdir / "curve.jsonl"
    f.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    art = import_path(repo, f, kind="dataset", key="step")
    assert isinstance(art, Dataset)
    return art


def _scan_artifact(repo: Repository, workdir: Path, rows: list[dict[str, Any]]) -> Dataset:
    f = workdir / SCAN_FILE
    rows = sorted(rows, key=lambda r: (r["step"], r["id"]))
    f.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    art = import_path(repo, f, kind="dataset", key="id")
    assert isinstance(art, Dataset)
    return art


def _default_name(repo: Repository, cfg: TrainConfig, path: str) -> str:
    stem = cfg.meta.get("name") or Path(path).name.split(".")[0]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.") or "run"
    n = 1
    while repo.ref_value(f"{RUN_PREFIX}{stem}-{n}") is not None:
        n += 1
    return f"{stem}-{n}"


def _workdir(repo: Repository, name: str) -> Path:
    d = repo.control / "cache" / "train" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _prepare(plan: TrainPlan, on_phase: OnPhase) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    meta = plan.meta
    if on_phase:
        on_phase(f"loading the base model {plan.base.ref}")
    model, tok = load_base(plan.base.path, plan.base.gguf_file, meta["threads"])
    if tok.eos_token is None:
        raise InvalidArtifact(f"{plan.config_path}: the base model's tokenizer has no end-of-sequence "
                              "token, so a trained answer could never stop")
    if on_phase:
        on_phase(f"tokenizing {len(plan.train_rows)} + {len(plan.val_rows)} rows")
    train = encode_rows(tok, meta, plan.train_rows)
    val = encode_rows(tok, meta, plan.val_rows)
    stats = {"examples": len(train.examples), "val_examples": len(val.examples),
             "truncated": train.truncated + val.truncated, "dropped": train.dropped + val.dropped}
    return model, tok, train.examples, val.examples, stats


def _train(repo: Repository, plan: TrainPlan, chain: _Chain, name: str, *, resume_dir: Path | None,
           curve: list[dict[str, Any]], curve_art: Any, t_start: float, on_step: OnStep,
           on_phase: OnPhase, prepared: tuple[Any, ...] | None = None,
           scan_rows: list[dict[str, Any]] | None = None) -> RunResult:
    model, tok, train, val, stats = prepared or _prepare(plan, on_phase)
    chain.inputs["chat_template"] = template_digest(tok)
    chain.params.update(stats)
    workdir = _workdir(repo, name)
    base_dir = f"{RUNS_DIR}/{name}"
    last_ck: dict[str, Any] = {"art": curve_art, "step": int(chain.params.get("step", 0))}
    watch = TrainingWatch.from_meta(plan.meta, scan_rows or [], [r.get("grad_norm") for r in curve])

    def scan_update() -> dict[str, Any]:
        return {f"{base_dir}/{SCAN_FILE}": _scan_artifact(repo, workdir, watch.rows)} if watch.rows else {}

    def on_checkpoint(step: int, folder: Path, rows: list[dict[str, Any]]) -> None:
        with repo.write_guard():
            ad = import_path(repo, folder, kind="adapter")
            cv = _curve_artifact(repo, workdir, rows, last_ck["art"])
            loss = rows[-1]["loss"] if rows else None
            chain.commit({f"{base_dir}/checkpoint": ad, f"{base_dir}/curve.jsonl": cv, **scan_update()},
                         f"train {name}: checkpoint at step {step}, loss {loss:.4f}",
                         params={"status": "checkpoint", "step": step, "loss": loss})
        last_ck.update(art=cv, step=step)
        shutil.rmtree(folder, ignore_errors=True)

    try:
        pm, res = train_loop(model, tok, train, val, plan.meta, base_ref=plan.base.ref,
                             workdir=workdir, resume=resume_dir, on_step=on_step,
                             on_checkpoint=on_checkpoint, curve=curve, watch=watch)
    except TrainingDiverged as e:
        if e.fields.get("reason") in ("nan", "explosion"):
            raise TrainingDiverged(f"{e.message}. The run's branch train/{name} keeps its last good "
                                 f"checkpoint (step {last_ck['step']}, commit {chain.tip[:12]}); "
                                 f"nothing else was committed", **{**e.fields, "run": name,
                                                                   "commit": chain.tip}) from e
        raise
    if on_phase:
        on_phase("committing the adapter")
    out = save_adapter(pm, workdir / "adapter", plan.base.ref)
    wall = time.time() - t_start
    with repo.write_guard():
        ad = import_path(repo, out, kind="adapter")
        assert isinstance(ad, Adapter)
        cv = _curve_artifact(repo, workdir, res.curve, last_ck["art"])
        final = res.curve[-1] if res.curve else {}
        params = {"status": "finished", "step": final.get("step", 0), "loss": final.get("loss"),
                  "val_loss": res.val_loss, "tokens": res.tokens, "train_s": round(res.train_s, 3),
                  "wall_s": round(wall, 3), "tokens_per_s": round(res.tokens_per_s, 2),
                  "device": res.device, "threads": plan.meta["threads"],
                  "processor": platform.processor() or platform.machine(),
                  "deterministic": res.device == "cpu"}
        if watch.every:
            params.update(scan_every=watch.every, scan_rows=len(watch.rows),
                          warnings=[w.message for w in watch.warnings][:20],
                          warning_count=len(watch.warnings))
        c = chain.commit({f"{base_dir}/adapter": ad, f"{base_dir}/curve.jsonl": cv, **scan_update()},
                         f"train {name}: adapter after {params['step']} steps, loss "
                         f"{(final.get('loss') or float('nan')):.4f}",
                         drop=(f"{base_dir}/checkpoint",), outputs={"adapter": ad.digest}, params=params)
    shutil.rmtree(workdir, ignore_errors=True)
    return RunResult(name, chain.ref, c, f"{base_dir}/adapter", ad.digest, res.steps, res.tokens,
                     res.tokens_per_s, res.train_s, wall, final.get("loss"), res.val_loss,
                     chain.commits, None, [w.message for w in watch.warnings],
                     f"{base_dir}/{SCAN_FILE}" if watch.rows else None)


def train_run(repo: Repository, config_path: str, *, name: str | None = None,
              on_step: OnStep = None, on_phase: OnPhase = None, command: str = "demoai train lora") -> RunResult:
    """Train the LoRA ``config_path`` describes, committing on branch ``train/<name>``
    (default: the config's name and the first free number). Everything that can be checked
    before training is (config, base, dataset, columns, split) and nothing is committed
    when it fails."""
    t_start = time.time()
    plan = plan_training(repo, config_path)
    name = name or _default_name(repo, plan.config, plan.config_path)
    ref = run_ref(name)
    name = ref[len(RUN_PREFIX):]
    if repo.ref_value(ref) is not None:
        raise RefConflict(f"run {name!r} already exists (continue it with `demoai train resume "
                          f"{name}`, or pick another --name)", ref=ref)
    params = {"command": command, "run": name, "config_path": plan.config_path,
              "base": plan.base.ref, "dataset_path": plan.meta["dataset"], "seed": plan.meta["seed"],
              "start": plan.rev, "total_steps": None, "rows": len(plan.train_rows),
              "val_rows": len(plan.val_rows)}
    chain = _Chain(repo, ref, plan.rev, params, plan.inputs())
    # the base is loaded and the rows encoded before the first commit: a base transformers
    # cannot load or a row the template cannot render leaves no branch behind
    prepared = _prepare(plan, on_phase)
    chain.inputs["chat_template"] = template_digest(prepared[1])
    chain.params["total_steps"] = total_steps(plan.meta, len(prepared[2]))
    chain.commit({plan.config_path: plan.config}, f"train {name}: start from {plan.rev[:12]}",
                 params={"status": "started", "step": 0}, create=True)
    return _train(repo, plan, chain, name, resume_dir=None, curve=[], curve_art=None,
                  t_start=t_start, on_step=on_step, on_phase=on_phase, prepared=prepared)


def resume_run(repo: Repository, name: str, *, on_step: OnStep = None, on_phase: OnPhase = None) -> RunResult:
    """Continue run ``name`` from its branch's last commit (its last checkpoint, or the
    start); ends with the adapter an uninterrupted run gives."""
    t_start = time.time()
    ref = run_ref(name)
    name = ref[len(RUN_PREFIX):]
    tip = repo.ref_value(ref)
    if tip is None:
        raise RefNotFound(f"no training run {name!r} (see `demoai train list`)", ref=ref)
    lin = repo.lineage(tip)
    params = dict(lin.get("parameters") or {})
    if params.get("status") == "finished":
        raise InvalidArtifact(f"run {name!r} already finished (adapter at {RUNS_DIR}/{name}/adapter)",
                              run=name)
    cfg_path = params.get("config_path")
    if not cfg_path or "start" not in params:
        raise InvalidArtifact(f"{ref} is not a training run's branch", ref=ref)
    cfg, _ = load_config(repo, cfg_path, tip)
    plan = plan_training(repo, cfg_path, config=cfg, base_rev=params["start"])
    inputs = {k: v for k, v in (lin.get("inputs") or {}).items() if not k.startswith(f"{RUNS_DIR}/")
              and k != cfg_path}
    params["command"] = "demoai train resume"
    chain = _Chain(repo, ref, tip, params, inputs)
    entries = repo.artifacts(tip)
    ck = entries.get(f"{RUNS_DIR}/{name}/checkpoint")
    cv = entries.get(f"{RUNS_DIR}/{name}/curve.jsonl")
    sc = entries.get(f"{RUNS_DIR}/{name}/{SCAN_FILE}")
    resume_dir, curve, scan_rows = None, [], []
    if isinstance(sc, Dataset):
        scan_rows = sorted(load_table(repo, sc).to_pylist(), key=lambda r: (r["step"], r["id"]))
    if ck is not None:
        d = _workdir(repo, name + ".resume")
        resume_dir = materialize(repo, ck, d / "checkpoint")
    if isinstance(cv, Dataset):
        curve = sorted(load_table(repo, cv).to_pylist(), key=lambda r: r["step"])
    try:
        res = _train(repo, plan, chain, name, resume_dir=resume_dir, curve=curve, curve_art=cv,
                     t_start=t_start, on_step=on_step, on_phase=on_phase, scan_rows=scan_rows)
    finally:
        if resume_dir is not None:
            shutil.rmtree(resume_dir.parent, ignore_errors=True)
    res.resumed_from = int(params.get("step") or 0)
    return res


def run_info(repo: Repository, name: str) -> RunInfo:
    """Run ``name`` as its branch's tip records it."""
    ref = run_ref(name)
    tip = repo.ref_value(ref)
    if tip is None:
        raise RefNotFound(f"no training run {name.removeprefix('train/')!r} (see `demoai train list`)",
                          ref=ref)
    lin = repo.lineage(tip)
    p = lin.get("parameters") or {}
    if "config_path" not in p:
        raise InvalidArtifact(f"{ref} is not a training run's branch", ref=ref)
    run = ref[len(RUN_PREFIX):]
    adapter = (lin.get("outputs") or {}).get("adapter")
    return RunInfo(run, ref, tip, p.get("status", "?"), int(p.get("step") or 0),
                   int(p.get("total_steps") or 0), p["config_path"], p.get("base", "?"),
                   p.get("dataset_path", "?"), p.get("loss"), p.get("val_loss"),
                   p.get("tokens_per_s"), p.get("wall_s"),
                   f"{RUNS_DIR}/{run}/adapter" if adapter else None, lin)


def list_runs(repo: Repository) -> list[RunInfo]:
    """Every training run (branches ``train/*``), by name."""
    out = []
    for ref in sorted(repo.refs()):
        if ref.startswith(RUN_PREFIX):
            try:
                out.append(run_info(repo, ref))
            except InvalidArtifact:
                continue        # a branch named train/x that no run made
    return out


def run_curve(repo: Repository, name: str) -> list[dict[str, Any]]:
    """The curve rows (step, loss, lr, grad_norm, val_loss, ...) of run ``name``, by step."""
    info = run_info(repo, name)
    try:
        art = decode_manifest(repo.tree_entries(info.commit)[f"{RUNS_DIR}/{info.name}/curve.jsonl"],
                              "curve")
    except KeyError:
        return []
    assert isinstance(art, Dataset)
    return sorted(load_table(repo, art).to_pylist(), key=lambda r: r["step"])
