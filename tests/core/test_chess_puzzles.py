"""Chess puzzles: the win-probability proxy by hand, options from the real Stockfish, loader, generator,
parsers. Searches stay shallow (depth 8) except where the module's default is the point."""
import json
from pathlib import Path

import chess
import chess.engine
import pytest

from wow_core.datasets import chess_puzzles as cz
from wow_core.records import Question

SAMPLE = Path(__file__).parent.parent / "data" / "chess_puzzles_sample.csv"
HEADER = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags"
TEST_DEPTH = 8

# Lichess puzzle 008Nz (mate in 1): Black plays Bd3-e2, then White mates with Rd1-d8.
MATE_IN_1_FEN = "6k1/2p2ppp/pnp5/B7/2P3PP/1P1bPPR1/r6r/3R2K1 b - - 1 29"
MATE_IN_1_ROW = (
    f"008Nz,{MATE_IN_1_FEN},d3e2 d1d8,462,108,93,647,backRankMate mate mateIn1 middlegame oneMove,"
    "https://lichess.org/HNU4zavC/black#58,"
)

# Win probabilities by hand: W(cp) = 1 / (1 + 10^(-cp/400)).
W_300 = 1 / (1 + 0.17782794)  # 10^-0.75
W_100 = 1 / (1 + 0.56234133)  # 10^-0.25
W_MINUS_200 = 1 / (1 + 3.16227766)  # 10^0.5
W_500 = 1 / (1 + 0.05623413)  # 10^-1.25


def hand_question(options: list[tuple[str, str, int | None, int | None, int]],
                  fen: str = chess.STARTING_FEN) -> Question:
    """A question with options (san, uci, cp, mate, engine_rank) in the order shown."""
    meta_options = [{"san": s, "uci": u, "cp": c, "mate": m, "engine_rank": r} for s, u, c, m, r in options]
    best = min(meta_options, key=lambda o: o["engine_rank"])
    return Question(id="t/0", dataset=cz.NAME, text="?", gold=cz.LETTERS[meta_options.index(best)],
                    meta={"fen": fen, "options": meta_options, "depth": 1, "engine": "hand"})


@pytest.fixture(scope="module")
def sample():
    return cz.load_questions(str(SAMPLE))  # the module's default depth (12), as the docstring reports


@pytest.fixture(scope="module")
def generated():
    return {d: cz.generate_questions(3, seed=7, difficulty=d, depth=TEST_DEPTH) for d in cz.DIFFICULTIES}


def reference_analysis(fen: str, depth: int) -> list[tuple[str, int | None, int | None]]:
    """(uci, cp, mate) of Stockfish's best 4 moves, best first, asked through python-chess directly."""
    board = chess.Board(fen)
    with chess.engine.SimpleEngine.popen_uci(cz.stockfish_path()) as engine:
        engine.configure({"Threads": 1, "Hash": 16})
        infos = engine.analyse(board, chess.engine.Limit(depth=depth), multipv=4, game=object())
    scores = [info["score"].pov(board.turn) for info in infos]
    return [(info["pv"][0].uci(), s.score(), s.mate()) for info, s in zip(infos, scores)]


# ---------------------------------------------------------------------------------------------------
# Proxy on hand values


@pytest.mark.parametrize(
    "cp, mate, expected",
    [
        (0, None, 0.5),
        (400, None, 10 / 11),  # 1 / (1 + 10^-1)
        (-400, None, 1 / 11),
        (800, None, 100 / 101),
        (300, None, W_300),
        (None, 3, 1.0),  # the mover mates
        (None, -2, 0.0),  # the mover is mated
    ],
)
def test_win_probability_hand_values(cp, mate, expected):
    assert cz.win_probability(cp, mate) == pytest.approx(expected, abs=1e-8)


def test_wrong_answer_ladder_is_ordered():
    # Shown order shuffled; engine ranks by score 300 > 100 > 0 > -200.
    q = hand_question([("d4", "d2d4", 100, None, 2), ("a3", "a2a3", -200, None, 4),
                       ("e4", "e2e4", 300, None, 1), ("Nf3", "g1f3", 0, None, 3)])
    assert q.gold == "C"
    by_rank = ["C", "A", "D", "B"]
    scores = [cz.proxy(q, letter) for letter in by_rank]
    expected = [1.0, 1 - (W_300 - W_100), 1 - (W_300 - 0.5), 1 - (W_300 - W_MINUS_200)]
    assert scores == pytest.approx(expected, abs=1e-8)
    assert scores == pytest.approx([1.0, 0.791045, 0.650980, 0.391233], abs=1e-6)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert [cz.is_correct(q, letter) for letter in by_rank] == [True, False, False, False]


