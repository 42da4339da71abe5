"""PPO with a KL penalty on the profile's language model (Session 4, Homework 3): continue reviews positively.

The RL stage of RLHF (rl4lm.rlhf.ppo_lm.train_ppo_lm): the policy is the profile's LM, the reward is the probability
of positive sentiment under the profile's classifier (rl4lm.rlhf.rewards.sentiment_reward), the prompts are the
first words of training reviews, and a KL penalty beta (log pi - log pi_ref) per token keeps the policy near the
starting LM. Tiny profile (the default): 0.3M-parameter GPT-2, reward from about 0.45 to above 0.9 in well under
90 s on 2 CPU cores. Full profile: GPT-2 small and DistilBERT-IMDB; its defaults are an estimate for a Colab T4.

    python code/labs/ppo_lm_sentiment.py --seed 0
    python code/labs/ppo_lm_sentiment.py --beta 0 --learning-rate 1e-3     # no KL penalty: watch the samples degenerate
    RL4LM_PROFILE=full python code/labs/ppo_lm_sentiment.py

Prints step, reward_mean, kl_to_ref, approx_kl and clipfrac every --log-every steps, samples before and after,
and ends with one JSON line: reward_start and reward_end (mean reward of the same held-out prompts sampled with
the same seed before and after training), kl_to_ref (mean summed log pi - log pi_ref of the samples after),
reward_first_step and reward_last_steps (training batches), steps, seed, profile, seconds (training time).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch

from rl4lm import labs, profiles
from rl4lm.rlhf.lm_policy_gradient import review_prompts
from rl4lm.rlhf.ppo_lm import PPOLMConfig, train_ppo_lm
from rl4lm.rlhf.rewards import sentiment_reward

DEFAULTS = {  # per profile; unset options take these (tiny: the PPOLMConfig defaults, tuned on 2 CPU cores)
    "tiny": dict(steps=30, batch_size=32, max_new_tokens=24, learning_rate=1e-4, beta=0.05),
    # GPT-2 small on a Colab T4: TRL's sentiment example's learning rate (1.41e-5), an estimate until measured
    "full": dict(steps=100, batch_size=32, max_new_tokens=24, learning_rate=1.41e-5, beta=0.05),
}
CLASSIFIER_TOKENS = 128  # the classifier reads at most this many tokens of a text


@dataclass
class Args:
    """PPO-RLHF towards positive sentiment; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of torch, of the prompt order and of the sampling")
    steps: int | None = labs.arg(None, "rollouts, each followed by --ppo-epochs passes of --num-minibatches updates")
    batch_size: int | None = labs.arg(None, "responses per rollout")
    max_new_tokens: int | None = labs.arg(None, "response length at most")
    learning_rate: float | None = labs.arg(None, "Adam's learning rate for the policy")
    beta: float | None = labs.arg(None, "KL coefficient (0: no penalty)")
    clip_eps: float = labs.arg(PPOLMConfig.clip_eps, "PPO's clipping epsilon")
    ppo_epochs: int = labs.arg(PPOLMConfig.ppo_epochs, "passes over each rollout")
    num_minibatches: int = labs.arg(PPOLMConfig.num_minibatches, "minibatches per pass")
    temperature: float = labs.arg(PPOLMConfig.temperature, "sampling temperature")
    prompt_words: int = labs.arg(3, "words of a review that form its prompt")
    prompts: int = labs.arg(500, "training reviews whose first words are the prompts")
    eval_prompts: int = labs.arg(64, "held-out prompts sampled before and after training")
    log_every: int = labs.arg(5, "print the metrics every this many steps")
    show: int = labs.arg(4, "samples printed before and after")


def sentiment_config(args: Args) -> PPOLMConfig:
    """The training settings: the options given on the command line, the profile's defaults for the others."""
    defaults = DEFAULTS[profiles.current_profile()]
    chosen = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}
    fixed = {field.name: getattr(args, field.name) for field in dataclasses.fields(PPOLMConfig)
             if hasattr(args, field.name) and field.name not in chosen}
    return PPOLMConfig(**chosen, **fixed)


def main(argv: list[str] | None = None) -> dict:
    """Train, log every --log-every steps, print samples and the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    try:
        config = sentiment_config(args)
    except ValueError as error:  # a setting that cannot work: one line, no traceback
        raise SystemExit(f"ppo_lm_sentiment.py: error: {error}") from None
    if args.prompts < 1 or args.eval_prompts < 1 or args.log_every < 1:
        raise SystemExit("ppo_lm_sentiment.py: error: --prompts, --eval-prompts and --log-every must be at least 1")
    profiles.use_tiny_threads()
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = profiles.load_tokenizer("lm")
    reference = profiles.load_model("lm").to(device).eval()
    policy = copy.deepcopy(reference)
    classifier = profiles.load_model("sentiment_classifier").to(device).eval()
    classifier_tokenizer = profiles.load_tokenizer("sentiment_classifier")
    reviews = profiles.load_dataset("reviews")
    train = reviews["train"].shuffle(seed=args.seed).select(range(min(args.prompts, reviews["train"].num_rows)))
    test = reviews["test"].select(range(min(args.eval_prompts, reviews["test"].num_rows)))
    prompts = review_prompts(list(train["text"]), words=args.prompt_words)
    eval_prompts = review_prompts(list(test["text"]), words=args.prompt_words)

    def positive_probability(texts: list[str]) -> torch.Tensor:
        """r(x, y) = P(positive | prompt + response) under the profile's sentiment classifier; (n,)."""
        return sentiment_reward(classifier, classifier_tokenizer, texts, max_length=CLASSIFIER_TOKENS)

    start = time.perf_counter()
    try:
        result = train_ppo_lm(policy, tokenizer, positive_probability, prompts, config, reference=reference, eval_prompts=eval_prompts)
    except ValueError as error:  # a setting that cannot work: one line, no traceback
        raise SystemExit(f"ppo_lm_sentiment.py: error: {error}") from None
    history = result["history"]
    for i in range(0, config.steps, args.log_every):
        labs.log(history["step"][i], **{key: history[key][i] for key in ("reward_mean", "kl_to_ref", "approx_kl", "clipfrac")})
    for name in ("before", "after"):
        print(f"samples {name}:")
        for text, reward in list(zip(result[f"samples_{name}"], result[f"rewards_{name}"]))[:args.show]:
            print(f"  {reward:.3f}  {text}")
    last = history["reward_mean"][-5:]
    return labs.finish(profile=profiles.current_profile(), seed=config.seed, steps=config.steps,
                       reward_start=round(sum(result["rewards_before"]) / len(eval_prompts), 4),
                       reward_end=round(sum(result["rewards_after"]) / len(eval_prompts), 4),
                       kl_to_ref=round(result["kl_after"], 4), reward_first_step=round(history["reward_mean"][0], 4),
                       reward_last_steps=round(sum(last) / len(last), 4), seconds=round(result["seconds"], 1),
                       seconds_total=round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    labs.run_main(main)
