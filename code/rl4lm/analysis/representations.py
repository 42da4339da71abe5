"""Hidden states of a causal LM, layer by layer, and three views of them (session 7): CKA, linear probes, the logit lens.

``layer_states`` runs a model over texts and pools each layer's hidden states into one row per text: a list of
``L + 1`` float32 matrices (n, d), the embeddings first and the last block's output (after the final norm, as
transformers returns it) last. ``cka_matrix`` compares every layer of one model with every layer of another by linear
CKA (Kornblith et al., 2019); ``debiased_linear_cka`` is its estimator without the small-n bias (Song et al., 2012).
``probe_accuracy`` fits a linear ridge probe on one layer and scores it on held-out texts (Alain & Bengio, 2016).
``logit_lens`` reads any layer's state through the final norm and the unembedding (nostalgebraist, 2020).

The final norm is found by :func:`final_norm` for any architecture that names it ``ln_f`` (GPT-2), ``norm`` (OLMo 2,
Llama, Qwen 2) or ``final_layer_norm``/``final_layernorm``, and the unembedding by ``model.get_output_embeddings()``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..lm.logprobs import positions_from_mask
from ..rlhf.ppo_lm import last_token_index
from .cka import _as_matrix, centre_columns, linear_cka

POOLINGS = ("mean", "last")
FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm")


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean",
                skip_first_token: bool = False) -> torch.Tensor:
    """One vector per text from token states (batch, seq, d): the mean over real tokens, or the last real token.

    ``skip_first_token`` leaves each text's first real token out of the mean (a text of one token keeps it): in large
    LMs its state is an input-independent outlier of huge norm (massive activations; Sun et al., 2024). Padding is
    excluded by ``attention_mask`` (batch, seq) on either side. Returns (batch, d).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling should be one of {', '.join(POOLINGS)}, not {pooling!r}.")
    mask = attention_mask.bool()  # (batch, seq)
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(mask)]
    if skip_first_token:
        first = mask.long().argmax(dim=-1)  # (batch,): the first real token, also under left padding
        drop = torch.zeros_like(mask).scatter_(1, first[:, None], True) & (mask.sum(dim=-1, keepdim=True) > 1)
        mask = mask & ~drop
    summed = torch.where(mask[..., None], hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)  # (batch, d); where(): 0 * NaN padding is NaN


def layer_states(model, tokenizer, texts: Sequence[str], batch_size: int = 32, pooling: str = "mean",
                 max_length: int = 128, skip_first_token: bool = False) -> list[torch.Tensor]:
    """Pooled hidden states of every layer for the same texts (input to CKA, probes and the logit lens; Kornblith et al., 2019).

    Runs ``model`` with ``output_hidden_states=True`` on batches of ``texts`` (each cut to ``max_length`` tokens),
    with position ids counted over real tokens so that the tokenizer's padding side does not matter, and pools each
    layer with :func:`pool_tokens`. Returns ``L + 1`` float32 CPU tensors (n, d): the embeddings, then each block's
    output; the last one is after the final norm, as transformers returns it.
    """
    return layer_states_by_pooling(model, tokenizer, texts, (pooling,), batch_size, max_length, skip_first_token)[pooling]


