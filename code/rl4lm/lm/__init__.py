"""Language models: attention and positions (:mod:`.attention`), log-probabilities (:mod:`.logprobs`),
decoding schemes and their statistics (:mod:`.decoding`), KV-cached rollouts for RL (:mod:`.rollout`),
zero-shot multiple choice (:mod:`.scoring`), supervised fine-tuning (:mod:`.sft`)."""
