"""An offline stand-in for the Hugging Face hub, so that the tests can run the ``full`` profile without a network.

:func:`build` writes, into one folder, what a student's Colab holds after the ``full`` profile has loaded every
role once: the eleven hub repositories of :mod:`rl4lm.assets.roles` under their real names, at their real commits,
with their real file layout, but with small contents made from the tiny assets:

==================================  =====================================================================
repository                          stand-in
==================================  =====================================================================
``openai-community/gpt2``           the tiny ``GPT2LMHeadModel``, its learned positions grown to GPT-2's
                                    1,024; no pad token (GPT-2 has none); ``tokenizer_config.json`` holds
                                    only ``model_max_length`` as GPT-2's does, so the class and the
                                    special tokens come from ``config.json`` exactly as for the real model
``Qwen/Qwen2.5-0.5B-Instruct``      a random 2-layer ``Qwen2ForCausalLM`` (bfloat16, tied embeddings) with
                                    the tiny tokenizer plus ``<|im_start|>``/``<|im_end|>`` and a ChatML
                                    chat template; eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos
``lvwerra/distilbert-imdb``         the tiny DistilBERT classifier with the real ``id2label``
                                    (0 NEGATIVE, 1 POSITIVE)
``allenai/OLMo-2-0425-1B``,         the four stages of OLMo 2 1B's post-training (roles ``pipeline_*``):
``...-SFT``, ``...-DPO``,           random 2-layer ``Olmo2ForCausalLM`` (float32, untied embeddings, 4,096
``...-Instruct``                    positions, rope theta 500,000; a different seed per stage) whose
                                    ``config.json`` is written in the hub's older spelling (``rope_theta``,
                                    ``torch_dtype``); the base in two shards with an index, as on the hub, the
                                    others in one ``model.safetensors``; the tiny tokenizer (with
                                    ``vocab.json``/``merges.txt``) as ``GPT2Tokenizer`` with OLMo 2's specials,
                                    eos = bos = unk ``<|endoftext|>`` and pad ``<|pad|>``, an embedding padded
                                    beyond the tokenizer (OLMo 2: 100,352 rows for 100,278 tokens), and Tulu's
                                    chat template on every stage but the base
``stanfordnlp/imdb``                config ``plain_text``: ``text`` and ``label`` (ClassLabel neg/pos) in
                                    ``plain_text/{train,test,unsupervised}-00000-of-00001.parquet``
``trl-lib/ultrafeedback_binarized`` config ``default``: ``chosen``/``rejected`` as lists of {content, role}
                                    messages, ``score_chosen``/``score_rejected`` (float64) in
                                    ``data/{train,test}-00000-of-00001.parquet``
``rajpurkar/squad``                 config ``plain_text``: ``id``, ``title``, ``context``, ``question``,
                                    ``answers`` {text, answer_start} in
                                    ``plain_text/{train,validation}-00000-of-00001.parquet``
``aps/super_glue``                  configs ``copa`` (``premise``, ``choice1``, ``choice2``, ``question``,
                                    ``idx``, ``label``), ``rte`` (``premise``, ``hypothesis``, ``idx``,
                                    ``label``) and ``boolq`` (``question``, ``passage``, ``idx``, ``label``),
                                    labels as ClassLabels, in
                                    ``<config>/{train,validation,test}-00000-of-00001.parquet``; the test
                                    splits' labels are -1 (hidden), as SuperGLUE's; only these three of
                                    SuperGLUE's configs
==================================  =====================================================================

Models are safetensors only. Each data set's ``README.md`` carries the ``dataset_info``/``configs`` YAML of the
real dataset card, and the parquet files are written from the features declared there.

Two caches, because that is how the libraries resolve offline
-------------------------------------------------------------
``<folder>/hub`` is a hub cache exactly as ``huggingface_hub`` lays it out (``models--openai-community--gpt2``,
``datasets--stanfordnlp--imdb``: ``blobs/`` named by git or LFS hash, ``snapshots/<commit>/...`` symlinks into
them, ``refs/main`` holding the commit). With ``HF_HUB_OFFLINE=1`` the profile's ``from_pretrained(repo,
revision=..., local_files_only=True)`` resolves models from it, by commit or through ``refs/main``.

Data sets do not: with datasets 5.2 in offline mode, ``load_dataset("stanfordnlp/imdb", "plain_text",
revision=...)`` raises ``OfflineModeIsEnabled`` before it looks at the hub cache, then falls back to
``CachedDatasetModuleFactory``, which only reads *datasets'* own Arrow cache in ``HF_DATASETS_CACHE``:
``<namespace>___<name>/<config>/<version>/<hash>/`` with ``dataset_info.json`` and ``<name>-<split>.arrow``.
(Checked experimentally: a complete hub cache alone gives ``ConnectionError: Couldn't reach
'stanfordnlp/imdb' on the Hub (OfflineModeIsEnabled)``.) That fallback takes the most recent cached hash and
ignores ``revision``. So :func:`build` also writes ``<folder>/datasets``: each data set prepared from its hub
snapshot by datasets' own module factory and parquet builder, with the builder arguments of an online load
(``repo_id``'s namespace, the config of the card, version 0.0.0, hash = the commit), which is what the first
online ``load_dataset`` of a Colab session leaves behind. The unchanged ``rl4lm.profiles.load_dataset`` then
loads it offline. Because that path ignores the revision, the tests check the pinned revisions of the data sets
against the hub cache separately (``huggingface_hub.try_to_load_from_cache``).

:func:`environment` gives the variables that point the ``full`` profile at the stand-in (for a subprocess or a
notebook kernel; ``huggingface_hub`` and ``datasets`` read them when they are imported).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

# The hub as the full profile finds it: repository -> commit of main. Every commit was verified from public sources
# (see rl4lm/assets/roles.py); distilbert-imdb's main (0fc02cd) holds only pytorch_model.bin.
COMMITS = {
    "openai-community/gpt2": "607a30d783dfa663caf39e06633721c8d4cfcd7e",
    "Qwen/Qwen2.5-0.5B-Instruct": "7ae557604adf67be50417f59c2c2f167def9a775",
    "lvwerra/distilbert-imdb": "0fc02cd68445b599a9cb2da2368050e7fb31d29a",
    "stanfordnlp/imdb": "e6281661ce1c48d982bc483cf8a173c1bbeb5d31",
    "trl-lib/ultrafeedback_binarized": "47124cb5778f5d50de1c7676a412828f3ea7c555",
    "rajpurkar/squad": "7b6d24c440a36b6815f21b70d25016731768db1f",
    "aps/super_glue": "3de24cf8022e94f4ee4b9d55a6f539891524d646",
}
COMMITS.update({  # OLMo 2 1B's post-training stages: main as public code pins it (see rl4lm/assets/roles.py)
    "allenai/OLMo-2-0425-1B": "a1847dff35000b4271fa70afc5db10fd29fedbdf",
    "allenai/OLMo-2-0425-1B-SFT": "0d85a3d037876ce6ac7d4311d994400fc66ac27f",
    "allenai/OLMo-2-0425-1B-DPO": "c4b0485961ab24c2433b090f3b922f0913a9290f",
    "allenai/OLMo-2-0425-1B-Instruct": "48d788eca847d4d7548f375ad03d3c9312f6139e",
})
# Branches other than main: distilbert-imdb's safetensors weights exist only on the conversion bot's pull request
# refs/pr/5, which roles.py pins. Its commit was not verified, so the stand-in names one that no hub commit has.
OTHER_REFS = {"lvwerra/distilbert-imdb": ("refs/pr/5", "5afe7e45f05e5afe7e45f05e5afe7e45f05e5afe")}
LFS_SUFFIXES = (".safetensors", ".parquet", ".bin")  # stored as LFS objects on the hub: blob named by SHA-256
SIZES = {"imdb": {"train": 1000, "test": 1000, "unsupervised": 200},  # enough for every page: 1,000 test reviews
         "ultrafeedback": {"train": 1000, "test": 100},
         "squad": {"train": 4000, "validation": 300},  # homework 1 fine-tunes on 4,000 SQuAD rows in full
         "super_glue": {"train": 100, "validation": 100, "test": 50}}  # per task: copa, rte, boolq

CHAT_TEMPLATE = (  # ChatML as Qwen2.5's template writes it (without tools), default system prompt included
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

OLMO2_CHAT_TEMPLATE = (  # Tulu's template, as OLMo 2's post-trained stages carry it: bos, then <|role|> headers
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<|system|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'user' %}"
    "{{ '<|user|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'assistant' %}{% if not loop.last %}"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token + '\\n' }}{% else %}"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}"
)
OLMO2_STAGES = {  # repository -> (seed of its random weights, shards on the hub, chat template)
    "allenai/OLMo-2-0425-1B": (1, 2, None),
    "allenai/OLMo-2-0425-1B-SFT": (2, 1, OLMO2_CHAT_TEMPLATE),
    "allenai/OLMo-2-0425-1B-DPO": (3, 1, OLMO2_CHAT_TEMPLATE),
    "allenai/OLMo-2-0425-1B-Instruct": (4, 1, OLMO2_CHAT_TEMPLATE),
}

IMDB_CARD = """---
pretty_name: IMDB
dataset_info:
  config_name: plain_text
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
  splits:
  - name: train
    num_examples: {train}
  - name: test
    num_examples: {test}
  - name: unsupervised
    num_examples: {unsupervised}
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  - split: unsupervised
    path: plain_text/unsupervised-*
  default: true
