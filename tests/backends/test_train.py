"""LoRA training on the real packaged model: a few DPO steps change the adapter in the direction of
the preferences, it is saved, reloaded through the backend and generates; every loss runs, and the
DPOTrainer losses equal their formulas on one batch."""
import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from wow_core.backends.transformers_backend import TransformersBackend, resolve_model_path
from wow_core.config import TrainConfig, TransformersModel
from wow_core.train import LOSSES, train_adapter

pytestmark = pytest.mark.slow

PAIRS = pd.DataFrame({
    "prompt": ["What is 2 + 2?", "What is 3 + 3?", "What is 1 + 4?", "What is 5 + 2?", "What is 2 + 6?"],
    "chosen": ["The answer is 4.", "The answer is 6.", "The answer is 5.", "The answer is 7.", "The answer is 8."],
    "rejected": ["Bananas are yellow.", "Bananas are yellow.", "Bananas are yellow.", "Bananas are yellow.",
                 "Bananas are yellow."],
})
TINY = dict(epochs=2, batch_size=2, max_length=64, learning_rate=2e-3, warmup_ratio=0.0, eval_fraction=0.2)


def margin(backend: TransformersBackend) -> float:
    """Mean over the pairs of log p(chosen) - log p(rejected), by one forward pass each."""
    def logp(prompt: str, answer: str) -> float:
        conv = [{"role": "user", "content": prompt}]
        head = backend._encode(conv)
        full = backend._encode(conv + [{"role": "assistant", "content": answer}])
        ids = torch.tensor([full])
        with torch.no_grad():
            lp = torch.log_softmax(backend.model(ids).logits[0, :-1].float(), dim=-1)
        return sum(lp[t - 1, full[t]].item() for t in range(len(head), len(full)))
    return sum(logp(p, c) - logp(p, r) for p, c, r in zip(PAIRS.prompt, PAIRS.chosen, PAIRS.rejected)) / len(PAIRS)


def test_dpo_moves_the_adapter_towards_the_chosen_answers_and_reloads(tmp_path, capsys):
    records = []
    summary = train_adapter(resolve_model_path("smollm2-135m"), PAIRS, TrainConfig(**TINY), tmp_path,
                            log=records.append)
    # 4 training pairs (1 held out), 2 per step, 2 epochs.
    assert (summary["n_train_pairs"], summary["n_eval_pairs"], summary["steps"]) == (4, 1, 4)
    assert summary["eval_loss"] is not None
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert log["summary"] == summary and any("loss" in h for h in log["log_history"])
    # `log` got every record the trainer wrote (one per step, one eval per epoch, the summary), and
    # nothing was printed beside it.
    losses = [(h["loss"], h["epoch"]) for h in log["log_history"] if "loss" in h]
    assert [(r["loss"], r["epoch"]) for r in records if "loss" in r] == losses and len(losses) == 4
    assert [r["eval_loss"] for r in records if "eval_loss" in r][-1] == summary["eval_loss"]
    assert "'loss'" not in capsys.readouterr().out
    assert json.loads((tmp_path / "train_config.json").read_text())["learning_rate"] == TINY["learning_rate"]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert len(lora_b) == 30 * 7  # every attention and MLP projection of the 30 layers
    assert any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: training moved it

    base = TransformersBackend(TransformersModel(name="base"))
    aligned = TransformersBackend(TransformersModel(name="aligned", adapter=str(tmp_path / "adapter")))
    assert margin(aligned) > margin(base) + 1.0  # the preferences moved the model their way
    out = aligned.generate([[{"role": "user", "content": "What is 2 + 2?"}]], max_new_tokens=8)
    assert out[0].text and out[0].n_tokens > 0


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss != "dpo"])
def test_every_loss_trains(loss, tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "eval_fraction": 0.0}, loss=loss)
    summary = train_adapter(resolve_model_path("smollm2-135m"), PAIRS.head(2), config, tmp_path)
    assert summary["steps"] == 1 and summary["train_loss"] == summary["train_loss"]  # finite, not NaN
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def sequence_logps(model, batch) -> torch.Tensor:
    """Sum of the completion tokens' log-probs per sequence, by a plain forward pass (not TRL's)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(2, batch["input_ids"][:, 1:, None])[..., 0]
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)


def test_each_dpo_loss_is_its_formula_on_one_batch(tmp_path):
    """TRL's loss on one batch, with a LoRA adapter moved off its zero start (policy != reference),
    against each loss's formula on log-probs computed here: DPO, IPO, RSO (hinge) and SPPO-hard, the
    losses wow runs on TRL's DPOTrainer (`DPO_LOSSES`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wow_core.train import DPO_LOSSES, _trainer, to_conversations
    path, beta = resolve_model_path("smollm2-135m"), 0.3
    config = TrainConfig(**{**TINY, "batch_size": 4}, loss="dpo", beta=beta, lora_dropout=0.0)
    trainer = _trainer(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), config,
                       to_conversations(PAIRS.head(4)), None, tmp_path, "cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        policy = sequence_logps(trainer.model, batch)
        with trainer.model.disable_adapter():
            reference = sequence_logps(trainer.model, batch)
    chosen, rejected = (policy - reference).chunk(2)   # the batch is [chosen..., rejected...]
    delta = chosen - rejected
    assert delta.abs().min() > 0.05                    # the adapter moved: no loss is at its start value
    n_chosen, n_rejected = batch["completion_mask"].sum(dim=1).chunk(2)
    want = {
        "dpo": -torch.nn.functional.logsigmoid(beta * delta),                        # -log sigmoid(beta delta)
        "rso": torch.relu(1 - beta * delta),                                          # hinge
        "ipo": (chosen / n_chosen - rejected / n_rejected - 1 / (2 * beta)) ** 2,    # per completion token
        "sppo_hard": (chosen - 0.5 / beta) ** 2 + (rejected + 0.5 / beta) ** 2,
    }
    assert set(want) == set(DPO_LOSSES)
    for loss, trl_name in DPO_LOSSES.items():
        trainer.loss_types, trainer.loss_weights = [trl_name], [1.0]
        with torch.no_grad():
            got = trainer.compute_loss(trainer.model, batch).item()
        assert got == pytest.approx(want[loss].mean().item(), rel=1e-4, abs=1e-5), loss


