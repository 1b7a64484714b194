"""Bio generation (FActScore-style): the proxy through a scripted judge that splits a biography into its
sentences and supports a fact only when the knowledge text holds it verbatim (an independent path),
the judge's replies parsed, the loaders of FActScore's formats and their errors, the sampling stage
without an extraction turn, and the judge named in a config."""
import json
import logging
import random
import re
from pathlib import Path

import pytest

from wow_core.config import DatasetConfig, SamplingConfig, parse_config
from wow_core.datasets import bio_generation as bg
from wow_core.records import Generation, Question
from wow_core.sample import sample_answers

DATA = Path(__file__).parent.parent / "data"
ENTITIES = DATA / "bio_prompt_entities.txt"
KNOWLEDGE = DATA / "bio_knowledge_sample.jsonl"


def gen(text: str) -> Generation:
    return Generation(text=text, token_ids=[0] * max(1, len(text.split())),
                      token_logprobs=[-0.5] * max(1, len(text.split())), finish_reason="stop")


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


class FactJudge:
    """A judge by rules: the facts of a biography are its sentences; a fact is supported ("True") when
    the context contains it word for word. `verdict` can override the reply per fact."""

    def __init__(self, verdict=None):
        self.calls, self.verdict = [], verdict

    def sample(self, *args, **kwargs):
        raise AssertionError("a judge is only asked greedily")

    def generate(self, conversations, max_new_tokens):
        self.calls.append(conversations)
        replies = []
        for conv in conversations:
            prompt, prefill = conv[0]["content"], conv[-1]["content"]
            if prefill == bg.FACTS_PREFILL:
                assert max_new_tokens == bg.FACTS_MAX_NEW_TOKENS
                bio = re.search(r"Biography of [^:\n]+: (.*)\nAtomic facts:$", prompt, re.S).group(1)
                replies.append("\n- ".join(sentences(bio)))  # continues the prefilled "- "
            else:
                assert prefill == bg.SUPPORT_PREFILL and max_new_tokens == bg.SUPPORT_MAX_NEW_TOKENS
                context, fact = re.search(r"\nText: (.*)\n\nInput: (.*) True or False\?$", prompt, re.S).groups()
                reply = " True" if fact in context else " False"
                replies.append(self.verdict(fact, reply) if self.verdict else reply)
        return [gen(r) for r in replies]


def question(entity: str = "Ada Lovelace", knowledge: str | None = None) -> Question:
    knowledge = knowledge or ("Ada Lovelace was an English mathematician. She was born in London in 1815. "
                              "She worked with Charles Babbage. She died in 1852.")
    return Question(id="t/0", dataset=bg.NAME, text=bg.QUESTION_PROMPT.format(entity=entity), gold=knowledge,
                    meta={"entity": entity})


FALSE = ["She was born in Paris in 1790.", "She was a famous opera singer.", "She invented the telephone.",
         "She died in 1901."]


def scores(questions: list[Question], answers: list[str], judge) -> list[tuple[float, bool]]:
    """(proxy, correct) of `score_answers`, without the facts and verdicts behind them."""
    return [(proxy, correct) for proxy, correct, _ in bg.score_answers(questions, answers, judge)]


# ---------------------------------------------------------------------------------------------------
# Proxy through the scripted judge


def test_gold_scores_one_and_generator_is_deterministic():
    questions = bg.generate_questions(6, seed=4)
    assert questions == bg.generate_questions(6, seed=4) and questions != bg.generate_questions(6, seed=5)
    assert len({q.meta["entity"] for q in questions}) == 6
    knowledge = bg.load_knowledge()
    for q in questions:
        assert q.text == f"Tell me a bio of {q.meta['entity']}." and q.gold == knowledge[q.meta["entity"]]
    judge = FactJudge()
    assert scores(questions, [q.gold for q in questions], judge) == [(1.0, True)] * 6
    assert len(judge.calls) == 2  # one batch of splits, one of support questions
    assert len(judge.calls[1]) == sum(len(sentences(q.gold)) for q in questions)


