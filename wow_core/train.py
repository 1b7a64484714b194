"""DPO-family training of a LoRA adapter on a preference set (TRL + PEFT).

Losses: the DPO trainer's sigmoid (DPO), ipo, hinge (RSO) and sppo_hard, with reference log-probs
computed once before training (the reference is the base model with the adapter switched off, so no
second copy is loaded); TRL's CPO trainer for CPO and SimPO (CPO with `loss_type="simpo"` and no NLL
term); its ORPO trainer for ORPO. CPO, SimPO and ORPO need no reference model. Defaults are the
paper's (Yao et al. 2024, §3): LoRA rank 16, alpha 16 on every attention and MLP projection, lr 5e-5
cosine, 3 epochs, beta 0.1, warmup 0.1, weight decay 1e-5; 10 % of the pairs are held out for an
eval loss.

Training may start from an adapter trained before (`init_adapter`, a later round of iterative
alignment): that adapter is trained further, and for the DPO losses its frozen copy is the reference
(TRL's "ref" adapter), so the round moves from the previous round's model, as in Iterative RPO.
"""
import ctypes
import gc
import importlib.metadata
import importlib.util
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from wow_core import progress
from wow_core.backends.transformers_backend import DEVICE_LOCK, local_folder
from wow_core.config import ConfigError, ExperimentConfig, TrainConfig
from wow_core.engines import device_lease, release_device
from wow_core.machine import resolve_dtype

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # CPO and ORPO live in trl.experimental

VERSION = 1

DPO_LOSSES = {"dpo": "sigmoid", "ipo": "ipo", "rso": "hinge", "sppo_hard": "sppo_hard"}
CPO_LOSSES = {"cpo": "sigmoid", "simpo": "simpo"}
LOSSES = (*DPO_LOSSES, *CPO_LOSSES, "orpo")
# CPO, SimPO and ORPO come from trl.experimental, which TRL empties trainer by trainer (BCO, XPO and
# Nash-MD are gone); the lock pins a TRL that has them. A TRL without one is said at import, and a config
# that asks for its loss is refused before any work (`unavailable_losses`), never mid-grid.
EXPERIMENTAL_TRAINERS = {"cpo": "trl.experimental.cpo", "simpo": "trl.experimental.cpo",
                         "orpo": "trl.experimental.orpo"}


def _missing_trainers() -> dict[str, str]:
    missing = {}
    for loss, module in EXPERIMENTAL_TRAINERS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing[loss] = module
    return missing


MISSING_TRAINERS = _missing_trainers()
if MISSING_TRAINERS:
    warnings.warn(f"trl {importlib.metadata.version('trl')} has no {sorted(set(MISSING_TRAINERS.values()))}: losses "
                  f"{sorted(MISSING_TRAINERS)} cannot train (the lock pins a TRL that has them: run scripts/setup)",
                  stacklevel=1)


def check_trainers(config: ExperimentConfig, source: str) -> None:
    """Refuse, before any work, a config whose alignment trains a loss the installed TRL has no trainer for.

    Raises:
        ConfigError: naming the source, the field and the missing trainer.
    """
    if config.alignment is None:
        return
    losses = [p.loss for p in config.alignment.grid_points()]
    field = "alignment.grid.loss" if "loss" in config.alignment.grid else "alignment.train.loss"
    problems = unavailable_losses(losses)
    if problems:
        raise ConfigError("\n".join(f"{source}: field '{field}': {p}" for p in problems))


def unavailable_losses(losses: list[str]) -> list[str]:
    """What is wrong with training `losses` with the installed TRL: one line per loss whose trainer it lacks."""
    version = importlib.metadata.version("trl")
    return [f"loss '{loss}' needs {MISSING_TRAINERS[loss]}, which trl {version} does not have; install the locked "
            "TRL (scripts/setup) or train a DPO loss" for loss in dict.fromkeys(losses) if loss in MISSING_TRAINERS]

# `datasets` fingerprints every dataset it builds or maps by pickling it with dill, and dill reads a
# function's globals by disassembling it into a StringIO swapped in as sys.stdout. Two threads doing so
# at once (two preference sets saved, or a set saved while a trainer tokenizes) can leave the StringIO
# there for good, and every later print of the process (the CLI's reports) vanishes. Every use of
# `datasets` in wow holds this lock.
DATASETS_LOCK = threading.RLock()  # re-entrant: a save builds its dataset under it too


