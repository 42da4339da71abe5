"""The lecture scripts of sessions 6 and 7 (code/lectures): pipeline stages compared on the same items, and layer-wise CKA.

Each script runs once as a subprocess (as an instructor runs it) with small sizes; the other runs call its ``main(argv)``
in this process, which skips Python's and torch's start-up. Refusals run as subprocesses through ``lecture_refusal``;
most are decided before torch is imported, and the two that need the data set's size load only the data set.
"""
from __future__ import annotations

import math
import re

import pytest

from helpers import lecture_module, run_script
from helpers import lecture_refusal as refused

SCRIPTS = ("s06_compare_models.py", "s07_cka.py")
STAGES = ("pipeline_base", "pipeline_sft", "pipeline_dpo", "pipeline_rl")


def printed(capsys, name: str, *args: str) -> str:
    """What ``main(args)`` of a lecture script prints, run in this process."""
    capsys.readouterr()  # drop anything printed before
    lecture_module(name).main(list(args))
    return capsys.readouterr().out


# --- s06_compare_models: one row per stage, numbers in range, a paired difference -------------------------------------

NUMBER = r"([-+]?\d+\.\d+)"
STAGE_ROW = re.compile(rf"^(pipeline_\w+) +{NUMBER} +\[{NUMBER}, {NUMBER}\] +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$")
PAIRED_ROW = re.compile(rf"^(accuracy|ECE|entropy \(bits\)) +{NUMBER} +\[{NUMBER}, {NUMBER}\] +{NUMBER}% +(.+)$")
COMPARE_ARGS = ("--items", "20", "--questions", "4", "--answers", "6", "--resamples", "300")


def stage_rows(text: str) -> dict[str, dict[str, float]]:
    """The stage table of the comparison script: stage -> accuracy, low, high, confidence, ece, entropy, mode_share."""
    keys = ("accuracy", "low", "high", "confidence", "ece", "entropy", "mode_share")
    return {m[1]: dict(zip(keys, map(float, m.groups()[1:]))) for line in text.splitlines() if (m := STAGE_ROW.match(line))}


def paired_rows(text: str) -> dict[str, tuple[float, float, float, str]]:
    """The paired-bootstrap lines: measure -> (difference, low, high, verdict)."""
    return {m[1]: (float(m[2]), float(m[3]), float(m[4]), m[6]) for line in text.splitlines() if (m := PAIRED_ROW.match(line))}


@pytest.fixture(scope="module")
def comparison() -> str:
    """What the comparison script prints from the command line for all four stages on 20 items per task."""
    return run_script("code/lectures/s06_compare_models.py", *COMPARE_ARGS).stdout


def test_comparison_has_a_row_per_stage_with_numbers_in_range(comparison):
    rows = stage_rows(comparison)
    assert list(rows) == list(STAGES), comparison
    for stage, row in rows.items():
        assert 0 <= row["low"] <= row["accuracy"] <= row["high"] <= 1, (stage, row)
        assert 0.5 <= row["confidence"] <= 1 and 0 <= row["ece"] <= 1, (stage, row)  # two options per item: confidence >= 1/2
        assert 0 <= row["entropy"] <= math.log2(6) + 1e-9 and 1 / 6 - 1e-9 <= row["mode_share"] <= 1, (stage, row)
    assert "60 multiple-choice items (COPA 20, RTE 20, BoolQ 20)" in comparison
    by_task = comparison.split("accuracy by task")[1].splitlines()[2:6]
    assert [line.split()[0] for line in by_task] == list(STAGES)
    for line, row in zip(by_task, rows.values()):  # three tasks of 20 items each: the overall accuracy is their mean
        assert sum(map(float, line.split()[1:])) / 3 == pytest.approx(row["accuracy"], abs=2e-3)


def test_comparison_counts_the_answers_each_stage_shares_with_the_one_above(comparison):
    """Every stage samples with the same seed, so close stages draw the same answers: the line says how many."""
    line = re.search(r"^sampled answers \(first words\) equal to the stage above's: (.*)$", comparison, re.M)
    assert line, comparison
    shared = {stage: (int(same), int(total)) for stage, same, total in re.findall(r"(pipeline_\w+) (\d+) of (\d+)", line[1])}
    assert list(shared) == list(STAGES[1:]) and all(0 <= same <= total == 4 * 6 for same, total in shared.values()), line[1]
    rows = stage_rows(comparison)
    for above, stage in zip(STAGES, STAGES[1:]):
        if shared[stage][0] == shared[stage][1]:  # the same answers give the same entropy and mode share
            assert (rows[stage]["entropy"], rows[stage]["mode_share"]) == (rows[above]["entropy"], rows[above]["mode_share"])