def test_every_packaged_entity_scores_its_own_text_one():
    knowledge = bg.load_knowledge()
    assert len(knowledge) == 32 and all(6 <= len(sentences(text)) <= 10 for text in knowledge.values())
    questions = bg.generate_questions(32, seed=0)
    assert {q.meta["entity"] for q in questions} == set(knowledge)
    assert all(score == (1.0, True) for score in scores(questions, [q.gold for q in questions], FactJudge()))


def test_ladder_of_wrong_answers():
    q = question()
    true = sentences(q.gold)
    ladder = [" ".join(true),                      # every fact supported: correct
              " ".join(true[:3] + FALSE[:1]),      # 3 of 4
              " ".join(true[:2] + FALSE[:2]),      # half
              " ".join(true[:1] + FALSE[:3]),      # 1 of 4
              " ".join(FALSE)]                     # none
    assert scores([q] * len(ladder), ladder, FactJudge()) == [
        (1.0, True), (0.75, False), (0.5, False), (0.25, False), (0.0, False)]


def test_fact_checks_keep_facts_and_verdicts():
    q = question()
    checks = bg.check_facts([q, q], ["She was born in London in 1815. She invented the telephone.", "Hm."],
                            FactJudge(verdict=lambda fact, reply: " Hm, hard to say." if "Hm" in fact else reply))
    assert checks[0].facts == ["She was born in London in 1815.", "She invented the telephone."]
    assert checks[0].supported == [True, False] and checks[0].proxy == 0.5 and not checks[0].correct
    # An unparsed verdict counts as not supported.
    assert checks[1].supported == [None] and checks[1].proxy == 0.0 and not checks[1].correct


def test_no_facts_scores_zero_and_asks_no_support_question():
    class Silent(FactJudge):
        def generate(self, conversations, max_new_tokens):
            self.calls.append(conversations)
            return [gen("\n\n") for _ in conversations]

    judge = Silent()
    assert bg.score_answers([question()], ["I do not know this person."], judge) == [
        (0.0, False, {"facts": [], "supported": []})]
    assert len(judge.calls) == 1
    assert bg.score_answers([], [], judge) == [] and len(judge.calls) == 1


def test_split_cut_by_the_token_limit_loses_its_unfinished_line():
    class Cut(FactJudge):
        def generate(self, conversations, max_new_tokens):
            out = super().generate(conversations, max_new_tokens)
            if conversations[0][-1]["content"] != bg.FACTS_PREFILL:
                return out
            return [Generation(g.text[:-12], g.token_ids, g.token_logprobs, "length") for g in out]

    q = question()
    checks = bg.check_facts([q, q], ["She was born in London in 1815. She worked with Charles Babbage.",
                                     "She worked with Charles Babbage."], Cut())
    assert checks[0].facts == ["She was born in London in 1815."] and checks[0].proxy == 1.0
    assert checks[1].facts == [] and checks[1].proxy == 0.0  # its only line was cut


def test_proxy_is_in_unit_interval():
    q, rng = question(), random.Random(3)
    true = sentences(q.gold)
    bios = [" ".join(rng.sample(true + FALSE, rng.randint(1, 8))) for _ in range(40)]
    flaky = FactJudge(verdict=lambda fact, reply: rng.choice([reply, " maybe", " No.", " Yes!"]))
    for judge in (FactJudge(), flaky):
        for _, (proxy, correct) in zip(bios, scores([q] * len(bios), bios, judge)):
            assert 0.0 <= proxy <= 1.0 and correct == (proxy == 1.0)


