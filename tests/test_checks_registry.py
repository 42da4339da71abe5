"""The checker machinery: one registry of exercises, correct code accepted, the course's own code refused,
unfilled exercises reported, inputs copied, every bad output one sentence."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from helpers import rejects, student_copy
from rl4lm import checks
from rl4lm.checks import _core
from rl4lm.lm import attention
from rl4lm.rl import mdp

REFERENCES = {name: exercise.reference for name, exercise in checks.EXERCISES.items()}
STUDENT = {name: student_copy(reference) for name, reference in REFERENCES.items()}  # correct code a student wrote


def test_registry_lists_every_checker_once_with_its_reference():
    assert set(checks.__all__) >= set(checks.EXERCISES)
    for name, exercise in checks.EXERCISES.items():
        assert getattr(checks, name) is exercise.check
        assert exercise.reference.__name__ == name, f"{name}'s reference is {exercise.reference.__name__}"
        assert exercise.topic in {"lm", "rl", "pg", "rlhf", "analysis"}


def test_a_second_checker_with_the_same_name_is_refused():
    with pytest.raises(ValueError, match="two checkers are registered for the exercise 'causal_self_attention'"):
        @_core.exercise(reference=attention.causal_self_attention)
        def causal_self_attention(fn):
            return "ok"


def test_every_exercise_has_planted_bug_tests():
    import test_checks_analysis
    import test_checks_lm
    import test_checks_pg
    import test_checks_rl
    import test_checks_rlhf

    modules = (test_checks_lm, test_checks_pg, test_checks_rl, test_checks_rlhf, test_checks_analysis)
    tested = {name[len("test_"):-len("_bugs")] for module in modules for name in dir(module)
              if name.startswith("test_") and name.endswith("_bugs")}
    aliases = {"attention": "causal_self_attention", "sinusoidal": "sinusoidal_positions", "rope": "apply_rope",
               "temperature": "temperature_softmax", "top_k": "top_k_filter", "top_p": "top_p_filter",
               "greedy": "greedy_decode", "epsilon_greedy": "epsilon_greedy_action"}
    assert {aliases.get(name, name) for name in tested} == set(checks.EXERCISES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_accepts_correct_code(name, capsys):
    assert getattr(checks, name)(STUDENT[name]) is True
    assert f"{name}: all checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_refuses_the_course_reference_and_wrappers_around_it(name):
    reference = REFERENCES[name]
    qualified = f"{reference.__module__}.{reference.__qualname__}"
    message = rejects(getattr(checks, name), reference, f"this is the course's own {qualified}", "write the function yourself")
    assert message.startswith(f"{name}: ")

    def wrapper(*args):
        return reference(*args)

    rejects(getattr(checks, name), wrapper, f"your function calls the course's own {qualified}")
    rejects(getattr(checks, name), functools.partial(reference), f"your function calls the course's own {qualified}")


def _reverse_in_place(value):
    """Change a tensor, array or list input in place, keeping it valid (reversed along its last axis)."""
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            value.copy_(value.flip(-1))
    elif isinstance(value, np.ndarray):
        value[...] = value[..., ::-1].copy()
    elif isinstance(value, list):
        value.reverse()
    elif isinstance(value, dict):
        for item in value.values():
            _reverse_in_place(item)


@pytest.mark.parametrize("name", sorted(set(REFERENCES) - {"sinusoidal_positions"}))  # (it takes two ints: nothing to change)
def test_a_function_that_changes_its_inputs_before_computing_cannot_fool_the_checker(name):
    """Expected values are computed from the checker's own inputs, before the call, and the student gets copies."""
    correct = STUDENT[name]

    def changes_inputs_first(*args):
        for value in args:
            _reverse_in_place(value)
        return correct(*args)

    rejects(getattr(checks, name), changes_inputs_first)


@pytest.mark.parametrize("name", ["sft_step", "epsilon_greedy_action", "update_estimate", "discounted_return"])
def test_a_function_that_changes_its_inputs_after_computing_is_judged_on_its_result(name, capsys):
    """Where the exercise does not ask for unchanged inputs, changing them afterwards does not matter."""
    correct = STUDENT[name]

    def changes_inputs_afterwards(*args):
        out = correct(*args)
        for value in args:
            _reverse_in_place(value)
        return out

    assert getattr(checks, name)(changes_inputs_afterwards) is True


def _float64(out):
    return tuple(t.double() for t in out) if isinstance(out, tuple) else out.double()


def _nan(out):
    first = out[0] if isinstance(out, tuple) else out
    nan_at_the_end = torch.zeros_like(first)
    nan_at_the_end.view(-1)[-1] = float("nan")
    first = first + nan_at_the_end  # (keeps the gradient)
    return (first, *out[1:]) if isinstance(out, tuple) else first