def test_comparison_ends_with_the_paired_difference_of_the_last_stage_and_the_first(comparison):
    assert "pipeline_rl - pipeline_base, paired bootstrap" in comparison
    rows, paired = stage_rows(comparison), paired_rows(comparison)
    assert set(paired) == {"accuracy", "ECE", "entropy (bits)"}, comparison
    difference, low, high, verdict = paired["accuracy"]
    assert difference == pytest.approx(rows["pipeline_rl"]["accuracy"] - rows["pipeline_base"]["accuracy"], abs=2e-3)
    assert low <= difference <= high
    assert paired["ECE"][0] == pytest.approx(rows["pipeline_rl"]["ece"] - rows["pipeline_base"]["ece"], abs=2e-3)
    assert verdict in ("higher", "lower", "no clear difference")


def test_comparison_is_deterministic_with_its_seed(comparison, capsys):
    assert printed(capsys, "s06_compare_models.py", *COMPARE_ARGS) == comparison, "the same seed prints the same table"
    two = printed(capsys, "s06_compare_models.py", *COMPARE_ARGS, "--stages", "pipeline_rl", "pipeline_sft", "--seed", "1")
    rows = stage_rows(two)
    assert list(rows) == ["pipeline_rl", "pipeline_sft"] and "pipeline_sft - pipeline_rl, paired bootstrap" in two
    assert rows["pipeline_rl"]["accuracy"] == stage_rows(comparison)["pipeline_rl"]["accuracy"], "the items do not depend on the seed"
    assert (rows["pipeline_rl"]["low"], rows["pipeline_rl"]["high"]) != (stage_rows(comparison)["pipeline_rl"]["low"],
                                                                        stage_rows(comparison)["pipeline_rl"]["high"]), "other resamples"


