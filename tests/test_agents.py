"""Session 12's package code (rl4lm.agents): the safe calculator, the ReAct loop, zero-shot label scores, order effects."""
from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import fullhub
from rl4lm import agents, profiles
from rl4lm.lm.scoring import score_options


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny profile's byte-level BPE tokenizer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RL4LM_PROFILE", "tiny")
        return profiles.load_tokenizer("lm")


@pytest.fixture(scope="module")
def chat_tokenizer(tokenizer):
    """The tiny tokenizer with ChatML's special tokens and Qwen2.5's chat template, as the full profile's stand-in has them."""
    chat = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    chat.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    chat.eos_token, chat.chat_template = "<|im_end|>", fullhub.CHAT_TEMPLATE
    return chat


@pytest.fixture(scope="module")
def random_lm(tokenizer):
    """A random 1-layer GPT-2 with only 128 positions, so that the agent's long prompt must be truncated."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config).eval()


class ScriptedLM(torch.nn.Module):
    """A stand-in causal LM that writes scripted replies, one per generation call, token by token, then end-of-text.

    A call with more than one new token starts a generation (the prompt); each one-token call continues it. Used only
    here, to check that the loop runs the tool call that a model writes.
    """

    def __init__(self, tokenizer, replies: list[str]):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = GPT2Config(vocab_size=len(tokenizer), n_positions=4096)
        self.vocab, self.eos = len(tokenizer), tokenizer.eos_token_id
        self.replies = [tokenizer(reply, add_special_tokens=False)["input_ids"] + [self.eos] for reply in replies]
        self.call, self.position, self.prompts = -1, 0, []

    def forward(self, input_ids, **kwargs):
        if input_ids.shape[1] > 1:  # a new prompt: start the next scripted reply
            self.call, self.position = self.call + 1, 0
            self.prompts.append(input_ids[0].tolist())
        else:
            self.position += 1
        reply = self.replies[min(self.call, len(self.replies) - 1)]
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -30.0)
        logits[:, -1, reply[min(self.position, len(reply) - 1)]] = 30.0
        return type("Output", (), {"logits": logits, "cache": None})()


@pytest.mark.parametrize("expression, value", [
    ("2 + 3 * 4", 14), ("(7 + 9) / 2", 8.0), ("2 ** 10", 1024), ("-3 + 1", -2), ("7 // 2", 3), ("7 % 3", 1),
    (" 23 * 7 ", 161), ("((((1))))", 1), ("1.5 * 4", 6.0), ("10 ** -2", 0.01),
])
def test_calculator_computes_arithmetic(expression, value):
    assert agents.calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize("expression, says", [
    ("x + 1", "a name"), ("__import__('os').system('ls')", "a function call"), ("(1).real", "an attribute"),
    ("abs(-3)", "a function call"), ("[1, 2][0]", "an index"), ("2 ^ 3", "write ** for a power"),
    ("1,000 + 1", "thousands separators"), ("'a' * 3", "the literal 'a'"), ("True + 1", "the literal True"),
    ("lambda: 1", "a lambda"), ("1 < 2", "a comparison"),
    ("9 ** 999999", "exponents are limited"), ("10 ** 20", "a power beyond"), ("9 ** 9 ** 9", "exponents are limited"),
    ("99999999 * 99999999", "beyond"), ("1e400", "beyond"), ("1 / 0", "divides by zero"), ("5 % 0", "divides by zero"),
    ("(-8) ** 0.5", "fractional power"), ("1 +", "not arithmetic"), ("", "empty"), ("1 + " * 60 + "1", "characters"),
    ("0 ** -1", "divides by zero"), ("0.001 ** -6", "a power beyond"), ("(1e-15) ** -100", "a power beyond"),
    ("1e308 * 10", "beyond"), ("-" * 150 + "1", "nests more than"), ("(" * 100 + "1" + ")" * 100, "characters"),
    ("~1", "uses ~"), ("1 if 1 else 2", "if/else"), ("[" * 150, "not arithmetic"),
])
def test_calculator_refuses_everything_but_bounded_arithmetic(expression, says):
    with pytest.raises(ValueError, match="expression") as error:
        agents.calculate(expression)
    assert says in str(error.value) and str(error.value).count(". ") == 0  # one sentence


def test_calculator_allows_what_its_limits_allow():
    assert agents.calculate("+".join(["1"] * 100)) == 100  # 99 operators deep, within the length limit
    assert agents.calculate("-" * 100 + "7") == 7 and agents.calculate("(" * 99 + "1" + ")" * 99) == 1
    assert agents.calculate("0.5 ** -49") == 2 ** 49 and agents.calculate("(-10) ** 15") == -10 ** 15


def test_calculator_refuses_a_non_string_and_formats_results():
    with pytest.raises(ValueError, match="expression should be a string"):
        agents.calculate(3)
    assert agents.calculator_tool("161 / 7") == "23" and agents.calculator_tool("7 / 3") == "2.333333333"


def test_parse_action_reads_tool_and_argument_and_names_the_format():
    assert agents.parse_action("calculate[23 * 7]") == ("calculate", "23 * 7")
    assert agents.parse_action(" Finish[ 161 ] ") == ("finish", "161")
    for bad in ("calculate 23 * 7", "calculate[23 * 7", "[161]", ""):
        with pytest.raises(ValueError, match="tool\\[argument\\]"):
            agents.parse_action(bad)
    assert agents.parse_step(" I multiply.\nAction: calculate[2 * 3]\nObservation: 7") == ("I multiply.", "calculate[2 * 3]")
    assert agents.parse_step(" no action here") == ("no action here", None)


def test_take_action_turns_every_failure_into_an_observation():
    tools = {"calculate": agents.CALCULATOR}
    assert agents.take_action("calculate[2 + 2]", tools).observation == "4"
    assert agents.take_action("finish[4]", tools).tool == "finish"
    for action, says in [(None, "no action"), ("calc 2", "not of the form"), ("search[films]", "no tool 'search'"),
                         ("calculate[x]", "a name")]:
        step = agents.take_action(action, tools)
        assert step.malformed or step.tool == "calculate"
        assert step.observation.startswith("Error:") and says in step.observation


def test_arithmetic_actions_enumerate_calls_and_answers_on_the_numbers_at_hand():
    actions = agents.arithmetic_actions("23 tickets at 7 euros", [])
    assert actions == ["calculate[23 + 7]", "calculate[23 - 7]", "calculate[7 - 23]", "calculate[23 * 7]",
                       "calculate[23 / 7]", "calculate[7 / 23]", "finish[23]", "finish[7]"]
    step = agents.take_action("calculate[23 * 7]", {"calculate": agents.CALCULATOR})
    assert "finish[161]" in agents.arithmetic_actions("23 tickets at 7 euros", [step])
    with pytest.raises(ValueError, match="operators"):
        agents.arithmetic_actions("1 and 2", [], operators="^")


def test_loop_runs_the_tool_call_that_the_model_writes_and_stops_at_finish(tokenizer):
    model = ScriptedLM(tokenizer, [" I multiply.\nAction: calculate[23 * 7]\nObservation: 999",  # a made-up observation is cut
                                   " It took 161 euros.\nAction: finish[161]"])
    transcript = agents.react_loop(model, tokenizer, "A cinema sold 23 tickets at 7 euros each?", max_steps=5)
    assert transcript.stopped == "finish" and transcript.answer == "161" and len(transcript.steps) == 2
    first = transcript.steps[0]
    assert (first.tool, first.argument, first.observation, first.thought) == ("calculate", "23 * 7", "161", "I multiply.")
    assert tokenizer.decode(model.prompts[1]).endswith("Action: calculate[23 * 7]\nObservation: 161\nThought:")
    assert "Observation: 161" in transcript.text() and "999" not in transcript.text()
    assert agents.answer_matches(transcript.answer, 161) and not agents.answer_matches("160 euros", 161)


def test_loop_uses_the_chat_template_and_stops_at_its_end_of_turn_token(chat_tokenizer):
    model = ScriptedLM(chat_tokenizer, [" I multiply.\nAction: calculate[23 * 7]", " Done.\nAction: finish[161]"])
    transcript = agents.react_loop(model, chat_tokenizer, "A cinema sold 23 tickets at 7 euros each?", max_steps=5)
    assert (transcript.stopped, transcript.answer, len(transcript.steps)) == ("finish", "161", 2)
    first, second = (chat_tokenizer.decode(ids) for ids in model.prompts)
    assert first.startswith("<|im_start|>system\nAnswer the question step by step.")
    assert first.endswith("<|im_start|>user\nQuestion: A cinema sold 23 tickets at 7 euros each?<|im_end|>\n"
                          "<|im_start|>assistant\nThought:")
    assert second.endswith("<|im_start|>assistant\nThought: I multiply.\nAction: calculate[23 * 7]\nObservation: 161\nThought:")
    start = chat_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert model.prompts[0].count(start) == 3  # the markers are single special tokens, not spelled out in bytes


def test_loop_reports_malformed_actions_and_stops_at_max_steps(tokenizer, random_lm):
    model = ScriptedLM(tokenizer, [" I do not know."])
    transcript = agents.react_loop(model, tokenizer, "How many?", max_steps=3)
    assert transcript.stopped == "max_steps" and transcript.answer is None
    assert len(transcript.steps) == 3 and transcript.malformed_actions == 3
    transcript = agents.react_loop(random_lm, tokenizer, "A cinema sold 23 tickets at 7 euros each?", max_steps=2,
                                   max_new_tokens=8)  # the prompt is longer than the 128 positions: left-truncated
    assert len(transcript.steps) <= 2 and transcript.stopped in ("finish", "max_steps")


def test_constrained_loop_chooses_among_well_formed_actions(tokenizer, random_lm):
    transcript = agents.react_loop(random_lm, tokenizer, "A cinema sold 23 tickets at 7 euros each?", max_steps=2,
                                   actions=agents.arithmetic_actions, thought_tokens=4)
    for step in transcript.steps:
        assert step.action in step.candidates and not step.malformed
        assert sum(step.probabilities) == pytest.approx(1.0, abs=1e-5)
        assert step.probabilities[step.candidates.index(step.action)] == max(step.probabilities)


@pytest.mark.parametrize("kwargs, says", [
    ({"question": ""}, "question"), ({"max_steps": 0}, "max_steps"), ({"tools": agents.CALCULATOR}, "tools"),
    ({"tools": [agents.Tool("finish", "", str)]}, "finish"), ({"normalize": "mean"}, "normalize"),
])
def test_loop_names_a_bad_argument(tokenizer, random_lm, kwargs, says):
    arguments = {"question": "How many?", **kwargs}
    with pytest.raises(ValueError, match=says):
        agents.react_loop(random_lm, tokenizer, **arguments)


@pytest.mark.parametrize("batch_size", [1, 2])  # 2: texts of different lengths share a padded batch
@pytest.mark.parametrize("verbalizers", [["negative", "positive"], ["awful film", "wonderful film"]])
def test_zero_shot_label_scores_equal_score_options(tokenizer, random_lm, verbalizers, batch_size):
    texts = ["this comedy was wonderful .", "this thriller was dull and flat . skip this one ."]
    template = "review : {text} sentiment :"
    scores = agents.zero_shot_label_scores(random_lm, tokenizer, texts, template, verbalizers, batch_size=batch_size)
    assert scores.shape == (2, 2)
    for row, text in zip(scores, texts):
        expected = score_options(random_lm, tokenizer, template.format(text=text), verbalizers)
        torch.testing.assert_close(row, expected, atol=1e-4, rtol=1e-4)


def test_zero_shot_label_scores_name_bad_arguments(tokenizer, random_lm):
    for template, says in [("no slot", "{text} slot"), ("{text} sentiment : ", "ends with a space")]:
        with pytest.raises(ValueError, match=says):
            agents.zero_shot_label_scores(random_lm, tokenizer, ["a"], template, ["no", "yes"])
    with pytest.raises(ValueError, match="verbalizers"):
        agents.zero_shot_label_scores(random_lm, tokenizer, ["a"], "{text} :", ["yes"])
    with pytest.raises(ValueError, match="texts"):
        agents.zero_shot_label_scores(random_lm, tokenizer, "a", "{text} :", ["no", "yes"])


def test_contextual_calibration_divides_by_the_content_free_distribution():
    scores = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4]]))
    calibrated = agents.contextual_calibration(scores, torch.log(torch.tensor([[0.8, 0.2]])))
    assert calibrated.argmax(-1).tolist() == [0, 1]  # 0.6 / 0.8 < 0.4 / 0.2
    # p(c | x) / p_cf(c), renormalised: (0.75, 2) / 2.75 for the second row
    torch.testing.assert_close(calibrated.exp()[1], torch.tensor([0.75, 2.0]) / 2.75)
    torch.testing.assert_close(calibrated.exp().sum(-1), torch.ones(2))
    torch.testing.assert_close(agents.contextual_calibration(scores, scores[:1]).exp()[0], torch.full((2,), 0.5))
    several = torch.log(torch.tensor([[0.7, 0.3], [0.9, 0.1]]))  # p_cf is the mean of the normalised distributions
    torch.testing.assert_close(agents.contextual_calibration(scores, several), calibrated)  # mean (0.8, 0.2), as above
    with pytest.raises(ValueError, match="same number of labels"):
        agents.contextual_calibration(scores, torch.zeros(1, 3))


def test_answer_order_effect_returns_distributions_indexed_by_option(tokenizer, random_lm):
    forward, backward = agents.answer_order_effect(random_lm, tokenizer, "Which film?", ["comedy", "thriller", "drama"])
    assert forward.shape == backward.shape == (3,)
    assert forward.sum().item() == pytest.approx(1.0) and backward.sum().item() == pytest.approx(1.0)
    expected = agents.letter_probabilities(random_lm, tokenizer, "Which film?", ["drama", "thriller", "comedy"]).flip(0)
    torch.testing.assert_close(backward, expected)
    with pytest.raises(ValueError, match="options"):
        agents.lettered_question("Which film?", ["only one"])


def test_assistant_prompt_uses_a_chat_template_when_there_is_one(tokenizer):
    assert agents.assistant_prompt(tokenizer, "Hi?", system="Be brief.", prefill="Answer:") == "Be brief.\n\nHi?\nAnswer:"
    chat = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    chat.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert agents.assistant_prompt(chat, "Hi?", system="Be brief.", prefill="Answer:") == \
        "<|system|>Be brief.\n<|user|>Hi?\n<|assistant|>Answer:"
    with pytest.raises(ValueError, match="user"):
        agents.assistant_prompt(tokenizer, " ")


@pytest.mark.parametrize("normalize", ["none", "per_token", "per_char"])
def test_shared_context_scores_equal_score_options(tokenizer, random_lm, normalize):
    context = agents.react_prompt(tokenizer, "A cinema sold 23 tickets at 7 euros each?") + "Thought: .\nAction:"  # truncated
    options = agents.arithmetic_actions("23 tickets at 7 euros", []) + ["finish[1]", "x"]
    expected = score_options(random_lm, tokenizer, context, options, normalize)
    torch.testing.assert_close(agents.shared_context_scores(random_lm, tokenizer, context, options, normalize), expected,
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="options"):
        agents.shared_context_scores(random_lm, tokenizer, context, [])
