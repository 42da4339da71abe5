"""Every model and data set of the course, by role: one table for both profiles.

A notebook never names a hub repository or a folder itself: it asks :mod:`rl4lm.profiles` for a
role (``"lm"``, ``"sentiment_classifier"``, ``"reviews"`` ...). Each :class:`Role` says what the
role is for, which pinned hub asset the ``full`` profile loads, which folder of the tiny build the
``tiny`` profile loads, and (for models) which transformers head loads it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ProfileError

CAUSAL_LM = "causal_lm"  # AutoModelForCausalLM
SEQUENCE_CLASSIFIER = "sequence_classifier"  # AutoModelForSequenceClassification
POSITIVE_LABEL = 1  # index of the positive class in every sentiment classifier below


@dataclass(frozen=True)
class Role:
    """One role: its purpose, its ``full`` hub asset and its ``tiny`` folder."""

    name: str
    kind: str  # "model" or "dataset"
    purpose: str  # one line: what the course uses it for
    hub_repo: str  # full profile: repository on the Hugging Face hub
    hub_note: str  # full profile: what that asset is
    tiny_folder: str  # tiny profile: folder inside the tiny build
    tiny_note: str  # tiny profile: what the project builds for it
    head: str | None = None  # models: CAUSAL_LM or SEQUENCE_CLASSIFIER
    revision: str = "main"  # full profile: a commit of the hub repository where one could be verified
    config: str | None = None  # data sets: the hub configuration name, if any
    splits: dict[str, str] = field(default_factory=dict)  # data sets: course split name -> hub split name
    # data sets gathered from several configurations of hub_repo (full profile): config -> function turning one of its
    # rows into the role's schema; the rows of all configs are concatenated, and ``splits`` names every course split
    tasks: dict[str, Callable[[dict], dict]] = field(default_factory=dict)

    @property
    def is_model(self) -> bool:
        """True for a model role, False for a data set."""
        return self.kind == "model"


def copa_item(row: dict) -> dict:
    """A SuperGLUE COPA row as a multiple-choice item: the premise, "because" or "therefore", then the alternative.

    The prompt of the lm-evaluation-harness (Gao et al., 2024) after Brown et al. (2020): "The man broke his toe
    because" with options "he dropped a hammer on his foot." and "he got a hole in his sock.".
    """
    connector = {"cause": "because", "effect": "therefore"}[row["question"]]
    return {"task": "copa", "context": f"{row['premise'].strip().removesuffix('.').rstrip()} {connector}",
            "options": [_lowercase_first(row["choice1"]), _lowercase_first(row["choice2"])], "label": int(row["label"])}


def _lowercase_first(text: str) -> str:
    """The text with its first letter in lower case (a COPA alternative continues the premise's sentence)."""
    return text[:1].lower() + text[1:]


def rte_item(row: dict) -> dict:
    """A SuperGLUE RTE row as a multiple-choice item: "<premise> Question: <hypothesis> True or False? Answer:".

    Label 0 (entailment) is option 0, "True", as in the lm-evaluation-harness (Gao et al., 2024).
    """
    return {"task": "rte", "context": f"{row['premise']}\nQuestion: {row['hypothesis']} True or False?\nAnswer:",
            "options": ["True", "False"], "label": int(row["label"])}


def boolq_item(row: dict) -> dict:
    """A SuperGLUE BoolQ row as a multiple-choice item: "<passage> Question: <question>? Answer:" with "no" or "yes".

    Label 1 (True) is option 1, "yes", as in the lm-evaluation-harness (Gao et al., 2024).
    """
    return {"task": "boolq", "context": f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:",
            "options": ["no", "yes"], "label": int(row["label"])}


# The post-training pipeline: four model roles, the stages of one pipeline, compared by the later labs. In ``full`` they are
# the public checkpoints of OLMo 2 1B (April 2025) of AI2 (OLMo et al., 2024), which publishes every stage of its
# post-training (Lambert et al., 2024, Tulu 3's recipe); in ``tiny`` they are the tiny LM and what rl4lm.assets.pipeline
# makes of it. The chain, from the model cards and the commands in allenai/open-instruct's docs/olmo2.md:
#   OLMo-2-0425-1B -> SFT (tulu-3-sft-olmo-2-mixture-0225) -> DPO (olmo-2-0425-1b-preference-mix, length-normalised
#   DPO, beta 5) -> RLVR1 (GRPO on GSM8K, MATH and IF constraints) -> Instruct (GRPO on MATH: the final RL stage).
# All are Olmo2ForCausalLM (16 layers, width 2,048, 16 heads, 4,096 positions, untied embeddings, 1,484,916,736
# parameters), with the same tokenizer: eos and bos '<|endoftext|>' (id 100257), pad '<|pad|>' (id 100277), a vocabulary of
# 100,352 rows; the base has no chat template, the post-trained stages have Tulu's ('<|endoftext|><|user|>\n...\n
# <|assistant|>\n'). The base stores float32 weights in two safetensors shards (5.9 GB); Instruct (and RLVR1) one
# model.safetensors. On a free Colab T4 (15 GB) load them with dtype=torch.float16: 3.0 GB each, so all four fit
# (11.9 GB) for inference; in float32 only two do. Revisions: the commit of main that public code pins for each
# stage (the same hashes in several independent projects, one of them a table of stage, repository and commit for
# base, SFT, DPO, RLVR1 and Instruct); the hub itself cannot be reached from the machines that built this project.
PIPELINE_CARD = "OLMo 2 1B (April 2025, 1.5B parameters; OLMo et al., 2024)"

ROLES: dict[str, Role] = {role.name: role for role in [
    Role("lm", "model", "the base language model that pages decode from and homework fine-tunes",
         "openai-community/gpt2", "GPT-2 small, 124M parameters (Radford et al., 2019)",
         "lm", "a 0.3M-parameter, 2-layer GPT-2 trained on the project's synthetic movie reviews", head=CAUSAL_LM,
         revision="607a30d783dfa663caf39e06633721c8d4cfcd7e"),
    Role("instruct_lm", "model", "an instruction-tuned model to compare with the base model",
         "Qwen/Qwen2.5-0.5B-Instruct", "a small modern instruction-tuned LM",
         "lm", "the tiny GPT-2 (the tiny profile has no separate instruction-tuned model)", head=CAUSAL_LM,
         revision="7ae557604adf67be50417f59c2c2f167def9a775"),
    Role("sentiment_classifier", "model", "the reward signal: P(positive) of a text",
         "lvwerra/distilbert-imdb", "DistilBERT fine-tuned on IMDB; label 1 is positive",
         "sentiment_classifier", "a 2-layer DistilBERT classifier trained on the synthetic reviews; label 1 is positive",
         head=SEQUENCE_CLASSIFIER,
         # main (head 0fc02cd) holds only pytorch_model.bin, a pickle; the safetensors conversion is the bot's pull
         # request refs/pr/5, pinned here so that the weights load as safetensors, also from a cache without the hub
         revision="refs/pr/5"),
    Role("pipeline_base", "model", "post-training pipeline, stage 0: the pre-trained model every later stage starts from",
         "allenai/OLMo-2-0425-1B", f"{PIPELINE_CARD}; the base, pre-trained on OLMo-mix-1124 and mid-trained on Dolmino-mix-1124 "
         "(no chat template)",
         "lm", "the tiny GPT-2 itself (the folder of the role lm)", head=CAUSAL_LM,
         revision="a1847dff35000b4271fa70afc5db10fd29fedbdf"),
    Role("pipeline_sft", "model", "post-training pipeline, stage 1: the base after supervised fine-tuning (SFT)",
         "allenai/OLMo-2-0425-1B-SFT", f"{PIPELINE_CARD}; the base after SFT on Tulu 3's instruction mixture for OLMo "
         "(allenai/tulu-3-sft-olmo-2-mixture-0225)",
         "pipeline_sft", "the tiny LM after SFT on the tiny qa rows: it answers questions about reviews", head=CAUSAL_LM,
         revision="0d85a3d037876ce6ac7d4311d994400fc66ac27f"),
    Role("pipeline_dpo", "model", "post-training pipeline, stage 2: the SFT model after preference optimisation (DPO)",
         "allenai/OLMo-2-0425-1B-DPO", f"{PIPELINE_CARD}; the SFT model after DPO (length-normalised, beta 5) on "
         "allenai/olmo-2-0425-1b-preference-mix",
         "pipeline_dpo", "the tiny SFT model after DPO on the tiny preference pairs (the more positive continuation wins)",
         head=CAUSAL_LM, revision="c4b0485961ab24c2433b090f3b922f0913a9290f"),
    Role("pipeline_rl", "model", "post-training pipeline, stage 3: the DPO model after reinforcement learning, the final model",
         "allenai/OLMo-2-0425-1B-Instruct", f"{PIPELINE_CARD}; the final model: RL with verifiable rewards by GRPO "
         "(KL coefficient 0.01, 16 samples per prompt) in two runs, DPO -> OLMo-2-0425-1B-RLVR1 (GSM8K, MATH, "
         "instruction constraints) -> Instruct (MATH)",
         "pipeline_rl", "the tiny DPO model after PPO with a KL penalty on the tiny classifier's P(positive)",
         head=CAUSAL_LM, revision="48d788eca847d4d7548f375ad03d3c9312f6139e"),
    Role("reviews", "dataset", "movie reviews with a sentiment label (prompts, classifier data)",
         "stanfordnlp/imdb", "50k IMDB movie reviews (Maas et al., 2011)",
         "reviews", "synthetic movie reviews with a known sentiment", config="plain_text",
         revision="e6281661ce1c48d982bc483cf8a173c1bbeb5d31"),
    Role("preferences", "dataset", "(prompt, chosen, rejected) pairs for reward models and DPO",
         "trl-lib/ultrafeedback_binarized", "chosen/rejected conversations (UltraFeedback)",
         "preferences", "synthetic (prompt, chosen, rejected) triples: the more positive continuation is chosen",
         revision="47124cb5778f5d50de1c7676a412828f3ea7c555"),
    Role("qa", "dataset", "question answering for supervised fine-tuning",
         "rajpurkar/squad", "SQuAD v1.1 question answering",
         "qa", "synthetic (review, question, answer) triples about the reviews", config="plain_text",
         splits={"test": "validation"}, revision="7b6d24c440a36b6815f21b70d25016731768db1f"),
    Role("multiple_choice", "dataset", "zero-shot multiple choice: items (task, context, options, label) scored by log-probability",
         "aps/super_glue", "SuperGLUE's COPA, RTE and BoolQ (Wang et al., 2019) rendered as prompts with options; "
         "SuperGLUE's validation split is the course's test (its test labels are hidden)",
         "multiple_choice", "COPA-, RTE- and BoolQ-style items about the synthetic reviews, 300 per task and split",
         # parquet (no loading script); the commit was checked against public projects that pin it and download
         # <config>/<split>-00000-of-00001.parquet from it (e.g. multirc/validation, boolq/train)
         revision="3de24cf8022e94f4ee4b9d55a6f539891524d646", splits={"train": "train", "test": "validation"},
         tasks={"copa": copa_item, "rte": rte_item, "boolq": boolq_item}),
]}

PIPELINE_ROLES = ("pipeline_base", "pipeline_sft", "pipeline_dpo", "pipeline_rl")  # in training order

MODEL_ROLES = tuple(name for name, role in ROLES.items() if role.is_model)
DATASET_ROLES = tuple(name for name, role in ROLES.items() if not role.is_model)


def role(name: str) -> Role:
    """Return the role called ``name`` or raise a one-sentence error listing the known roles."""
    if name not in ROLES:
        raise ProfileError(f"'{name}' is not a role of the course; known roles are {', '.join(sorted(ROLES))} "
                           "(see rl4lm/assets/roles.py).")
    return ROLES[name]


def model_role(name: str) -> Role:
    """The role ``name``, which must be a model; a data set gets a one-sentence pointer to ``load_dataset``."""
    found = role(name)
    if not found.is_model:
        raise ProfileError(f"'{name}' is a data set, not a model; load it with rl4lm.profiles.load_dataset('{name}').")
    return found


def dataset_role(name: str) -> Role:
    """The role ``name``, which must be a data set; a model gets a one-sentence pointer to ``load_model``."""
    found = role(name)
    if found.is_model:
        raise ProfileError(f"'{name}' is a model, not a data set; load it with rl4lm.profiles.load_model('{name}').")
    return found
