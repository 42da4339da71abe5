"""Preference examples as text: a prompt and a response are a string (tiny profile) or a list of chat messages (full profile).

Shared by the reward model (:mod:`rl4lm.rlhf.reward_model`) and DPO (:mod:`rl4lm.rlhf.dpo`), which must write the same
example as the same text. This module imports nothing from the course (the tiny asset build uses DPO, so DPO's imports
must not lead back to :mod:`rl4lm.profiles`).
"""
from __future__ import annotations

__all__ = ["render_messages", "conversation_text"]


def render_messages(part) -> list[dict]:
    """A prompt or response as a list of chat messages (a plain string is one message without a role)."""
    if part is None:
        return []
    if isinstance(part, str):
        return [{"role": None, "content": part}]
    if isinstance(part, list) and all(isinstance(m, dict) and "content" in m for m in part):
        return list(part)
    raise ValueError(f"a preference example's prompt, chosen and rejected should be strings or lists of messages "
                     f"({{'role': ..., 'content': ...}}), got {type(part).__name__}.")


def conversation_text(messages: list[dict], tokenizer=None) -> str:
    """Messages as one text: the tokenizer's chat template if it has one, else 'User: ...' / 'Assistant: ...' blocks."""
    if all(m["role"] is None for m in messages):
        return "".join(m["content"] for m in messages)  # plain text: prompt + response, as in the tiny profile
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n\n".join(f"{(m['role'] or 'user').capitalize()}: {m['content']}" for m in messages)
