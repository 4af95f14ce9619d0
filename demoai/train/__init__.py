"""LoRA fine-tuning with transformers + peft, every run a chain of commits.

One module per concern: ``config`` (resolve a ``*.train.yaml`` against the repository:
base weights, rows, digests, checks), ``data`` (rows -> tokenized examples, prompt masked in
the labels, the base's chat template pinned by digest), ``lora`` (the deterministic training
loop, checkpoints with optimizer state), ``run`` (the run as commits on branch
``train/<run>``, resume), ``doctor`` (pre-flight checks) and ``plot`` (loss curves as PNG).
The model registry views, model import/export and the brain scan live beside them
(``registry``, ``importers``, ``export``, ``scan``).
Porcelain (:mod:`demoai.porcelain.train`) is the door for the faces.
"""
from demoai.train.config import TrainPlan, code_digest, load_config, plan_training
from demoai.train.doctor import Check, DoctorReport, doctor
from demoai.train.lora import StepInfo, TrainResult
from demoai.train.plot import plot_curves
from demoai.train.run import (RUN_PREFIX, RUNS_DIR, RunInfo, RunResult, list_runs, resume_run,
                              run_curve, run_info, train_run)

__all__ = ["TrainPlan", "code_digest", "load_config", "plan_training", "Check", "DoctorReport",
           "doctor", "StepInfo", "TrainResult", "plot_curves", "RUN_PREFIX", "RUNS_DIR", "RunInfo",
           "RunResult", "list_runs", "resume_run", "run_curve", "run_info", "train_run"]
