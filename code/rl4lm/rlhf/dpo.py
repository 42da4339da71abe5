"""Direct preference optimisation: fit the policy to preference pairs with the KL-regularised objective's implicit reward.

The KL-regularised RLHF objective has the optimal policy pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x), so
r(x, y) = beta log pi*(y|x) / pi_ref(y|x) + beta log Z(x). Inserted into the Bradley-Terry model, Z(x) cancels and the
policy is trained on (prompt, chosen, rejected) triples directly (Rafailov et al., 2023). The inputs of the loss are
sequence log-probabilities sum_t log pi(y_t | x, y_<t) of the responses (:func:`rl4lm.lm.logprobs.sequence_logprob`).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..lm.logprobs import sequence_logprob
from ..rl.policy_gradient import _require_same_shape
from .conversations import conversation_text as _conversation_text
from .conversations import render_messages as _render
from .progress import progress_bar

__all__ = ["dpo_loss", "preference_triples", "tokenize_triples", "collate_preferences", "preference_batch", "preference_logps",
           "reference_logps", "implicit_reward_metrics", "DPOConfig", "PIPELINE_DPO", "batch_order", "train_dpo"]


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L = -mean log sigma(beta [log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)]) (Rafailov et al., 2023, eq. 7).

    All four inputs are (batch,) sequence log-probabilities of the chosen (y_w) and rejected (y_l) responses; the
    reference's carry no gradient. Returns (loss, chosen_rewards, rejected_rewards): the scalar loss and the implicit
    rewards beta (log pi(y) - log pi_ref(y)) of each response, (batch,) and detached.
    """
    _require_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if not beta > 0:
        raise ValueError(f"beta must be positive (it scales the implicit reward beta log pi / pi_ref), got {beta}.")
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps.detach()  # (batch,)
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps.detach()  # (batch,)
    loss = -F.logsigmoid(beta * (chosen_log_ratio - rejected_log_ratio)).mean()
    return loss, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()


# ---------------------------------------------------------------------------------------------------------------------
# Data: preference rows -> (prompt, chosen, rejected) texts -> token ids -> one padded batch, chosen rows first
# ---------------------------------------------------------------------------------------------------------------------

def _shared_prompt(chosen: list[dict], rejected: list[dict]) -> int:
    """How many leading messages two conversations share (the prompt of an implicit-prompt preference row)."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    return shared


def _assistant_prefix(prompt: list[dict], tokenizer) -> str:
    """The text a conversation has before the assistant's reply: the chat template's generation prompt, or 'Assistant: '."""
    if all(m["role"] is None for m in prompt):
        return _conversation_text(prompt, tokenizer)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return _conversation_text(prompt + [{"role": "assistant", "content": ""}], tokenizer)


def _row_triple(i: int, row, tokenizer) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) texts of rows[i], in either profile's schema."""
    if "chosen" not in row or "rejected" not in row:
        raise ValueError(f"rows[{i}] has fields {sorted(row)}; a preference row needs 'chosen' and 'rejected'.")
    prompt, chosen, rejected = _render(row.get("prompt")), _render(row["chosen"]), _render(row["rejected"])
    if chosen == rejected:
        raise ValueError(f"rows[{i}] has identical chosen and rejected responses, so it expresses no preference; drop it.")
    if not prompt:  # implicit prompt (the full profile's preferences role): the messages both conversations share
        shared = _shared_prompt(chosen, rejected)
        if shared == 0:
            raise ValueError(f"rows[{i}] has no 'prompt' and its chosen and rejected conversations share no opening message, "
                             "so there is no prompt to condition on.")
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    full = [_conversation_text(prompt + response, tokenizer) for response in (chosen, rejected)]
    heads = (_assistant_prefix(prompt, tokenizer), _conversation_text(prompt, tokenizer))  # a template may render x alone otherwise
    head = next((h for h in heads if all(text.startswith(h) for text in full)), None)
    if head is None:
        raise ValueError(f"rows[{i}]: the rendered prompt is not the start of the rendered conversations, so the responses "
                         "cannot be told from the prompt.")
    texts = [text[len(head):] for text in full]
    for name, text in zip(("chosen", "rejected"), texts):
        if not text.strip():
            raise ValueError(f"rows[{i}] has an empty {name} response; DPO compares two non-empty responses to one prompt.")
    if texts[0] == texts[1]:
        raise ValueError(f"rows[{i}] has identical chosen and rejected responses, so it expresses no preference; drop it.")
    return head, texts[0], texts[1]


