"""Chess puzzles: pick the best of four candidate moves in a chess position.

Source: the chess task of Yao et al. 2024, "Varying Shades of Wrong: Aligning LLMs with Wrong Answers
Only" (arXiv 2410.11055): positions with the engine's top moves as options, graded by the win
probability the engine gives each. Positions come from the Lichess puzzle database
(https://database.lichess.org/#puzzles, CC0; columns PuzzleId,FEN,Moves,Rating,RatingDeviation,
Popularity,NbPlays,Themes,GameUrl,OpeningTags; FEN is the position before the opponent's move that sets
the puzzle, the first move of Moves) or from a seeded generator. Stockfish (python-chess drives it)
analyses every position when its question is made: its top four moves at a fixed depth (multipv 4)
are the options, and their scores are stored in `question.meta`, so grading needs no engine.

Worked example (Lichess puzzle 008Nz after Black's Bd3-e2, the first question of
tests/data/chess_puzzles_sample.csv; the generator asks the user turn below, the model reasons, then
is asked EXTRACTION_PROMPT and concludes):

    Chess position (FEN: 6k1/2p2ppp/pnp5/B7/2P3PP/1P2PPR1/r3b2r/3R2K1 w - - 2 30)

    8 . . . . . . k .
    7 . . p . . p p p
    6 p n p . . . . .
    5 B . . . . . . .
    4 . . P . . . P P
    3 . P . . P P R .
    2 r . . . b . . r
    1 . . . R . . K .
      a b c d e f g h

    Upper-case letters are White's pieces, lower-case Black's (K king, Q queen, R rook, B bishop,
    N knight, P pawn); "." is an empty square.
    White to move. Which of these moves is best?
    A. Rd2
    B. Rd8
    C. Rd4
    D. Re1

    Stockfish 15.1 at depth 12 scores, for White: Rd8 mate in 1, Rd4 +94 cp, Rd2 -318 cp,
    Re1 -385 cp. Gold is "B" (Rd8 mates). "... The best move is C." extracts to "C" (Rd4), win
    probability 1 / (1 + 10^(-94/400)) = 0.632 against 1 for the mate: proxy 1 - (1 - 0.632) = 0.632.

Proxy: the paper's win probability of the chosen move for the side to move, `W = 1 / (1 + 10^(-cp/400))`
with cp the engine's score after the move (mate for the mover: W = 1; mated: W = 0), taken relative to
the best option: `proxy = 1 - (W_best - W_move)`, the win probability the move gives away. Why
relative: DESIGN.md's "correct means proxy 1" needs the best move at exactly 1, and W alone is as much
a property of the position as of the move (in a lost position the best move has W near 0, in a won one
every option near 1). Why a difference and not W_move / W_best: the ratio blows up a small loss in a
lost position (W_best 0.02, W_move 0.01 gives 0.5) and is 0/0 when every option is mated; the
difference is the expected score the move throws away, in [0, 1], and keeps the paper's ranking of the
options. Correct means proxy 1: the best option, or one as good (two mates, or two moves so winning
that W rounds to 1.0). An answer that names none of the options (a move not offered) has no proxy.

The options are shown in a seeded shuffled order (the engine's order would give the ranking away), by
letter, in SAN without "+" and "#" (a "#" would give a mate away). Gold is the best option's letter.
"""
import csv
import os
import random
import re
import shutil
from pathlib import Path

import chess
import chess.engine

from wow_core.records import Question

NAME = "chess_puzzles"
VERSION = 2  # bump on any change to prompt, extraction or scoring; 2: no "X" placeholder (small models copied it)