---
# Stand-in for stanfordnlp/imdb (tests only): tiny synthetic reviews with the real schema and layout.
"""

ULTRAFEEDBACK_CARD = """---
dataset_info:
  features:
  - name: chosen
    list:
    - name: content
      dtype: string
    - name: role
      dtype: string
  - name: rejected
    list:
    - name: content
      dtype: string
    - name: role
      dtype: string
  - name: score_chosen
    dtype: float64
  - name: score_rejected
    dtype: float64
  splits:
  - name: train
    num_examples: {train}
  - name: test
    num_examples: {test}
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# Stand-in for trl-lib/ultrafeedback_binarized (tests only): tiny preference pairs as conversations.
"""

SQUAD_CARD = """---
pretty_name: SQuAD
dataset_info:
  config_name: plain_text
  features:
  - name: id
    dtype: string
  - name: title
    dtype: string
  - name: context
    dtype: string
  - name: question
    dtype: string
  - name: answers
    sequence:
    - name: text
      dtype: string
    - name: answer_start
      dtype: int32
  splits:
  - name: train
    num_examples: {train}
  - name: validation
    num_examples: {validation}
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: validation
    path: plain_text/validation-*
  default: true
---
# Stand-in for rajpurkar/squad (tests only): extractive questions about tiny synthetic reviews.
"""

SUPER_GLUE_CARD = """---
pretty_name: SuperGLUE
dataset_info:
- config_name: boolq
  features:
  - name: question
    dtype: string
  - name: passage
    dtype: string
  - name: idx
    dtype: int32
  - name: label
    dtype:
      class_label:
        names:
        - 'False'
        - 'True'
  splits:
  - name: train
    num_examples: {boolq_train}
  - name: validation
    num_examples: {boolq_validation}
  - name: test
    num_examples: {boolq_test}