def completion_logps(model, ids, mask, labels, average: bool) -> torch.Tensor:
    """Sum (or mean) of the labelled tokens' log-probs per sequence, by a plain forward pass."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    counted = target != -100
    token_logps = torch.log_softmax(logits, dim=-1).gather(2, target.clamp(min=0)[..., None])[..., 0] * counted
    return token_logps.sum(dim=1) / counted.sum(dim=1) if average else token_logps.sum(dim=1)


def mean_nll(model, ids, mask, labels) -> torch.Tensor:
    """Cross-entropy over every labelled token of the batch, pooled (TRL's NLL term)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)


@pytest.mark.parametrize("loss", ["cpo", "simpo", "orpo"])
def test_each_reference_free_loss_is_its_formula_on_one_batch(loss, tmp_path):
    """CPO (-log sigmoid(beta (sum log p_c - sum log p_r)) + NLL of the chosen answers), SimPO (-log
    sigmoid(beta (mean log p_c - mean log p_r) - gamma), no NLL) and ORPO (NLL - beta log sigmoid(log
    odds ratio) on mean log-probs) from TRL's trainers on one batch, against the formulas here. TRL's
    ORPO takes its NLL over the prompt and the answer (docs/methods.md); CPO's over the answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wow_core.train import _trainer, to_conversations
    path, beta, gamma = resolve_model_path("smollm2-135m"), 0.3, 0.7
    config = TrainConfig(**{**TINY, "batch_size": 4}, loss=loss, beta=beta, simpo_gamma=gamma, lora_dropout=0.0)
    trainer = _trainer(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), config,
                       to_conversations(PAIRS.head(4)), None, tmp_path, "cpu")
    trainer.model.eval()
    b = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, b).item()
        chosen, rejected = (completion_logps(trainer.model, b[f"{side}_input_ids"], b[f"{side}_attention_mask"],
                                             b[f"{side}_labels"], average=loss != "cpo")
                            for side in ("chosen", "rejected"))
        if loss == "orpo":
            whole = b["chosen_input_ids"].masked_fill(b["chosen_attention_mask"] == 0, -100)
            nll = mean_nll(trainer.model, b["chosen_input_ids"], b["chosen_attention_mask"], whole)
        else:
            nll = mean_nll(trainer.model, b["chosen_input_ids"], b["chosen_attention_mask"], b["chosen_labels"])
    if loss == "cpo":
        want = -torch.nn.functional.logsigmoid(beta * (chosen - rejected)).mean() + nll
    elif loss == "simpo":
        want = -torch.nn.functional.logsigmoid(beta * (chosen - rejected) - gamma).mean()
    else:
        log_odds = (chosen - rejected) - (torch.log1p(-chosen.exp()) - torch.log1p(-rejected.exp()))
        want = nll - beta * torch.nn.functional.logsigmoid(log_odds).mean()
    assert got == pytest.approx(want.item(), rel=1e-4, abs=1e-5)


def test_training_further_starts_from_the_adapter_against_its_own_copy(tmp_path):
    """A later round trains the previous round's adapter further: its first DPO loss is ln 2 (policy and
    reference are the same model, the previous round's), not the loss against the base model, and only
    the trained adapter is saved (not TRL's frozen "ref" copy)."""
    first = tmp_path / "round1"
    train_adapter(resolve_model_path("smollm2-135m"), PAIRS, TrainConfig(**TINY), first)
    round1_losses = [h["loss"] for h in json.loads((first / "training_log.json").read_text())["log_history"]
                     if "loss" in h]
    assert round1_losses[0] == pytest.approx(0.693147, abs=1e-4)  # a new adapter starts as the base model
    assert round1_losses[-1] < 0.6  # and moved away from it (the next round's base differs)
    second = tmp_path / "round2"
    train_adapter(resolve_model_path("smollm2-135m"), PAIRS, TrainConfig(**TINY), second,
                  init_adapter=str(first / "adapter"))
    history = json.loads((second / "training_log.json").read_text())["log_history"]
    assert [h["loss"] for h in history if "loss" in h][0] == pytest.approx(0.693147, abs=1e-4)
    assert not (second / "adapter" / "ref").exists()
    before = load_file(first / "adapter" / "adapter_model.safetensors")
    after = load_file(second / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    # Trained further: every LoRA B matrix starts where round 1 left it, and moved on.
    assert any((after[k] - before[k]).abs().sum() > 0 for k in before if "lora_B" in k)
    # A new adapter from zero would be far from round 1's; round 2 stays closer to round 1 than to zero.
    b = [k for k in before if "lora_B" in k]
    assert sum((after[k] - before[k]).norm() for k in b) < sum(after[k].norm() for k in b)
