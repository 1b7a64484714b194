"""Every registered dataset keeps the contract the stages rely on."""
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
            # The gold answer, concluded in the dataset's form, extracts to itself and is the best answer.
            assert ds.parse_conclusion(f"{ds.EXTRACTION_PREFILL} {q.gold}.") == q.gold
            assert ds.proxy(q, q.gold) == 1.0 and ds.is_correct(q, q.gold)


def test_unknown_dataset_suggests_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'nlgraph_shortest'\. Did you mean: nlgraph_shortest_path\?"):
        get_dataset("nlgraph_shortest")
