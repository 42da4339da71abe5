"""PPO on a language model with a KL penalty to a reference model: per-token rewards, masked GAE, the losses of one update.

A response of T tokens is an episode of T steps. The reward of token t is -beta (log pi_old(y_t) - log pi_ref(y_t)),
the per-token KL estimate to the reference, and the last response token also receives the sequence score r(x, y)
of the reward model (Ziegler et al., 2019; Stiennon et al., 2020; Ouyang et al., 2022, eq. 2). Advantages come from
GAE over the response tokens (Schulman et al., 2016) and the policy is updated with PPO's clipped surrogate
(Schulman et al., 2017) plus a value loss for the critic. :func:`train_ppo_lm` runs the whole loop (rollouts from the
KV-cached sampler, a linear value head on the policy's hidden state, epochs of minibatch updates); :data:`PIPELINE_PPO`
is the short setting of the tiny asset build and ``code/labs/ppo_lm_sentiment.py`` the lab.

Shapes: (batch, T) tensors cover the positions of the response, e.g. ``rollout.logprobs`` with ``mask =
rollout.response_mask[:, rollout.prompt_len:]``; in general ``mask`` is 1 on response tokens and 0 on prompt tokens
(left) and padding (right), and each row's ones are contiguous.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..lm.logprobs import positions_from_mask
from ..lm.rollout import Rollout, sample_rollout
from ..rl.policy_gradient import _require_same_shape
from .lm_policy_gradient import kl_to_reference
from .progress import progress_bar

__all__ = ["last_token_index", "kl_penalized_rewards", "masked_mean", "masked_whiten", "masked_gae", "ppo_lm_losses", "masked_ratio_diagnostics",
           "PPOLMConfig", "PIPELINE_PPO", "ValueHead", "response_logprobs_and_values", "train_ppo_lm"]


def _check_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """The mask as a float tensor, after checking that it is 0/1 and that every row selects at least one token."""
    if mask.dim() != 2:
        raise ValueError(f"{name} should have shape (batch, T), got {tuple(mask.shape)}.")
    values = mask.to(torch.float32)
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(f"{name} should hold only 0 and 1 (1 on the response tokens).")
    empty = (values.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{name} selects no token in row {empty[0]}: an empty response has no last token to receive the score.")
    return values


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position where ``mask`` is 1 in each row; (batch,) long. Rows must select at least one token."""
    values = _check_mask(mask)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(values)  # (batch, T)
    return torch.where(values.bool(), positions, -1).amax(dim=1)


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         beta: float) -> torch.Tensor:
    """r_t = -beta (log pi(y_t) - log pi_ref(y_t)) + [t = last] r(x, y) on response tokens, 0 elsewhere (Ouyang et al., 2022, eq. 2).

    score: (batch,) the reward model's score of each whole response; logp, ref_logp, mask: (batch, T). The score goes
    on the last token where ``mask`` is 1 (prompts may be padded on the left and responses on the right). No gradient
    flows: these are rewards, constants of the update. Returns (batch, T).
    """
    _require_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    if beta < 0:
        raise ValueError(f"beta must be non-negative (0 turns the KL penalty off), got {beta}.")
    if tuple(score.shape) != (logp.shape[0],):
        raise ValueError(f"score should have shape (batch,) = ({logp.shape[0]},), one number per response; got {tuple(score.shape)}.")
    values = _check_mask(mask).to(logp.dtype)
    rewards = -beta * (logp.detach() - ref_logp.detach()) * values  # (batch, T)
    last = last_token_index(mask)  # (batch,)
    rows = torch.arange(logp.shape[0], device=logp.device)
    rewards[rows, last] += score.detach().to(rewards.device, rewards.dtype)  # a reward model may score on another device
    return rewards


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1, a scalar (all tokens of the batch weigh the same)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions, 0 elsewhere: PPO's advantage normalisation restricted to response tokens."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask.to(values.dtype)