def preference_triples(rows, tokenizer=None) -> list[tuple[str, str, str]]:
    """(x, y_w, y_l) texts, prompt, chosen and rejected response, from preference rows of either profile (Rafailov et al., 2023).

    ``rows``: a ``datasets.Dataset`` or a list of dicts. Tiny profile: strings ``prompt``, ``chosen``, ``rejected``
    (the responses continue the prompt). Full profile (the ``preferences`` role's hub data): ``chosen`` and
    ``rejected`` are conversations (lists of ``{"role", "content"}`` messages) that share the user's turn; the shared
    messages are the prompt, rendered as :func:`rl4lm.rlhf.reward_model.preference_pairs` renders them and ended with
    the assistant's header, so that ``prompt + chosen`` is that function's chosen text. A row with identical or empty
    responses is a ValueError naming the row.
    """
    return [_row_triple(i, row, tokenizer) for i, row in enumerate(rows)]


def _pad_id(tokenizer) -> int:
    """The tokenizer's padding id, else its end-of-text id (padding is masked out either way)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad_token_id nor an eos_token_id to pad the batch with.")
    return pad


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    """Number of leading token ids two sequences share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def tokenize_triples(tokenizer, triples: list[tuple[str, str, str]], add_eos: bool = True,
                     names: list[int] | None = None) -> list[dict[str, list[int]]]:
    """Token ids {prompt_ids, chosen_ids, rejected_ids} of each (x, y_w, y_l), one prompt shared by both responses (as TRL's DPOTrainer).

    x + y is tokenised whole and split where it parts from the tokenised x alone (a token that merges across the
    boundary goes to the response), with the shorter split for both responses so that they share ``prompt_ids``.
    With ``add_eos`` each response ends with the end-of-text token, so the policy also learns where to stop.
    ``names``: the index that an error names for each triple (default its position in ``triples``). An empty (or
    blank) response, or two responses with the same text or the same tokens, is a ValueError naming the triple.
    """
    if not triples:
        raise ValueError("triples is empty: DPO needs at least one (prompt, chosen, rejected) triple.")
    names = list(range(len(triples))) if names is None else names
    for i, triple in zip(names, triples):
        if not (isinstance(triple, (tuple, list)) and len(triple) == 3 and all(isinstance(t, str) for t in triple)):
            raise ValueError(f"triples[{i}] should be three strings (prompt, chosen, rejected), got {triple!r:.80}.")
        for name, response in zip(("chosen", "rejected"), triple[1:]):
            if not response.strip():  # as preference_triples: with add_eos it would otherwise become a lone end-of-text token
                raise ValueError(f"triples[{i}] has an empty {name} response; DPO compares two non-empty responses to one prompt.")
        if triple[1] == triple[2]:
            raise ValueError(f"triples[{i}] has identical chosen and rejected responses, so it expresses no preference; drop it.")
    eos = tokenizer.eos_token_id if add_eos else None
    prompts = tokenizer([x for x, _, _ in triples])["input_ids"]  # one call per list: the fast tokenizer batches them
    chosen = tokenizer([x + y for x, y, _ in triples])["input_ids"]
    rejected = tokenizer([x + y for x, _, y in triples])["input_ids"]
    examples = []
    for i, prompt_ids, *whole in zip(names, prompts, chosen, rejected):
        cut = min(_common_prefix_length(prompt_ids, ids) for ids in whole)
        if cut == 0:
            raise ValueError(f"triples[{i}] has an empty prompt; each response must follow at least one prompt token.")
        for name, ids in zip(("chosen", "rejected"), whole):
            if len(ids) == cut:  # checked before the end-of-text token is added, which would hide it
                raise ValueError(f"triples[{i}] has an empty {name} response (no token after the prompt).")
        if whole[0] == whole[1]:
            raise ValueError(f"triples[{i}] has chosen and rejected responses that tokenise identically, so it expresses no "
                             "preference; drop it.")
        if eos is not None:
            whole = [ids if ids[-1] == eos else ids + [eos] for ids in whole]
        examples.append({"prompt_ids": whole[0][:cut], "chosen_ids": whole[0][cut:], "rejected_ids": whole[1][cut:]})
    return examples


