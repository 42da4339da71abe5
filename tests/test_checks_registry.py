"""The checker machinery: one registry of exercises, the reference accepted, unfilled exercises reported, one sentence."""
from __future__ import annotations

import pytest

from helpers import rejects
from rl4lm import checks
from rl4lm.checks import _core
from rl4lm.lm import attention
from rl4lm.rl import mdp

REFERENCES = {name: exercise.reference for name, exercise in checks.EXERCISES.items()}


def test_registry_lists_every_checker_once_with_its_reference():
    assert set(checks.__all__) >= set(checks.EXERCISES)
    for name, exercise in checks.EXERCISES.items():
        assert getattr(checks, name) is exercise.check
        assert exercise.reference.__name__ == name, f"{name}'s reference is {exercise.reference.__name__}"
        assert exercise.topic in {"lm", "rl"}


def test_a_second_checker_with_the_same_name_is_refused():
    with pytest.raises(ValueError, match="two checkers are registered for the exercise 'causal_self_attention'"):
        @_core.exercise(reference=attention.causal_self_attention)
        def causal_self_attention(fn):
            return "ok"


def test_every_exercise_has_planted_bug_tests():
    import test_checks_lm
    import test_checks_rl

    tested = {name[len("test_"):-len("_bugs")] for module in (test_checks_lm, test_checks_rl)
              for name in dir(module) if name.startswith("test_") and name.endswith("_bugs")}
    aliases = {"attention": "causal_self_attention", "sinusoidal": "sinusoidal_positions", "rope": "apply_rope",
               "temperature": "temperature_softmax", "top_k": "top_k_filter", "top_p": "top_p_filter",
               "greedy": "greedy_decode", "epsilon_greedy": "epsilon_greedy_action"}
    assert {aliases.get(name, name) for name in tested} == set(checks.EXERCISES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_accepts_reference(name, capsys):
    assert getattr(checks, name)(REFERENCES[name]) is True
    assert f"{name}: all checks passed" in capsys.readouterr().out


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
