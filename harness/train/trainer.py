"""train(TrainSpec) -> adapter folder. Reads top to bottom: data, model, optimiser, loop, save.

A step is one optimizer update over micro_batch_size x gradient_accumulation rows (x the number
of processes under `accelerate launch`). The loss of a step is the mean over all its target
tokens, the normalisation transformers' Trainer uses with gradient accumulation.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.data import load_task_data
from harness.errors import ConfigError, DataError, first_line
from harness.models import load_tokenizer, materialize, resolve_base
from harness.policy import DEFAULT_POLICY, CodePolicy
from harness.progress import Progress
from harness.prompts import with_chat_template
from harness.registry import discover_tasks, pick
from harness.track import Trackers, flat_params
from harness.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from harness.train.collate import (
    BuildStats,
    TrainExample,
    build_train_examples,
    collate,
    template_tokens,
)
from harness.train.recipe import TrainSpec

CUDA_ONLY_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")


def check_device(spec: TrainSpec, device: str) -> None:
    """Raise ConfigError for settings this device cannot run (CUDA optimizers, fp16, int8)."""
    t = spec.training
    if not device.startswith("cuda"):
        if t.optimizer in CUDA_ONLY_OPTIMIZERS:
            raise ConfigError(f"training.optimizer {t.optimizer} needs a CUDA device; on this "
                              f"machine use --set training.optimizer=adamw_torch")
        if t.precision == "fp16":
            raise ConfigError("training.precision fp16 needs a CUDA device; use bf16 or fp32")
        if spec.quantization == "int8":
            raise ConfigError("quantization int8 needs a CUDA device; use nf4 or none")


HOLDOUT_FRACTION, HOLDOUT_MAX = 0.1, 200


def _load_side(spec: TrainSpec, side: str, path: str | None, policy: CodePolicy) -> list[Any]:
    task = pick(discover_tasks(), spec.task, "task")
    split = spec.train if side == "train" else spec.eval
    task = replace(task, dataset=replace(task.dataset, split=split.split))
    try:
        return list(load_task_data(task, path, split.limit, allow_empty_target=True,
                                   policy=policy).examples)
    except DataError as err:
        if path is None and side == "eval":  # the hub split could not be had
            raise DataError(f"{err} (for the eval rows give --data {spec.task}:eval=PATH)") \
                from None
        raise


def _task_data(spec: TrainSpec, paths: dict[str, str],
               policy: CodePolicy) -> tuple[list[Any], list[Any], str | None]:
    """Training and eval examples, and a note when the eval rows were held out of the
    training file: a train file with no eval file gives up a seeded slice of its rows.
    """
    train_path = paths.get(f"{spec.task}:train") or paths.get(spec.task) or spec.train.file
    eval_path = paths.get(f"{spec.task}:eval") or spec.eval.file
    train_rows = _load_side(spec, "train", train_path, policy)
    if eval_path is not None or train_path is None:
        return train_rows, _load_side(spec, "eval", eval_path, policy), None
    n = len(train_rows)
    held = min(HOLDOUT_MAX, max(1, round(HOLDOUT_FRACTION * n)))
    if n - held < 1:
        raise ConfigError(f"{train_path} has {n} row(s): too few to hold out eval rows; give "
                          f"--data {spec.task}:eval=PATH")
    order = np.random.default_rng(spec.training.seed).permutation(n)
    eval_idx = set(order[:held].tolist())
    note = (f"note: no eval file was given; held out {held} of the {n} rows of {train_path} "
            f"(seed {spec.training.seed}) for the eval loss; choose them with "
            f"--data {spec.task}:eval=PATH")
    return ([r for i, r in enumerate(train_rows) if i not in eval_idx],
            [r for i, r in enumerate(train_rows) if i in eval_idx], note)


# Bookkeeping a resumed run may change: none of it changes the weights a step produces.
RESUME_MAY_CHANGE = ("training.save_every", "training.save_total_limit", "training.log_every",
                     "training.eval_batch_size")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def check_resume(spec: TrainSpec, ckpt: Path, data_sha: str) -> None:
    """A checkpoint continues only the run that wrote it: same recipe, same training rows."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume: {ckpt} is damaged ({err}); remove that checkpoint folder "
                          f"to resume from an earlier one, or start again") from None
    saved = state.get("recipe") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {ckpt} was written by an older harness without its "
                          f"recipe; start again without --resume in a new --out")
    now, then = _flat({**spec.to_dict(), "out": None}), _flat({**saved, "out": None})
    differ = sorted(k for k in set(now) | set(then)
                    if now.get(k) != then.get(k) and k not in RESUME_MAY_CHANGE)
    if differ:
        shown = ", ".join(f"{k} ({then.get(k)!r} -> {now.get(k)!r})" for k in differ[:6])
        raise ConfigError(f"--resume: the recipe differs from the checkpoint's in {shown}; "
                          f"resume with the recipe it was started with, or start a new run "
                          f"in another --out")
    if state.get("data_sha256") not in (None, data_sha):
        raise ConfigError(f"--resume: the training rows differ from the ones {ckpt} was "
                          f"trained on; give the same --data files, or start a new run")