def test_mate_handling_on_hand_values():
    q = hand_question([("e4", "e2e4", 500, None, 2), ("d4", "d2d4", None, -3, 3), ("Nf3", "g1f3", None, 1, 1)])
    assert q.gold == "C"
    assert [cz.proxy(q, x) for x in "CAB"] == pytest.approx([1.0, W_500, 0.0], abs=1e-8)
    assert cz.proxy(q, "D") is None  # three options only: "D" names none


def test_two_mates_are_both_correct():
    q = hand_question([("e4", "e2e4", None, 3, 2), ("d4", "d2d4", None, 1, 1), ("Nf3", "g1f3", 20, None, 3)])
    assert q.gold == "B"  # the engine's order breaks the tie
    assert cz.proxy(q, "A") == cz.proxy(q, "B") == 1.0 and cz.is_correct(q, "A")
    assert cz.proxy(q, "C") == pytest.approx(1 / (1 + 10 ** (-20 / 400)))


def test_every_option_mated_gives_no_division():
    q = hand_question([("e4", "e2e4", None, -1, 2), ("d4", "d2d4", None, -4, 1)])
    assert cz.proxy(q, "A") == cz.proxy(q, "B") == 1.0  # nothing to give away when all lose


# ---------------------------------------------------------------------------------------------------
# Loader, checked against Lichess's own solutions


def test_load_sample(sample):
    rows = SAMPLE.read_text().splitlines()[1:]
    assert [q.id for q in sample] == [f"{cz.NAME}/chess_puzzles_sample/{r.split(',')[0]}" for r in rows]
    assert [q.meta["rating"] for q in sample] == [462, 438, 1829, 1617, 1111, 1128]
    for q, row in zip(sample, rows):
        _, fen, moves, *_ = row.split(",")
        board = chess.Board(fen)
        board.push_uci(moves.split()[0])  # the question position is after the opponent's move
        assert q.meta["fen"] == board.fen() and f"(FEN: {board.fen()})" in q.text
        assert ("White to move." if board.turn else "Black to move.") in q.text
        options = q.meta["options"]
        assert len(options) == 4 and sorted(o["engine_rank"] for o in options) == [1, 2, 3, 4]
        assert len({o["uci"] for o in options}) == 4
        assert all(board.san(chess.Move.from_uci(o["uci"])).rstrip("+#") == o["san"] for o in options)
        assert [f"{letter}. {o['san']}" for letter, o in zip("ABCD", options)] == q.text.splitlines()[-4:]
        # Independent path: the gold option is Lichess's solution move.
        gold = options["ABCD".index(q.gold)]
        assert gold["uci"] == moves.split()[1] and gold["san"] == q.meta["solution"]
        assert q.meta["engine"].startswith("Stockfish") and q.meta["depth"] == cz.DEPTH
        json.dumps(q.meta)
    # The shown order does not give the ranking away.
    assert len({q.gold for q in sample}) > 1
    assert any([o["engine_rank"] for o in q.meta["options"]] != [1, 2, 3, 4] for q in sample)


def test_mate_in_1_gold_mates(sample):
    for q in [q for q in sample if q.meta["puzzle_id"] in ("008Nz", "00GRa")]:
        board = chess.Board(q.meta["fen"])
        gold = q.meta["options"]["ABCD".index(q.gold)]
        assert gold["mate"] == 1 and gold["cp"] is None
        board.push_uci(gold["uci"])
        assert board.is_checkmate()
        assert cz.proxy(q, q.gold) == 1.0
        # The other options do not mate, and each scores its win probability relative to 1.
        for letter, o in zip("ABCD", q.meta["options"]):
            if letter != q.gold:
                assert o["mate"] is None
                assert cz.proxy(q, letter) == pytest.approx(1 / (1 + 10 ** (-o["cp"] / 400)))


def test_gold_is_best_and_proxy_in_unit_interval(sample, generated):
    for q in sample + [q for qs in generated.values() for q in qs]:
        scores = {letter: cz.proxy(q, letter) for letter in "ABCD"[:len(q.meta["options"])]}
        assert scores[q.gold] == 1.0 and cz.is_correct(q, q.gold)
        assert all(0.0 <= s <= 1.0 for s in scores.values())
        assert max(scores.values()) == 1.0