def test_prompts_carry_entity_biography_fact_and_knowledge():
    q = question()
    facts = bg.facts_conversation(q, "Ada was a poet.")
    assert facts[0]["role"] == "user" and facts[-1] == {"role": "assistant", "content": "- "}
    assert facts[0]["content"].endswith("Biography of Ada Lovelace: Ada was a poet.\nAtomic facts:")
    support = bg.support_conversation(q, "Ada was a poet.")
    assert support[-1] == {"role": "assistant", "content": "Output:"}
    assert support[0]["content"] == (
        "Answer the question about Ada Lovelace based on the given context.\n\n"
        f"Title: Ada Lovelace\nText: {q.gold}\n\nInput: Ada was a poet. True or False?")


def test_long_knowledge_is_cut_to_the_passages_that_match_the_fact():
    filler = [f"Filler sentence number {i} says nothing much about anyone." for i in range(200)]
    filler[150] = "Lovelace translated an article by Luigi Menabrea about the engine."
    knowledge = " ".join(filler)
    assert bg.evidence("Short text.", "Anything") == "Short text."
    got = bg.evidence(knowledge, "Lovelace translated an article by Menabrea.")
    passages = got.split("\n...\n")
    assert "Luigi Menabrea" in got and sum(len(p.split()) for p in passages) <= bg.EVIDENCE_WORDS
    assert len(passages) == bg.EVIDENCE_WORDS // bg.PASSAGE_WORDS
    assert passages == sorted(passages, key=knowledge.index)  # in text order


# ---------------------------------------------------------------------------------------------------
# Parsing the judge's replies


@pytest.mark.parametrize("reply, facts", [
    ("- Ada was a mathematician.\n- Ada was born in London.", ["Ada was a mathematician.", "Ada was born in London."]),
    ("1. Ada was a mathematician.\n2) Ada was born in London.\n(3) Ada died in 1852.",
     ["Ada was a mathematician.", "Ada was born in London.", "Ada died in 1852."]),
    ("Here are the atomic facts:\n\n* **Ada was a mathematician.**\n• \"Ada was born in London.\"\nFact 3: Ada died.",
     ["Ada was a mathematician.", "Ada was born in London.", "Ada died."]),
    # Repeats (case and spacing ignored) are dropped; a paragraph is split into its sentences.
    ("- Ada was a mathematician.\n- ada was  a mathematician.\n- Ada was born in London. She died in 1852.",
     ["Ada was a mathematician.", "Ada was born in London.", "She died in 1852."]),
    # Titles and initials do not end a sentence.
    ("- Dr. Smith met F. W. de Klerk in Washington, D.C. in 1990.",
     ["Dr. Smith met F. W. de Klerk in Washington, D.C. in 1990."]),
    # A new example after the list ends it; before any fact, an echoed heading is skipped.
    ("Biography of Ada:\n- Ada was born in 1815.\n\nBiography of Tom Reed: Tom is a chef.\n- Tom is a chef.",
     ["Ada was born in 1815."]),
    ("- \n-\n---\n12.\n", []),
])
def test_parse_facts(reply, facts):
    assert bg.parse_facts(reply) == facts


@pytest.mark.parametrize("reply, verdict", [
    (" True", True), (" true.", True), (" Yes, the context says so.", True), (" Supported", True), ("Correct", True),
    (" False", False), (" No.", False), (" Not true: she was born in London.", False), (" Unsupported", False),
    (" incorrect", False), (" The statement is false.", False),
    (" True or False? False", False),  # the question echoed back is not a verdict
    (" I cannot tell.", None), ("", None), (" Truely unclear", None),
])
def test_parse_verdict(reply, verdict):
    assert bg.parse_verdict(reply) is verdict


def test_answer_is_the_whole_reply():
    assert bg.EXTRACTION_PROMPT is None
    assert bg.parse_direct("  Ada Lovelace was a mathematician.\nShe was born in 1815.\n") == (
        "Ada Lovelace was a mathematician.\nShe was born in 1815.")
    assert bg.parse_direct(" \n ") is None


# ---------------------------------------------------------------------------------------------------
# FActScore's formats


