"""RLHF: rewards for generated text (:mod:`.rewards`); reward models, KL penalties, PPO, DPO and GRPO join here."""