- config_name: copa
  features:
  - name: premise
    dtype: string
  - name: choice1
    dtype: string
  - name: choice2
    dtype: string
  - name: question
    dtype: string
  - name: idx
    dtype: int32
  - name: label
    dtype:
      class_label:
        names:
          '0': choice1
          '1': choice2
  splits:
  - name: train
    num_examples: {copa_train}
  - name: validation
    num_examples: {copa_validation}
  - name: test
    num_examples: {copa_test}
- config_name: rte
  features:
  - name: premise
    dtype: string
  - name: hypothesis
    dtype: string
  - name: idx
    dtype: int32
  - name: label
    dtype:
      class_label:
        names:
          '0': entailment
          '1': not_entailment
  splits:
  - name: train
    num_examples: {rte_train}
  - name: validation
    num_examples: {rte_validation}
  - name: test
    num_examples: {rte_test}
configs:
- config_name: boolq
  data_files:
  - split: train
    path: boolq/train-*
  - split: validation
    path: boolq/validation-*
  - split: test
    path: boolq/test-*
- config_name: copa
  data_files:
  - split: train
    path: copa/train-*
  - split: validation
    path: copa/validation-*
  - split: test
    path: copa/test-*
- config_name: rte
  data_files:
  - split: train
    path: rte/train-*
  - split: validation
    path: rte/validation-*
  - split: test
    path: rte/test-*