def prompt_messages(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation a model was asked `prompt` in (its configured system message first)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": prompt}]


def to_conversations(pairs: pd.DataFrame, system_prompt: str | None = None) -> "datasets.Dataset":  # noqa: F821
    """TRL's conversational preference format from a preference set's prompt/chosen/rejected texts."""
    import datasets
    columns = {
        "prompt": [prompt_messages(p, system_prompt) for p in pairs["prompt"]],
        "chosen": [[{"role": "assistant", "content": c}] for c in pairs["chosen"]],
        "rejected": [[{"role": "assistant", "content": r}] for r in pairs["rejected"]],
    }
    with DATASETS_LOCK:
        return datasets.Dataset.from_dict(columns)


def split_eval(pairs: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, eval): `fraction` of the pairs, at least one when there are two or more, held out."""
    n_eval = max(1, round(fraction * len(pairs))) if fraction > 0 and len(pairs) >= 2 else 0
    shuffled = pairs.sample(frac=1.0, random_state=seed)
    return shuffled.iloc[n_eval:], shuffled.iloc[:n_eval]


def _trainer(model, tokenizer, config: TrainConfig, train, evaluation, out: Path, device: str):
    """The trainer of `config.loss`; a `model` that is a PeftModel already (an adapter to train further)
    gets no new LoRA config."""
    from peft import LoraConfig, PeftModel
    lora = None if isinstance(model, PeftModel) else LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM")
    common = dict(
        output_dir=str(out / "checkpoints"), learning_rate=config.learning_rate, num_train_epochs=config.epochs,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, beta=config.beta,
        max_length=config.max_length, seed=config.seed, data_seed=config.seed, logging_steps=1,
        eval_strategy="epoch" if evaluation is not None else "no", save_strategy="no", report_to="none",
        use_cpu=device == "cpu", bf16=model.dtype == torch.bfloat16, fp16=model.dtype == torch.float16,
        activation_checkpointing=config.activation_checkpointing, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    kwargs = dict(model=model, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
                  peft_config=lora)
    if config.loss in DPO_LOSSES:
        from trl import DPOConfig, DPOTrainer
        args = DPOConfig(loss_type=[DPO_LOSSES[config.loss]], precompute_ref_log_probs=config.precompute_ref_log_probs,
                         **common)
        return DPOTrainer(args=args, **kwargs)
    if config.loss in CPO_LOSSES:
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        extra = dict(cpo_alpha=0.0, simpo_gamma=config.simpo_gamma) if config.loss == "simpo" else {}
        return CPOTrainer(args=CPOConfig(loss_type=CPO_LOSSES[config.loss], **extra, **common), **kwargs)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    return ORPOTrainer(args=ORPOConfig(**common), **kwargs)


def release_freed_memory() -> None:
    """Return freed heap memory to the OS (glibc keeps it: see `keep_freed_memory_in_heap`)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def train_adapter(base_path: str, pairs: pd.DataFrame, config: TrainConfig, out: str | Path,
                  device: str = "cpu", dtype: str = "auto", system_prompt: str | None = None,
                  log: Callable[[dict], None] | None = None, init_adapter: str | None = None) -> dict:
    """Train a LoRA adapter on `pairs` (columns prompt, chosen, rejected) and save it under `out`;
    prompts are asked after `system_prompt` when the model is configured with one, as in sampling.
    `init_adapter` (a PEFT folder, local or an fsspec URL): train that adapter further instead of a new
    one, against its own frozen copy as the reference (the LoRA settings of `config` are then its own).
    `log` receives each of the trainer's log records (loss, learning rate, eval loss...) as it is
    written, instead of their being printed.

    Writes `out/adapter` (a PEFT folder), `out/training_log.json` (TRL's log history, timings) and
    `out/train_config.json`. Returns the summary written into the log.

    Raises:
        ValueError: fewer than 2 pairs (nothing to train and hold out).
    """
    if len(pairs) < 2:
        raise ValueError(f"a preference set needs at least 2 pairs to train and hold out, got {len(pairs)}")
    # Wait until no engine call is in flight on this device and hold it (engines.DeviceLease). On a GPU
    # an engine keeps its share of the memory for its life: stop the engines there (they start again
    # when next asked), or the training runs out of memory. On the CPU they stay up, idle.
    on_gpu = device.startswith("cuda")
    dtype = resolve_dtype(dtype, device)
    with device_lease(device).exclusive(), DEVICE_LOCK:
        for stopped in release_device(device) if on_gpu else []:
            if log is not None:
                log({"released": stopped})
        try:
            return _train(base_path, pairs, config, Path(out), device, dtype, system_prompt, log, init_adapter)
        finally:
            # The trainer, its model copy and optimizer states are garbage now; hand their memory back
            # before the next model task, or a grid of trainings in one worker adds up its peaks.
            gc.collect()
            release_freed_memory()


def _train(base_path: str, pairs: pd.DataFrame, config: TrainConfig, out: Path, device: str, dtype: str,
           system_prompt: str | None, log: Callable[[dict], None] | None, init_adapter: str | None) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype)).to(device)
    if init_adapter is not None:
        from peft import PeftModel
        with local_folder(init_adapter) as folder:
            model = PeftModel.from_pretrained(model, folder, is_trainable=True)
    longest = max(len(tokenizer.apply_chat_template(prompt_messages(p, system_prompt), add_generation_prompt=True,
                                                    tokenize=True, return_dict=False)) for p in pairs["prompt"])
    if longest >= config.max_length:
        # TRL would truncate the answers away (or drop the pairs) without a word.
        raise ValueError(f"`max_length` {config.max_length} leaves no room for the answers: the longest prompt "
                         f"has {longest} tokens")
    train, evaluation = split_eval(pairs, config.eval_fraction, config.seed)
    with DATASETS_LOCK:  # the trainer maps its datasets (and precomputes reference log-probs) as it starts
        trainer = _trainer(model, tokenizer, config, to_conversations(train, system_prompt),
                           to_conversations(evaluation, system_prompt) if len(evaluation) else None, out, device)
    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress.start_phase("training steps", state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            progress.advance(1)

        def on_train_end(self, args, state, control, **kwargs):
            progress.end_phase()
    trainer.add_callback(Progress())
    if log is not None:
        class Forward(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.is_local_process_zero and logs:
                    log(dict(logs))
        trainer.remove_callback(PrinterCallback)  # the records go to `log`, not to stdout as well
        trainer.add_callback(Forward())
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(out / "adapter", selected_adapters=["default"])  # not TRL's "ref" copy
    tokenizer.save_pretrained(out / "adapter")
    history = trainer.state.log_history
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    summary = {
        "n_train_pairs": len(train), "n_eval_pairs": len(evaluation), "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "eval_loss": eval_losses[-1] if eval_losses else None,
        "train_seconds": seconds, "samples_per_second": len(train) * config.epochs / seconds,
    }
    (out / "training_log.json").write_text(json.dumps({"summary": summary, "log_history": history}, indent=1))
    (out / "train_config.json").write_text(config.model_dump_json(indent=1))
    return summary
