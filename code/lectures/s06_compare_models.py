"""Session 6 lecture script: the stages of one post-training pipeline compared on the same multiple-choice items, with
bootstrap intervals, calibration and the diversity of sampled answers.

    python code/lectures/s06_compare_models.py                                   # base, SFT, DPO and RL stages
    python code/lectures/s06_compare_models.py --stages pipeline_base pipeline_rl --items 50
    python code/lectures/s06_compare_models.py --seed 1    # other samples and resamples; the same seed prints the same table

Every stage answers the same items, the first --items of each task (COPA, RTE, BoolQ) in the test split of the
"multiple_choice" role (tiny: items about the synthetic reviews; full: SuperGLUE's validation items, COPA has 100). An
item's answer is the option with the highest log P(option | context) (rl4lm.analysis.behaviour.item_scores), its
confidence the softmax over the options' scores. Per stage the table gives the accuracy with a 95% percentile
bootstrap interval over items (Efron and Tibshirani, 1993), the mean confidence, the expected calibration error over
10 bins (Guo et al., 2017), and, for mode collapse, the entropy in bits and the most frequent answer's share of
--answers answers sampled at temperature 1 for each of --questions BoolQ questions (the mean over questions). Then the
last stage is compared with the first by a paired bootstrap (Koehn, 2004): resampling the same items (or questions)
for both, which is tighter than two separate intervals when the stages agree on most items. Every stage reads the
contexts as raw text, without a chat template, as on Session 6's page (the base stage has none), and samples its answers
with the same --seed: a line under the table counts the answers each stage shares with the stage above it, since
stages with close distributions then draw the same answers and print the same entropy.

The stages are loaded one at a time, in the profile's inference dtype on the GPU if there is one (a T4 holds one
OLMo 2 1B stage of the full profile, not four). A bad value (one stage, a stage named twice, --items 0 or more items than
a task has) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse

from rl4lm.assets.roles import PIPELINE_ROLES
from rl4lm.labs import Parser, release_memory, run_main, start_lecture

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
ANSWER_TOKENS = 4  # tokens sampled per answer: enough for its first word
TASK_NAMES = {"copa": "COPA", "rte": "RTE", "boolq": "BoolQ"}
QUESTION_TASK = "boolq"  # the yes/no questions whose sampled answers measure mode collapse
MAX_RESAMPLES = 100_000  # 2,000 give interval ends to about 0.01; 10^8 would run for hours


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--stages", nargs="+", choices=PIPELINE_ROLES, default=list(PIPELINE_ROLES), metavar="STAGE",
                     help=f"two or more pipeline stages in the order to show them ({', '.join(PIPELINE_ROLES)}); "
                          "the last is compared with the first")
    cli.add_argument("--items", type=int, default=100,
                     help="multiple-choice items per task (COPA, RTE, BoolQ), the first ones of the test split (at least 1)")
    cli.add_argument("--questions", type=int, default=16,
                     help="BoolQ questions whose sampled answers measure the answer entropy (at least 1)")
    cli.add_argument("--answers", type=int, default=16,
                     help="answers sampled at temperature 1 per question (at least 2: one answer has no spread)")
    cli.add_argument("--resamples", type=int, default=2000,
                     help="bootstrap resamples of every interval (100 to 100,000; more gives steadier interval ends)")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the sampled answers and the bootstrap (0 to {MAX_SEED}); the same seed prints the same table")
    return cli


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options; a bad value that needs no data exits with one sentence."""
    args = cli.parse_args(argv)
    if len(args.stages) < 2:
        cli.error(f"--stages names only {args.stages[0]}: give two or more stages to compare, e.g. --stages pipeline_base pipeline_rl")
    twice = next((stage for stage in args.stages if args.stages.count(stage) > 1), None)
    if twice is not None:
        cli.error(f"--stages names {twice} twice: a stage compared with itself differs by nothing; name each stage once")
    if args.items < 1:
        cli.error(f"--items must be at least 1 item per task, not {args.items}")
    if args.questions < 1:
        cli.error(f"--questions must be at least 1, not {args.questions}")
    if args.answers < 2:
        cli.error(f"--answers must be at least 2 answers per question (an entropy needs a spread), not {args.answers}")
    if not 100 <= args.resamples <= MAX_RESAMPLES:
        cli.error(f"--resamples must be between 100 and {MAX_RESAMPLES:,}, not {args.resamples:,}: beyond that the intervals barely "
                  "change and the ECE resamples take minutes")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    return args