---
# Stand-in for aps/super_glue (tests only): COPA, RTE and BoolQ rows about tiny synthetic reviews.
"""


def environment(folder: Path) -> dict[str, str]:
    """Environment variables that run the ``full`` profile offline against the stand-in built in ``folder``."""
    folder = Path(folder)
    return {"RL4LM_PROFILE": "full", "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "home"),
            "HF_HUB_CACHE": str(folder / "hub"), "HF_DATASETS_CACHE": str(folder / "datasets"),
            "HF_HUB_DISABLE_TELEMETRY": "1", "DISABLE_SAFETENSORS_CONVERSION": "1"}


def repo_folder(hub: Path, repo_id: str, repo_type: str = "model") -> Path:
    """``<hub>/models--org--name`` (or ``datasets--org--name``), as huggingface_hub names a cached repository."""
    return Path(hub) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def _blob_name(path: str, data: bytes) -> str:
    """The blob name the hub cache uses: SHA-256 for LFS files, the git blob SHA-1 for the others."""
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_repo(hub: Path, repo_id: str, files: dict[str, bytes], repo_type: str = "model", ref: str = "main") -> Path:
    """Write one branch of a repository into a hub cache (main: its commit of :data:`COMMITS`); return the snapshot."""
    commit = COMMITS[repo_id] if ref == "main" else dict([OTHER_REFS[repo_id]])[ref]
    base = repo_folder(hub, repo_id, repo_type)
    snapshot = base / "snapshots" / commit
    for relative, data in sorted(files.items()):
        blob = base / "blobs" / _blob_name(relative, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (base / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (base / "refs" / ref).write_text(commit)
    return snapshot


def _folder_files(folder: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of the named files of a folder."""
    return {name: (Path(folder) / name).read_bytes() for name in names}


def _json(data: dict) -> bytes:
    """A JSON file as transformers writes one."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


@contextlib.contextmanager
def _quiet():
    """Fixed seeds and silent libraries while building; the caller's RNG state and verbosity are restored."""
    import datasets
    import torch
    import transformers

    bars = datasets.is_progress_bar_enabled(), transformers.logging.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity(), transformers.logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            transformers.logging.enable_progress_bar()
        datasets.logging.set_verbosity(verbosity[0])
        transformers.logging.set_verbosity(verbosity[1])


def _gpt2(hub: Path, tiny_root: Path, work: Path) -> None:
    """openai-community/gpt2: the tiny GPT-2 with 1,024 learned positions and, like GPT-2, no pad token."""
    import torch
    from transformers import GenerationConfig, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_root / "lm")
    old = model.transformer.wpe.weight.data
    wpe = torch.nn.Embedding(1024, old.shape[1])
    torch.nn.init.normal_(wpe.weight, std=model.config.initializer_range)
    wpe.weight.data[: old.shape[0]] = old  # the trained positions stay; positions beyond them are untrained
    model.transformer.wpe = wpe
    model.config.n_positions = 1024
    model.config.pad_token_id = None
    eos = model.config.eos_token_id
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos)
    out = work / "gpt2"
    model.save_pretrained(out)
    files = _folder_files(out, ["config.json", "generation_config.json", "model.safetensors"])
    files["tokenizer.json"] = (tiny_root / "lm" / "tokenizer.json").read_bytes()
    files["tokenizer_config.json"] = _json({"model_max_length": 1024})  # GPT-2's whole tokenizer_config.json
    write_repo(hub, "openai-community/gpt2", files)


