"""The LoRA training loop: transformers + peft on torch, a plain loop (no ``Trainer``).

Deterministic on CPU: threads fixed from the config, ``torch.use_deterministic_algorithms``,
the LoRA initialisation and dropout drawn from torch's generator seeded with the config's
seed, and the data order a fixed function of (seed, epoch). The same config, data and seed
give the same adapter bytes. A checkpoint holds the adapter, the optimizer and scheduler
state and the generator state, so a run resumed from one continues exactly as if it had
never stopped. On a GPU (used when there is one) kernels may not be deterministic; the run's
result says which device trained it.

The loss is the mean over answer tokens of a whole optimizer step (all its gradient
accumulation micro-batches together), as transformers' ``Trainer`` computes it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import ModelError, RuntimeFailure, TrainingDiverged
from demoai.train.data import IGNORE, Example

__all__ = ["StepInfo", "TrainResult", "OnStep", "OnCheckpoint", "load_base", "train_loop",
           "lr_factor", "total_steps", "STATE_FILE", "ADAPTER_FILES", "save_adapter"]

STATE_FILE = "trainer_state.pt"
"""The file of a checkpoint folder holding optimizer, scheduler and generator state."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""What a final adapter folder holds (what peft writes, less its model card)."""


@dataclass
class StepInfo:
    """One optimizer step: loss, learning rate, gradient norm, tokens, speed and ETA;
    ``val_loss`` when the step ran a validation pass."""

    step: int
    total: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    val_loss: float | None = None
    warnings: list[str] = field(default_factory=list)
    """What the training watch (:mod:`demoai.train.watch`) found at this step."""

    def row(self) -> dict[str, Any]:
        """The row this step adds to the run's curve table."""
        return {"step": self.step, "epoch": round(self.epoch, 6), "loss": self.loss, "lr": self.lr,
                "grad_norm": self.grad_norm, "tokens": self.tokens,
                "elapsed_s": round(self.elapsed_s, 4), "val_loss": self.val_loss}


@dataclass
class TrainResult:
    """A finished loop: the steps run, tokens, training time and speed, the curve rows,
    the last validation loss, and the device."""

    steps: int
    tokens: int
    train_s: float
    tokens_per_s: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    val_loss: float | None = None
    device: str = "cpu"


OnStep = Callable[[StepInfo], None] | None
OnCheckpoint = Callable[[int, Path, list[dict[str, Any]]], None] | None


def load_base(path: str, gguf_file: str | None, threads: int) -> tuple[Any, Any]:
    """(model, tokenizer) of the base in float32 (a GGUF is dequantized)."""
    import torch
    import transformers
    torch.set_num_threads(threads)
    kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    where = f"{path}/{gguf_file}" if gguf_file else path
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path, **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"transformers cannot load the base model {where}: {e}", path=where) from e
    return model, tok


def total_steps(meta: dict[str, Any], n_examples: int) -> int:
    """Optimizer steps of a run: ``max_steps``, else ``epochs`` over the examples."""
    if meta.get("max_steps"):
        return int(meta["max_steps"])
    batches = math.ceil(n_examples / meta["batch_size"])
    return max(1, math.ceil(meta["epochs"] * batches / meta["gradient_accumulation"]))