@torch.no_grad()
def layer_states_by_pooling(model, tokenizer, texts: Sequence[str], poolings: Sequence[str] = POOLINGS, batch_size: int = 32,
                            max_length: int = 128, skip_first_token: bool = False) -> dict[str, list[torch.Tensor]]:
    """:func:`layer_states` for several poolings from one forward pass per batch: pooling -> ``L + 1`` tensors (n, d).

    ``skip_first_token`` applies to the mean only (:func:`pool_tokens`).
    """
    texts = list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts should be a non-empty list of strings that are not empty or blank.")
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length should be at least 1, got {batch_size} and {max_length}.")
    if not poolings or any(p not in POOLINGS for p in poolings):
        raise ValueError(f"poolings should name one or more of {', '.join(POOLINGS)}, not {tuple(poolings)!r}.")
    device = next(model.parameters()).device
    chunks: dict[str, list[list[torch.Tensor]]] = {p: [] for p in poolings}  # pooling -> batches -> L + 1 tensors (batch, d)
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                    position_ids=positions_from_mask(enc.attention_mask), output_hidden_states=True)
        for p in poolings:  # pooled in float32: a sum over tokens of 16-bit states can overflow float16
            chunks[p].append([pool_tokens(h.float(), enc.attention_mask, p, skip_first_token).cpu() for h in out.hidden_states])
    return {p: [torch.cat(layer) for layer in zip(*batches)] for p, batches in chunks.items()}  # L + 1 tensors (n, d) each


def _centred_gram(states, name: str) -> np.ndarray:
    """K = X_c X_c^T (n, n) in float64 for one layer's states X (n, d), its columns centred."""
    x = _as_matrix(states, name)  # float64 numpy from numpy or torch (any device, 16-bit included); 2-D and finite
    if x.shape[0] < 2:
        raise ValueError(f"{name} has {x.shape[0]} row; CKA needs the states of at least 2 inputs.")
    x = centre_columns(x)
    return x @ x.T


def cka_matrix(states_a: Sequence, states_b: Sequence) -> np.ndarray:
    """Linear CKA of every layer of A with every layer of B: (len(states_a), len(states_b)) (Kornblith et al., 2019).

    Uses the Gram form of eq. (cka): ||Y^T X||_F^2 = <K_X, K_Y>_F and ||X^T X||_F = ||K_X||_F with K = X_c X_c^T (n, n),
    so each layer is centred and multiplied once (cheap when n < d); equal to ``linear_cka`` entry by entry.
    """
    if not len(states_a) or not len(states_b):
        raise ValueError("states_a and states_b should each hold at least one layer's (n, d) states.")
    grams_a = [_centred_gram(s, f"states_a[{i}]") for i, s in enumerate(states_a)]
    grams_b = [_centred_gram(s, f"states_b[{j}]") for j, s in enumerate(states_b)]
    n_a, n_b = {g.shape[0] for g in grams_a}, {g.shape[0] for g in grams_b}
    if len(n_a | n_b) != 1:
        raise ValueError(f"every layer should hold the same inputs, but the row counts are {sorted(n_a | n_b)}.")
    norms_a, norms_b = [np.linalg.norm(g) for g in grams_a], [np.linalg.norm(g) for g in grams_b]
    if min(norms_a + norms_b) == 0:
        raise ValueError("a layer's states are the same for every input, so CKA is 0/0; check that the inputs differ.")
    out = np.array([[np.sum(ga * gb) / (na * nb) for gb, nb in zip(grams_b, norms_b)] for ga, na in zip(grams_a, norms_a)])
    return np.clip(out, 0.0, 1.0)  # (layers of A, layers of B); 1 + 1e-16 is roundoff


def _unbiased_centred_gram(x: np.ndarray) -> np.ndarray:
    """The Gram matrix X X^T with its diagonal zeroed and U-centred, so that <K, L> is the unbiased HSIC (Song et al., 2012)."""
    n = x.shape[0]
    gram = x @ x.T
    np.fill_diagonal(gram, 0.0)
    means = gram.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    gram -= means[:, None] + means[None, :]
    np.fill_diagonal(gram, 0.0)
    return gram  # (n, n)