def _qwen(hub: Path, tiny_root: Path, work: Path) -> None:
    """Qwen/Qwen2.5-0.5B-Instruct: a random 2-layer Qwen2ForCausalLM, ChatML tokens and chat template."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_root / "lm")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    out = work / "qwen"
    tokenizer.save_pretrained(out)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], do_sample=True,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], repetition_penalty=1.1, temperature=0.7, top_p=0.8, top_k=20)
    model.save_pretrained(out)
    files = _folder_files(out, ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"])
    files["tokenizer_config.json"] = _json({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": 131072,
        "split_special_tokens": False})
    write_repo(hub, "Qwen/Qwen2.5-0.5B-Instruct", files)


def _olmo2_tokenizer_files(tiny_root: Path, work: Path, chat_template: str | None) -> dict[str, bytes]:
    """The tiny tokenizer in OLMo 2's files and specials: GPT2Tokenizer, eos = bos = unk <|endoftext|>, pad <|pad|>."""
    from tokenizers import Tokenizer

    folder = work / "olmo2-tokenizer"
    folder.mkdir(exist_ok=True)
    tokenizer_json = (tiny_root / "lm" / "tokenizer.json").read_bytes()
    Tokenizer.from_str(tokenizer_json.decode()).model.save(str(folder))  # vocab.json and merges.txt, as the hub has them
    specials = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "unk_token": "<|endoftext|>"}
    config = {"tokenizer_class": "GPT2Tokenizer", **specials, "add_prefix_space": False, "clean_up_tokenization_spaces": False,
              "model_max_length": 1000000000000000019884624838656, "extra_special_tokens": {}}
    if chat_template is not None:
        config["chat_template"] = chat_template
    return {"tokenizer.json": tokenizer_json, "tokenizer_config.json": _json(config), "special_tokens_map.json": _json(specials),
            **_folder_files(folder, ["vocab.json", "merges.txt"])}


def _hub_style_olmo2_config(config: dict) -> bytes:
    """config.json as the hub's OLMo 2 checkpoints spell it (written by transformers 4.4x): rope_theta and torch_dtype."""
    config = dict(config)
    rope = config.pop("rope_parameters")
    config.update(rope_theta=rope["rope_theta"], rope_scaling=None, torch_dtype=config.pop("dtype"), transformers_version="4.48.0")
    return _json(config)


def _olmo2_pipeline(hub: Path, tiny_root: Path, work: Path) -> None:
    """The four OLMo 2 1B stages: random 2-layer Olmo2ForCausalLM, each with its own seed, file layout and tokenizer files."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Olmo2Config, Olmo2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_root / "lm")
    eos, pad = tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids("<|pad|>")
    rows = -(-(len(tokenizer) + 1) // 128) * 128  # padded beyond the tokenizer, as OLMo 2's 100,352 rows for 100,278 tokens
    config = Olmo2Config(vocab_size=rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-6,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    for repo_id, (seed, shards, chat_template) in OLMO2_STAGES.items():
        torch.manual_seed(seed)
        model = Olmo2ForCausalLM(config)
        model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
        out = work / repo_id.replace("/", "--")
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        model.save_pretrained(out, max_shard_size=size // shards + 1024 if shards > 1 else size * 2)
        weights = sorted(p.name for p in out.glob("*.safetensors"))
        index = ["model.safetensors.index.json"] if shards > 1 else []
        assert len(weights) == shards, f"{repo_id}: {weights}"
        files = _folder_files(out, ["generation_config.json", *weights, *index])
        files["config.json"] = _hub_style_olmo2_config(json.loads((out / "config.json").read_text()))
        write_repo(hub, repo_id, {**files, **_olmo2_tokenizer_files(tiny_root, work, chat_template)})


def _distilbert_imdb(hub: Path, tiny_root: Path) -> None:
    """lvwerra/distilbert-imdb: the tiny DistilBERT classifier with the real label names.

    As on the hub, main holds the weights as a pickle (``pytorch_model.bin``, which the course never loads) and
    the pull request ``refs/pr/5`` holds the safetensors conversion.
    """
    import torch
    from safetensors.torch import load_file

    folder = tiny_root / "sentiment_classifier"
    files = _folder_files(folder, ["tokenizer.json", "tokenizer_config.json"])
    config = json.loads((folder / "config.json").read_text())
    config.update(id2label={"0": "NEGATIVE", "1": "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    files["config.json"] = _json(config)
    pickled = io.BytesIO()
    torch.save(load_file(folder / "model.safetensors"), pickled)
    write_repo(hub, "lvwerra/distilbert-imdb", {**files, "pytorch_model.bin": pickled.getvalue()})
    ref, _ = OTHER_REFS["lvwerra/distilbert-imdb"]
    write_repo(hub, "lvwerra/distilbert-imdb", {**files, "model.safetensors": (folder / "model.safetensors").read_bytes()}, ref=ref)


def _rows(tiny_root: Path, name: str, split: str) -> list[dict]:
    """The rows of one tiny JSON-lines file."""
    return [json.loads(line) for line in (tiny_root / name / f"{split}.jsonl").read_text().splitlines()]


def _imdb_rows(tiny_root: Path) -> dict[str, list[dict]]:
    """Tiny reviews as IMDB rows; the unsupervised split has label -1, as IMDB's."""
    train, test = _rows(tiny_root, "reviews", "train"), _rows(tiny_root, "reviews", "test")
    n = SIZES["imdb"]
    return {"train": [{"text": r["text"], "label": r["label"]} for r in train[: n["train"]]],
            "test": [{"text": r["text"], "label": r["label"]} for r in test[: n["test"]]],
            "unsupervised": [{"text": r["text"], "label": -1} for r in train[-n["unsupervised"]:]]}


