"""Every model and data set the course uses, by role, for both profiles.

A notebook never names a hub repository itself: it asks for a role (``"lm"``,
``"sentiment_classifier"``, ...) and :mod:`rl4lm.profiles` resolves the role to a
hub name (``full``) or to a folder the project built (``tiny``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubAsset:
    """A pinned asset on the Hugging Face hub (``full`` profile)."""

    repo_id: str
    revision: str = "main"
    kind: str = "model"  # "model" or "dataset"
    config: str | None = None  # data set configuration name, if any
    note: str = ""


# The ``full`` profile: real hub models and data sets, for Colab or a GPU.
FULL: dict[str, HubAsset] = {
    "lm": HubAsset("openai-community/gpt2", note="GPT-2 small, 124M parameters (Radford et al., 2019)"),
    "instruct_lm": HubAsset("Qwen/Qwen2.5-0.5B-Instruct", note="a small modern instruction-tuned LM"),
    "sentiment_classifier": HubAsset(
        "lvwerra/distilbert-imdb", note="DistilBERT fine-tuned on IMDB; label 1 is positive"
    ),
    "reviews": HubAsset("stanfordnlp/imdb", kind="dataset", note="50k IMDB movie reviews (Maas et al., 2011)"),
    "preferences": HubAsset(
        "trl-lib/ultrafeedback_binarized", kind="dataset", note="chosen/rejected pairs (UltraFeedback)"
    ),
    "qa": HubAsset("rajpurkar/squad", kind="dataset", note="SQuAD v1.1 question answering"),
}

# The ``tiny`` profile: what :mod:`rl4lm.tiny` builds for each role (same roles as FULL).
TINY: dict[str, str] = {
    "lm": "a 0.3M-parameter, 2-layer GPT-2 trained on the project's synthetic movie reviews",
    "instruct_lm": "the tiny GPT-2 (the tiny profile has no separate instruction-tuned model)",
    "sentiment_classifier": "a 2-layer DistilBERT classifier trained on the synthetic reviews; label 1 is positive",
    "reviews": "synthetic movie reviews with a known sentiment",
    "preferences": "synthetic (prompt, chosen, rejected) triples: the more positive continuation is chosen",
    "qa": "synthetic (review, question, answer) triples about the reviews",
}

MODEL_ROLES = tuple(name for name, asset in FULL.items() if asset.kind == "model")
DATASET_ROLES = tuple(name for name, asset in FULL.items() if asset.kind == "dataset")
POSITIVE_LABEL = 1  # index of the positive class in every sentiment classifier of the registry


def hub_asset(role: str) -> HubAsset:
    """Return the pinned hub asset for ``role`` or raise a one-sentence error."""
    if role not in FULL:
        from .profiles import ProfileError

        raise ProfileError(
            f"'{role}' is not in the registry; known roles are {', '.join(sorted(FULL))} "
            "(add it to rl4lm/registry.py)."
        )
    return FULL[role]