EXTRACTION_PROMPT = (
    "Therefore, which move is best? "
    'End your reply with "The best move is" followed by the letter of that move: A, B, C or D.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the letter is still the model's own.
EXTRACTION_PREFILL = "The best move is"

DEPTH = 12  # Stockfish search depth of the options' scores (~0.1-0.3 s a position on one thread)
N_OPTIONS = 4
LETTERS = "ABCD"

# difficulty -> (min, max) of the generated position's gap `W_best - W_second` (1 - proxy of the best
# wrong option). Easy: one move stands out, usually punishing the opponent's mistake. Hard: the best
# move beats close contenders by 3-10 points of win probability (about 20-70 cp near equality);
# smaller gaps are within the noise of a depth-12 search, so the gold would be arbitrary.
DIFFICULTIES = {"easy": (0.10, 1.00), "hard": (0.03, 0.10)}

# The generator's games start from one of these lines (10 plies each, main lines of the openings
# named), then both sides play GUIDED_PLIES moves chosen at random among a shallow search's best
# GUIDE_WIDTH, so the positions are varied but sensible middlegames.
OPENINGS = (
    ("Ruy Lopez", "e4 e5 Nf3 Nc6 Bb5 a6 Ba4 Nf6 O-O Be7"),
    ("Italian Game", "e4 e5 Nf3 Nc6 Bc4 Bc5 c3 Nf6 d3 d6"),
    ("Sicilian Najdorf", "e4 c5 Nf3 d6 d4 cxd4 Nxd4 Nf6 Nc3 a6"),
    ("French Defence", "e4 e6 d4 d5 Nc3 Nf6 Bg5 Be7 e5 Nfd7"),
    ("Caro-Kann Defence", "e4 c6 d4 d5 Nc3 dxe4 Nxe4 Bf5 Ng3 Bg6"),
    ("Scandinavian Defence", "e4 d5 exd5 Qxd5 Nc3 Qa5 d4 Nf6 Nf3 c6"),
    ("Queen's Gambit Declined", "d4 d5 c4 e6 Nc3 Nf6 Bg5 Be7 e3 O-O"),
    ("Slav Defence", "d4 d5 c4 c6 Nf3 Nf6 Nc3 dxc4 a4 Bf5"),
    ("King's Indian Defence", "d4 Nf6 c4 g6 Nc3 Bg7 e4 d6 Nf3 O-O"),
    ("Nimzo-Indian Defence", "d4 Nf6 c4 e6 Nc3 Bb4 e3 O-O Bd3 d5"),
    ("English Opening", "c4 e5 Nc3 Nf6 g3 d5 cxd5 Nxd5 Bg2 Nb6"),
    ("London System", "d4 d5 Bf4 Nf6 e3 e6 Nf3 c5 c3 Nc6"),
)
GUIDED_PLIES = (6, 20)
GUIDE_DEPTH = 4
GUIDE_WIDTH = 3
SCREEN_DEPTH = 6  # a cheap first look at a candidate position before the full-depth analysis

STOCKFISH_FALLBACK = "/usr/games/stockfish"  # where Debian's and Ubuntu's package installs it
CSV_COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating")  # the columns the loader reads

# A move in SAN, as a model may write it: castling with O or 0, optional "=" before a promotion,
# optional check or mate sign.
SAN = r"(?:O-O-O|O-O|0-0-0|0-0|[KQRBN][a-h]?[1-8]?x?[a-h][1-8]|[a-h](?:x[a-h])?[1-8](?:=?[QRBN])?)[+#]?"
# An option letter (upper case only: "a" is an English word) or a SAN move, after optional "option",
# bold and a parenthesis; the lookaheads refuse "B" of "Bxe5" and "e4" of "e45".
_CHOICE = (
    r"\s*:?\s*\**\s*(?:(?i:option)\s+)?\(?\s*"
    rf"(?:(?P<letter>[{LETTERS}])(?![\w-])|(?P<san>{SAN})(?![\w=-]))"
)
_CONCLUSION_RE = re.compile(r"(?i:the\s+best\s+move\s+is)" + _CHOICE)
_DIRECT_RE = re.compile(r"(?i:best\s+move|answer)\s*(?:(?i:is)|:)" + _CHOICE)
_SAN_RE = re.compile(SAN)


# ---------------------------------------------------------------------------------------------------
# Engine


def stockfish_path() -> str:
    """The Stockfish binary: $WOW_STOCKFISH, else `stockfish` on PATH, else /usr/games/stockfish.

    Raises:
        FileNotFoundError: none of them is an executable file; the message says how to install it.
    """
    override = os.environ.get("WOW_STOCKFISH")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise FileNotFoundError(
                f"WOW_STOCKFISH={override!r} is not an executable file: point it at a Stockfish binary, "
                "or unset it to use the system's (apt-get install stockfish)."
            )
        return override
    path = shutil.which("stockfish") or STOCKFISH_FALLBACK
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"Stockfish not found (not on PATH, not at {STOCKFISH_FALLBACK}): the chess dataset needs it. "
            "Install it with `apt-get install stockfish`, or set WOW_STOCKFISH to its path."
        )
    return path