def test_worked_example_is_in_the_docstring(sample):
    q = sample[0]
    stem = q.text[:q.text.index("\nA. ")]  # the position and the question; the options follow
    assert "\n".join("    " + line if line else "" for line in stem.split("\n")) in cz.__doc__
    assert q.meta["options"]["ABCD".index(q.gold)]["san"] == "Rd8"


def test_answer_by_move_text(sample):
    q = sample[0]  # 008Nz, White to move: Rd8 mates; Rd7 and Kxh2 are legal but not offered
    rd4 = "ABCD"[[o["san"] for o in q.meta["options"]].index("Rd4")]
    assert cz.proxy(q, "Rd8") == cz.proxy(q, q.gold) == 1.0 and cz.is_correct(q, "Rd8")
    assert cz.proxy(q, "Rd4") == cz.proxy(q, rd4) < 1.0 and not cz.is_correct(q, "Rd4")
    assert cz.proxy(q, "R1d8") == 1.0  # over-disambiguated SAN names the same move
    assert cz.proxy(q, "Rd7") is None and cz.proxy(q, "Kxh2") is None and not cz.is_correct(q, "Rd7")
    assert cz.proxy(q, "Qd5") is None  # illegal here


@pytest.mark.parametrize("answer", ["", "hello", "E", "b", "The best move is B", "d1d8"])
def test_proxy_rejects_unextracted_answers(sample, answer):
    with pytest.raises(ValueError, match="`answer`"):
        cz.proxy(sample[0], answer)


def write_csv(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "puzzles.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "edit, field, message",
    [
        (lambda r: r.replace(" b - - 1 29", " x - - 1 29"), "FEN", "invalid FEN"),
        (lambda r: r.replace(MATE_IN_1_FEN, "8/8/8/8/8/8/8/K7 w - - 0 1"), "FEN", "not a legal position"),
        (lambda r: r.replace("d3e2 d1d8", "d3e3 d1d8"), "Moves", "illegal first move 'd3e3'"),
        (lambda r: r.replace("d3e2 d1d8", "zz99 d1d8"), "Moves", "first move 'zz99' is not UCI"),
        (lambda r: r.replace("d3e2 d1d8", "d3e2 g3g8"), "Moves", "illegal solution move 'g3g8'"),
        (lambda r: r.replace("d3e2 d1d8", "d3e2"), "Moves", "expected the opponent's move and the solution"),
        (lambda r: r.replace("d3e2 d1d8", ""), "Moves", "missing"),
        (lambda r: r.replace(",462,", ",high,"), "Rating", "expected an integer, got 'high'"),
        (lambda r: ",".join(r.split(",")[:3]), "Rating", "missing"),  # a short row
    ],
)
def test_loader_bad_row_names_file_line_field(tmp_path, edit, field, message):
    path = write_csv(tmp_path, [HEADER, MATE_IN_1_ROW, edit(MATE_IN_1_ROW)])
    with pytest.raises(ValueError, match=rf"puzzles\.csv: line 3, field '{field}': .*{message}"):
        cz.load_questions(path, depth=TEST_DEPTH)


def test_loader_missing_column(tmp_path):
    path = write_csv(tmp_path, [HEADER.replace("Moves,", ""), MATE_IN_1_ROW.replace("d3e2 d1d8,", "")])
    with pytest.raises(ValueError, match=r"puzzles\.csv: line 1, field 'Moves': missing column"):
        cz.load_questions(path, depth=TEST_DEPTH)


# ---------------------------------------------------------------------------------------------------
# Generator


def test_generator_deterministic_and_seed_dependent(generated):
    easy = generated["easy"]
    assert easy == cz.generate_questions(3, seed=7, difficulty="easy", depth=TEST_DEPTH)
    assert [q.id for q in easy] == [f"chess_puzzles/easy/7/{k}" for k in range(3)]
    other = cz.generate_questions(3, seed=8, difficulty="easy", depth=TEST_DEPTH)
    assert [q.meta["fen"] for q in other] != [q.meta["fen"] for q in easy]
    assert cz.generate_questions(0, seed=7) == []


