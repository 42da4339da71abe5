"""Teacher-forced training of language models: the per-sequence cross-entropy loss (Session 2)."""
from __future__ import annotations

import torch


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L = 1/b sum_j 1/n_j sum_i -log P(y_ji): token NLL averaged per sequence, then over the batch.

    logits: (batch, seq, vocab) predicting labels (batch, seq); mask: (batch, seq), 1 where a token counts.
    """
    token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # (batch, seq)
    mask = mask.to(token_nll.dtype)
    per_sequence = (token_nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_sequence.mean()


def qa_prompt(row: dict) -> tuple[str, str]:
    """(prompt, answer) of a QA row, 'review : {context} question : {question} answer :' and ' {answer}'.

    Works for the tiny "qa" rows (field ``answer``) and for SQuAD (field ``answers = {"text": [...]}``, first answer).
    """
    answer = row["answer"] if "answer" in row else row["answers"]["text"][0]
    return f"review : {row['context']} question : {row['question']} answer :", f" {answer}"


def qa_batch(tokenizer, rows: list[dict], max_length: int = 256) -> dict[str, torch.Tensor]:
    """Tokenise prompt + answer + end-of-text, right-padded; ``loss_mask`` is 1 on the answer tokens only.

    Long prompts are cut from the left (the question and the answer are kept). Returns input_ids,
    attention_mask and loss_mask, each (batch, seq).
    """
    sequences, masks = [], []
    for row in rows:
        prompt, answer = qa_prompt(row)
        answer_ids = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
        prompt_ids = tokenizer(prompt)["input_ids"][-(max_length - len(answer_ids)):]
        sequences.append(prompt_ids + answer_ids)
        masks.append([0] * len(prompt_ids) + [1] * len(answer_ids))
    width = max(len(s) for s in sequences)
    pad = lambda xs, value: [x + [value] * (width - len(x)) for x in xs]  # noqa: E731
    return {"input_ids": torch.tensor(pad(sequences, tokenizer.pad_token_id)),
            "attention_mask": torch.tensor(pad([[1] * len(s) for s in sequences], 0)),
            "loss_mask": torch.tensor(pad(masks, 0))}


def sft_step(model, optimizer, batch: dict[str, torch.Tensor], loss_fn=sequence_nll) -> float:
    """One teacher-forced step: position t predicts token t+1, loss on masked tokens only; returns the loss."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (b, seq, vocab)
    loss = loss_fn(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def normalise_answer(text: str) -> str:
    """Lower-case, drop punctuation and extra spaces (SQuAD-style answer comparison)."""
    import re

    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@torch.no_grad()
def answer_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 8, batch_size: int = 32,
                    max_length: int = 256) -> tuple[float, list[str]]:
    """Exact-match accuracy of greedy answers (``model.generate``, left padding); returns (accuracy, predictions)."""
    predictions = []
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        prompts = [qa_prompt(row)[0] for row in chunk]
        truncation_side, tokenizer.truncation_side = tokenizer.truncation_side, "left"  # keep the question
        try:
            enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", truncation=True,
                            max_length=max_length - max_new_tokens).to(model.device)
        finally:
            tokenizer.truncation_side = truncation_side
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        predictions += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    golds = [[row["answer"]] if "answer" in row else row["answers"]["text"] for row in rows]
    correct = [normalise_answer(p) in {normalise_answer(g) for g in gold} for p, gold in zip(predictions, golds)]
    return sum(correct) / max(len(rows), 1), predictions
