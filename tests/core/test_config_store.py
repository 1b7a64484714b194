"""Config errors name file and field; the store is content-addressed and writes atomically."""
import pandas as pd
import pytest

from wow_core.config import ConfigError, load_config
from wow_core.store import Store, content_key

GOOD = """\
name: t
datasets:
  - name: nlgraph_shortest_path
    n_questions: 2
sampling:
  n: 3
"""

ALIGN = """\
alignment:
  preference_sets: {sets}
{extra}"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.sampling.n == 3 and cfg.sampling.temperature == 1.0
    assert cfg.judge.score_k == [1, 2, 5, 10] and cfg.report.margins == [1.0, 0.5, 0.1]
    assert cfg.generators == ["smollm2-135m"] and cfg.model("smollm2-135m").path == "smollm2-135m"


def test_a_generator_samples_at_its_own_temperature(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + """\
models:
  - {name: plain}
  - {name: careful, system_prompt: Check each step., temperature: 0.5}
generators: [plain, careful]
evaluators: [plain, careful]
"""))
    assert cfg.sampling_for("plain") == cfg.sampling
    assert cfg.sampling_for("careful") == cfg.sampling.model_copy(update={"temperature": 0.5})
    assert cfg.sampling.temperature == 1.0  # the shared settings are not changed


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), {"sampling.n": 5, "judge.max_new_tokens": 7, "datasets.0.n_questions": 9})
    assert cfg.sampling.n == 5 and cfg.judge.max_new_tokens == 7 and cfg.datasets[0].n_questions == 9
    with pytest.raises(ConfigError, match="override 'datasets.3.n_questions': no list item '3'"):
        load_config(write(tmp_path, GOOD), {"datasets.3.n_questions": 9})


@pytest.mark.parametrize("bad, field, words", [
    (GOOD.replace("n: 3", "n: 0"), "sampling.n", "greater than or equal to 1"),
    (GOOD.replace("n: 3", "n: 3\n  temprature: 0.7"), "sampling.temprature", "Extra inputs"),
    (GOOD.replace("nlgraph_shortest_path", "nlgraph_shortest_pth"), "datasets.0.name",
     "Did you mean: nlgraph_shortest_path"),
    (GOOD + "report:\n  margins: [1.0, 1.5]\n", "report.margins", "(0, 1]"),
    (GOOD + "generators: [gpt9]\n", "(top level)", "`generators` names ['gpt9'] not in `models`"),
    (GOOD.replace("n_questions: 2", "n_questions: 2\n    difficulty: medium"), "datasets.0",
     "`difficulty` must be one of ['easy', 'hard'], got 'medium'"),
    (GOOD.replace("n_questions: 2", "n_questions: 2\n    source: file\n    path: nowhere.json"), "datasets.0",
     "`path`: no such file 'nowhere.json'"),
    (GOOD.replace("n_questions: 2", "n_questions: 2\n    options: {depth: 3}"), "datasets.0",
     "`options` ['depth'] not accepted by nlgraph_shortest_path"),
    (GOOD + ALIGN.format(sets="[{method: oracle}]", extra="  grid: {lr: [1.0]}\n"), "alignment.grid",
     "grid keys ['lr'] are not `train` fields"),
    (GOOD + ALIGN.format(sets="[{method: score_k3}]", extra=""), "(top level)",
     "score_k3 needs k=3 in `judge.score_k`"),
    (GOOD + "evaluators: []\n" + ALIGN.format(sets="[{method: pairwise}]", extra=""), "(top level)",
     "judged by the aligned model itself"),
    (GOOD + ALIGN.format(sets="[{method: oracle}]", extra="  datasets: [kc]\n"), "(top level)",
     "`alignment.datasets` names ['kc']"),
    (GOOD + ALIGN.format(sets="[{method: oracle}]", extra="  rounds: {n: 3, preference_set: 1}\n"), "alignment",
     "`rounds.preference_set`: 1 is not an index of `preference_sets` (0 to 0)"),
    (GOOD + ALIGN.format(sets="[{method: oracle, source: all}]", extra="  rounds: {n: 3}\n"), "alignment",
     "must be built from the aligned model's own answers (source: self)"),
    (GOOD + ALIGN.format(sets="[{method: oracle}]", extra="  rounds: {n: 1}\n"), "alignment.rounds.n",
     "greater than or equal to 2"),
    (GOOD + "judge:\n  budget: {calls: [8], picks: [smallest_gap]}\n", "judge.budget.picks",
     "`picks` must include 'random', the baseline"),
    (GOOD + "judge:\n  budget: {calls: [8, 1]}\n", "judge.budget.calls", "at least 2 calls"),
    (GOOD + "judge:\n  budget: {calls: [8], datasets: [kc]}\n", "(top level)",
     "`judge.budget.datasets` names ['kc'] that are not among `datasets` (['nlgraph_shortest_path'])"),
    (GOOD + "judge:\n  budget: {calls: [8], evaluators: [gpt9]}\n", "(top level)",
     "`judge.budget.evaluators` names ['gpt9'] that are not among `evaluators` (['smollm2-135m'])"),
])
def test_bad_config_names_file_and_field(tmp_path, bad, field, words):
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"field '{field}'" in str(err.value) and words in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, GOOD + "judge: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+, column \d+: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_alignment_grid_points_cross_the_grid_over_train(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + ALIGN.format(
        sets="[{method: oracle}]", extra="  train: {epochs: 1}\n  grid: {beta: [0.1, 0.5], loss: [dpo, ipo]}\n")))
    points = cfg.alignment.grid_points()
    assert [(p.beta, p.loss, p.epochs) for p in points] == [(0.1, "dpo", 1), (0.1, "ipo", 1), (0.5, "dpo", 1),
                                                            (0.5, "ipo", 1)]
    assert cfg.aligned_models() == ["smollm2-135m"]
    with pytest.raises(ConfigError, match="alignment.grid"):
        load_config(write(tmp_path, GOOD + ALIGN.format(sets="[{method: oracle}]", extra="  grid: {beta: [-1]}\n")))


def test_shipped_configs_validate():
    assert load_config("configs/demo.yaml").name == "demo"
    paper = load_config("configs/paper.yaml")
    assert paper.sampling.n == 10 and paper.generators == paper.evaluators == ["llama3-8b", "gpt-3.5", "gpt-4o"]
    from wow_core.datasets import DATASETS
    assert {d.name for d in paper.datasets} == set(DATASETS) - {"mmlu_pro"}  # the paper's tasks, all of them
    assert paper.aligned_models() == ["llama3-8b"] and paper.alignment.grid_points()[0].learning_rate == 1e-5


def test_content_key_is_stable_and_sensitive(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    a = content_key("sample", config=cfg.sampling, uri="x")
    assert a == content_key("sample", uri="x", config=load_config(write(tmp_path, GOOD)).sampling)
    assert a != content_key("sample", config=cfg.sampling.model_copy(update={"n": 4}), uri="x")
    assert a != content_key("judge", config=cfg.sampling, uri="x")


def test_store_round_trip_and_atomic_write(tmp_path):
    store = Store(str(tmp_path / "store"))
    uri = store.uri("samples", "toy", "ab" * 32, "parquet")
    assert not store.exists(uri)
    table = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    store.write_table(uri, table)
    pd.testing.assert_frame_equal(store.read_table(uri), table)
    store.write_text(store.uri("x", "y", "cd" * 32, "md"), "# hi")
    # No temporary files are left behind.
    assert not [p for p in (tmp_path / "store").rglob("*") if ".tmp-" in p.name]


def test_store_uris_are_relative_and_tables_say_what_made_them(tmp_path):
    """An artifact's URI names it within the store: two stores at different places give the same URI,
    each resolving it to its own place; a table's metadata says what made it, for any Parquet reader."""
    import json

    import pyarrow.parquet as pq
    here, there = Store(str(tmp_path / "here")), Store(f"{tmp_path}/there/")
    uri = here.uri("judgments", "toy.m.pairwise", "ab" * 32, "parquet")
    assert uri == there.uri("judgments", "toy.m.pairwise", "ab" * 32, "parquet") == \
        f"judgments/toy.m.pairwise-{'ab' * 10}.parquet"
    assert here.url_of(uri) == f"{tmp_path}/here/{uri}" and there.url_of(uri) == f"{tmp_path}/there/{uri}"
    assert here.url_of("s3://b/x.parquet") == "s3://b/x.parquet" and here.url_of("/abs/a") == "/abs/a"
    made = {"stage": "judge", "key": "ab" * 32, "inputs": {"samples_uri": "samples/toy.gen-0123.parquet"}}
    assert here.write_table(uri, pd.DataFrame({"a": [1]}), made) == uri
    assert here.made_from(uri) == made
    raw = pq.read_schema(tmp_path / "here" / uri).metadata[b"wow.made_from"]
    assert json.loads(raw)["inputs"]["samples_uri"] == "samples/toy.gen-0123.parquet"
    assert here.read_table(uri)["a"].tolist() == [1]
    plain = here.write_table(here.uri("samples", "toy", "cd" * 32, "parquet"), pd.DataFrame({"a": [2]}))
    assert here.made_from(plain) is None
    here.write_folder(here.uri("adapters", "toy", "ef" * 32, "lora"), str(_folder(tmp_path)), last="b.json")
    assert here.glob("judgments/*-abab*") == [uri]
    assert here.files(f"adapters/toy-{'ef' * 10}.lora") == [f"adapters/toy-{'ef' * 10}.lora/{n}"
                                                              for n in ("a.bin", "b.json")]


def _folder(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\0")
    (folder / "b.json").write_text("{}")
    return folder


def test_failed_write_leaves_no_artifact(tmp_path, monkeypatch):
    """A write that dies half-way leaves nothing at the artifact's URI (readers never see half of it)."""
    store = Store(str(tmp_path / "store"))
    uri = store.uri("samples", "toy", "ef" * 32, "parquet")
    real_open = store.fs.open

    class Dies:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError("disk gone")

    monkeypatch.setattr(store.fs, "open", lambda path, mode="rb", **kw: Dies(real_open(path, mode, **kw)))
    with pytest.raises(OSError, match="disk gone"):
        store.write_table(uri, pd.DataFrame({"a": range(1000)}))
    assert not store.exists(uri)
    monkeypatch.undo()
    store.write_table(uri, pd.DataFrame({"a": range(3)}))
    assert store.read_table(uri)["a"].tolist() == [0, 1, 2]