@torch.no_grad()
def masked_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
               lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE along the response tokens of each row, A_t = delta_t + gamma lam A_{t+1} (Schulman et al., 2016, eq. 16).

    rewards, values, mask: (batch, T). delta_t = r_t + gamma V_{t+1} - V_t, where V after the last response token is
    0 (the episode ends there) and positions off the mask get advantage and return 0. Returns (advantages, returns),
    each (batch, T), with returns = advantages + values on the response.
    """
    _require_same_shape(rewards=rewards, values=values, mask=mask)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma = {gamma} and lam = {lam}.")
    m = _check_mask(mask).to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])  # V_{t+1}, 0 past the end
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * m[:, t]
        advantages[:, t] = advantage
        next_value = torch.where(m[:, t].bool(), values[:, t], next_value)  # padding to the right keeps the later value
        next_advantage = torch.where(m[:, t].bool(), advantage, next_advantage)
    return advantages, (advantages + values) * m


def ppo_lm_losses(new_logp: torch.Tensor, new_values: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor,
                  old_values: torch.Tensor, score: torch.Tensor, mask: torch.Tensor, beta: float, clip_eps: float = 0.2,
                  gamma: float = 1.0, lam: float = 0.95, vf_coef: float = 0.1, *,
                  rewards: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The losses of one PPO-RLHF update (Ouyang et al., 2022; Schulman et al., 2017, eq. 7 and 9), from a rollout's tensors.

    new_logp, new_values: (batch, T) under the current policy and critic (with gradient); old_logp, ref_logp,
    old_values: (batch, T) recorded at sampling time (constants); score: (batch,); mask: (batch, T), 1 on response
    tokens. Rewards are :func:`kl_penalized_rewards` of the *old* log-probabilities (or ``rewards``, (batch, T), when
    given: per-token rewards computed by the caller, e.g. with a student's function), advantages come from
    :func:`masked_gae` on the old values and are whitened over the response tokens; the policy loss is the clipped
    surrogate and the value loss 1/2 (V - return)^2, each a mean over response tokens. Returns a dict of
    ``loss`` = policy_loss + vf_coef value_loss, ``policy_loss``, ``value_loss`` (with gradient) and the constants
    ``rewards``, ``advantages``, ``returns`` (batch, T) and ``approx_kl``, ``clipfrac`` (scalars).
    """
    _require_same_shape(new_logp=new_logp, new_values=new_values, old_logp=old_logp, ref_logp=ref_logp,
                        old_values=old_values, mask=mask)
    if clip_eps < 0:
        raise ValueError(f"clip_eps must be non-negative, got {clip_eps}.")
    m = _check_mask(mask).to(new_logp.dtype)
    with torch.no_grad():
        if rewards is None:
            rewards = kl_penalized_rewards(score, old_logp, ref_logp, mask, beta)  # (batch, T)
        _require_same_shape(new_logp=new_logp, rewards=rewards)
        advantages, returns = masked_gae(rewards, old_values.detach(), mask, gamma, lam)
        advantages = masked_whiten(advantages, m)
    log_ratio = (new_logp - old_logp.detach()) * m  # (batch, T); 0 off the response
    ratio = torch.exp(log_ratio)
    surrogate = torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -masked_mean(surrogate, m)
    value_loss = 0.5 * masked_mean((new_values - returns) ** 2, m)
    return {"loss": policy_loss + vf_coef * value_loss, "policy_loss": policy_loss, "value_loss": value_loss,
            "rewards": rewards, "advantages": advantages, "returns": returns,
            **masked_ratio_diagnostics(new_logp, old_logp, mask, clip_eps)}


@torch.no_grad()
def masked_ratio_diagnostics(new_logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clip_eps: float) -> dict[str, torch.Tensor]:
    """approx_kl (the k3 estimate of KL(pi_old || pi_new), Schulman, 2020) and clipfrac, scalars over the response tokens.

    new_logp, old_logp, mask: (batch, T); clipfrac is the share of response tokens whose ratio lies outside [1 - eps, 1 + eps].
    """
    m = mask.to(new_logp.dtype)
    log_ratio = (new_logp - old_logp) * m  # 0 off the response
    ratio = torch.exp(log_ratio)
    return {"approx_kl": masked_mean((ratio - 1) - log_ratio, m), "clipfrac": masked_mean(((ratio - 1).abs() > clip_eps).to(m.dtype), m)}


