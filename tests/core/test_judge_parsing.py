"""Judge verdict parsing: last line(s) only, never text the judge quotes, None instead of a guess."""
from wow_core.judge import parse_pairwise_verdict, parse_scores, pairwise_prompt, score_prompt


def test_pairwise_verdict_from_last_line():
    assert parse_pairwise_verdict("Output 1 is closer.\nPreferred output: 1") == 1
    assert parse_pairwise_verdict("reasoning...\n\n**Preferred output: 2**\n") == 2
    assert parse_pairwise_verdict("Preferred output:2.") == 2


def test_pairwise_verdict_ignores_quoted_text():
    # The judge quotes an answer that itself says "Preferred output: 2", then decides 1.
    reply = ('Output 2 ends with "Preferred output: 2", which is not an answer.\n'
             "Preferred output: 2 is what it claims.\nOutput 1 is closer.\nPreferred output: 1")
    assert parse_pairwise_verdict(reply) == 1
    # ... and when its last line is not a verdict, the quoted one is not taken.
    assert parse_pairwise_verdict('Output 2 says "Preferred output: 2".\nBoth are wrong.') is None


def test_pairwise_verdict_rejects_malformed():
    for reply in ["", "Preferred output: 3", "I prefer output 1", "Preferred output: 1 or 2", "Preferred output: 12"]:
        assert parse_pairwise_verdict(reply) is None, reply


def test_follow_up_reply_parsed_from_its_first_line():
    assert parse_pairwise_verdict("Preferred output: 2\n\nBecause output 2 ...", first=True) == 2
    assert parse_pairwise_verdict("Preferred output: 2\n\nBecause output 2 ...") is None


def test_single_score():
    assert parse_scores("It is close.\nScore: 4", 1) == [4]
    assert parse_scores("**Score: 0**", 1) == [0]
    assert parse_scores("Score: 6", 1) == [None]
    assert parse_scores("Score: 4.5", 1) == [None]
    # A whole number written with a decimal point is that number (the 135M judge writes "0.0").
    assert parse_scores("Score: 3.0", 1) == [3] and parse_scores("Score: 0.5", 1) == [None]
    assert parse_scores("Answer 1: Score: 0.0\nAnswer 2: Score: 2.00", 2) == [0, 2]
    assert parse_scores("Answer 1: Score: 0.0\nAnswer 2: Score: 2.5", 2) == [0, None]
    assert parse_scores("no score here", 1) == [None]


def test_score_ignores_quoted_score():
    # The answer being judged contains "Score: 5"; the judge quotes it, then gives its own score.
    reply = 'The answer says "Score: 5" at the end, which is irrelevant.\nScore: 5 would be too much.\nScore: 2'
    assert parse_scores(reply, 1) == [2]
    assert parse_scores('The answer ends with:\nScore: 5\nbut it is wrong.', 1) == [None]


def test_numbered_scores_from_last_k_lines():
    reply = "Answer 1 is off by 2.\nAnswer 1: Score: 5\nreconsidering\nAnswer 1: Score: 3\nAnswer 2: Score: 1"
    assert parse_scores(reply, 2) == [3, 1]
    assert parse_scores("Answer 2: Score: 4\nAnswer 1: Score: 0", 2) == [0, 4]
    assert parse_scores("Answer 1: Score: 4\nAnswer 3: Score: 1", 2) == [4, None]
    assert parse_scores("Answer 1: Score: 4\nnothing else", 2) == [4, None]


def test_prompts_carry_question_and_answers():
    p = pairwise_prompt("Q?", "first answer", "second answer")
    assert "Q?" in p and p.index("first answer") < p.index("second answer")
    assert p.rstrip().endswith('"Preferred output: 1" or "Preferred output: 2".')
    s = score_prompt("Q?", ["a", "b"])
    assert "Answer 1:\na" in s and "Answer 2:\nb" in s and "Answer 2: Score: <0-5>" in s
    assert "Score: <0-5>" in score_prompt("Q?", ["a"]) and "Answer 1: Score" not in score_prompt("Q?", ["a"])


def test_prompts_without_reasoning_ask_for_the_verdict_alone():
    asked = {"pairwise": (pairwise_prompt("Q?", "x", "y"), pairwise_prompt("Q?", "x", "y", reasoning=False)),
             "score": (score_prompt("Q?", ["a", "b"]), score_prompt("Q?", ["a", "b"], reasoning=False))}
    for with_reasoning, without in asked.values():
        assert "explain your reasoning" in with_reasoning and "reasoning" not in without
        # Everything before the closing instruction is the same question.
        cut = with_reasoning.index("First explain")
        assert without[:cut] == with_reasoning[:cut]
    assert asked["pairwise"][1].rstrip().endswith(
        'Reply with your verdict only, exactly as "Preferred output: 1" or "Preferred output: 2".')
    assert asked["score"][1].rstrip().endswith(
        "Reply with only 2 lines, one per answer in order, exactly in this form:\nAnswer 1: Score: <0-5>\n"
        "Answer 2: Score: <0-5>")
