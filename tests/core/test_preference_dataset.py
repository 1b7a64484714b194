"""Preference sets as Hugging Face datasets: saved beside the Parquet file, loaded back by
`datasets.load_from_disk` with the table's rows in TRL's conversational format, a dataset card that says
how the set was made, and TRL's DPOTrainer taking the loaded dataset as it is (on the packaged model)."""
import math

import datasets
import pandas as pd
import pytest
from huggingface_hub import DatasetCard
from prefect.logging import disable_run_logger

from tasks.stages import build_preference_set
from wow_core import pairs, preference_dataset
from wow_core.config import PreferenceSetConfig
from wow_core.preference_dataset import dataset_uri
from wow_core.store import Store
from wow_core.train import to_conversations


def samples_table(rows: dict[str, list[tuple[float | None, bool | None]]], generator: str) -> pd.DataFrame:
    """rows: question id -> [(proxy, correct), ...] in sample order; answers name their generator."""
    return pd.DataFrame([
        {"dataset": "toy", "question_id": q, "question": f"question {q}", "prompt": f"What is {q}?",
         "sample_idx": idx, "view": "{}", "answer": f"{generator} says {q}.{idx}",
         "extracted": None if p is None else str(p), "proxy": p, "correct": c, "mean_logprob": -0.5}
        for q, answers in rows.items() for idx, (p, c) in enumerate(answers)])


ROWS = {"q1": [(1.0, True), (0.6, False), (0.3, False), (None, None)],
        "q2": [(0.5, False), (0.4, False), (0.2, False)]}
OWN, OTHER = samples_table(ROWS, "own"), samples_table(ROWS, "other")


def oracle_mixed_set() -> pd.DataFrame:
    """An oracle set over two generators mixed with right-over-wrong, by the project's own functions."""
    wow = [pairs.with_texts(pairs.verdict_pairs("oracle", s, None, 1.0), s, g, None, "oracle")
           for s, g in ((OWN, "own"), (OTHER, "other"))]
    row = [pairs.with_texts(pairs.verdict_pairs("right_over_wrong", s, None, 1.0), s, g, None, "right_over_wrong")
           for s, g in ((OWN, "own"), (OTHER, "other"))]
    return pairs.preference_set(wow, row, 8, 0)


def plain(value):
    """A table cell as `datasets` gives it back: None for a missing value, Python scalars."""
    return None if pd.isna(value) else value.item() if hasattr(value, "item") else value


def test_a_saved_set_loads_with_the_tables_rows_in_the_format_wow_trains_on(tmp_path):
    table = oracle_mixed_set()
    assert len(table) == 8 and set(table.method) == {"oracle", "right_over_wrong"}
    uri = preference_dataset.save(table, str(tmp_path / "set.hf"), "---\ntags: [dpo]\n---\n\n# a set\n")
    loaded = datasets.load_from_disk(uri)
    assert loaded.column_names == pairs.PREFERENCE_COLUMNS
    assert loaded.num_rows == len(table)
    # prompt/chosen/rejected are exactly the conversations training feeds TRL...
    trained_on = to_conversations(table)
    for column in ("prompt", "chosen", "rejected"):
        assert loaded[column] == trained_on[column]
        assert loaded.features[column] == trained_on.features[column]
    assert loaded[0]["prompt"] == [{"role": "user", "content": table.prompt[0]}]
    assert loaded[0]["chosen"] == [{"role": "assistant", "content": table.chosen[0]}]
    # ...and every provenance column equals the table's, row for row (None where the table has none).
    for column in preference_dataset.PROVENANCE_COLUMNS:
        assert loaded[column] == [plain(v) for v in table[column]], column
    assert set(loaded["evaluator"]) == {None} and set(loaded["generator"]) == {"own", "other"}
    assert loaded.info.citation == preference_dataset.CITATION and loaded.info.description == "# a set"
    assert (tmp_path / "set.hf" / "README.md").read_text().startswith("---\ntags: [dpo]")


def test_an_empty_set_saves_and_loads_with_the_same_columns(tmp_path):
    empty = pd.DataFrame(columns=pairs.PREFERENCE_COLUMNS)
    loaded = datasets.load_from_disk(preference_dataset.save(empty, str(tmp_path / "empty.hf"), "---\n---\n"))
    assert loaded.num_rows == 0 and loaded.features == preference_dataset.features()


def test_the_dataset_lies_beside_the_parquet_file():
    assert preference_dataset.dataset_uri("s3://b/p/preference_sets/sp.m.oracle.self-0123.parquet") == \
        "s3://b/p/preference_sets/sp.m.oracle.self-0123.hf"
    with pytest.raises(ValueError, match="`parquet_uri` must name a .parquet file"):
        preference_dataset.dataset_uri("set.json")


