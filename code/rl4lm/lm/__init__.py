"""Language models: attention and positions (:mod:`.attention`), log-probabilities (:mod:`.logprobs`),
decoding schemes and their statistics (:mod:`.decoding`), supervised fine-tuning (:mod:`.sft`)."""
