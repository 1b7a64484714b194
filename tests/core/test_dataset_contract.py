"""Every registered dataset keeps the contract the stages rely on."""
import json

import pytest

from wow_core.datasets import DATASETS, get_dataset


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_contract(name):
    ds = get_dataset(name)
    assert ds.NAME == name and isinstance(ds.VERSION, int)
    for difficulty in ds.DIFFICULTIES:
        questions = ds.generate_questions(3, seed=11, difficulty=difficulty)
        assert questions == ds.generate_questions(3, seed=11, difficulty=difficulty)  # deterministic
        assert len({q.id for q in questions}) == 3
        for q in questions:
            assert q.dataset == name and q.text.strip()
            if ds.EXTRACTION_PROMPT is None:
                # The answer is the whole reply (no extraction turn): the gold answer, as a reply, is itself.
                assert ds.parse_direct(f" {q.gold}\n") == q.gold
            if hasattr(ds, "score_answers"):
                # The proxy needs a judge model (sample.py); that the gold answer scores 1 is tested with a
                # scripted judge in the dataset's own tests (test_bio_generation.py).
                continue
            # The gold answer, concluded in the dataset's form, extracts to itself and is the best answer.
            # A dataset that asks each sample its own prompt maps what was parsed through the sample's
            # view; the empty view is the question's own text, whose terms the gold answer uses.
            extracted = ds.parse_conclusion(f"{ds.EXTRACTION_PREFILL} {q.gold}.")
            if hasattr(ds, "sample_prompts"):
                extracted = ds.canonical_answer(q, {}, extracted)
                prompts = ds.sample_prompts(q, 2, seed=5)
                assert prompts == ds.sample_prompts(q, 2, seed=5) and len(prompts) == 2
                assert all(text.strip() and json.loads(json.dumps(view)) == view for text, view in prompts)
            assert extracted == q.gold
            assert ds.proxy(q, q.gold) == 1.0 and ds.is_correct(q, q.gold)


def test_unknown_dataset_suggests_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'nlgraph_shortest'\. Did you mean: nlgraph_shortest_path\?"):
        get_dataset("nlgraph_shortest")
