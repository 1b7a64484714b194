"""LoRA training on the real packaged model: a few DPO steps change the adapter in the direction of
the preferences, it is saved, reloaded through the backend and generates; every loss runs."""
import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from wow_core.backends.transformers_backend import TransformersBackend, resolve_model_path
from wow_core.config import ModelConfig, TrainConfig
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

    base = TransformersBackend(ModelConfig(name="base"))
    aligned = TransformersBackend(ModelConfig(name="aligned", adapter=str(tmp_path / "adapter")))
    assert margin(aligned) > margin(base) + 1.0  # the preferences moved the model their way
    out = aligned.generate([[{"role": "user", "content": "What is 2 + 2?"}]], max_new_tokens=8)
    assert out[0].text and out[0].n_tokens > 0


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss != "dpo"])
def test_every_loss_trains(loss, tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "eval_fraction": 0.0}, loss=loss)
    summary = train_adapter(resolve_model_path("smollm2-135m"), PAIRS.head(2), config, tmp_path)
    assert summary["steps"] == 1 and summary["train_loss"] == summary["train_loss"]  # finite, not NaN
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