def collate_preferences(examples: list[dict[str, list[int]]], pad_token_id: int, max_length: int | None = None,
                        device=None) -> dict[str, torch.Tensor]:
    """One right-padded batch: rows [x + y_w for each example] then [x + y_l for each example] (TRL's DataCollatorForPreference).

    Returns ``input_ids``, ``attention_mask`` and ``response_mask`` (1 on the response tokens only), each
    (2 batch, seq). Sequences longer than ``max_length`` lose their end (TRL's 'keep_start'); a prompt that fills
    ``max_length`` on its own leaves no response token and is a ValueError.
    """
    rows, masks = [], []
    for part in ("chosen_ids", "rejected_ids"):
        for i, example in enumerate(examples):
            ids = (example["prompt_ids"] + example[part])[:max_length]
            response = ([0] * len(example["prompt_ids"]) + [1] * len(example[part]))[:max_length]
            if not any(response):
                raise ValueError(f"example {i}'s prompt has {len(example['prompt_ids'])} tokens, which fill max_length = "
                                 f"{max_length}; raise max_length or shorten the prompt.")
            rows.append(ids)
            masks.append(response)
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)  # (2 batch, seq)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    response_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, response) in enumerate(zip(rows, masks)):
        input_ids[r, :len(ids)] = torch.tensor(ids)
        attention_mask[r, :len(ids)] = 1
        response_mask[r, :len(ids)] = torch.tensor(response)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "response_mask": response_mask.to(device)}


def preference_batch(tokenizer, triples: list[tuple[str, str, str]], max_length: int | None = None, add_eos: bool = True,
                     device=None) -> dict[str, torch.Tensor]:
    """:func:`tokenize_triples` then :func:`collate_preferences`: (x, y_w, y_l) texts as one batch of 2 len(triples) rows, chosen first."""
    return collate_preferences(tokenize_triples(tokenizer, triples, add_eos), _pad_id(tokenizer), max_length, device)


def preference_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(y_w | x), log pi(y_l | x)), each (batch,), from one forward pass over the chosen and rejected rows together.

    ``batch`` as :func:`collate_preferences` makes it; the sums run over the response tokens
    (:func:`rl4lm.lm.logprobs.sequence_logprob`), with gradient unless called under no_grad.
    """
    logps = sequence_logprob(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])  # (2 batch,)
    return logps.chunk(2)


@torch.no_grad()
def reference_logps(model, examples: list[dict[str, list[int]]], pad_token_id: int, batch_size: int = 64,
                    max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi_ref(y_w | x), log pi_ref(y_l | x)) of every example, each (n,) on the model's device, without gradient.

    Computed once before training, as TRL's ``precompute_ref_log_probs``: the reference never changes. Batches are
    consecutive slices of ``batch_size`` examples; the model's train/eval mode is left as it is.
    """
    device = next(model.parameters()).device
    chosen, rejected = [], []
    for start in range(0, len(examples), batch_size):
        batch = collate_preferences(examples[start:start + batch_size], pad_token_id, max_length, device)
        c, r = preference_logps(model, batch)
        chosen.append(c)
        rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def implicit_reward_metrics(policy, examples: list[dict[str, list[int]]], ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
                            beta: float, pad_token_id: int, batch_size: int = 64, max_length: int | None = None) -> dict[str, float]:
    """Held-out agreement of the implicit reward r(x, y) = beta log pi(y|x) / pi_ref(y|x) with the preferences (Rafailov et al., 2023, sec. 5).

    Returns ``accuracy`` (fraction of pairs with r(x, y_w) > r(x, y_l) strictly; ties count as errors, as in TRL, so it
    is 0 while the policy is still the reference), ``margin`` (mean r_w - r_l), ``logp_accuracy`` (fraction with
    log pi(y_w|x) > log pi(y_l|x): which response the policy itself finds likelier, meaningful from the start) and the
    mean ``chosen_logp`` and ``rejected_logp``. ``ref_chosen``/``ref_rejected``: (n,) from :func:`reference_logps`.
    """
    chosen, rejected = reference_logps(policy, examples, pad_token_id, batch_size, max_length)  # the same batches as the reference's
    margins = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))  # (n,)
    return {"accuracy": (margins > 0).float().mean().item(), "margin": margins.mean().item(),
            "logp_accuracy": (chosen > rejected).float().mean().item(), "chosen_logp": chosen.mean().item(),
            "rejected_logp": rejected.mean().item()}


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------

