"""Shared fixtures for the subset tests: realistic last-layer gradients, small and CPU-only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from hpd.subset import GradFeatures, last_layer_features  # noqa: E402


def clustered_data(
    n_per_class: int = 300, classes: int = 6, dim: int = 12, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters (3 per class, overlapping classes) and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 3, dim, generator=g) * 1.5
    xs, ys = [], []
    for c in range(classes):
        which = torch.randint(0, 3, (n_per_class,), generator=g)
        xs.append(centres[c, which] + torch.randn(n_per_class, dim, generator=g))
        ys.append(torch.full((n_per_class,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def trained_softmax(x: torch.Tensor, y: torch.Tensor, steps: int = 30, seed: int = 0) -> nn.Linear:
    """Softmax regression trained a little (so residuals are neither uniform nor zero)."""
    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture(scope="session")
def softmax_features() -> GradFeatures:
    """Closed-form last-layer gradients of softmax regression on clustered data (n=1800)."""
    x, y = clustered_data()
    model = trained_softmax(x, y)
    return last_layer_features(model, torch.utils.data.TensorDataset(x, y))


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """GRAD-MATCH's calls to the OMP solvers, as (solver, ridge) pairs; the solvers still run."""
    import hpd.subset.gradmatch as gm

    calls: list[tuple[str, object]] = []
    real = {"nnls_omp": gm.nnls_omp, "nnls_omp_blocks": gm.nnls_omp_blocks}

    def spy(name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            calls.append((name, kwargs.get("ridge")))
            return real[name](*args, **kwargs)  # type: ignore[operator]

        return call

    for name in real:
        monkeypatch.setattr(gm, name, spy(name))
    return calls