def test_loader_reads_entity_list_over_a_knowledge_source():
    questions = bg.load_questions(str(ENTITIES), knowledge=str(KNOWLEDGE))
    assert [q.id for q in questions] == ["bio_generation/bio_prompt_entities/1", "bio_generation/bio_prompt_entities/3",
                                         "bio_generation/bio_prompt_entities/4"]
    assert [q.meta["entity"] for q in questions] == ["Ada Lovelace", "Gregor Mendel", "Hypatia of Alexandria"]
    assert questions[2].text == "Tell me a bio of Hypatia of Alexandria."
    assert questions[0].gold == ("Ada Lovelace was an English mathematician. "
                                 "She was born on 10 December 1815 in London. "
                                 "She worked with Charles Babbage on the Analytical Engine.")  # whitespace made single
    assert scores(questions, [q.gold for q in questions], FactJudge()) == [(1.0, True)] * 3


def test_loader_defaults_to_the_packaged_knowledge_and_config_passes_options(tmp_path):
    entities = tmp_path / "entities.txt"
    entities.write_text("Marie Curie\nAlan Turing\n")
    packaged = bg.load_knowledge()
    assert [q.gold for q in bg.load_questions(str(entities))] == [packaged["Marie Curie"], packaged["Alan Turing"]]
    cfg = DatasetConfig(name="bio_generation", source="file", path=str(ENTITIES), n_questions=2,
                        options={"knowledge": str(KNOWLEDGE), "judge": "smollm2-135m"})
    assert [q.meta["entity"] for q in cfg.load()] == ["Ada Lovelace", "Gregor Mendel"]
    assert len(DatasetConfig(name="bio_generation", n_questions=3, options={"judge": "x"}).load()) == 3


