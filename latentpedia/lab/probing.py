"""Sparse probing: can a handful of an SAE's latents tell apart two kinds of text?

Offline labelled tasks, built from text every Python installation has:

- `code_vs_prose` (sequence level): windows of standard-library source vs windows of CPython's
  documentation, activations mean-pooled over the window;
- `function_word` (token level, a rule-based part-of-speech tag): English closed-class words
  ("the", "of", "which" ...) vs other alphabetic words in the documentation;
- `python_keyword` (token level): Python keywords vs other identifiers in standard-library source.

For each task the latents are ranked by the difference of their mean activation between the
classes on the training half; a logistic-regression probe on the top k latents (k = 1 and 5) is
scored by accuracy on the held-out half, beside the same probe on the full hook activations
(the ceiling). Everything is pure torch: no model is needed to build the tasks, and the probe is
a few hundred full-batch gradient steps.
"""

from __future__ import annotations

import keyword
import random
import re
from dataclasses import dataclass

import torch

from latentpedia.lab.toy import one_thread

FUNCTION_WORDS = frozenset("""
a an the this that these those my your his her its our their some any no every each either neither
of in on at by for with from to into onto upon about above below under over between among through during
before after since until against without within along across behind beyond toward towards
and or but nor so yet if then than because although though while whereas unless whether
i you he she it we they me him us them who whom whose which what
is are was were be been being am do does did have has had will would shall should can could may might must
not as also too very there here
""".split())
WORD = re.compile(r"^[A-Za-z]+$")
PROBE_K = (1, 5)


@dataclass
class ProbeTask:
    """Texts (token ids, equal length) and labels; `positions` None = sequence-level task."""

    name: str
    windows: list[list[int]]
    labels: list[int]
    positions: list[int] | None = None  # token tasks: the position of the labelled token in its window


SNIPPET_CHARS = 600  # enough text for a 48-token window; tokenizing whole documents is slow


def _windows(texts: list[str], encode, length: int, limit: int) -> list[list[int]]:
    """The first `length` tokens of each text long enough, at most `limit` of them."""
    out = []
    for text in texts:
        ids = encode(text[:SNIPPET_CHARS])
        if len(ids) >= length:
            out.append(ids[:length])
        if len(out) >= limit:
            break
    return out


def _code_snippet(path) -> str | None:
    """Source from a module's first top-level def or class on (past its docstring and license)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    starts = [i for i in (text.find("\ndef "), text.find("\nclass ")) if i >= 0]
    return text[min(starts) + 1:][:SNIPPET_CHARS] if starts else None


def _texts(kind: str, seed: int, count: int = 600) -> list[str]:
    """Prose: CPython's documentation topics; code: snippets of standard-library modules."""
    from latentpedia.corpus.default import pydoc_documents, stdlib_files

    rng = random.Random(seed)
    if kind == "prose":
        docs = [d.text[:SNIPPET_CHARS] for d in pydoc_documents()]
        rng.shuffle(docs)
        return docs[:count]
    files = stdlib_files()
    picked = rng.sample(files, min(len(files), count))
    return [t for t in map(_code_snippet, picked) if t]


def code_vs_prose(encode, *, length: int = 48, per_class: int = 64, seed: int = 0) -> ProbeTask:
    """Sequence task: label 1 = code, 0 = prose."""
    code = _windows(_texts("code", seed), encode, length, per_class)
    prose = _windows(_texts("prose", seed), encode, length, per_class)
    return ProbeTask("code_vs_prose", code + prose, [1] * len(code) + [0] * len(prose))


def token_task(name: str, kind: str, is_positive, token_text, encode, *, length: int = 48, per_class: int = 128,
               seed: int = 0) -> ProbeTask:
    """Token task: positions whose word passes `is_positive` (label 1) vs other alphabetic words."""
    rng = random.Random(seed)
    found: dict[int, list[tuple[list[int], int]]] = {0: [], 1: []}
    for window in _windows(_texts(kind, seed), encode, length, 8 * per_class):
        for pos in range(2, length):
            word = token_text(window[pos]).strip()
            if WORD.match(word) and len(found[int(is_positive(word))]) < 2 * per_class:
                found[int(is_positive(word))].append((window, pos))
        if min(len(rows) for rows in found.values()) >= 2 * per_class:
            break
    picks = {label: rng.sample(rows, min(per_class, len(rows))) for label, rows in found.items()}
    rows = [(w, p, label) for label in (1, 0) for w, p in picks[label]]
    return ProbeTask(name, [w for w, _, _ in rows], [label for *_, label in rows], [p for _, p, _ in rows])


def offline_tasks(encode, token_text, *, seed: int = 0, per_class: int = 64) -> list[ProbeTask]:
    """The three offline tasks for a tokenizer (`encode(text) -> ids` without BOS)."""
    return [
        code_vs_prose(encode, per_class=per_class, seed=seed),
        token_task("function_word", "prose", lambda w: w.lower() in FUNCTION_WORDS, token_text, encode, per_class=2 * per_class, seed=seed),
        token_task("python_keyword", "code", keyword.iskeyword, token_text, encode, per_class=2 * per_class, seed=seed),
    ]


# ---------------------------------------------------------------------------- probes


def train_logistic(x: torch.Tensor, y: torch.Tensor, *, steps: int = 300, weight_decay: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary logistic regression on standardised features (full-batch Adam): (w, b) for raw x,
    the standardisation folded in."""
    with one_thread():  # small matrices: a second intra-op thread only spins (lab/toy.py)
        return _fit_logistic(x, y, steps, weight_decay)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, steps: int, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=0.05)
    target = y.float()
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target) + weight_decay * w.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return w / std, b - (mean / std) @ w


def probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    w, b = train_logistic(train_x, train_y)
    return float(((test_x @ w + b > 0).long() == test_y).float().mean())


def top_latents(acts: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k latents whose mean activation differs most between the classes."""
    gap = (acts[y == 1].mean(0) - acts[y == 0].mean(0)).abs()
    return torch.topk(gap, k=min(k, acts.shape[1])).indices


def split_half(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2], perm[n // 2:]


def sparse_probe(latent_acts: torch.Tensor, hook_acts: torch.Tensor, labels: list[int], *, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy with the top-k latents (k in PROBE_K) and with the whole hook."""
    y = torch.tensor(labels)
    train, test = split_half(len(y), seed)
    out = {}
    for k in PROBE_K:
        chosen = top_latents(latent_acts[train], y[train], k)
        out[f"top{k}"] = probe_accuracy(latent_acts[train][:, chosen], y[train], latent_acts[test][:, chosen], y[test])
    out["hook"] = probe_accuracy(hook_acts[train], y[train], hook_acts[test], y[test])
    out["examples"] = len(y)
    return out
