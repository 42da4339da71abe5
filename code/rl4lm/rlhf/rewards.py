"""Rewards for whole texts: a classifier's probability of a label is the sparse terminal reward of an episode.

Session 2 (the LM as an agent) and the RLHF sessions use the sentiment classifier of the active profile
as the judge; its positive class is :data:`rl4lm.assets.roles.POSITIVE_LABEL` in both profiles.
"""
from __future__ import annotations

import torch

from ..assets.roles import POSITIVE_LABEL


@torch.no_grad()
def sentiment_reward(classifier, tokenizer, texts: list[str], batch_size: int = 250, max_length: int = 128) -> torch.Tensor:
    """r(x) = P(positive | x) under a sequence classifier, for each text; (n,) float32 on the CPU.

    Texts are scored in batches (right padding, truncated to ``max_length`` tokens) on the classifier's device.
    """
    chunks = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(classifier.device)
        probs = classifier(**enc).logits.float().softmax(dim=-1)  # (batch, labels)
        chunks.append(probs[:, POSITIVE_LABEL].cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)