def debiased_linear_cka(X, Y) -> float:
    """Linear CKA from unbiased HSIC estimates (Song et al., 2012; Nguyen et al., 2021): near 0 for unrelated X and Y at any n.

    ``X`` (n, p1) and ``Y`` (n, p2) as for ``linear_cka``, with n >= 4. The biased CKA of independent isotropic
    representations is about sqrt(p1 p2 / ((n + p1)(n + p2))), close to 1 when n << p; this estimator removes that bias,
    at the price of a noisier value that can be slightly negative.
    """
    x, y = _as_matrix(X, "X"), _as_matrix(Y, "Y")  # float64, 2-D and finite, or a one-sentence ValueError
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} rows but Y has {y.shape[0]}; give representations of the same inputs.")
    if x.shape[0] < 4:
        raise ValueError(f"X and Y have {x.shape[0]} rows; the unbiased HSIC estimator needs at least 4 inputs.")
    kx, ky = _unbiased_centred_gram(x), _unbiased_centred_gram(y)
    hsic_xx, hsic_yy = np.sum(kx * kx), np.sum(ky * ky)
    if hsic_xx <= 0 or hsic_yy <= 0:
        raise ValueError("X or Y has no variation across the inputs (its unbiased HSIC with itself is not positive).")
    return float(np.sum(kx * ky) / np.sqrt(hsic_xx * hsic_yy))


def cka_by_sample_size(X, Y, sizes: Sequence[int], repeats: int = 5, seed: int = 0, debiased: bool = False) -> np.ndarray:
    """Linear CKA of X and Y on random subsets of n rows, for each n in ``sizes``: (len(sizes), repeats) (Kornblith et al., 2019).

    The same rows are drawn from X and Y (the same inputs); ``debiased`` uses :func:`debiased_linear_cka`. Shows how
    far a CKA value depends on the number of inputs it was computed from.
    """
    x, y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} rows but Y has {y.shape[0]}; give representations of the same inputs.")
    if not sizes or min(sizes) < (4 if debiased else 2) or max(sizes) > x.shape[0] or repeats < 1:
        raise ValueError(f"sizes should lie between {4 if debiased else 2} and the {x.shape[0]} rows, and repeats be at least 1.")
    rng = np.random.default_rng(seed)
    similarity = debiased_linear_cka if debiased else linear_cka
    values = np.empty((len(sizes), repeats))
    for i, n in enumerate(sizes):
        for r in range(repeats):
            rows = rng.choice(x.shape[0], size=n, replace=False)
            values[i, r] = similarity(x[rows], y[rows])
    return values


def held_out_split(n: int, train_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded random split of n items into a training and a held-out part (probing needs unseen texts)."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction should lie strictly between 0 and 1, not {train_fraction}.")
    n_train = int(round(n * train_fraction))
    if n_train < 2 or n - n_train < 1:
        raise ValueError(f"{n} items are too few to split {train_fraction:.0%} / {1 - train_fraction:.0%}.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def ridge_probe_accuracy(train_X, train_y, test_X, test_y, alpha: float = 1.0) -> float:
    """Held-out accuracy of a ridge-regression classifier, a linear probe (Alain & Bengio, 2016; Belinkov, 2022).

    Features are standardised with the training mean and standard deviation; the targets +1/-1 (labels 1/0) are fitted
    by ridge regression, w = argmin ||X w + b - t||^2 + alpha ||w||^2, in closed form (the dual form when d > n); a
    held-out text is classified by the sign of x w + b. ``train_X`` (n_train, d), ``train_y`` (n_train,) of 0/1, the
    same for the held-out part; returns the share of held-out texts classified right.
    """
    x_train, x_test = _as_matrix(train_X, "train_X"), _as_matrix(test_X, "test_X")  # float64 (n, d), finite
    y_train, y_test = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v).astype(np.float64) for v in (train_y, test_y))
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train_X and test_X should be 2-D with the same number of features, got {x_train.shape} and {x_test.shape}.")
    if y_train.shape != (x_train.shape[0],) or y_test.shape != (x_test.shape[0],):
        raise ValueError("train_y and test_y should hold one label per row of train_X and test_X.")
    if not np.isin(np.concatenate([y_train, y_test]), (0.0, 1.0)).all():
        raise ValueError("labels should be 0 or 1.")
    if alpha <= 0:
        raise ValueError(f"alpha should be positive, not {alpha}.")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 after centring
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    targets = 2 * y_train - 1
    bias = targets.mean()
    n, d = x_train.shape
    if d <= n:
        w = np.linalg.solve(x_train.T @ x_train + alpha * np.eye(d), x_train.T @ (targets - bias))  # (d,)
    else:
        w = x_train.T @ np.linalg.solve(x_train @ x_train.T + alpha * np.eye(n), targets - bias)  # (d,), dual form
    predicted = (x_test @ w + bias > 0).astype(np.float64)
    return float((predicted == y_test).mean())


