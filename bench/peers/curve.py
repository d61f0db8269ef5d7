"""The synthetic learning curve of reference/anchors-perf.md, standalone (no hpd import).

A copy of ``examples.synthetic.train.loss`` so the peer scripts can run in venvs without hpd;
``python -m bench.peers.curve`` (from the hpd venv) checks the two agree on a grid of points.
"""

from __future__ import annotations

import math
import random


def loss(lr: float, momentum: float, epoch: int) -> float:
    a = (math.log10(lr) + 2) / 2
    final = 0.05 + 0.4 * a * a + 0.8 * (momentum - 0.7) ** 2
    tau = 3 - a
    noise = random.Random(f"{lr!r}:{momentum!r}:{epoch}").uniform(-0.005, 0.005)
    return final + (1 - final) * math.exp(-epoch / tau) + noise


def true_best(configs: list[tuple[float, float]], max_epoch: int = 27) -> tuple[float, float]:
    """The configuration (lr, momentum) among those tried whose curve is lowest at ``max_epoch``."""
    return min(configs, key=lambda c: loss(c[0], c[1], max_epoch))


def _check() -> None:
    from examples.synthetic.train import loss as reference  # the hpd side; run from the hpd venv

    rng = random.Random(0)
    n = 0
    for _ in range(2000):
        lr, mom = 10 ** rng.uniform(-4, 0), rng.uniform(0, 1)
        for epoch in (1, 2, 3, 9, 27):
            assert loss(lr, mom, epoch) == reference(lr, mom, epoch), (lr, mom, epoch)
            n += 1
    print(f"bench/peers/curve.py matches examples.synthetic.train.loss on {n} points")


if __name__ == "__main__":
    _check()