def _optimizer(spec: TrainSpec, params: list[Any]) -> Any:
    import torch

    t = spec.training
    betas = (t.adam_beta1, t.adam_beta2)
    if t.optimizer == "adamw_torch":
        return torch.optim.AdamW(params, lr=t.learning_rate, betas=betas,
                                 weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    import bitsandbytes as bnb

    cls = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
           "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[t.optimizer]
    return cls(params, lr=t.learning_rate, betas=betas, weight_decay=t.weight_decay)


def micro_batch_order(n: int, micro: int, seed: int, epoch: int) -> list[list[int]]:
    """This epoch's micro-batches: a seeded permutation, so a resumed run sees the same order."""
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(n).tolist()
    return [order[i: i + micro] for i in range(0, n, micro)]


def _eval_loss(loss_fn: Any, examples: list[TrainExample], batch_size: int, pad_id: int,
               device: str, autocast: Any) -> float:
    import torch

    total, tokens = 0.0, 0
    loss_fn.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in
                     collate(examples[i: i + batch_size], pad_id).items()}
            with autocast():
                loss, n = loss_fn(**batch)
            total, tokens = total + float(loss), tokens + int(n)
    loss_fn.train()
    return total / max(tokens, 1)


def plot_losses(log: list[dict[str, Any]], path: Path) -> None:
    """loss.png: training and eval loss by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["loss"]) for r in log if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in log if r.get("eval_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", alpha=0.8)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over target tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(spec: TrainSpec, data_paths: dict[str, str], resume: bool = False,
          progress: Progress | None = None, policy: CodePolicy = DEFAULT_POLICY,
          trackers: Trackers | None = None) -> Path:
    """Train the recipe's adapter into its out folder. `trackers` (--log-to) get the recipe as
    parameters, each logged row (loss, eval loss, learning rate, gradient norm, tokens/s) at
    its step, and the run's summary figures.
    """
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    from harness.train.model import TargetLoss, load_for_training

    t = spec.training
    out = Path(spec.out or Path("adapters") / spec.name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(spec, device)
    task = with_chat_template(pick(discover_tasks(), spec.task, "task"), spec.chat_template)
    if task.kind == "multiple_choice":
        raise ConfigError(f"task '{task.name}' is multiple_choice; train a generation or "
                          f"perplexity task")
    tokenizer = load_tokenizer(spec.base, trust_remote_code=spec.trust_remote_code,
                               source=materialize(resolve_base(spec.base)))
    need = template_tokens(task, tokenizer) + 2
    if t.max_length < need:
        raise ConfigError(f"training.max_length {t.max_length} is shorter than the task's "
                          f"template ({need - 2} tokens) plus a target; raise it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if resume and latest_checkpoint(out / "checkpoints") is None:
        raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    if not resume and (out / "checkpoints").exists():
        raise ConfigError(f"{out} holds an earlier run's checkpoints; add --resume to continue "
                          f"it, or remove the folder")

    random.seed(t.seed)
    np.random.seed(t.seed)
    torch.manual_seed(t.seed)
    train_rows, eval_rows, note = _task_data(spec, data_paths, policy)
    data_sha = hashlib.sha256("".join(e.hash for e in train_rows).encode()).hexdigest()
    if resume:
        check_resume(spec, latest_checkpoint(out / "checkpoints"), data_sha)  # type: ignore[arg-type]
    train_ex, train_stats = build_train_examples(task, train_rows, tokenizer, t.max_length)
    eval_ex, eval_stats = build_train_examples(task, eval_rows, tokenizer, t.max_length)
    if not train_ex or not eval_ex:
        raise ConfigError(f"no usable {'training' if not train_ex else 'eval'} examples "
                          f"after dropping empty or unfittable targets")

    accelerator = Accelerator(mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(
        t.precision, "no") if device == "cuda" else "no", cpu=device == "cpu")
    device = str(accelerator.device)
    peft_model = load_for_training(spec, device)
    loss_fn = TargetLoss(peft_model)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = _optimizer(spec, params)
    world = accelerator.num_processes
    per_step = t.micro_batch_size * t.gradient_accumulation * world
    steps_per_epoch = math.ceil(len(train_ex) / per_step)
    total = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup = t.warmup_steps or round((t.warmup_ratio or 0.0) * total)
    scheduler = get_scheduler({"constant": "constant_with_warmup"}.get(t.schedule, t.schedule),
                              optimizer, num_warmup_steps=warmup, num_training_steps=total)
    loss_fn, optimizer = accelerator.prepare(loss_fn, optimizer)
    autocast = accelerator.autocast if device.startswith("cuda") else (
        lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.precision == "bf16"))

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    state: dict[str, Any] = {"step": 0, "best_eval_loss": None, "best_step": None,
                             "bad_evals": 0, "stopped_early": False}
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log: list[dict[str, Any]] = []
    if resume:
        ckpt = latest_checkpoint(out / "checkpoints")
        assert ckpt is not None  # checked above
        try:
            state = load_checkpoint(ckpt, peft_model, optimizer, scheduler)
        except Exception as err:  # safetensors, torch.load, shapes: any damage
            raise ConfigError(f"--resume: {ckpt} cannot be loaded ({type(err).__name__}: "
                              f"{first_line(err)}); remove that checkpoint folder to resume "
                              f"from an earlier one") from None
        state.pop("recipe", None)
        state.pop("data_sha256", None)
        if log_path.exists():  # keep the log as it was at the checkpoint
            log = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
            log = [r for r in log if r["step"] <= state["step"]]
    log_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log))

    trackers = trackers or Trackers()
    trackers.params(flat_params(spec.to_dict()))

    def write_log(row: dict[str, Any]) -> None:
        log.append(row)
        trackers.metrics({f"train/{k}": float(v) for k, v in row.items()
                          if k != "step" and isinstance(v, (int, float))}, row["step"])
        if accelerator.is_main_process:
            with log_path.open("a") as fh:
                fh.write(json.dumps(row, sort_keys=True) + "\n")

    started = time.time()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    micro_per_epoch = math.ceil(len(train_ex) / t.micro_batch_size)
    orders: dict[int, list[list[int]]] = {}
    loss_fn.train()
    window_loss = window_tokens = 0.0
    window_time, window_seq_tokens = time.perf_counter(), 0
    with progress or Progress() as bar:
        bar_id = bar.add(f"train {spec.name}", total)
        bar.advance(bar_id, state["step"])
        while state["step"] < total and not state["stopped_early"]:
            step = state["step"]
            batches = []
            for j in range(t.gradient_accumulation):
                k = (step * t.gradient_accumulation + j) * world + accelerator.process_index
                epoch, pos = divmod(k, micro_per_epoch)
                if epoch not in orders:
                    orders = {epoch: micro_batch_order(len(train_ex), t.micro_batch_size,
                                                       t.seed, epoch)}
                batches.append(collate([train_ex[i] for i in orders[epoch][pos]], pad_id))
            n_window = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
            step_loss = 0.0
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast():
                    loss_sum, _ = loss_fn(**batch)
                accelerator.backward(loss_sum / max(n_window, 1))
                step_loss += float(loss_sum.detach())
                window_seq_tokens += int(batch["attention_mask"].sum())
            grad_norm = float(accelerator.clip_grad_norm_(params, t.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step = step + 1
            window_loss += step_loss
            window_tokens += n_window
            bar.advance(bar_id, 1)
            row: dict[str, Any] = {"step": step}
            if step % t.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_time
                row.update(loss=window_loss / max(window_tokens, 1), lr=scheduler.get_last_lr()[0],
                           grad_norm=grad_norm, tokens_per_s=window_seq_tokens * world / elapsed,
                           peak_memory_gib=(torch.cuda.max_memory_allocated() / 2**30
                                            if device.startswith("cuda") else None))
                window_loss = window_tokens = 0.0
                window_time, window_seq_tokens = time.perf_counter(), 0
            if step % t.eval_every == 0 or step == total:
                eval_loss = _eval_loss(loss_fn, eval_ex, t.eval_batch_size, pad_id, device,
                                       autocast)
                row["eval_loss"] = eval_loss
                best = state["best_eval_loss"]
                if best is None or eval_loss < best - t.early_stopping_min_delta:
                    state.update(best_eval_loss=eval_loss, best_step=step, bad_evals=0)
                    if accelerator.is_main_process:
                        accelerator.unwrap_model(loss_fn).peft_model.save_pretrained(
                            out / "best")
                else:
                    state["bad_evals"] += 1
                    if t.early_stopping_patience and \
                            state["bad_evals"] >= t.early_stopping_patience:
                        state["stopped_early"] = True
            if len(row) > 1:
                write_log(row)
            if accelerator.is_main_process and (step % t.save_every == 0 or step == total
                                                or state["stopped_early"]):
                folder = out / "checkpoints" / f"step-{step}"
                save_checkpoint(folder, peft_model, optimizer, scheduler,
                                dict(state, recipe=spec.to_dict(), data_sha256=data_sha))
                prune_checkpoints(out / "checkpoints", t.save_total_limit)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        summary = _finish(spec, out, tokenizer, log, state, train_stats, eval_stats, total,
                          time.time() - started)
        trackers.metrics({f"train/{k}": float(summary[k]) for k in (
            "best_eval_loss", "eval_perplexity", "wall_seconds", "mean_tokens_per_s")
            if isinstance(summary.get(k), (int, float))}, state["step"])
        if note:  # said once the run is done, so a failing run still ends in one line
            print(note, file=sys.stderr)
    return out


def _finish(spec: TrainSpec, out: Path, tokenizer: Any, log: list[dict[str, Any]],
            state: dict[str, Any], train_stats: BuildStats, eval_stats: BuildStats, total: int,
            seconds: float) -> dict[str, Any]:
    """The best checkpoint becomes the adapter; summary, resolved recipe, tokenizer, plot.
    Returns the summary.
    """
    from harness.report.build import versions
    from harness.report.write import atomic_write

    best = out / "best"
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(best / name, out / name)
    tokenizer.save_pretrained(out)
    atomic_write(out / "recipe.resolved.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    tokens = [r["tokens_per_s"] for r in log if r.get("tokens_per_s")]
    peaks = [r["peak_memory_gib"] for r in log if r.get("peak_memory_gib")]
    summary = {
        "recipe": spec.name, "base": spec.base, "task": spec.task,
        "steps": state["step"], "planned_steps": total, "stopped_early": state["stopped_early"],
        "best_step": state["best_step"], "best_eval_loss": state["best_eval_loss"],
        "eval_perplexity": math.exp(state["best_eval_loss"]),
        "train_examples": train_stats.to_json(), "eval_examples": eval_stats.to_json(),
        "wall_seconds": round(seconds, 3),
        "mean_tokens_per_s": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "peak_memory_gib": max(peaks) if peaks else None,
        "versions": versions(),
    }
    atomic_write(out / "train_summary.json", json.dumps(summary, sort_keys=True, indent=2) + "\n")
    plot_losses(log, out / "loss.png")
    return summary