def probe_accuracy(features, labels, train_fraction: float = 0.5, alpha: float = 1.0, seed: int = 0) -> float:
    """Held-out accuracy of a linear ridge probe for ``labels`` (n,) on ``features`` (n, d) of one layer (Alain & Bengio, 2016).

    Splits the texts with :func:`held_out_split` and fits :func:`ridge_probe_accuracy` on the training part.
    """
    x = _as_matrix(features, "features")  # (n, d) float64 from numpy or torch (any device or dtype)
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"features has {len(x)} rows but labels has shape {y.shape}; give one label per text.")
    train, test = held_out_split(len(y), train_fraction, seed)
    return ridge_probe_accuracy(x[train], y[train], x[test], y[test], alpha)


def final_norm(model) -> torch.nn.Module:
    """The normalisation applied before the unembedding (GPT-2 ``transformer.ln_f``, OLMo 2 ``model.norm``; nostalgebraist, 2020).

    Looked up by name on ``model.base_model``; a model without one of :data:`FINAL_NORM_NAMES` gets a ValueError.
    """
    base = getattr(model, "base_model", model)
    for name in FINAL_NORM_NAMES:
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(model).__name__} has no final norm named {', '.join(FINAL_NORM_NAMES)} on its base model; "
                     "pass the hidden states through its own final layer by hand.")


@torch.no_grad()
def logit_lens(model, hidden_states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Next-token logits read from every layer: unembed(final_norm(h_l)) (nostalgebraist, 2020).

    ``hidden_states``: the ``L + 1`` tensors (..., d) of ``output_hidden_states`` or :func:`layer_states` with
    ``pooling="last"``. The last one already passed the final norm (transformers applies it before returning it), so
    only the unembedding is applied to it, and its lens logits are the model's own. Returns ``L + 1`` float32 CPU
    tensors (..., vocab).
    """
    if len(hidden_states) < 2:
        raise ValueError("hidden_states should hold the embeddings and at least one layer (output_hidden_states=True).")
    norm, unembed = final_norm(model), model.get_output_embeddings()
    weight = unembed.weight
    logits = []
    for index, h in enumerate(hidden_states):
        h = h.to(device=weight.device, dtype=weight.dtype)
        normed = h if index == len(hidden_states) - 1 else norm(h)
        logits.append(unembed(normed).float().cpu())  # (..., vocab)
    return logits


def single_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """Token ids of the words that are one token after a space (" word"), the ones a next-token lens can score directly.

    A word that the tokenizer maps to its unknown token is left out too.
    """
    ids = [tokenizer.encode(" " + w, add_special_tokens=False) for w in words]
    kept = [i[0] for i in ids if len(i) == 1 and i[0] != tokenizer.unk_token_id]
    if not kept:
        raise ValueError(f"none of the words {list(words)[:5]} ... is a single token for this tokenizer.")
    return kept


def randomly_initialised(model, seed: int = 0):
    """A model of the same architecture and config with fresh random weights, on the same device and dtype (a CKA baseline).

    Seeds torch inside ``torch.random.fork_rng`` so that the caller's random state is left as it was.
    """
    from transformers import AutoModelForCausalLM

    parameter = next(model.parameters())
    devices = [parameter.device] if parameter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(parameter.device):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=parameter.dtype)
    return fresh.eval()
