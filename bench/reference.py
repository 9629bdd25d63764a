"""The baseline of our speed target: a GRU classifier as a typical tutorial writes it. Kept this simple on
purpose (see issue 4): lowercase + whitespace split (per character for CJK), a top-30k vocabulary, every text
padded or truncated to 256, Embedding 128 -> GRU 128 -> last hidden state -> Linear, Adam at 1e-3, batch 64,
a DataLoader over a TensorDataset.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CJK = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
MAX_LEN, VOCAB, EMBED, HIDDEN, BATCH = 256, 30000, 128, 128, 64


def tokenize(text: str) -> list[str]:
    return CJK.sub(r" \1 ", text.lower()).split()


class TutorialGRU(nn.Module):
    def __init__(self, vocab: int, classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, EMBED, padding_idx=0)
        self.gru = nn.GRU(EMBED, HIDDEN, batch_first=True)
        self.fc = nn.Linear(HIDDEN, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.embedding(x))
        out: torch.Tensor = self.fc(h[-1])  # the last hidden state: after the padding, for short texts
        return out


def encode(texts: list[str], vocab: dict[str, int]) -> torch.Tensor:
    out = torch.zeros(len(texts), MAX_LEN, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [vocab.get(w, 1) for w in tokenize(text)][:MAX_LEN]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def run_reference(train: list[tuple[str, str]], test: list[tuple[str, str]], epochs: int = 1) -> dict[str, Any]:
    """Train for `epochs` and score on test; returns the epoch time and accuracy."""
    torch.manual_seed(0)
    counts = Counter(w for text, _ in train for w in tokenize(text))
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(VOCAB - 2))}
    labels = sorted({label for _, label in train})
    index = {label: i for i, label in enumerate(labels)}
    x_train = encode([t for t, _ in train], vocab)
    y_train = torch.tensor([index[label] for _, label in train])
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH, shuffle=True)
    model = TutorialGRU(len(vocab) + 2, len(labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    epoch_seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)
    model.eval()
    x_test = encode([t for t, _ in test], vocab)
    with torch.no_grad():
        predicted = torch.cat([model(x_test[i : i + 256]).argmax(1) for i in range(0, len(x_test), 256)])
    truth = torch.tensor([index.get(label, -1) for _, label in test])
    real_tokens = sum(min(MAX_LEN, len(tokenize(t))) for t, _ in train)
    return {
        "epoch_seconds": epoch_seconds[-1],
        "accuracy": float((predicted == truth).float().mean()),
        "real_tokens_per_s": real_tokens / epoch_seconds[-1],
        "padded_tokens_per_s": len(train) * MAX_LEN / epoch_seconds[-1],
    }