def chosen_items(cli: Parser, items_per_task: int, n_questions: int):
    """The first ``items_per_task`` items of every task and the first ``n_questions`` BoolQ contexts; too many exits with one sentence."""
    from rl4lm import profiles

    data = profiles.load_dataset("multiple_choice", split="test")
    tasks = list(dict.fromkeys(data["task"]))
    rows = {task: [i for i, t in enumerate(data["task"]) if t == task] for task in tasks}
    smallest = min(tasks, key=lambda task: len(rows[task]))
    if items_per_task > len(rows[smallest]):
        cli.error(f"--items {items_per_task} is more than the {len(rows[smallest])} {TASK_NAMES.get(smallest, smallest)} items of the "
                  f"test split; use --items {len(rows[smallest])} or less")
    if n_questions > len(rows.get(QUESTION_TASK, [])):
        cli.error(f"--questions {n_questions} is more than the {len(rows.get(QUESTION_TASK, []))} BoolQ items of the test split")
    items = data.select([i for task in tasks for i in rows[task][:items_per_task]])
    return items, [data[i]["context"] for i in rows[QUESTION_TASK][:n_questions]]


def stage_measurements(role: str, items, questions: list[str], answers: int, seed: int, device: str) -> dict:
    """One stage's option scores on every item and the first words of its sampled answers, the model loaded alone and then freed."""
    from rl4lm import profiles
    from rl4lm.analysis import behaviour

    tokenizer = profiles.load_tokenizer(role)
    model = profiles.load_model(role, dtype=profiles.inference_dtype(device)).to(device)
    rows_per_batch = 256 if profiles.current_profile() == "tiny" else 32  # a T4 holds 32 rows of a 1B model's BoolQ prompts
    scores = behaviour.item_scores(model, tokenizer, items)  # one tensor (n_options,) per item
    sampled = behaviour.sample_groups(model, tokenizer, questions, answers, ANSWER_TOKENS, rows_per_batch, seed)
    del model  # one model in memory at a time
    release_memory(device)
    return {"scores": scores, "answers": [[behaviour.answer_word(text) for text in group] for group in sampled["texts"]]}


def ece_of_columns(rows):
    """The expected calibration error (Guo et al., 2017) of an array whose columns are (confidence, correct), for the bootstrap."""
    from rl4lm.analysis.calibration import expected_calibration_error

    return expected_calibration_error(rows[:, 0], rows[:, 1])


def stage_summary(measured: dict, labels, resamples: int, seed: int) -> dict:
    """Per item correct (0/1) and confidence, the accuracy with its bootstrap interval, the ECE, and per question the answer entropy."""
    import numpy as np

    from rl4lm.analysis import behaviour
    from rl4lm.analysis.calibration import expected_calibration_error

    confident = behaviour.answer_confidences(measured["scores"], labels)  # "confidence", "prediction", "correct": (n,) each
    spread = [behaviour.answer_distribution(group) for group in measured["answers"]]
    return {"correct": confident["correct"], "confidence": confident["confidence"],
            "accuracy": behaviour.bootstrap_interval(confident["correct"], n_resamples=resamples, seed=seed),
            "ece": expected_calibration_error(confident["confidence"], confident["correct"]),
            "entropy": np.array([s["entropy_bits"] for s in spread]), "mode_share": np.array([s["mode_share"] for s in spread]),
            "answers": measured["answers"]}


