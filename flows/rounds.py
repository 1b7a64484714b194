"""Iterative wrong-over-wrong alignment (`alignment.rounds`): round 1 is the alignment's adapter of one
preference set; round r samples the training questions with round r-1's model, elicits the set again
from those answers (the same method, margin and judge) and trains the next adapter, which answers the
same held-out questions as every round before it.

Every step is one of the alignment's cached stages, keyed by its inputs: round r's by round r-1's
adapter, so a rerun with one more round finds rounds 1 to n in the store and runs only the new one.
Rounds follow each other (each needs the adapter before it); chains of several models or datasets run
one after another.
"""
from prefect.futures import PrefectFuture

from flows.elicit import Elicitation, judge_call, proxy_judge
from flows.runtime import run_tasks
from flows.units import UnitCall, Units
from tasks.stages import build_preference_set, build_rounds_report, join_samples, training_questions
from wow_core import evaluate
from wow_core.config import ExperimentConfig
from wow_core.methods import JudgeMethod
from wow_core.plan import Judging


def submit_rounds(config: ExperimentConfig, elicitation: Elicitation, units: Units, heldout, base_answers: dict,
                  psets: dict, runs: list[dict], adapted: dict) -> PrefectFuture:
    """Submit rounds 2 to n of every aligned model and dataset; returns the rounds report's future.

    `heldout`: the alignment's `HeldOut`; `base_answers`: model -> {dataset tag: held-out answers};
    `psets`: (model, tag, set tag) -> (sources, preference set future) of round 1; `runs`: the trained
    grid points (with their held-out `samples`); `adapted`: (model, tag, set tag, grid point) -> the
    adapted model's config."""
    a, store, rounds = config.alignment, config.store, config.alignment.rounds
    questions_t, join_t, pref_t, report_t = run_tasks(
        [training_questions, join_samples, build_preference_set, build_rounds_report], store)
    spec = a.preference_sets[rounds.preference_set]
    by_tag = {d.tag: d for d in config.datasets}
    chains, stopped = [], []
    for name in config.aligned_models():
        evaluator = (spec.evaluator or name) if spec.judged else None
        judge_method = JudgeMethod.read_by(spec.method)
        set_tag = spec.tag(evaluator)
        for tag in a.datasets or list(by_tag):
            ds = by_tag[tag]
            chain = {"model": name, "dataset": tag, "preference_set": set_tag, "init": rounds.init,
                     "base": base_answers[name][tag], "rounds": []}
            chains.append(chain)
            sources, first_set = psets[(name, tag, set_tag)]
            first = [r for r in runs if (r["model"], r["trained_on"], r["preference_set"]) == (name, tag, set_tag)]
            if not first:
                stopped.append({"model": name, "dataset": tag, "preference_set": set_tag, "round": 1,
                                "reason": f"its set has {first_set.result()['n_pairs']} pair(s), too few to train"})
                continue
            best = min(first, key=evaluate.by_eval_loss)  # the paper's selection: no held-out question spent
            point, g = a.grid_points()[best["grid_point"]], best["grid_point"]
            model = adapted[(name, tag, set_tag, g)]
            chain["rounds"].append({"round": 1, "n_pairs": best["n_pairs"], "samples": best["samples"][tag]})
            train = questions_t.submit(elicitation.questions[tag]["uri"], heldout.splits[tag]["train_ids"], ds.name,
                                       store).result()
            judge_model = proxy_judge(config, ds, name)
            for r in range(2, rounds.n + 1):
                # Round r-1's model answers the training questions; a new seed each round draws new answers.
                sampling = config.sampling_for(name).model_copy(update={"seed": config.sampling.seed + r - 1})
                step = config.sampling.shard_size
                shards = units.map(name, "sample", [UnitCall("sample_shard", dict(
                    questions_uri=train["uri"], start=start, stop=min(start + step, train["n"]), dataset=ds.name,
                    model=model, sampling=sampling, store=store, judge_model=judge_model), group=model.name)
                    for start in range(0, train["n"], step)])
                samples = join_t.submit(shards, ds.name, model.name, store)
                judgments = None
                if evaluator:
                    call = judge_call(config, Judging(tag, model.name, evaluator, judge_method), samples)
                    [judgments] = units.map(evaluator, "judge", [call])
                source = {"generator": model.name, "samples_uri": samples, "judgments_uri": judgments}
                sources = [*sources, source] if rounds.init == "base" else [source]
                label = f"{tag}.{name}.{set_tag}.r{r}-{rounds.init}"
                pset = pref_t.submit(spec, evaluator, sources, heldout.splits[tag]["train_ids"], a.max_pairs,
                                     a.pair_seed, label, store)
                trainee = model if rounds.init == "continue" else config.model(name)
                [training] = units.map(name, "train", [UnitCall("train_grid_point", dict(
                    preference=pset, model=trainee, train_config=point, label=f"{label}.g{g}", store=store))])
                result = training.result()
                if result["uri"] is None:
                    stopped.append({"model": name, "dataset": tag, "preference_set": set_tag, "round": r,
                                    "reason": f"round {r - 1}'s answers gave {pset.result()['n_pairs']} pair(s), "
                                              "too few to train"})
                    break
                model = config.model(name).model_copy(update={"adapter": result["uri"],
                                                              "name": f"{name}+{set_tag}+r{r}-{rounds.init}"})
                [answers] = heldout.answers(name, [model], True, [tag])
                chain["rounds"].append({"round": r, "n_pairs": pset.result()["n_pairs"], "samples": answers[tag]})
    return report_t.submit(config.name, chains, stopped, a.split_seed, a.bootstrap, config.report.confidence, store)