def write(tmp_path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


GOOD = json.dumps({"title": "Ada Lovelace", "text": "Ada was a mathematician."})


@pytest.mark.parametrize("line, message", [
    ('{"title": "Ada", "text": ', r"line 2: invalid JSON at column \d+"),
    ('["Ada", "text"]', r"line 2: expected a JSON object, got list"),
    ('{"text": "Ada was a poet."}', r"line 2, field 'title': missing"),
    ('{"title": "Ada"}', r"line 2, field 'text': missing"),
    ('{"title": 3, "text": "Ada was a poet."}', r"line 2, field 'title': expected a non-empty string, got 3"),
    ('{"title": "Ada", "text": "  "}', r"line 2, field 'text': expected a non-empty string"),
    (GOOD, r"line 2, field 'title': 'Ada Lovelace' is also the title on line 1"),
])
def test_knowledge_errors_name_file_line_and_field(tmp_path, line, message):
    path = write(tmp_path, "kb.jsonl", [GOOD, line])
    with pytest.raises(ValueError, match=re.escape(path) + ": " + message):
        bg.load_knowledge(path)
    entities = write(tmp_path, "entities.txt", ["Ada Lovelace"])
    with pytest.raises(ValueError, match=re.escape(path)):
        bg.load_questions(entities, knowledge=path)


def test_entity_errors_name_file_line_and_field(tmp_path):
    kb = write(tmp_path, "kb.jsonl", [GOOD])
    unknown = write(tmp_path, "entities.txt", ["Ada Lovelace", "", "Ada Lovelac"])
    with pytest.raises(ValueError, match=re.escape(unknown) + r": line 3, field 'entity': 'Ada Lovelac' "
                       r"is not a title in " + re.escape(kb)):
        bg.load_questions(unknown, knowledge=kb)
    twice = write(tmp_path, "twice.txt", ["Ada Lovelace", " Ada Lovelace "])
    with pytest.raises(ValueError, match=r"twice\.txt: line 2, field 'entity': 'Ada Lovelace' is listed on line 1 too"):
        bg.load_questions(twice, knowledge=kb)


def test_generator_arguments_are_checked():
    with pytest.raises(ValueError, match="`difficulty`"):
        bg.generate_questions(2, seed=0, difficulty="hard")
    with pytest.raises(ValueError, match=r"`n` must be in 0\.\.32"):
        bg.generate_questions(33, seed=0)
    assert bg.generate_questions(0, seed=0) == []


# ---------------------------------------------------------------------------------------------------
# The sampling stage and the config


class Generator:
    """Samples the given biographies; must never be asked an extraction turn."""

    def __init__(self, bios: dict[str, list[str]]):
        self.bios = bios

    def sample(self, conversations, n, temperature, top_p, max_new_tokens, seed):
        return [[gen(b) for b in self.bios[c[0]["content"]][:n]] for c in conversations]

    def generate(self, conversations, max_new_tokens):
        raise AssertionError("bio_generation has no extraction turn")


def test_sample_answers_labels_with_the_judge_and_asks_no_extraction_turn():
    q1, q2 = bg.generate_questions(2, seed=9)
    t1, t2 = sentences(q1.gold), sentences(q2.gold)
    bios = {q1.text: [" ".join(t1), " ".join(t1[:2] + FALSE[:2]), "  "],
            q2.text: [" ".join(FALSE), " ".join(t2[:1] + FALSE[:3]), t2[0]]}
    judge = FactJudge()
    table = sample_answers([q1, q2], bg, Generator(bios), SamplingConfig(n=3), judge=judge)
    assert table.proxy.tolist()[:2] == [1.0, 0.5] and table.proxy.isna().tolist()[2]
    assert table.proxy.tolist()[3:] == [0.0, 0.25, 1.0]
    assert [None if c is None else bool(c) for c in table.correct] == [True, False, None, False, False, True]
    # Each score keeps the facts and verdicts it rests on; the answer with no value was not judged.
    half = json.loads(table.proxy_detail[1])
    assert half == {"facts": t1[:2] + FALSE[:2], "supported": [True, True, False, False]}
    assert table.proxy_detail.isna().tolist() == [False, False, True, False, False, False]
    assert table.extracted.tolist()[:2] == bios[q1.text][:2] and table.extracted.isna().tolist()[2]
    assert table.extraction_method.fillna("none").tolist() == ["direct", "direct", "none", "direct", "direct", "direct"]
    assert table.extraction_output.isna().all()
    assert len(judge.calls) == 2 and len(judge.calls[0]) == 5  # the empty answer is not judged
    with pytest.raises(ValueError, match="'bio_generation' scores its answers with a judge model"):
        sample_answers([q1], bg, Generator(bios), SamplingConfig(n=1))


def test_config_judge_names_a_model(caplog):
    models = [{"name": "gen"}, {"name": "big-judge"}]
    data = {"models": models, "generators": ["gen"], "evaluators": ["gen"],
            "datasets": [{"name": "scibench"}, {"name": "bio_generation"},
                         {"name": "bio_generation", "label": "bio-judged", "options": {"judge": "big-judge"}}]}
    config = parse_config(data)
    unknown = {"name": "bio_generation", "label": "b", "options": {"judge": "nope"}}
    bad = {**data, "datasets": data["datasets"][:2] + [unknown]}
    with pytest.raises(ValueError, match=r"`datasets\.2\.options\.judge`: 'nope' is not in `models`"):
        parse_config(bad)
    with pytest.raises(ValueError, match=r"`options` \['judge'\] not accepted by scibench"):
        parse_config({**data, "datasets": [{"name": "scibench", "options": {"judge": "gen"}}]})
    from flows.elicit import proxy_judge  # the flow resolves the judge: options.judge, else the first evaluator
    logging.getLogger("flows.elicit").addHandler(caplog.handler)  # Prefect's logging config does not propagate it
    with caplog.at_level(logging.WARNING):
        assert [proxy_judge(config, ds, "gen") for ds in config.datasets] == [
            None, config.model("gen"), config.model("big-judge")]
    # The default judge is the first evaluator, also for another generator; judging one's own answers warns.
    warned = {m for m in caplog.messages if "self-grading" in m}  # (once per handler that saw it)
    assert len(warned) == 1 and "bio_generation: the proxy judge 'gen' is also the generator" in warned.pop()
    caplog.clear()
    two = parse_config({**data, "models": [*models, {"name": "other"}], "generators": ["gen", "other"]})
    assert proxy_judge(two, two.datasets[1], "other") == two.model("gen")
    assert not any("self-grading" in m for m in caplog.messages)
    logging.getLogger("flows.elicit").removeHandler(caplog.handler)


@pytest.mark.slow
def test_packaged_model_as_judge_gives_parseable_replies(monkeypatch):
    """The prompts with the real packaged 135M model (a weak judge, so no verdict is asserted): its
    replies, recorded on their way back, parse to exactly the facts and verdicts the proxy rests on,
    one support question per fact, and a second run gives the same (greedy). The split's budget is cut
    so that the test stays short on a CPU."""
    from wow_core.backends import get_backend
    from wow_core.config import TransformersModel

    class Recording:
        """The real backend, its replies kept."""
        def __init__(self, backend):
            self.backend, self.rounds = backend, []

        def generate(self, conversations, max_new_tokens):
            replies = self.backend.generate(conversations, max_new_tokens=max_new_tokens)
            self.rounds.append((conversations, replies))
            return replies

    monkeypatch.setattr(bg, "FACTS_MAX_NEW_TOKENS", 48)
    judge = Recording(get_backend(TransformersModel(name="smollm2-135m", batch_size=8)))
    q = next(q for q in bg.generate_questions(32, seed=0) if q.meta["entity"] == "Marie Curie")
    bio = "Marie Curie was a Polish physicist. She won the Nobel Prize in Chemistry in 1911. She was born in Paris."
    [check] = bg.check_facts([q], [bio], judge)
    (_, [split]), (asked, verdicts) = judge.rounds
    text = bg.FACTS_PREFILL + split.text
    if split.finish_reason == "length":  # a fact cut off by the budget is not a fact
        text = text.rsplit("\n", 1)[0] if "\n" in text else ""
    assert check.facts == bg.parse_facts(text) and len(check.facts) >= 1, split.text
    assert [c[0]["content"].count(f) >= 1 for c, f in zip(asked, check.facts)] == [True] * len(check.facts)
    assert check.supported == [bg.parse_verdict(r.text) for r in verdicts]
    assert check.proxy == sum(s is True for s in check.supported) / len(check.facts)
    assert bg.check_facts([q], [bio], judge) == [check]


def test_sample_shard_labels_with_the_judge_model(tmp_path, monkeypatch):
    from tasks import stages
    from wow_core.config import TransformersModel
    from wow_core.sample import questions_to_table
    from wow_core.store import Store

    store = Store(str(tmp_path / "store"))
    questions = bg.generate_questions(2, seed=1)
    questions_uri = store.uri("questions", "bio", "0" * 20, "parquet")
    store.write_table(questions_uri, questions_to_table(questions))
    generator = TransformersModel(name="gen", path="gen-path")
    judge = TransformersModel(name="judge", path="judge-path")
    backends = {"gen-path": Generator({q.text: [q.gold, FALSE[0]] for q in questions}), "judge-path": FactJudge()}
    monkeypatch.setattr(stages, "get_backend", lambda model: backends[model.path])
    uri = stages.sample_shard.fn(questions_uri, 0, 2, bg.NAME, generator, SamplingConfig(n=2), store.url, judge)
    assert store.read_table(uri).proxy.tolist() == [1.0, 0.0, 1.0, 0.0] and len(backends["judge-path"].calls) == 2
    with pytest.raises(ValueError, match="scores its answers with a judge model"):
        stages.sample_shard.fn(questions_uri, 0, 1, bg.NAME, generator, SamplingConfig(n=2), store.url)