def test_the_card_says_how_a_judged_set_was_made(tmp_path):
    table = pairs.with_texts(pairs.verdict_pairs("oracle", OWN, None, 1.0), OWN, "smollm2", "judge-7b", "score_k1")
    spec = PreferenceSetConfig(method="score_k1", top_p=0.5, evaluator="judge-7b")
    sources = [{"generator": "smollm2", "samples_uri": "s3://bucket/samples/sp-1.parquet",
                "judgments_uri": "s3://bucket/judgments/sp-2.parquet"}]
    text = preference_dataset.card(table, "sp.smollm2.score_k1-top0.5.self.judge-7b", "ab" * 32, spec, "judge-7b",
                                   sources, n_train_questions=5, max_pairs=4000, seed=3)
    path = tmp_path / "README.md"
    path.write_text(text)
    card = DatasetCard.load(path)  # the Hub's own parser reads the front matter
    assert {"dpo", "trl", "preference"} <= set(card.data.tags)
    assert card.data.size_categories == ["n<1K"] and card.data.pretty_name.endswith("score_k1-top0.5.self.judge-7b")
    body = card.text
    for expected in ("`sp.smollm2.score_k1-top0.5.self.judge-7b`", "Datasets: `toy` (4 pairs, 2 questions)",
                     "Generators (whose sampled answers are paired): `smollm2` (source: `self`)",
                     "Evaluator (judge): `judge-7b`", "Elicitation method: `score_k1`", "top_p = 0.5",
                     "Right-over-wrong mix: no", "Pairs: 4, from 2 questions (of 5 training questions",
                     "at most 4000 pairs drawn with seed 3", f"wow cache key: `{'ab' * 32}`",
                     "`s3://bucket/samples/sp-1.parquet`, `s3://bucket/judgments/sp-2.parquet`",
                     "arXiv 2410.11055", "@inproceedings{yao2025varying", "Varying Shades of Wrong"):
        assert expected in body, expected


def test_build_preference_set_writes_the_dataset_and_its_card_beside_the_parquet(tmp_path):
    store = Store(str(tmp_path))
    own = store.write_table(store.uri("samples", "own", "1" * 40, "parquet"), OWN)
    other = store.write_table(store.uri("samples", "other", "2" * 40, "parquet"), OTHER)
    sources = [{"generator": "own", "samples_uri": own, "judgments_uri": None},
               {"generator": "other", "samples_uri": other, "judgments_uri": None}]
    spec = PreferenceSetConfig(method="oracle", source="all", mix_right_over_wrong=True)
    args = (spec, None, sources, ["q1", "q2"], 8, 0, "toy.own.oracle+row.all", str(tmp_path))
    with disable_run_logger():  # the task logs where the dataset lies
        result = build_preference_set.fn(*args)
    assert result == {"uri": result["uri"], "n_pairs": 8} and not result["uri"].startswith(str(tmp_path))
    assert dataset_uri(result["uri"]) == result["uri"].removesuffix(".parquet") + ".hf"
    hf_uri = store.url_of(dataset_uri(result["uri"]))  # where that is in this store
    table = store.read_table(result["uri"])
    loaded = datasets.load_from_disk(hf_uri)
    assert loaded.num_rows == len(table) == 8
    assert loaded["chosen"] == to_conversations(table)["chosen"] and loaded["question_id"] == list(table.question_id)
    card = DatasetCard.load(f"{hf_uri}/README.md")
    key = result["uri"].rsplit("-", 1)[1].removesuffix(".parquet")  # the store names files by a key prefix
    assert "`toy.own.oracle+row.all`" in card.text and f"wow cache key: `{key}" in card.text
    assert "Generators (whose sampled answers are paired): `own`, `other` (source: `all`)" in card.text
    assert "Evaluator (judge): none: the preferences come from the proxy" in card.text
    assert "Pairs by method: `oracle` 4, `right_over_wrong` 4" in card.text
    # A set stored before sets had a dataset gets one when its task runs again; the Parquet file stays.
    store.fs.rm(hf_uri, recursive=True)
    with disable_run_logger():  # the task logs that it found the set
        again = build_preference_set.fn(*args)
    assert again == result and datasets.load_from_disk(hf_uri).num_rows == 8


@pytest.mark.slow
def test_dpo_trainer_takes_the_loaded_dataset_as_it_is(tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from wow_core.backends.transformers_backend import resolve_model_path

    table = oracle_mixed_set().head(4)
    loaded = datasets.load_from_disk(preference_dataset.save(table, str(tmp_path / "set.hf"), "---\n---\n"))
    path = resolve_model_path("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, max_length=64,
                     learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True, logging_steps=1,
                     dataloader_num_workers=0, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=loaded, processing_class=tokenizer,
                         peft_config=LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    # Tokenized as the conversations wow trains on, every pair kept.
    wow_form = trainer._prepare_dataset(to_conversations(table), tokenizer, args, "wow")
    assert trainer.train_dataset.num_rows == len(table)
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert trainer.train_dataset[column] == wow_form[column]
    result = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(result.training_loss)


def test_sets_saved_in_threads_at_once_leave_stdout_as_it_was(tmp_path):
    # dill swaps a StringIO in as sys.stdout while `datasets` fingerprints a set; unguarded, two threads
    # at once left one there, and the CLI's reports at the end of the demo were printed into it.
    import sys
    import threading
    table, stdout = oracle_mixed_set(), sys.stdout
    start = threading.Barrier(4)

    def save_many(worker: int):
        start.wait()
        for i in range(6):
            preference_dataset.save(table, str(tmp_path / f"w{worker}-{i}.hf"), "---\n{}\n---\nbody")
    threads = [threading.Thread(target=save_many, args=(w,)) for w in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch all the time: the race is hit at once, not once in a while
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert sys.stdout is stdout
    assert len(datasets.load_from_disk(str(tmp_path / "w3-5.hf"))) == len(table)