def _ultrafeedback_rows(tiny_root: Path) -> dict[str, list[dict]]:
    """Tiny preference triples as conversations: the prompt is the user's turn, a continuation the assistant's."""
    def row(p: dict) -> dict:
        user = {"content": p["prompt"], "role": "user"}
        return {"chosen": [user, {"content": p["chosen"].strip(), "role": "assistant"}],
                "rejected": [user, {"content": p["rejected"].strip(), "role": "assistant"}],
                "score_chosen": float(p["score_chosen"]), "score_rejected": float(p["score_rejected"])}

    n = SIZES["ultrafeedback"]
    return {split: [row(p) for p in _rows(tiny_root, "preferences", split)[: n[split]]] for split in ("train", "test")}


def _squad_rows(tiny_root: Path) -> dict[str, list[dict]]:
    """Extractive questions about tiny reviews: the answer is the genre, a span of the context, as in SQuAD."""
    def row(split: str, i: int, review: dict) -> dict:
        genre, context = review["genre"], review["text"]
        return {"id": hashlib.md5(f"{split}-{i}".encode()).hexdigest()[:24], "title": genre.capitalize(),
                "context": context, "question": "what kind of film is it ?",
                "answers": {"text": [genre], "answer_start": [context.index(genre)]}}

    n = SIZES["squad"]
    return {"train": [row("train", i, r) for i, r in enumerate(_rows(tiny_root, "reviews", "train")[: n["train"]])],
            "validation": [row("validation", i, r) for i, r in enumerate(_rows(tiny_root, "reviews", "test")[: n["validation"]])]}


def _super_glue_rows(tiny_root: Path) -> dict[str, dict[str, list[dict]]]:
    """COPA, RTE and BoolQ rows (config -> split -> rows) about tiny reviews, in SuperGLUE's spelling; test labels are -1."""
    from rl4lm.assets import tiny

    def sentence(text: str) -> str:
        """'the plot was dull .' -> 'The plot was dull.' (SuperGLUE's capitalised sentences)."""
        text = text.strip().removesuffix(".").rstrip()
        return text[:1].upper() + text[1:] + "."

    def copa(review: dict, label: int) -> dict:
        closing = next(c for c in tiny.CLOSINGS[review["label"]] if review["text"].endswith(c))
        other = tiny.CLOSINGS[1 - review["label"]][len(review["text"]) % len(tiny.CLOSINGS[0])]
        choices = [closing, other] if label in (0, -1) else [other, closing]
        return {"premise": sentence(review["text"][: -len(closing)]), "choice1": sentence(choices[0]),
                "choice2": sentence(choices[1]), "question": "effect", "label": label}

    def rte(review: dict, label: int) -> dict:
        liked = bool(review["label"]) == (label != 1)
        return {"premise": review["text"], "hypothesis": "The reviewer liked the film." if liked else "The reviewer disliked the film.",
                "label": label}

    def boolq(review: dict, label: int) -> dict:
        return {"question": "did the reviewer like the film", "passage": review["text"],
                "label": review["label"] if label != -1 else -1}

    reviews = {"train": _rows(tiny_root, "reviews", "train"), "validation": _rows(tiny_root, "reviews", "test")}
    reviews["test"] = reviews["validation"][-SIZES["super_glue"]["test"]:]
    rows = {}
    for config, make in [("boolq", boolq), ("copa", copa), ("rte", rte)]:
        rows[config] = {split: [{**make(review, -1 if split == "test" else i % 2), "idx": i}
                                for i, review in enumerate(reviews[split][:n])]
                        for split, n in SIZES["super_glue"].items()}
    return rows


