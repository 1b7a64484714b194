"""A preference set as the Hugging Face dataset TRL's DPOTrainer takes, with a dataset card.

The set's Parquet table (`pairs.PREFERENCE_COLUMNS`) becomes a `datasets.Dataset` in TRL's
conversational preference format, exactly as `train.to_conversations` feeds it to the trainer (no
system message: wow adds the aligned model's own, if it has one, at training time), plus the
provenance columns. It is written with `save_to_disk` beside the Parquet file, `<set>.hf/`, with a
README.md dataset card (YAML front matter and a body saying how the set was made), so that

    datasets.load_from_disk("<store>/preference_sets/<set>.hf")

gives a dataset that `DPOTrainer(train_dataset=...)` takes as it is, and that `push_to_hub` publishes.

Worked example: a row (prompt "What is 2 + 2?", chosen "5", rejected "9", dataset "toy", ...) becomes
{"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
 "chosen": [{"role": "assistant", "content": "5"}], "rejected": [{"role": "assistant", "content": "9"}],
 "dataset": "toy", ...}.
"""
import json

import fsspec
import pandas as pd

from wow_core.config import PreferenceSetConfig
from wow_core.pairs import PREFERENCE_COLUMNS
from wow_core.store import redact, storage_options
from wow_core.train import DATASETS_LOCK, prompt_messages

CARD = "README.md"  # written last: a dataset folder counts as present once its card is there
TAGS = ["dpo", "trl", "preference", "wrong-over-wrong", "wow"]
PROVENANCE_COLUMNS = [c for c in PREFERENCE_COLUMNS if c not in ("prompt", "chosen", "rejected")]
PAPER = "Varying Shades of Wrong: Aligning LLMs with Wrong Answers Only"
CITATION = """@inproceedings{yao2025varying,
  title     = {Varying Shades of Wrong: Aligning {LLMs} with Wrong Answers Only},
  author    = {Yao, Jihan and Ding, Wenxuan and Feng, Shangbin and Wang, Lucy Lu and Tsvetkov, Yulia},
  booktitle = {The Thirteenth International Conference on Learning Representations (ICLR)},
  year      = {2025},
  eprint    = {2410.11055},
  archivePrefix = {arXiv},
  url       = {https://arxiv.org/abs/2410.11055}
}"""


def dataset_uri(parquet_uri: str) -> str:
    """Where the dataset of the set stored at `parquet_uri` lies: the same name, `.hf` for `.parquet`."""
    if not parquet_uri.endswith(".parquet"):
        raise ValueError(f"`parquet_uri` must name a .parquet file, got {parquet_uri!r}")
    return parquet_uri.removesuffix(".parquet") + ".hf"


def features() -> "datasets.Features":  # noqa: F821
    """The dataset's columns and types, stated so an empty set saves with the same schema as any other."""
    from datasets import Features, Value
    turn = [{"role": Value("string"), "content": Value("string")}]  # a list of turns (datasets 3 and later)
    types = {"dataset": "string", "question_id": "string", "generator": "string", "evaluator": "string",
             "method": "string", "chosen_idx": "int64", "rejected_idx": "int64", "gap": "float64",
             "chosen_proxy": "float64", "rejected_proxy": "float64"}
    return Features({"prompt": turn, "chosen": turn, "rejected": turn,
                     **{c: Value(types[c]) for c in PROVENANCE_COLUMNS}})