def _check_config(config) -> None:
    """One sentence naming the first setting of a DPOConfig that train_dpo cannot use."""
    if not isinstance(config, DPOConfig):
        raise ValueError(f"config should be an rl4lm.rlhf.dpo.DPOConfig, got {type(config).__name__}.")
    for name in ("epochs", "batch_size", "max_length", "eval_batch_size") + (("steps",) if config.steps is not None else ()):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{name} should be a whole number of at least 1, got {value!r}.")
    if not config.beta > 0:
        raise ValueError(f"config.beta must be positive (it scales the implicit reward beta log pi / pi_ref), got {config.beta}.")
    if not config.learning_rate > 0:
        raise ValueError(f"config.learning_rate must be positive, got {config.learning_rate}.")
    if not isinstance(config.eval_every, int) or config.eval_every < 0:
        raise ValueError(f"config.eval_every should be a whole number of at least 0, got {config.eval_every!r}.")


@dataclass
class DPOConfig:
    """Settings of :func:`train_dpo`; ``steps`` (if set) overrides ``epochs``. A setting that cannot work is a ValueError here."""

    steps: int | None = None  # optimizer steps; None: ``epochs`` passes over the triples
    epochs: int = 1  # passes over the training triples, each in a new seeded order (when steps is None)
    batch_size: int = 16  # preference triples per step (2 batch_size sequences per forward pass)
    learning_rate: float = 1e-4  # AdamW's, constant, weight decay 0 (as TRL's default optimizer settings)
    beta: float = 0.1  # strength of the KL regularisation; the implicit reward is beta log pi / pi_ref
    max_length: int = 256  # tokens per prompt + response; longer ones lose their end (and the model's positions cap it)
    max_grad_norm: float | None = 1.0  # gradient norm clipping before each step (TRL's default); None: no clipping
    eval_every: int = 0  # held-out metrics every this many steps (and before and after training); 0: before and after only
    eval_batch_size: int = 64  # triples per forward pass of the reference and of evaluation
    seed: int = 0  # seed of torch and of the order of the triples

    def __post_init__(self):
        """Refuse a setting that cannot work, in one sentence naming it."""
        _check_config(self)


# The tiny asset build's "after DPO" model: the tiny SFT model trained with these settings on the tiny preferences' train
# split. beta = 0.5 and a small learning rate keep its samples fluent: at lr 1e-4, 28 % of the SFT model's samples came
# to repeat a word ("was was was"), at 3e-5 none did, with the same held-out implicit-reward accuracy (1.0); beta = 0.1
# with lr 1e-3 pushes log pi(y_w | x) far down and every sample degenerates.
PIPELINE_DPO = DPOConfig(steps=40, batch_size=16, learning_rate=3e-5, beta=0.5, max_length=128, eval_every=0, seed=0)

HISTORY_KEYS = ("step", "loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward", "chosen_logp",
                "rejected_logp", "grad_norm", "seconds")
EVAL_KEYS = ("eval_step", "eval_accuracy", "eval_margin", "eval_logp_accuracy", "eval_chosen_logp", "eval_rejected_logp")


def batch_order(n: int, batch_size: int, steps: int, seed: int):
    """Index lists of :func:`train_dpo`'s ``steps`` batches: the n triples in a new seeded order each epoch, the last of an epoch maybe smaller."""
    rng = random.Random(seed)
    done = 0
    while done < steps:
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield order[start:start + batch_size]
            done += 1


def _model_length(model, max_length: int) -> int:
    """``max_length`` capped at the model's number of positions (the tiny GPT-2 has 256)."""
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    return min(max_length, positions) if positions else max_length