def _super_glue_repo(hub: Path, work: Path, tiny_root: Path) -> Path:
    """aps/super_glue: its card and one parquet file per config and split, ``<config>/<split>-00000-of-00001.parquet``."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    rows = _super_glue_rows(tiny_root)
    readme = SUPER_GLUE_CARD.format(**{f"{config}_{split}": len(part) for config, splits in rows.items()
                                       for split, part in splits.items()})
    (work / "README.md").write_text(readme)
    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(work / "README.md").data)
    files = {"README.md": readme.encode()}
    for config, splits in rows.items():
        for split, split_rows in splits.items():
            path = work / f"{config}-{split}.parquet"
            datasets.Dataset.from_list(split_rows, features=infos[config].features).to_parquet(path)
            files[f"{config}/{split}-00000-of-00001.parquet"] = path.read_bytes()
    return write_repo(hub, "aps/super_glue", files, repo_type="dataset")


def _dataset_repo(hub: Path, work: Path, repo_id: str, card: str, folder: str, rows: dict[str, list[dict]]) -> Path:
    """Write a data set repository: its card, and one parquet file per split with the features the card declares."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    readme = card.format(**{split: len(split_rows) for split, split_rows in rows.items()})
    (work / "README.md").write_text(readme)
    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(work / "README.md").data)
    features = next(iter(infos.values())).features
    files = {"README.md": readme.encode()}
    for split, split_rows in rows.items():
        path = work / f"{split}.parquet"
        datasets.Dataset.from_list(split_rows, features=features).to_parquet(path)
        files[f"{folder}/{split}-00000-of-00001.parquet"] = path.read_bytes()
    return write_repo(hub, repo_id, files, repo_type="dataset")


def _prepare_datasets_cache(snapshot: Path, repo_id: str, cache: Path) -> None:
    """Prepare datasets' Arrow cache from a hub snapshot as an online ``load_dataset(repo_id)`` does (see the module)."""
    from datasets import load
    from datasets.naming import camelcase_to_snakecase

    module = load.LocalDatasetModuleFactory(str(snapshot)).get_module()
    name = camelcase_to_snakecase(repo_id.split("/")[-1])
    staging = cache / ".staging"
    for config_name in module.builder_configs_parameters.metadata_configs:
        builder = load.get_dataset_builder_class(module, dataset_name=name)(
            cache_dir=str(staging), dataset_name=name, config_name=config_name, hash=COMMITS[repo_id],
            info=module.dataset_infos.get(config_name), base_path=str(snapshot))
        builder.download_and_prepare()
    # a local builder has no repo_id, so it writes <name>/...; an online one writes <namespace>___<name>/...
    shutil.move(str(staging / name), str(cache / f"{repo_id.split('/')[0]}___{name}"))
    shutil.rmtree(staging)


def build(folder: Path, tiny_root: Path | None = None) -> Path:
    """Build the stand-in in ``folder`` (new or empty: ``hub/`` and ``datasets/``) from the tiny assets; return it.

    ``tiny_root`` defaults to the tiny build of :mod:`rl4lm.assets.tiny` (built first if this machine has none).
    """
    from rl4lm.assets import tiny

    folder = Path(folder)
    tiny_root = Path(tiny_root) if tiny_root is not None else tiny.asset_path("lm").parent  # built once, then checked
    hub, cache = folder / "hub", folder / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    with _quiet(), tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        _gpt2(hub, tiny_root, work)
        _qwen(hub, tiny_root, work)
        _olmo2_pipeline(hub, tiny_root, work)
        _distilbert_imdb(hub, tiny_root)
        for repo_id, card, data_folder, rows in [
            ("stanfordnlp/imdb", IMDB_CARD, "plain_text", _imdb_rows(tiny_root)),
            ("trl-lib/ultrafeedback_binarized", ULTRAFEEDBACK_CARD, "data", _ultrafeedback_rows(tiny_root)),
            ("rajpurkar/squad", SQUAD_CARD, "plain_text", _squad_rows(tiny_root)),
        ]:
            staging = work / repo_id.replace("/", "--")
            staging.mkdir()
            snapshot = _dataset_repo(hub, staging, repo_id, card, data_folder, rows)
            _prepare_datasets_cache(snapshot, repo_id, cache)
        staging = work / "aps--super_glue"
        staging.mkdir()
        _prepare_datasets_cache(_super_glue_repo(hub, staging, tiny_root), "aps/super_glue", cache)
    return folder