def to_dataset(table: pd.DataFrame, description: str = "") -> "datasets.Dataset":  # noqa: F821
    """A preference-set table as TRL's conversational preference dataset, provenance columns kept."""
    import datasets
    missing = [c for c in PREFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"`table` is not a preference set: it lacks the columns {missing}")
    columns = {
        "prompt": [prompt_messages(p) for p in table["prompt"]],
        "chosen": [[{"role": "assistant", "content": c}] for c in table["chosen"]],
        "rejected": [[{"role": "assistant", "content": r}] for r in table["rejected"]],
    }
    for c in PROVENANCE_COLUMNS:
        columns[c] = [None if pd.isna(v) else v for v in table[c].tolist()]
    info = datasets.DatasetInfo(description=description, citation=CITATION, features=features())
    with DATASETS_LOCK:
        return datasets.Dataset.from_dict(columns, info=info)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def card(table: pd.DataFrame, label: str, key: str, spec: PreferenceSetConfig, evaluator: str | None,
         sources: list[dict], n_train_questions: int, max_pairs: int, seed: int) -> str:
    """The dataset card (README.md) of a preference set: what it holds and how wow made it.

    `sources`: one per generator, {generator, samples_uri, judgments_uri (or None)}, as
    `tasks.stages.build_preference_set` takes them; `key` is the set's content key in the wow store."""
    import yaml
    n = len(table)
    questions = table[["dataset", "question_id"]].drop_duplicates()
    front = {"pretty_name": f"wow preference set {label}", "tags": TAGS, "task_categories": ["text-generation"],
             "size_categories": [_size_category(n)]}
    judged = f"`{evaluator}`" if evaluator else "none: the preferences come from " + (
        "the proxy" if spec.method in ("oracle", "right_over_wrong") else f"the `{spec.method}` self signal")
    by_dataset = (table.groupby("dataset").agg(pairs=("question_id", "size"), questions=("question_id", "nunique"))
                  if n else pd.DataFrame(columns=["pairs", "questions"]))
    datasets_md = ", ".join(f"`{d}` ({r.pairs} pairs, {r.questions} questions)" for d, r in by_dataset.iterrows())
    methods = table["method"].value_counts().to_dict() if n else {}
    generators = ", ".join(f"`{src['generator']}`" for src in sources)
    lines = [
        f"# wow preference set `{label}`",
        "",
        "Preference pairs between answers of language models, built by wow (wrong-over-wrong alignment) "
        f"after Yao et al., *{PAPER}* (ICLR 2025, [arXiv 2410.11055](https://arxiv.org/abs/2410.11055)). "
        "In a wrong-over-wrong pair both answers are wrong and the chosen one is the one preferred as *less* "
        "wrong, by the elicitation method below (by the proxy, for `oracle`).",
        "",
        "## How it was made",
        "",
        f"- Preference set (wow config): `{label}`, spec `{json.dumps(spec.model_dump(mode='json'), sort_keys=True)}`",
        f"- Datasets: {datasets_md or 'none (the set is empty)'}",
        f"- Generators (whose sampled answers are paired): {generators} (source: `{spec.source}`)",
        f"- Evaluator (judge): {judged}",
        f"- Elicitation method: `{spec.method}`",
        f"- Margin filter: top_p = {spec.top_p:g} (the share of pairs kept, largest score gap first)",
        "- Right-over-wrong mix: " + ("yes, half the pairs correct-over-wrong" if spec.mix_right_over_wrong else "no"),
        f"- Pairs by method: {', '.join(f'`{m}` {c}' for m, c in methods.items()) or 'none'}",
        f"- Pairs: {n}, from {len(questions)} questions (of {n_train_questions} training questions; held-out "
        f"questions are never in a set); duplicates dropped, at most {max_pairs} pairs drawn with seed {seed}",
        f"- wow cache key: `{key}`",
        "- Made from: " + ", ".join(f"`{redact(u)}`" for s in sources
                                    for u in (s["samples_uri"], s.get("judgments_uri")) if u),
        "",
        "## Format",
        "",
        "TRL's conversational preference format: `prompt` is the user turn the answers were sampled for, "
        "`chosen` and `rejected` one assistant turn each. wow trains on exactly these conversations, after "
        "the aligned model's own system message when it is configured with one. The other columns are "
        "provenance: `dataset`, `question_id`, `generator` (the model that wrote both answers), "
        "`evaluator` (the judge, if any), `method`, `chosen_idx` / `rejected_idx` (sample indices), `gap` "
        "(the method's score gap), `chosen_proxy` / `rejected_proxy` (how right each answer is, 1 = correct).",
        "",
        "```python",
        "from datasets import load_from_disk",
        "from trl import DPOConfig, DPOTrainer",
        "",
        'pairs = load_from_disk("<this folder>")',
        "trainer = DPOTrainer(model=..., args=DPOConfig(...), train_dataset=pairs, processing_class=tokenizer)",
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n" + "\n".join(lines)


def save(table: pd.DataFrame, uri: str, card_text: str) -> str:
    """Write `table` as a dataset folder at `uri` (a local path or any fsspec URL, e.g. s3://) with
    `card_text` as its README.md, the card last; returns `uri`."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled
    options = storage_options(uri)
    with DATASETS_LOCK:  # also keeps the progress-bar switch, global to `datasets`, to one thread
        dataset = to_dataset(table, description=card_text.split("---\n", 2)[-1].strip())  # the card's body
        was_on = is_progress_bar_enabled()
        disable_progress_bar()  # a bar per set among the run's log lines says nothing
        try:
            # `datasets` writes no shard for an empty dataset and then cannot load it back: ask for one.
            dataset.save_to_disk(uri, num_shards=1 if len(dataset) == 0 else None, storage_options=options)
        finally:
            if was_on:
                enable_progress_bar()
    with fsspec.open(f"{uri}/{CARD}", "w", encoding="utf-8", **options) as f:
        f.write(card_text)
    return uri