BAD_OUTPUTS = [  # (exercise, how the output is spoiled, what the one sentence says)
    *[(name, _float64, "has dtype torch.float64; return torch.float32") for name in
      ("causal_self_attention", "sinusoidal_positions", "apply_rope", "sequence_nll", "temperature_softmax", "top_k_filter",
       "top_p_filter")],
    *[(name, _nan, "contains NaN at index") for name in
      ("causal_self_attention", "sinusoidal_positions", "apply_rope", "sequence_nll", "top_k_filter", "top_p_filter")],
    ("temperature_softmax", _nan, "NaN"),
    ("sinusoidal_positions", lambda out: out.long(), "integer dtype torch.int64"),
    ("sinusoidal_positions", lambda out: out.half(), "has dtype torch.float16; return torch.float32"),
    ("top_k_filter", lambda out: torch.isfinite(out), "boolean tensor"),
    ("sinusoidal_positions", lambda out: out.numpy(), "numpy array; return a torch.Tensor"),
    ("greedy_decode", lambda out: out.float(), "token ids are integers"),
    ("beam_search", lambda out: out.int(), "token ids are integers"),
    ("sft_step", lambda out: torch.tensor(out), "torch.Tensor; return loss.item()"),
    ("sft_step", lambda out: float("nan"), "your loss is nan"),
    ("discounted_return", lambda out: torch.tensor(out), "a Python float"),
    ("discounted_return", lambda out: np.array(out), "a Python float"),
    *[(name, lambda out: float("nan"), "is nan") for name in ("linear_cka", "expected_calibration_error")],
    *[(name, lambda out: np.array([out, out]), "numpy array of shape (2); return one number") for name in
      ("linear_cka", "expected_calibration_error")],
    ("linear_cka", lambda out: torch.tensor([out]), "torch.Tensor of shape (1); return one number"),
    ("expected_calibration_error", lambda out: f"{out:.3f}", "should be one number (a Python float), but it is a str"),
]


@pytest.mark.parametrize("name, spoil, sentence", BAD_OUTPUTS, ids=lambda x: getattr(x, "__name__", str(x))[:24])
def test_every_bad_output_is_one_sentence(name, spoil, sentence):
    correct = STUDENT[name]

    def spoiled(*args):
        return spoil(correct(*args))

    rejects(getattr(checks, name), spoiled, sentence)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_implemented_is_reported_not_raised(name, capsys):
    namespace = {}
    exec(f"def {name}(*args):\n    raise NotImplementedError('{name}: not implemented yet - replace this line')", namespace)
    stub = namespace[name]
    assert getattr(checks, name)(stub) is False
    assert f"{name}: not implemented yet" in capsys.readouterr().out
    assert checks.implemented(stub) is False
    assert f"implement {name} first" in capsys.readouterr().out


def test_implemented_guard():
    assert checks.implemented(attention.causal_self_attention, mdp.discounted_return)


def test_implemented_is_decided_by_calling_the_function_not_by_reading_it(capsys):
    namespace = {}
    exec("def discounted_return(rewards, gamma):\n"
         "    # raise NotImplementedError('discounted_return: not implemented yet - replace this line with your code')\n"
         "    return sum(gamma ** k * r for k, r in enumerate(rewards))\n", namespace)
    assert checks.implemented(namespace["discounted_return"])  # never checked, and its raise is commented out

    def sequence_nll(logits, labels, mask):
        raise NotImplementedError("sequence_nll: not implemented yet - replace this line with your code")

    def sft_step(model, optimizer, batch):  # implemented, but calls a function that is not
        return sequence_nll(None, None, None)

    assert not checks.implemented(sequence_nll)
    assert not checks.implemented(sft_step)
    assert "implement sft_step first" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_probe_runs_the_correct_code(name):
    assert checks.EXERCISES[name].probe is not None
    STUDENT[name](*checks.EXERCISES[name].probe())


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(0)
    np.random.seed(0)
    _core._random_lm.cache_clear()  # building a model draws from the generator
    for name in ("beam_search", "epsilon_greedy_action"):
        getattr(checks, name)(STUDENT[name])
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def test_error_inside_student_code_is_one_sentence():
    def crashes(q, k, v):
        return q @ k  # wrong matmul shapes
    message = rejects(checks.causal_self_attention, crashes, "raised RuntimeError")
    assert message.startswith("crashes:")


def test_not_implemented_in_a_called_function_names_that_function(capsys):
    def sequence_nll(logits, labels, mask):
        raise NotImplementedError("sequence_nll: not implemented yet - replace this line with your code")

    def sft_step(model, optimizer, batch):
        return sequence_nll(None, None, None)
    assert checks.sft_step(sft_step) is False
    assert "sequence_nll: not implemented yet" in capsys.readouterr().out