@pytest.mark.parametrize("difficulty", sorted(cz.DIFFICULTIES))
def test_generated_gold_checked_by_a_fresh_engine(generated, difficulty):
    lo, hi = cz.DIFFICULTIES[difficulty]
    for q in generated[difficulty]:
        board = chess.Board(q.meta["fen"])
        assert board.is_valid() and not board.is_game_over() and board.legal_moves.count() >= 4
        assert q.meta["difficulty"] == difficulty and q.meta["depth"] == TEST_DEPTH
        json.dumps(q.meta)
        # Independent path: a fresh engine at the same depth, asked through python-chess directly.
        reference = reference_analysis(q.meta["fen"], TEST_DEPTH)
        shown = q.meta["options"]
        by_rank = sorted(shown, key=lambda o: o["engine_rank"])
        assert [(o["uci"], o["cp"], o["mate"]) for o in by_rank] == reference
        assert shown["ABCD".index(q.gold)]["uci"] == reference[0][0]
        # The best option stands out by the difficulty's gap: 1 - proxy of the runner-up.
        runner_up = "ABCD"[shown.index(by_rank[1])]
        assert lo <= 1 - cz.proxy(q, runner_up) <= hi
        assert cz.proxy(q, runner_up) < 1.0


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        cz.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        cz.generate_questions(-1, seed=0)
    with pytest.raises(ValueError, match="`depth`"):
        cz.generate_questions(1, seed=0, depth=0)


def test_missing_engine_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("WOW_STOCKFISH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="WOW_STOCKFISH='.*nowhere' is not an executable file"):
        cz.generate_questions(1, seed=0)
    monkeypatch.delenv("WOW_STOCKFISH")
    monkeypatch.setattr(cz.shutil, "which", lambda name: None)
    monkeypatch.setattr(cz, "STOCKFISH_FALLBACK", str(tmp_path / "stockfish"))
    with pytest.raises(FileNotFoundError, match="apt-get install stockfish"):
        cz.load_questions(str(SAMPLE))


def test_engine_path_order(monkeypatch, tmp_path):
    on_path = tmp_path / "stockfish"
    on_path.symlink_to(cz.stockfish_path())
    monkeypatch.setattr(cz.shutil, "which", lambda name: str(on_path))
    monkeypatch.setenv("WOW_STOCKFISH", cz.STOCKFISH_FALLBACK)
    assert cz.stockfish_path() == "/usr/games/stockfish"  # the variable wins over PATH
    monkeypatch.delenv("WOW_STOCKFISH")
    assert cz.stockfish_path() == str(on_path)  # PATH wins over the fallback
    monkeypatch.setattr(cz.shutil, "which", lambda name: None)
    assert cz.stockfish_path() == "/usr/games/stockfish"


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Rd8 mates at once.\nThe best move is B.", "B"),
        ("The best move is A. Wait, no. The best move is **C**", "C"),  # last mention
        ("the BEST move is (D)", "D"),
        ("The best move is option B: Rd8.", "B"),
        ("The best move is B. Rd8", "B"),
        ("The best move is: A", "A"),
        ("The best move is Rd8#", "Rd8"),  # SAN, check signs dropped
        ("The best move is Bxe5+.", "Bxe5"),  # a bishop move, not option B
        ("The best move is 0-0-0", "O-O-O"),
        ("The best move is e8=Q", "e8=Q"),
        ("The best move is a quiet one.", None),  # "a" is a word, not option A
        ("The best move is X.", None),  # the template's placeholder
        ("The best move is E.", None),  # no option E
        ("The best move is Ba.", None),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_parse_conclusion(text, expected):
    assert cz.parse_conclusion(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Rd8 is mate, so the best move is C.", "C"),
        ("Answer: B", "B"),
        ("The answer is (A).", "A"),
        ("My best move: Nf3", "Nf3"),
        ("Option B looks good.", None),  # no concluding phrase
        ("White is better.", None),
    ],
)
def test_parse_direct(answer, expected):
    assert cz.parse_direct(answer) == expected


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    # The prompt quotes the prefill and shows no placeholder letter: a 135M model copied "X".
    assert f'"{cz.EXTRACTION_PREFILL}"' in cz.EXTRACTION_PROMPT and " X" not in cz.EXTRACTION_PROMPT
    for gold in "ABCD":
        assert cz.parse_conclusion(f"{cz.EXTRACTION_PREFILL} {gold}.") == gold
    assert cz.parse_conclusion(cz.EXTRACTION_PREFILL + " X, where X is the letter of the move.") is None