COMPARISON_REFUSALS = {
    "one stage": (["--stages", "pipeline_rl"], "--stages names only pipeline_rl: give two or more stages"),
    "a stage twice": (["--stages", "pipeline_sft", "pipeline_rl", "pipeline_sft"], "--stages names pipeline_sft twice"),
    "unknown stage": (["--stages", "pipeline_base", "lm"], "argument --stages: invalid choice: 'lm'"),
    "no items": (["--items", "0"], "--items must be at least 1 item per task, not 0"),
    "more items than a task has": (["--items", "1000"], "--items 1000 is more than the 300 COPA items of the test split"),
    "one answer": (["--answers", "1"], "--answers must be at least 2 answers per question"),
    "no questions": (["--questions", "0"], "--questions must be at least 1, not 0"),
    "few resamples": (["--resamples", "10"], "--resamples must be between 100 and 100,000, not 10"),
    "a typo of resamples": (["--resamples", "100000000"], "--resamples must be between 100 and 100,000, not 100,000,000"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
}


@pytest.mark.parametrize("case", COMPARISON_REFUSALS, ids=str)
def test_comparison_refuses_a_bad_value_in_one_line(case):
    args, message = COMPARISON_REFUSALS[case]
    assert message in refused("s06_compare_models.py", *args)


# --- s07_cka: the grid, its diagonal, the stage against itself, the heatmap -------------------------------------------

def cka_grid(text: str) -> list[list[float]]:
    """The CKA matrix printed as text: one list per layer of A (rows of 'name value value ...' after the header)."""
    lines = text.split("columns: layers of")[1].splitlines()[2:]
    return [[float(v) for v in line.split()[1:]] for line in lines[:next(i for i, line in enumerate(lines) if not line.strip())]]


def diagonal(text: str) -> list[tuple[str, float, float, float]]:
    """The diagonal table: (layer, CKA, debiased CKA, shuffled-input baseline) per layer."""
    rows = re.findall(rf"^ +(emb|\d+) +{NUMBER} +{NUMBER} +{NUMBER}$", text.split("the diagonal:")[1], flags=re.M)
    return [(layer, float(cka), float(debiased), float(shuffled)) for layer, cka, debiased, shuffled in rows]


def test_cka_grid_and_diagonal_are_in_range_and_the_heatmap_is_a_png(tmp_path, capsys):
    png = tmp_path / "cka.png"
    text = run_script("code/lectures/s07_cka.py", "--texts", "40", "--png", str(png)).stdout
    grid, rows = cka_grid(text), diagonal(text)
    assert len(grid) == len(rows) == 3 and all(len(row) == 3 for row in grid), text  # the tiny LM: embeddings and 2 blocks
    assert [layer for layer, *_ in rows] == ["emb", "1", "2"]
    for i, (_, cka, _, shuffled) in enumerate(rows):
        assert 0 <= cka <= 1 and cka == pytest.approx(grid[i][i], abs=6e-3)  # printed to 3 and 2 decimals
        assert shuffled < cka, "texts paired with the wrong texts share less than the same texts"
    assert all(0 <= value <= 1 for row in grid for value in row)
    assert "rows: layers of pipeline_base (A), columns: layers of pipeline_rl (B)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"heatmap saved to {png}" in text
    assert printed(capsys, "s07_cka.py", "--texts", "40", "--png", str(png)) == text, "the same seed prints the same grid"
    assert cka_grid(printed(capsys, "s07_cka.py", "--texts", "40", "--seed", "1")) != grid, "another seed draws other texts"


def test_the_pooling_choices_are_the_package_s():
    from rl4lm.analysis.representations import POOLINGS

    assert lecture_module("s07_cka.py").POOLINGS == POOLINGS, "the script lists them without importing torch; keep them equal"


def test_a_stage_against_itself_has_one_on_the_diagonal(capsys):
    text = printed(capsys, "s07_cka.py", "--stages", "pipeline_sft", "pipeline_sft", "--texts", "12", "--pooling", "last")
    grid = cka_grid(text)
    assert [grid[i][i] for i in range(len(grid))] == [1.0] * len(grid), text
    assert all((cka, debiased) == (1.0, 1.0) for _, cka, debiased, _ in diagonal(text)), text


CKA_REFUSALS = {
    "too few texts": (["--texts", "2"], "--texts must be at least 4 (the debiased CKA needs four inputs), not 2"),
    "more texts than the split": (["--texts", "5000"], "--texts 5000 is more than the 1000 reviews of the test split"),
    "unknown stage": (["--stages", "pipeline_base", "random"], "argument --stages: invalid choice: 'random'"),
    "one stage": (["--stages", "pipeline_base"], "argument --stages: expected 2 arguments"),
    "png into a missing folder": (["--png", "no/such/folder/cka.png"], "the folder no/such/folder does not exist"),
    "png without .png": (["--png", "cka.jpg"], "--png cka.jpg does not end in .png"),
    "empty png": (["--png", ""], "--png is empty: name the heatmap's file"),
    "unknown pooling": (["--pooling", "max"], "argument --pooling: invalid choice: 'max'"),
    "short max length": (["--max-length", "1"], "--max-length must be at least 2 tokens, not 1"),
    "negative seed": (["--seed", "-3"], "--seed must be between 0 and"),
}


@pytest.mark.parametrize("case", CKA_REFUSALS, ids=str)
def test_cka_refuses_a_bad_value_in_one_line(case):
    args, message = CKA_REFUSALS[case]
    assert message in refused("s07_cka.py", *args)


def test_cka_refuses_a_png_that_is_a_folder(tmp_path):
    folder = tmp_path / "maps.png"
    folder.mkdir()
    assert f"--png {folder} is a folder: name a file inside it" in refused("s07_cka.py", "--png", str(folder))


def test_cka_says_in_one_line_when_the_heatmap_cannot_be_saved(tmp_path, capsys, monkeypatch):
    """A full disk (or a folder removed meanwhile) shows after minutes of states in full: one line, the grid kept."""
    script = lecture_module("s07_cka.py")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(script, "save_heatmap", no_space)
    with pytest.raises(SystemExit) as exit_status:
        script.main(["--stages", "pipeline_sft", "pipeline_sft", "--texts", "4", "--png", str(tmp_path / "cka.png")])
    captured = capsys.readouterr()
    assert exit_status.value.code == 2 and captured.err.count("\n") == 1, captured.err
    assert "the heatmap could not be saved (No space left on device); the grid above is complete" in captured.err
    assert len(cka_grid(captured.out)) == 3, "the grid is printed before the heatmap is saved"