def open_engine() -> chess.engine.SimpleEngine:
    """Stockfish on one thread with a 16 MB hash, so that a search at a fixed depth is reproducible."""
    engine = chess.engine.SimpleEngine.popen_uci(stockfish_path())
    engine.configure({"Threads": 1, "Hash": 16})
    return engine


def win_probability(cp: int | None, mate: int | None) -> float:
    """The paper's win probability for the side to move: `1 / (1 + 10^(-cp/400))`; mate 1, mated 0.

    Args:
        cp: the score in centipawns for the side to move, None when the score is a mate.
        mate: moves to mate, positive when the side to move mates, negative when it is mated; None
            for a centipawn score.
    """
    if mate is not None:
        return 1.0 if mate > 0 else 0.0
    return 1.0 / (1.0 + 10.0 ** (-cp / 400.0))


def _plain_san(board: chess.Board, move: chess.Move) -> str:
    return board.san(move).rstrip("+#")


def analyse_options(engine: chess.engine.SimpleEngine, board: chess.Board, depth: int,
                    n: int = N_OPTIONS) -> list[dict]:
    """The engine's best `n` moves in `board` with their scores for the side to move, best first.

    Each search starts from a cleared hash (`game=object()` makes python-chess send ucinewgame), so
    the result does not depend on what the engine analysed before.

    Returns:
        [{"san", "uci", "cp", "mate", "engine_rank"}, ...]: SAN without check signs; one of cp and
        mate is None; engine_rank 1 for the best.
    """
    infos = engine.analyse(board, chess.engine.Limit(depth=depth), multipv=n, game=object())
    options = []
    for rank, info in enumerate(infos, start=1):
        move = info["pv"][0]
        score = info["score"].pov(board.turn)
        options.append({"san": _plain_san(board, move), "uci": move.uci(), "cp": score.score(),
                        "mate": score.mate(), "engine_rank": rank})
    return options


def _best(options: list[dict]) -> dict:
    """The option with the highest win probability; the engine's order breaks ties."""
    return max(options, key=lambda o: (win_probability(o["cp"], o["mate"]), -o["engine_rank"]))


def gap(options: list[dict]) -> float:
    """`W_best - W_second`: how far the best option stands out (1 - proxy of the best wrong one)."""
    wins = sorted((win_probability(o["cp"], o["mate"]) for o in options), reverse=True)
    return wins[0] - wins[1]


# ---------------------------------------------------------------------------------------------------
# Questions


def board_diagram(board: chess.Board) -> str:
    """The board in ASCII from White's side, rank 8 on top, with rank and file labels."""
    rows = str(board).split("\n")
    return "\n".join([f"{8 - i} {row}" for i, row in enumerate(rows)] + ["  a b c d e f g h"])


def _question_text(board: chess.Board, options: list[dict]) -> str:
    side = "White" if board.turn == chess.WHITE else "Black"
    choices = "\n".join(f"{letter}. {o['san']}" for letter, o in zip(LETTERS, options))
    return (
        f"Chess position (FEN: {board.fen()})\n\n{board_diagram(board)}\n\n"
        "Upper-case letters are White's pieces, lower-case Black's (K king, Q queen, R rook, B bishop,\n"
        'N knight, P pawn); "." is an empty square.\n'
        f"{side} to move. Which of these moves is best?\n{choices}"
    )


def _make_question(qid: str, board: chess.Board, options: list[dict], rng: random.Random,
                   depth: int, engine_name: str, extra_meta: dict) -> Question:
    """The question with the options in a seeded shuffled order; gold is the best one's letter."""
    shown = list(options)
    rng.shuffle(shown)
    gold = LETTERS[shown.index(_best(options))]
    meta = {"fen": board.fen(), "options": shown, "depth": depth, "engine": engine_name, **extra_meta}
    return Question(id=qid, dataset=NAME, text=_question_text(board, shown), gold=gold, meta=meta)


def _check_depth(depth: int) -> None:
    if depth < 1:
        raise ValueError(f"`depth` must be >= 1, got {depth}.")


def _play_game(engine: chess.engine.SimpleEngine, rng: random.Random) -> chess.Board:
    """An opening line, then moves drawn among a shallow search's best few, for both sides."""
    board = chess.Board()
    for san in rng.choice(OPENINGS)[1].split():
        board.push_san(san)
    for _ in range(rng.randint(*GUIDED_PLIES)):
        if board.is_game_over():
            break
        moves = [chess.Move.from_uci(o["uci"])
                 for o in analyse_options(engine, board, GUIDE_DEPTH, GUIDE_WIDTH)]
        board.push(rng.choice(moves))
    return board