def print_stage_table(summaries: dict[str, dict], item_task, tasks: list[str]) -> None:
    """One row per stage: accuracy [95% interval], mean confidence, ECE, answer entropy and mode share; then accuracy per task."""
    width = max(len(stage) for stage in summaries)
    print(f"{'stage':<{width}}  accuracy  95% interval      confidence    ECE  entropy (bits)  mode share")
    for stage, s in summaries.items():
        estimate, low, high = s["accuracy"]
        print(f"{stage:<{width}}  {estimate:8.3f}  [{low:.3f}, {high:.3f}]  {s['confidence'].mean():10.3f}  {s['ece']:5.3f}  "
              f"{s['entropy'].mean():14.3f}  {s['mode_share'].mean():10.3f}")
    print_shared_answers(summaries)
    print(f"\naccuracy by task\n{'stage':<{width}}  " + "  ".join(f"{TASK_NAMES.get(task, task):>6}" for task in tasks))
    for stage, s in summaries.items():
        print(f"{stage:<{width}}  " + "  ".join(f"{s['correct'][item_task == task].mean():6.3f}" for task in tasks))


def print_shared_answers(summaries: dict[str, dict]) -> None:
    """How many sampled answers each stage shares, word for word, with the stage above it in the table.

    Every stage samples with the same seed (common random numbers), so two stages with close answer distributions draw
    mostly the same answers and can print the same entropy and mode share: a sign of close models, not a bug.
    """
    stages = list(summaries)
    shared = []
    for above, stage in zip(stages, stages[1:]):
        groups = zip(summaries[above]["answers"], summaries[stage]["answers"])  # per question: the two stages' answers
        pairs = [(a, b) for group_a, group_b in groups for a, b in zip(group_a, group_b)]
        shared.append(f"{stage} {sum(a == b for a, b in pairs)} of {len(pairs)}")
    print("sampled answers (first words) equal to the stage above's: " + ", ".join(shared))
    print("  (every stage samples with --seed: stages with close distributions draw the same answers and print the same entropy)")


def print_paired_differences(first: str, last: str, summaries: dict[str, dict], resamples: int, seed: int) -> None:
    """Paired bootstrap intervals of last - first: accuracy and ECE over the same items, answer entropy over the same questions."""
    import numpy as np

    from rl4lm.analysis import behaviour

    a, b = summaries[last], summaries[first]
    calibration = [np.column_stack([s["confidence"], s["correct"]]) for s in (a, b)]  # (n, 2): a row per item
    differences = {
        "accuracy": behaviour.paired_bootstrap_difference(a["correct"], b["correct"], n_resamples=resamples, seed=seed),
        "ECE": behaviour.paired_bootstrap_difference(*calibration, ece_of_columns, n_resamples=resamples, seed=seed),
        "entropy (bits)": behaviour.paired_bootstrap_difference(a["entropy"], b["entropy"], n_resamples=resamples, seed=seed),
    }
    print(f"\n{last} - {first}, paired bootstrap over the same items (entropy: the same questions)")
    print(f"{'measure':<15} {'difference':>10}  95% interval        share > 0  verdict")
    for measure, d in differences.items():
        verdict = "higher" if d["low"] > 0 else "lower" if d["high"] < 0 else "no clear difference"
        print(f"{measure:<15} {d['difference']:+10.3f}  [{d['low']:+.3f}, {d['high']:+.3f}]  {d['share_positive']:9.1%}  {verdict}")


def main(argv: list[str] | None = None) -> None:
    """Print the stages' accuracy, calibration and answer entropy on the same items, then the last stage minus the first."""
    cli = parser()
    args = checked_arguments(cli, argv)

    import numpy as np

    device = start_lecture(args.seed)  # the only seed: the samples and the bootstrap draw from generators seeded with it
    items, questions = chosen_items(cli, args.items, args.questions)
    item_task = np.array(items["task"])
    tasks = list(dict.fromkeys(items["task"]))
    print(f"\n{len(items)} multiple-choice items ({', '.join(f'{TASK_NAMES.get(t, t)} {args.items}' for t in tasks)}), "
          f"{args.answers} sampled answers to each of {len(questions)} BoolQ questions, {args.resamples} bootstrap resamples, "
          f"seed {args.seed}, on {device}\n")
    summaries = {}
    for stage in args.stages:
        measured = stage_measurements(stage, items, questions, args.answers, args.seed, device)
        summaries[stage] = stage_summary(measured, items["label"], args.resamples, args.seed)
    print_stage_table(summaries, item_task, tasks)
    print_paired_differences(args.stages[0], args.stages[-1], summaries, args.resamples, args.seed)


if __name__ == "__main__":
    run_main(main)
