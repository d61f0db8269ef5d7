"""Closed-form last-layer gradients equal autograd's (oracle 1 of §4.6), from one eval pass."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from hpd.subset import find_head, last_layer_features  # noqa: E402


class Net(nn.Module):
    """BatchNorm and dropout make train and eval mode differ; the head is not the last module."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
        self.fc = nn.Linear(16, 4)
        self.extra = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extra(self.fc(self.body(x)))


def _data(n: int = 37) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def _autograd_grads(
    model: Net, x: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        loss = nn.functional.cross_entropy(
            model(x[i : i + 1]), y[i : i + 1], label_smoothing=smoothing
        )
        loss.backward()
        rows.append(
            torch.cat([model.fc.bias.grad.clone(), model.fc.weight.grad.reshape(-1).clone()])
        )
    return torch.stack(rows)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_closed_form_equals_autograd(smoothing: float) -> None:
    torch.manual_seed(0)
    model = Net()
    model.train()
    for _ in range(3):  # move BatchNorm's running statistics away from their start
        model(torch.randn(32, 6))
    x, y = _data()
    feats = last_layer_features(
        model, torch.utils.data.TensorDataset(x, y), batch_size=8, label_smoothing=smoothing
    )
    assert model.training  # modes restored
    assert model.body[1].training
    model.eval()
    want = _autograd_grads(model, x, y, smoothing)
    got = feats.materialize()
    assert torch.equal(feats.labels, y)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


def test_dataloader_order_is_ignored_and_submodule_modes_kept() -> None:
    torch.manual_seed(1)
    model = Net()
    model.train()
    model.body[1].eval()  # a deliberately frozen BatchNorm must stay frozen
    x, y = _data()
    ds = torch.utils.data.TensorDataset(x, y)
    shuffled = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True)
    a = last_layer_features(model, ds)
    b = last_layer_features(model, shuffled)
    torch.testing.assert_close(a.R, b.R)
    torch.testing.assert_close(a.H, b.H)
    assert model.training
    assert not model.body[1].training


def test_head_detection_and_no_bias() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3, bias=False))
    assert find_head(model) is model[2]
    x, y = _data(10)
    y = y % 3
    feats = last_layer_features(model, torch.utils.data.TensorDataset(x, y))
    assert not feats.bias
    assert feats.dim == 15
    model.zero_grad()
    nn.functional.cross_entropy(model(x[:1]), y[:1]).backward()
    torch.testing.assert_close(feats.materialize()[0], model[2].weight.grad.reshape(-1))
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        find_head(nn.Sequential(nn.ReLU()))


class ListDataset(torch.utils.data.Dataset):
    """A plain map-style dataset (not a TensorDataset) with int labels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def test_generic_dataset_matches_tensor_dataset() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = _data()
    a = last_layer_features(model, torch.utils.data.TensorDataset(x, y), batch_size=7)
    b = last_layer_features(model, ListDataset(x, y), batch_size=7)
    torch.testing.assert_close(a.materialize(), b.materialize())