# ---------------------------------------------------------------------------------------------------------------------
# The trainer: rollouts from the KV-cached sampler, a value head, and epochs of minibatch updates on ppo_lm_losses.
# ---------------------------------------------------------------------------------------------------------------------

HISTORY_KEYS = ("step", "reward_mean", "kl_to_ref", "return_mean", "policy_loss", "value_loss", "approx_kl", "clipfrac",
                "explained_variance", "response_length", "grad_norm", "seconds")


@dataclass
class PPOLMConfig:
    """PPO-RLHF's settings (Ouyang et al., 2022); the defaults are the tiny profile's sentiment lab (about 0.5 -> 0.9+ on 2 CPU cores).

    One step samples ``batch_size`` prompts (with replacement) and continues each with up to ``max_new_tokens`` tokens,
    then runs ``ppo_epochs`` passes of ``num_minibatches`` minibatches over them.
    """

    steps: int = 30                  # rollouts (each followed by ppo_epochs x num_minibatches updates)
    batch_size: int = 32             # responses per rollout
    max_new_tokens: int = 24         # response length at most (shorter where the policy emits EOS)
    learning_rate: float = 1e-4      # Adam's, for the policy
    value_learning_rate: float = 1e-2  # Adam's, for the value head (a linear layer on fixed features can take large steps)
    beta: float = 0.05               # KL coefficient: reward - beta (log pi - log pi_ref) per token
    clip_eps: float = 0.2            # PPO's clipping epsilon
    gamma: float = 1.0               # discount over the response tokens (1: the score counts fully for every token)
    lam: float = 0.95                # GAE's lambda
    vf_coef: float = 0.1             # weight of the value loss in the total loss
    ppo_epochs: int = 2              # passes over each rollout
    num_minibatches: int = 2         # minibatches per pass
    max_grad_norm: float | None = 1.0  # clip the gradient norm of policy and value head together (None: no clipping)
    seed: int = 0
    temperature: float = 1.0         # sampling temperature; every log-probability (policy, reference) is taken at it

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """One sentence naming the first setting PPO cannot use (ValueError); the sampler checks max_new_tokens and temperature."""
        for name in ("steps", "batch_size", "ppo_epochs", "num_minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"config.{name} should be a whole number of at least 1, got {value!r}.")
        if self.num_minibatches > self.batch_size:
            raise ValueError(f"config.num_minibatches = {self.num_minibatches} exceeds config.batch_size = {self.batch_size}; "
                             "each minibatch needs at least one response.")
        if self.beta < 0:
            raise ValueError(f"config.beta must be non-negative (0 turns the KL penalty off), got {self.beta}.")
        if not (self.learning_rate > 0 and self.value_learning_rate > 0):
            raise ValueError(f"learning rates must be positive, got learning_rate = {self.learning_rate} and "
                             f"value_learning_rate = {self.value_learning_rate}.")


PIPELINE_PPO = PPOLMConfig(steps=16)  # the tiny asset build's PPO stage: the lab's settings, fewer steps (<= ~40 s on 2 cores)


class ValueHead(nn.Module):
    """V(x, y_<t) = w . h_t + b, a linear critic on the policy's last hidden state at the position that predicts y_t.

    The head reads the hidden states *detached*: the critic's gradient never reaches the transformer, so the policy
    is changed by the policy loss alone (its KL to the reference does not depend on ``vf_coef``) and stays a plain
    causal LM, and the critic costs one matrix-vector product on the forward pass the policy computes anyway: no
    second network (a separate critic doubles the compute) and no value gradient through the trunk. On the tiny
    sentiment lab a shared trunk (the same head, not detached) gave the same reward curve to two decimals over 20
    steps on seeds 0 and 1, at the same cost per step, so nothing is lost: with whitened advantages and one terminal
    score, the critic serves mainly as a per-token baseline, which a linear read-out of the LM's last hidden state
    (it encodes the text's sentiment so far) provides.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, T, hidden) -> (batch, T) values."""
        return self.linear(hidden.detach().float()).squeeze(-1)


def _hidden_size(policy) -> int:
    """The width of the policy's last hidden state (n_embd for GPT-2, hidden_size for most others)."""
    config = policy.config
    size = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if size is None:
        raise ValueError("the policy's config names neither hidden_size nor n_embd, so the value head cannot be sized.")
    return int(size)


def response_logprobs_and_values(policy, value_head: ValueHead | None, rollout: Rollout,
                                 temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(y_t | x, y_<t) at ``temperature`` and V(x, y_<t) at every response position, 0 elsewhere; each (batch, new).

    One forward pass over prompt and response (position ids from the attention mask, so left padding is harmless);
    gradient flows unless called under no_grad. At temperature 1 the log-probabilities equal
    :func:`rl4lm.rlhf.lm_policy_gradient.response_logprobs`; values are None without a value head.
    """
    p = rollout.prompt_len
    out = policy(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                 position_ids=positions_from_mask(rollout.attention_mask), output_hidden_states=value_head is not None)
    logits = out.logits[:, p - 1:-1].float()  # (batch, new, vocab): position p - 1 + t predicts y_t
    if temperature != 1.0:
        logits = logits / temperature
    chosen = logits.gather(-1, rollout.input_ids[:, p:, None]).squeeze(-1)  # (batch, new)
    response = rollout.response_mask[:, p:].bool()  # (batch, new)
    logp = torch.where(response, chosen - torch.logsumexp(logits, dim=-1), 0.0)
    if value_head is None:
        return logp, None
    values = value_head(out.hidden_states[-1][:, p - 1:-1])  # (batch, new)
    return logp, torch.where(response, values, 0.0)


def _scores(reward_fn, texts: list[str], device) -> torch.Tensor:
    """reward_fn(texts) as a float32 tensor (batch,) on ``device``, after checking its shape and that it is finite."""
    scores = torch.as_tensor(reward_fn(texts), dtype=torch.float32)
    if tuple(scores.shape) != (len(texts),):
        raise ValueError(f"reward_fn returned shape {tuple(scores.shape)} for {len(texts)} texts; it should return one score per text, (batch,).")
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).nonzero()[0])
        raise ValueError(f"reward_fn returned {scores[bad].item()} for text {bad} ({texts[bad][:60]!r}); every score must be a finite number.")
    return scores.to(device)


def _check_prompts(prompts) -> None:
    """One sentence when prompts is not a non-empty list of strings."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts should be a non-empty list of strings.")


@torch.no_grad()
def _evaluate(policy, reference, tokenizer, reward_fn, prompts: list[str], config: PPOLMConfig, seed: int) -> tuple[list[str], list[float], float]:
    """Texts sampled after ``prompts`` (seeded), their scores, and the mean KL (k1, summed over tokens) to the reference."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    rollout = sample_rollout(policy, tokenizer, prompts, config.max_new_tokens, temperature=config.temperature, generator=generator)
    texts = rollout.full_texts(tokenizer)
    ref_logp, _ = response_logprobs_and_values(reference, None, rollout, config.temperature)
    kl = kl_to_reference(rollout.logprobs, ref_logp, rollout.response_mask[:, rollout.prompt_len:])  # (batch,)
    return texts, _scores(reward_fn, texts, device).tolist(), kl.mean().item()


def _minibatch(rollout: Rollout, rows: torch.Tensor) -> Rollout:
    """The rollout restricted to ``rows`` (same prompt_len; trailing columns may be all padding)."""
    return dataclasses.replace(rollout, input_ids=rollout.input_ids[rows], attention_mask=rollout.attention_mask[rows],
                               response_mask=rollout.response_mask[rows], logprobs=rollout.logprobs[rows])


def train_ppo_lm(policy, tokenizer, reward_fn: Callable[[list[str]], torch.Tensor], prompts: list[str], config: PPOLMConfig,
                 reference=None, progress: bool = False, eval_prompts: list[str] | None = None,
                 kl_rewards_fn: Callable = kl_penalized_rewards, losses_fn: Callable = ppo_lm_losses) -> dict:
    """PPO with a KL penalty to a reference model on a causal LM, the RL stage of RLHF (Ziegler et al., 2019; Ouyang et al., 2022).

    Each step samples ``config.batch_size`` prompts (with replacement, seeded), continues them with the KV-cached
    sampler (:func:`rl4lm.lm.rollout.sample_rollout`), scores ``reward_fn(texts)`` (each text is the prompt followed
    by its response; (batch,) scores), and records the sampling log-probabilities (``rollout.logprobs``), those of
    ``reference`` (a frozen copy of the starting policy if None) and the value head's values. Then
    ``config.ppo_epochs`` passes over ``config.num_minibatches`` shuffled minibatches each take one Adam step on
    ``losses_fn`` (:func:`ppo_lm_losses`: per-token rewards, masked GAE, whitened advantages, clipped surrogate and
    value loss), with new log-probabilities and values recomputed with gradient. ``kl_rewards_fn``
    (:func:`kl_penalized_rewards`) computes the per-token rewards once per rollout, from the sampling log-probabilities;
    they reach ``losses_fn`` as its ``rewards`` keyword if it takes one (a ``losses_fn`` without it computes its own),
    and their sum over the response is ``return_mean``. Both functions are arguments so that Homework 3 runs the
    student's own. The critic is a :class:`ValueHead` on the
    policy's detached last hidden state, so the policy stays a plain transformers causal LM; it is returned.

    The policy is trained in place in eval mode (no dropout), so the sampler's and the update's log-probabilities agree.
    Returns {'history': {key: list per step} for :data:`HISTORY_KEYS` (``kl_to_ref``: the mean over responses of
    sum_t log pi - log pi_ref, the k1 estimate; ``seconds`` since the first step), 'prompts', 'samples_before',
    'rewards_before', 'kl_before', 'samples_after', 'rewards_after', 'kl_after' (``eval_prompts``, default the first
    16 prompts, sampled with the same seed before and after; KL as in the history), 'seconds', 'value_head'}.
    """
    _check_prompts(prompts)
    config.check()  # again: a dataclass can be changed after it was made
    if reference is policy:
        raise ValueError("reference is the policy itself, so the KL to it stays 0; pass a frozen copy (copy.deepcopy(policy)) or None.")
    device = next(policy.parameters()).device
    torch.manual_seed(config.seed)
    reference = (copy.deepcopy(policy) if reference is None else reference).eval()  # only ever run under no_grad
    policy.eval()
    value_head = ValueHead(_hidden_size(policy)).to(device)
    eval_prompts = list(prompts[:16]) if eval_prompts is None else list(eval_prompts)
    samples_before, rewards_before, kl_before = _evaluate(policy, reference, tokenizer, reward_fn, eval_prompts, config, config.seed + 1)
    optimizer = torch.optim.Adam([{"params": [p for p in policy.parameters() if p.requires_grad], "lr": config.learning_rate},
                                  {"params": value_head.parameters(), "lr": config.value_learning_rate}])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    pick = torch.Generator().manual_seed(config.seed)
    sampler = torch.Generator(device=device).manual_seed(config.seed)
    history = {key: [] for key in HISTORY_KEYS}
    bar = progress_bar(config.steps, progress, "PPO")
    start = time.perf_counter()
    for step in range(config.steps):
        batch_prompts = [prompts[i] for i in torch.randint(len(prompts), (config.batch_size,), generator=pick).tolist()]
        rollout = sample_rollout(policy, tokenizer, batch_prompts, config.max_new_tokens, temperature=config.temperature, generator=sampler)
        score = _scores(reward_fn, rollout.full_texts(tokenizer), device)  # (batch,)
        mask = rollout.response_mask[:, rollout.prompt_len:]  # (batch, new)
        with torch.no_grad():
            ref_logp, _ = response_logprobs_and_values(reference, None, rollout, config.temperature)  # (batch, new)
            _, old_values = response_logprobs_and_values(policy, value_head, rollout, config.temperature)  # (batch, new)
            rewards = kl_rewards_fn(score, rollout.logprobs, ref_logp, mask, config.beta)  # (batch, new)
        row = _update(policy, value_head, optimizer, params, rollout, ref_logp, old_values, score, rewards, config, losses_fn, pick)
        row["explained_variance"] = _explained_variance(rewards, old_values, mask, config)
        kl = kl_to_reference(rollout.logprobs, ref_logp, mask)  # (batch,)
        row.update(step=step, reward_mean=score.mean().item(), kl_to_ref=kl.mean().item(), return_mean=rewards.sum(dim=1).mean().item(),
                   response_length=rollout.response_lengths().float().mean().item(), seconds=time.perf_counter() - start)
        for key in HISTORY_KEYS:
            history[key].append(row[key])
        if bar is not None:
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", kl=f"{row['kl_to_ref']:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    samples_after, rewards_after, kl_after = _evaluate(policy, reference, tokenizer, reward_fn, eval_prompts, config, config.seed + 1)
    return {"history": history, "prompts": eval_prompts, "samples_before": samples_before, "rewards_before": rewards_before,
            "kl_before": kl_before, "samples_after": samples_after, "rewards_after": rewards_after, "kl_after": kl_after,
            "seconds": seconds, "value_head": value_head}


def _update(policy, value_head: ValueHead, optimizer: torch.optim.Optimizer, params: list, rollout: Rollout, ref_logp: torch.Tensor,
            old_values: torch.Tensor, score: torch.Tensor, rewards: torch.Tensor, config: PPOLMConfig, losses_fn: Callable,
            generator: torch.Generator) -> dict:
    """ppo_epochs passes of num_minibatches shuffled minibatches, one Adam step each; the passes' mean diagnostics.

    ``rewards`` (batch, new), the per-token rewards, reach ``losses_fn`` as its ``rewards`` keyword if it takes one.
    """
    mask = rollout.response_mask[:, rollout.prompt_len:]  # (batch, new)
    takes_rewards = _takes_keyword(losses_fn, "rewards")
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0, "grad_norm": 0.0}
    updates = 0
    for _ in range(config.ppo_epochs):
        order = torch.randperm(config.batch_size, generator=generator).to(mask.device)
        for rows in torch.tensor_split(order, config.num_minibatches):
            new_logp, new_values = response_logprobs_and_values(policy, value_head, _minibatch(rollout, rows), config.temperature)
            extra = {"rewards": rewards[rows]} if takes_rewards else {}
            out = losses_fn(new_logp, new_values, rollout.logprobs[rows], ref_logp[rows], old_values[rows], score[rows], mask[rows],
                            config.beta, config.clip_eps, config.gamma, config.lam, config.vf_coef, **extra)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            grads = [p for p in params if p.grad is not None]
            if config.max_grad_norm is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(grads, config.max_grad_norm)
            else:
                grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in grads]))
            optimizer.step()
            # a student's losses_fn may return only the losses: the ratio diagnostics are computed here
            ratios = masked_ratio_diagnostics(new_logp, rollout.logprobs[rows], mask[rows], config.clip_eps)
            diagnostics = {"grad_norm": float(grad_norm), **{key: value.item() for key, value in ratios.items()}}
            for key in sums:
                sums[key] += diagnostics[key] if key in diagnostics else out[key].item()
            updates += 1
    return {key: value / updates for key, value in sums.items()}


def _takes_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name`` (by name or through **kwargs)."""
    parameters = inspect.signature(fn).parameters.values()
    return any(p.name == name and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD for p in parameters)


@torch.no_grad()
def _explained_variance(rewards: torch.Tensor, old_values: torch.Tensor, mask: torch.Tensor, config: PPOLMConfig) -> float:
    """1 - Var(G - V) / Var(G) over response tokens, G the GAE returns: how much of the returns' spread the critic explained."""
    returns = masked_gae(rewards, old_values, mask, config.gamma, config.lam)[1]  # (batch, T)
    m = mask.bool()
    if int(m.sum()) < 2:
        return float("nan")
    var = returns[m].var()
    return float("nan") if not var > 0 else (1 - (returns[m] - old_values[m]).var() / var).item()