def _find_position(engine: chess.engine.SimpleEngine, rng: random.Random, gap_range: tuple[float, float],
                   depth: int) -> tuple[chess.Board, list[dict]]:
    """A position whose best option stands out by a gap in `gap_range`, with its options.

    The last move before it is drawn uniformly from the legal ones (sometimes a mistake the side to
    move can punish); a shallow search screens each candidate before the full-depth one decides.
    """
    lo, hi = gap_range
    while True:
        board = _play_game(engine, rng)
        last_moves = list(board.legal_moves)
        rng.shuffle(last_moves)
        for move in last_moves:
            board.push(move)
            if not board.is_game_over() and board.legal_moves.count() >= N_OPTIONS:
                if lo <= gap(analyse_options(engine, board, SCREEN_DEPTH, 2)) <= hi:
                    options = analyse_options(engine, board, depth)
                    if lo <= gap(options) <= hi:
                        return board, options
            board.pop()


def generate_questions(n: int, seed: int, difficulty: str = "easy", depth: int = DEPTH) -> list[Question]:
    """`n` fresh positions from engine-guided games, the same for the same arguments and engine.

    Every position is legal, not over, has at least four legal moves, and a unique best option
    standing out from the second by the difficulty's gap in win probability.

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws openings, moves and option order.
        difficulty: "easy" (best beats second by >= 0.10 win probability) or "hard" (by 0.03-0.10).
        depth: Stockfish depth of the options' scores.

    Returns:
        Questions with ids "chess_puzzles/{difficulty}/{seed}/{k}"; meta holds fen, options (shown
        order), depth, engine and difficulty.

    Raises:
        ValueError: `n` negative, `difficulty` unknown or `depth` below 1.
        FileNotFoundError: no Stockfish (see `stockfish_path`).
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n}.")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"`difficulty` must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}.")
    _check_depth(depth)
    rng = random.Random(seed)
    questions = []
    with open_engine() as engine:
        for k in range(n):
            board, options = _find_position(engine, rng, DIFFICULTIES[difficulty], depth)
            questions.append(_make_question(f"{NAME}/{difficulty}/{seed}/{k}", board, options, rng, depth,
                                            engine.id["name"], {"difficulty": difficulty}))
    return questions


def _puzzle_position(row: dict, where: str) -> tuple[chess.Board, str]:
    """The question position of a Lichess row (FEN after the first move) and the solution's SAN.

    Raises:
        ValueError: bad FEN, or a first or second move that is malformed or illegal ("{where}, field").
    """
    try:
        board = chess.Board(row["FEN"])
    except ValueError as e:
        raise ValueError(f"{where}, field 'FEN': invalid FEN {row['FEN']!r}: {e}") from e
    if not board.is_valid():
        raise ValueError(f"{where}, field 'FEN': not a legal position {row['FEN']!r} ({board.status()!r})")
    moves = row["Moves"].split()
    if len(moves) < 2:
        raise ValueError(f"{where}, field 'Moves': expected the opponent's move and the solution, "
                         f"got {row['Moves']!r}")
    for i, which in enumerate(("first move", "solution move")):
        try:
            move = chess.Move.from_uci(moves[i])
        except ValueError as e:
            raise ValueError(f"{where}, field 'Moves': {which} {moves[i]!r} is not UCI: {e}") from e
        if not board.is_legal(move):
            raise ValueError(f"{where}, field 'Moves': illegal {which} {moves[i]!r} in {board.fen()!r}")
        if i == 0:
            board.push(move)
    solution = _plain_san(board, chess.Move.from_uci(moves[1]))
    return board, solution


def load_questions(path: str, depth: int = DEPTH, limit: int | None = None) -> list[Question]:
    """Questions from a Lichess puzzle CSV (the public schema; columns beyond CSV_COLUMNS are unread).

    Each row's first move is applied to its FEN; the options are the engine's best moves in the
    resulting position (four, or all legal moves when there are fewer). Every row is checked before
    the engine starts; the engine analyses each row it returns (~0.15 s each at depth 12): cut the
    5-million-row database first, e.g. `head -n 201`, or set `limit`.

    Args:
        path: the CSV file (decompress lichess_db_puzzle.csv.zst first).
        depth: Stockfish depth of the options' scores.
        limit: analyse and return only the first `limit` rows (all rows are checked; 0 checks the
            file without the engine); None: all.

    Returns:
        Questions with ids "chess_puzzles/{file stem}/{PuzzleId}", in file order; meta holds fen,
        options, depth, engine, puzzle_id, rating and solution (Lichess's move, SAN).

    Raises:
        ValueError: a missing column, or a row with a missing or bad field (file, line and field), a
            position with a single legal move, or `limit` negative.
        FileNotFoundError: no Stockfish (see `stockfish_path`).
    """
    _check_depth(depth)
    if limit is not None and limit < 0:
        raise ValueError(f"`limit` must be >= 0 or None, got {limit}.")
    stem = Path(path).stem
    puzzles = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1, field '{missing[0]}': missing column (header "
                             f"{reader.fieldnames}; expected {', '.join(CSV_COLUMNS)})")
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            for column in CSV_COLUMNS:
                if not row[column]:
                    raise ValueError(f"{where}, field '{column}': missing")
            try:
                rating = int(row["Rating"])
            except ValueError:
                raise ValueError(f"{where}, field 'Rating': expected an integer, got {row['Rating']!r}") from None
            board, solution = _puzzle_position(row, where)
            if board.legal_moves.count() < 2:
                raise ValueError(f"{where}, field 'Moves': one legal move after the first move, no choice to ask")
            puzzles.append((row["PuzzleId"], rating, board, solution))
    puzzles = puzzles[:limit]
    if not puzzles:
        return []
    questions = []
    with open_engine() as engine:
        for puzzle_id, rating, board, solution in puzzles:
            qid = f"{NAME}/{stem}/{puzzle_id}"
            options = analyse_options(engine, board, depth)
            questions.append(_make_question(
                qid, board, options, random.Random(qid), depth, engine.id["name"],
                {"puzzle_id": puzzle_id, "rating": rating, "solution": solution},
            ))
    return questions


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def _choice(match: re.Match) -> str:
    """A matched letter, or a matched SAN move without check signs and with castling in O's."""
    if match.group("letter"):
        return match.group("letter")
    return match.group("san").rstrip("+#").replace("0", "O")


def parse_conclusion(text: str) -> str | None:
    """The choice of the last "The best move is X" in `text`; None if there is none.

    X is an option letter ("B", "(B)", "**B**", "option B", "B. Nf3" all give "B") or, failing a
    letter, a move in SAN ("Nxe5+" gives "Nxe5", "0-0" gives "O-O"). Only upper-case letters count:
    "The best move is a quiet one" is no answer.
    """
    matches = list(_CONCLUSION_RE.finditer(text))
    return _choice(matches[-1]) if matches else None


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the choice of the last "best move is/: X" or "answer is/: X"."""
    matches = list(_DIRECT_RE.finditer(answer))
    return _choice(matches[-1]) if matches else None


def _chosen_option(question: Question, answer: str) -> dict | None:
    """The option an extracted answer names; None for a letter or move not among the options.

    Raises:
        ValueError: `answer` is neither an option letter nor SAN.
    """
    options = question.meta["options"]
    if len(answer) == 1 and answer in LETTERS:
        index = LETTERS.index(answer)
        return options[index] if index < len(options) else None
    if not _SAN_RE.fullmatch(answer):
        raise ValueError(f"`answer` must be an option letter (A-D) or a move in SAN such as 'Nf3', got {answer!r}.")
    try:
        move = chess.Board(question.meta["fen"]).parse_san(answer)
    except ValueError:  # illegal or ambiguous in this position
        return None
    return next((o for o in options if o["uci"] == move.uci()), None)


def proxy(question: Question, answer: str) -> float | None:
    """`1 - (W_best - W_move)`: the win probability the chosen option gives away, from 1.

    Args:
        question: a question of this dataset (meta "options" with cp / mate for the side to move).
        answer: an extracted answer: an option letter ("C") or a move in SAN ("Rd8").

    Returns:
        1.0 for the best option (and any as good), less for worse ones, in [0, 1]; None when the
        answer names no option (a move not offered, or illegal here): it has no proxy.

    Raises:
        ValueError: `answer` is neither a letter nor SAN.
    """
    option = _chosen_option(question, answer)
    if option is None:
        return None
    best = _best(question.meta["options"])
    return 1.0 - (win_probability(best["cp"], best["mate"]) - win_probability(option["cp"], option["mate"]))


def is_correct(question: Question, answer: str) -> bool:
    """Whether the extracted answer is the best option, or one as good (proxy 1)."""
    return proxy(question, answer) == 1.0
