"""A small torch trial that trains on the spec's [subset] through ``ctx.subset_loader``.

Softmax regression on clustered synthetic data (CPU, a second per segment), so the tests and
new users can see a subset loader's timings travel to the daemon (``hpd trials --json``,
``subset``) without a GPU or a dataset. Needs ``hpd[torch]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpd.trial import TrialContext, context


def dataset(n: int = 4000, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 32, generator=g) * 2
    y = torch.randint(0, 10, (n,), generator=g)
    x = centers[y] + torch.randn(n, 32, generator=g)
    cut = n * 4 // 5
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def train(ctx: TrialContext) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(ctx.seed)
    train_set, val_set = dataset()
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=float(ctx.params["lr"]), momentum=0.9)
    state = ctx.restore()
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    loader = ctx.subset_loader(train_set, model=model, batch_size=64)
    loader.set_epoch(ctx.start_epoch)
    xv, yv = val_set.tensors
    for epoch in ctx.epochs():
        model.train()
        for xb, yb, wb in loader:
            opt.zero_grad()
            loss = (nn.functional.cross_entropy(model(xb), yb, reduction="none") * wb).mean()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        ctx.report(epoch, val_acc=acc)
        ctx.checkpoint({"model": model.state_dict(), "opt": opt.state_dict()})


if __name__ == "__main__":
    train(context())