def train_dpo(policy, tokenizer, train_triples: list[tuple[str, str, str]], config: DPOConfig, reference=None,
              eval_triples: list[tuple[str, str, str]] | None = None, loss_fn: Callable = dpo_loss, progress: bool = False) -> dict:
    """Fit the policy to (x, y_w, y_l) triples by minimising the DPO loss with AdamW (Rafailov et al., 2023, eq. 7).

    The batches are drawn first (``config.batch_size`` triples, a new seeded order each epoch); the triples they hold
    are tokenised (:func:`tokenize_triples`) and their reference log-probabilities computed once, before the first
    step, without gradient (``reference`` None: the policy as it starts, so no copy is made). Each step scores a
    batch's chosen and rejected responses in one forward pass (:func:`preference_logps`), calls
    ``loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`` (the signature of :func:`dpo_loss`:
    Homework 3 passes the student's) and takes one AdamW step after clipping the gradient norm. The policy is trained
    in place in eval mode (no dropout, as TRL's ``disable_dropout``), on its device.

    Returns {'history': {key: list per step} for :data:`HISTORY_KEYS` ('step' counts updates done, from 1; the
    implicit-reward statistics are the batch's before its update; 'chosen_logp' is the mean log pi(y_w | x), which can
    fall while the margin grows; 'seconds' is wall time since the first step), 'eval': {key: list} for
    :data:`EVAL_KEYS` (held-out :func:`implicit_reward_metrics` at step 0, every ``config.eval_every`` steps and after
    the last; empty without ``eval_triples``), 'steps', 'seconds' (the whole call, reference pass included)}.
    """
    _check_config(config)
    if reference is policy:
        raise ValueError("reference is the policy itself, so the implicit reward stays 0; pass a frozen copy or None "
                         "(None: the policy's log-probabilities before training).")
    started = time.perf_counter()
    device = next(policy.parameters()).device
    torch.manual_seed(config.seed)
    max_length = _model_length(policy, config.max_length)
    pad = _pad_id(tokenizer)
    if not isinstance(train_triples, (list, tuple)) or not train_triples:
        raise ValueError("train_triples should be a non-empty list of (prompt, chosen, rejected) texts.")
    steps = config.steps if config.steps is not None else config.epochs * -(-len(train_triples) // config.batch_size)
    batches = list(batch_order(len(train_triples), config.batch_size, steps, config.seed))
    used = sorted({i for indices in batches for i in indices})  # a short run tokenises and scores only the triples it sees
    slot = {i: k for k, i in enumerate(used)}
    batches = [[slot[i] for i in indices] for indices in batches]
    train = tokenize_triples(tokenizer, [train_triples[i] for i in used], names=used)
    held_out = tokenize_triples(tokenizer, eval_triples) if eval_triples else []
    policy.eval()  # no dropout: the policy's and the reference's log-probabilities are of the same function at step 0
    ref_model = policy if reference is None else reference.eval()
    ref_chosen, ref_rejected = (lp.to(device) for lp in reference_logps(ref_model, train, pad, config.eval_batch_size, max_length))
    if held_out:  # (used,) and (held out,) each, on the policy's device (a reference may sit on another one)
        ref_eval = [lp.to(device) for lp in reference_logps(ref_model, held_out, pad, config.eval_batch_size, max_length)]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=0.0)
    history = {key: [] for key in HISTORY_KEYS}
    evals = {key: [] for key in EVAL_KEYS}

    def evaluate(step: int) -> None:
        metrics = implicit_reward_metrics(policy, held_out, *ref_eval, config.beta, pad, config.eval_batch_size, max_length)
        evals["eval_step"].append(step)
        for key in EVAL_KEYS[1:]:
            evals[key].append(metrics[key.removeprefix("eval_")])

    if held_out:
        evaluate(0)
    bar = progress_bar(steps, progress, "DPO")
    start = time.perf_counter()
    for step, indices in enumerate(batches, start=1):
        batch = collate_preferences([train[i] for i in indices], pad, max_length, device)
        chosen_logps, rejected_logps = preference_logps(policy, batch)  # (b,) each, with gradient
        index = torch.tensor(indices, device=device)
        loss, chosen_rewards, rejected_rewards = loss_fn(chosen_logps, rejected_logps, ref_chosen[index], ref_rejected[index], config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _clip_gradients(policy, config.max_grad_norm)
        optimizer.step()
        row = {"step": step, "loss": loss.item(), "reward_accuracy": (chosen_rewards > rejected_rewards).float().mean().item(),
               "reward_margin": (chosen_rewards - rejected_rewards).mean().item(), "chosen_reward": chosen_rewards.mean().item(),
               "rejected_reward": rejected_rewards.mean().item(), "chosen_logp": chosen_logps.mean().item(),
               "rejected_logp": rejected_logps.mean().item(), "grad_norm": grad_norm, "seconds": time.perf_counter() - start}
        for key in HISTORY_KEYS:
            history[key].append(row[key])
        if held_out and ((config.eval_every and step % config.eval_every == 0) or step == steps):
            evaluate(step)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", margin=f"{row['reward_margin']:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    return {"history": history, "eval": evals, "steps": steps, "seconds": time.perf_counter() - started}


def _clip_gradients(model, max_norm: float | None) -> float:
    """The gradient's global norm before clipping it to ``max_norm`` (None: measured, not clipped)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm is None:
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