def lr_factor(schedule: str, step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear warm-up, then constant,
    linear decay to 0 or half a cosine to 0 (transformers' schedules)."""
    if step < warmup:
        return (step + 1) / (warmup + 1) if warmup else 1.0
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


class _Batches:
    """The micro-batch stream: epoch e visits the examples in ``randperm(seed, e)`` order."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int) -> None:
        self.examples, self.bs, self.seed = examples, batch_size, seed
        self.per_epoch = math.ceil(len(examples) / batch_size)
        self._perm: tuple[int, list[int]] | None = None

    def get(self, k: int) -> tuple[float, list[Example]]:
        import torch
        epoch, i = divmod(k, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.examples), generator=g).tolist())
        idx = self._perm[1][i * self.bs:(i + 1) * self.bs]
        return epoch + (i + 1) / self.per_epoch, [self.examples[j] for j in idx]


def _collate(batch: list[Example], pad_id: int) -> tuple[Any, Any, Any]:
    import torch
    n = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for r, e in enumerate(batch):
        ids[r, :len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[r, :len(e.labels)] = torch.tensor(e.labels)
        mask[r, :len(e.input_ids)] = 1
    return ids, labels, mask


def _loss_sum(model: Any, ids: Any, labels: Any, mask: Any) -> Any:
    import torch
    logits = model(input_ids=ids, attention_mask=mask).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
        ignore_index=IGNORE, reduction="sum")


def _val_loss(model: Any, examples: list[Example], bs: int, pad_id: int) -> float | None:
    import torch
    if not examples:
        return None
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), bs):
            ids, labels, mask = _collate(examples[i:i + bs], pad_id)
            total += float(_loss_sum(model, ids, labels, mask))
            n += int((labels[:, 1:] != IGNORE).sum())
    model.train()
    return total / max(n, 1)


def save_adapter(model: Any, out: Path, base_ref: str) -> Path:
    """The peft adapter folder (config and safetensors, no model card), naming ``base_ref``
    as its base so the bytes do not depend on where the weights sat on disk."""
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = base_ref
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)
    return out


def train_loop(model: Any, tokenizer: Any, train: list[Example], val: list[Example],
               meta: dict[str, Any], *, base_ref: str, workdir: Path, resume: Path | None = None,
               on_step: OnStep = None, on_checkpoint: OnCheckpoint = None,
               curve: list[dict[str, Any]] | None = None, watch: Any = None) -> tuple[Any, TrainResult]:
    """Wrap ``model`` with a LoRA per ``meta`` and train it on ``train``; returns the peft
    model and the result. ``resume``: a checkpoint folder to continue from (its curve rows
    in ``curve``). ``on_checkpoint(step, folder, curve)`` is called every ``save_every``
    steps with a checkpoint written under ``workdir``. A non-finite loss or gradient
    raises :class:`RuntimeFailure` (``reason="nan"``) before the weights are touched.
    ``watch``: a :class:`demoai.train.watch.TrainingWatch` that scans the LoRA weights and
    gradients at its steps and checks every step before its checkpoint is written."""
    import peft
    import torch
    if not train:
        raise RuntimeFailure("no training example is left (all were dropped: raise max_length)",
                             reason="no_examples")
    threads, seed = meta["threads"], meta["seed"]
    torch.set_num_threads(threads)
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        lora = meta["lora"]
        torch.manual_seed(seed)
        pm = peft.get_peft_model(model, peft.LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"], task_type="CAUSAL_LM", bias="none"))
        pm.to(device)
        params = [p for p in pm.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=meta["learning_rate"], weight_decay=meta["weight_decay"],
                                foreach=False)
        total = total_steps(meta, len(train))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(meta["schedule"], s, meta["warmup_steps"], total))
        start, curve = 0, list(curve or [])
        if resume is not None:
            from safetensors.torch import load_file
            peft.set_peft_model_state_dict(pm, load_file(str(resume / "adapter_model.safetensors")))
            state = torch.load(resume / STATE_FILE, weights_only=False)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            start = int(state["step"])
            curve = [r for r in curve if r["step"] <= start]
        return pm, _run(pm, tokenizer, train, val, meta, opt, sched, start, total, curve, device,
                        base_ref=base_ref, workdir=workdir, on_step=on_step,
                        on_checkpoint=on_checkpoint, watch=watch)
    except torch.OutOfMemoryError as e:
        raise RuntimeFailure(f"out of memory while training: {e}", reason="oom") from e
    finally:
        torch.use_deterministic_algorithms(was_det)


def _run(pm: Any, tokenizer: Any, train: list[Example], val: list[Example], meta: dict[str, Any],
         opt: Any, sched: Any, start: int, total: int, curve: list[dict[str, Any]], device: str, *,
         base_ref: str, workdir: Path, on_step: OnStep, on_checkpoint: OnCheckpoint,
         watch: Any = None) -> TrainResult:
    import torch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ga, bs = meta["gradient_accumulation"], meta["batch_size"]
    batches = _Batches(train, bs, meta["seed"])
    params = [p for p in pm.parameters() if p.requires_grad]
    clip = meta["max_grad_norm"] or float("inf")
    pm.train()
    tokens_all, train_s, val_loss = 0, 0.0, None
    if watch is not None:
        watch.begin((n, p) for n, p in pm.named_parameters() if p.requires_grad)
    for step in range(start, total):
        t0 = time.perf_counter()
        micro = [batches.get(step * ga + j) for j in range(ga)]
        n_lab = sum(e.trained_tokens for _, b in micro for e in b) or 1
        loss_sum, tokens = 0.0, 0
        for _, b in micro:
            ids, labels, mask = (t.to(device) for t in _collate(b, pad))
            loss = _loss_sum(pm, ids, labels, mask)
            (loss / n_lab).backward()
            loss_sum += float(loss.detach())
            tokens += int(mask.sum())
        loss_v = loss_sum / n_lab
        scanned = watch is not None and watch.due(step + 1)
        if scanned:
            watch.record_grads((n, p) for n, p in pm.named_parameters() if p.requires_grad)
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if not (math.isfinite(loss_v) and math.isfinite(norm)):
            raise TrainingDiverged(f"the loss became {'NaN' if loss_v != loss_v else loss_v} at step "
                                 f"{step + 1} (learning rate {sched.get_last_lr()[0]:g}): training "
                                 "stopped; lower learning_rate", reason="nan", step=step + 1)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        train_s += time.perf_counter() - t0
        tokens_all += tokens
        done = step + 1
        warns = [] if watch is None else [w.message for w in watch.after_step(
            done, norm, [(n, p) for n, p in pm.named_parameters() if p.requires_grad] if scanned else None)]
        evaluated = bool(meta.get("eval_every")) and (done % meta["eval_every"] == 0 or done == total)
        if evaluated:
            val_loss = _val_loss(pm, val, bs, pad)
        speed = tokens_all / train_s if train_s else 0.0
        info = StepInfo(done, total, micro[-1][0], loss_v, lr, norm, tokens, speed, train_s,
                        train_s / (done - start) * (total - done), val_loss if evaluated else None,
                        warns)
        curve.append(info.row())
        if on_step is not None:
            on_step(info)
        if on_checkpoint is not None and meta.get("save_every") and done % meta["save_every"] == 0 \
                and done < total:
            ck = workdir / f"checkpoint-{done}"
            save_adapter(pm, ck, base_ref)
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "rng": torch.get_rng_state(), "step": done}, ck / STATE_FILE)
            on_checkpoint(done, ck, list(curve))
    if val_loss is None and val:
        val_loss = _val_loss(pm, val, bs, pad)
    return TrainResult(total - start, tokens_all, train_s, tokens_all / train_s if train_s else 0.0,
                       curve, val_loss, device)
