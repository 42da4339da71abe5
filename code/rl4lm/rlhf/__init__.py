"""RLHF: rewards for generated text (:mod:`.rewards`), reward models (:mod:`.reward_model`), policy gradients on a
language model with a KL penalty (:mod:`.lm_policy_gradient`); DPO and GRPO join here."""
