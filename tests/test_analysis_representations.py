"""rl4lm.analysis.representations: hidden states, CKA matrices, probes and the logit lens (session 7), on tiny random models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import one_sentence
from rl4lm.analysis import representations as rep
from rl4lm.analysis.cka import linear_cka

WORDS = ["<pad>", "<unk>", "this", "film", "was", "good", "bad", "great", "awful", "the", "plot", "cast", "."]
TEXTS = ["this film was good .", "the plot was awful", "great cast", "bad .", "this film was great . the cast was good ."]


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer built in memory (no download): one token per word of WORDS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>")


def gpt2(seed: int = 0):
    """A 2-layer random GPT-2 (final norm transformer.ln_f, learned positions), built in memory."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def olmo2(seed: int = 0):
    """A 2-layer random OLMo 2 (final norm model.norm, rotary positions, untied unembedding), built in memory."""
    from transformers import Olmo2Config, Olmo2ForCausalLM

    torch.manual_seed(seed)
    config = Olmo2Config(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0, tie_word_embeddings=False)
    return Olmo2ForCausalLM(config).eval()


MODELS = {"gpt2": gpt2, "olmo2": olmo2}


def unpadded_states(model, tokenizer, text: str) -> tuple[torch.Tensor, ...]:
    """output_hidden_states of transformers for one text alone (no padding): L + 1 tensors (seq, d)."""
    ids = torch.tensor([tokenizer(text).input_ids])
    with torch.no_grad():
        return tuple(h[0] for h in model(ids, output_hidden_states=True).hidden_states)


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_layer_states_pool_transformers_hidden_states_for_either_padding_side(tokenizer, arch, side):
    model = MODELS[arch]()
    tokenizer.padding_side = side
    states = rep.layer_states_by_pooling(model, tokenizer, TEXTS, batch_size=3)
    skipped = rep.layer_states(model, tokenizer, TEXTS, batch_size=2, skip_first_token=True)
    tokenizer.padding_side = "right"
    alone = [unpadded_states(model, tokenizer, t) for t in TEXTS]
    assert len(states["mean"]) == len(states["last"]) == model.config.num_hidden_layers + 1
    for layer in range(model.config.num_hidden_layers + 1):
        expected_mean = torch.stack([a[layer].mean(dim=0) for a in alone])  # (n, d)
        expected_last = torch.stack([a[layer][-1] for a in alone])
        expected_skip = torch.stack([a[layer][1:].mean(dim=0) if len(a[layer]) > 1 else a[layer][0] for a in alone])
        assert states["mean"][layer].dtype == torch.float32 and states["mean"][layer].shape == (len(TEXTS), 16)
        torch.testing.assert_close(states["mean"][layer], expected_mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(states["last"][layer], expected_last, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(skipped[layer], expected_skip, atol=1e-5, rtol=1e-4)


def test_pool_tokens_ignores_nan_padding_on_either_side():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)  # (batch, seq, d)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])
    hidden[0, 3] = float("nan")
    hidden[1, :2] = float("nan")
    mean = rep.pool_tokens(hidden, mask)
    torch.testing.assert_close(mean, torch.stack([hidden[0, :3].mean(0), hidden[1, 2:].mean(0)]))
    torch.testing.assert_close(rep.pool_tokens(hidden, mask, "last"), torch.stack([hidden[0, 2], hidden[1, 3]]))
    torch.testing.assert_close(rep.pool_tokens(hidden, mask, skip_first_token=True), torch.stack([hidden[0, 1:3].mean(0), hidden[1, 3]]))
    one = rep.pool_tokens(hidden[:1, :1], mask[:1, :1], skip_first_token=True)  # a single token is kept
    torch.testing.assert_close(one, hidden[:1, 0])


def test_cka_matrix_of_a_model_with_itself_has_a_unit_diagonal_and_matches_linear_cka(tokenizer):
    states = rep.layer_states(gpt2(), tokenizer, TEXTS * 3)
    other = rep.layer_states(gpt2(seed=1), tokenizer, TEXTS * 3)
    same = rep.cka_matrix(states, states)
    np.testing.assert_allclose(np.diag(same), 1.0, atol=1e-9)
    np.testing.assert_allclose(same, same.T, atol=1e-12)
    cross = rep.cka_matrix(states, other)
    assert cross.shape == (3, 3) and ((cross >= 0) & (cross <= 1)).all()
    for i in range(3):
        for j in range(3):
            assert cross[i, j] == pytest.approx(linear_cka(states[i], other[j]), abs=1e-9)


def test_debiased_cka_is_the_unbiased_hsic_ratio_and_removes_the_small_n_bias():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    y = x @ rng.normal(size=(5, 7)) + rng.normal(size=(30, 7))

    def hsic_u(k, m):  # Song et al. (2012), eq. 5: the U-statistic on Gram matrices with zero diagonals
        n = len(k)
        k, m, one = k - np.diag(np.diag(k)), m - np.diag(np.diag(m)), np.ones(n)
        return (np.trace(k @ m) + one @ k @ one * (one @ m @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ m @ one) / (n * (n - 3))

    kx, ky = x @ x.T, y @ y.T
    assert rep.debiased_linear_cka(x, y) == pytest.approx(hsic_u(kx, ky) / np.sqrt(hsic_u(kx, kx) * hsic_u(ky, ky)))
    a, b = rng.normal(size=(200, 50)), rng.normal(size=(200, 50))
    biased = rep.cka_by_sample_size(a, b, [20, 200], repeats=4, seed=0)  # (2, 4)
    assert biased.shape == (2, 4)
    assert biased[0].mean() == pytest.approx(np.sqrt(50 * 50 / (70 * 70)), abs=0.05)  # sqrt(p1 p2 / ((n + p1)(n + p2)))
    assert biased[0].mean() > biased[1].mean() > 0.1
    assert abs(rep.cka_by_sample_size(a, b, [20, 200], repeats=4, seed=0, debiased=True).mean()) < 0.05


@pytest.mark.parametrize("arch", MODELS)
def test_logit_lens_reads_each_layer_through_the_final_norm_and_gives_the_models_logits_at_the_last(tokenizer, arch):
    model = MODELS[arch]()
    ids = torch.tensor([tokenizer("this film was").input_ids])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    lens = rep.logit_lens(model, out.hidden_states)
    assert len(lens) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(lens[-1], out.logits, atol=1e-5, rtol=1e-4)
    norm = model.transformer.ln_f if arch == "gpt2" else model.model.norm
    assert rep.final_norm(model) is norm
    with torch.no_grad():
        torch.testing.assert_close(lens[1], model.get_output_embeddings()(norm(out.hidden_states[1])))
    last = rep.layer_states(model, tokenizer, ["this film was", "good"], pooling="last")  # (2, d) per layer
    torch.testing.assert_close(rep.logit_lens(model, last)[-1][0], out.logits[0, -1], atol=1e-5, rtol=1e-4)


def test_final_norm_of_a_model_without_one_is_a_one_sentence_error():
    with pytest.raises(ValueError) as error:
        rep.final_norm(torch.nn.Linear(2, 2))
    assert "final norm" in one_sentence(error.value)


def test_ridge_probe_separates_a_linear_signal_and_stays_at_chance_on_random_labels():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 8))
    labels = (features[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    assert rep.probe_accuracy(features, labels) >= 0.95
    assert 0.3 < rep.probe_accuracy(features, rng.integers(0, 2, size=200)) < 0.7
    train, test = rep.held_out_split(200, 0.5, seed=0)
    assert len(train) == len(test) == 100 and not set(train) & set(test)


def test_ridge_probe_dual_form_agrees_with_the_primal_when_features_outnumber_texts():
    rng = np.random.default_rng(1)
    x_train, x_test = rng.normal(size=(20, 50)), rng.normal(size=(30, 50))
    y_train, y_test = rng.integers(0, 2, size=20), rng.integers(0, 2, size=30)
    mean, std = x_train.mean(0), x_train.std(0)
    a, b = (x_train - mean) / std, (x_test - mean) / std
    t = 2.0 * y_train - 1
    w = np.linalg.solve(a.T @ a + 3.0 * np.eye(50), a.T @ (t - t.mean()))  # primal form, (50,)
    expected = float(((b @ w + t.mean() > 0) == y_test).mean())
    assert rep.ridge_probe_accuracy(x_train, y_train, x_test, y_test, alpha=3.0) == expected


def test_randomly_initialised_copies_the_config_not_the_weights_and_leaves_the_random_state_alone():
    model = gpt2()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    fresh, again = rep.randomly_initialised(model, seed=5), rep.randomly_initialised(model, seed=5)
    assert torch.rand(1) == before
    assert fresh.config.to_dict() == model.config.to_dict() and not fresh.training
    assert not torch.equal(fresh.transformer.h[0].mlp.c_fc.weight, model.transformer.h[0].mlp.c_fc.weight)
    assert torch.equal(fresh.transformer.h[0].mlp.c_fc.weight, again.transformer.h[0].mlp.c_fc.weight)


def test_single_token_ids_keep_the_words_that_are_one_token(tokenizer):
    assert rep.single_token_ids(tokenizer, ["good", "great", "tremendous"]) == [WORDS.index("good"), WORDS.index("great")]


@pytest.mark.parametrize("call, fragment", [
    (lambda tok: rep.layer_states(gpt2(), tok, TEXTS, pooling="max"), "pooling"),
    (lambda tok: rep.layer_states(gpt2(), tok, []), "texts"),
    (lambda tok: rep.layer_states(gpt2(), tok, TEXTS, batch_size=0), "batch_size"),
    (lambda tok: rep.cka_matrix([np.ones((4, 2)) * np.arange(4)[:, None]], [np.zeros((3, 2))]), "same inputs"),
    (lambda tok: rep.cka_matrix([np.ones((4, 2))], [np.arange(8.0).reshape(4, 2)]), "same for every input"),
    (lambda tok: rep.cka_matrix([], [np.zeros((3, 2))]), "at least one layer"),
    (lambda tok: rep.debiased_linear_cka(np.zeros((3, 2)), np.zeros((3, 2))), "at least 4"),
    (lambda tok: rep.cka_by_sample_size(np.zeros((5, 2)), np.zeros((5, 2)), [10]), "sizes"),
    (lambda tok: rep.probe_accuracy(np.zeros((4, 2)), [0, 1, 2, 1]), "0 or 1"),
    (lambda tok: rep.probe_accuracy(np.zeros((4, 2)), [0, 1, 1]), "one label per text"),
    (lambda tok: rep.ridge_probe_accuracy(np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1], alpha=0), "alpha"),
    (lambda tok: rep.held_out_split(10, 1.0), "train_fraction"),
    (lambda tok: rep.logit_lens(gpt2(), [torch.zeros(1, 16)]), "at least one layer"),
    (lambda tok: rep.single_token_ids(tok, ["tremendous"]), "single token"),
])
def test_bad_input_is_one_sentence_naming_the_problem(tokenizer, call, fragment):
    with pytest.raises(ValueError) as error:
        call(tokenizer)
    assert fragment in one_sentence(error.value)
