"""GRAD-MATCH's solver: OMP with non-negative weights, i.e. Lawson-Hanson NNLS stopped at k atoms.

Owns ``nnls_omp``: ``min_{w >= 0, |supp w| <= k} ||A_S^T w - t||`` over the atoms of a
``GradKernel`` (``t`` defaults to the sum of all atoms). Works in Gram form on the kernel's
device: correlations ``c = b - G[:, S] w`` with ``b = A t`` (the Gram columns of the chosen atoms
are cached, or, when that cache would be too large, ``c = A r`` is recomputed from the
features). The small |S|-sized algebra runs on the host in float64 (numpy): an inverse Cholesky
factor of ``G_SS`` grown by a block of rows per step and shrunk in closed form when
Lawson-Hanson back-tracking removes an atom (both O(|S|^2) per atom; refactorised from scratch
every 32 removals).

``block=1`` is exact OMP-NNLS; with no bound on k it *is* Lawson-Hanson (equal to
``scipy.optimize.nnls``). ``block=B > 1`` enters up to B atoms per step, picked among the
2B best-correlated ones by matching pursuit (so near-duplicates of an atom just picked are
passed over); entering atoms that the joint solve gives a non-positive weight are sent back
(never all of them: the best one alone always gets a positive weight).

Also owns ``nnls_omp_blocks``: the same exact OMP-NNLS (one atom per step, Lawson-Hanson
back-tracking) on many small problems at once, given one Gram per block ([nb, m, m]; block b's
target is the sum of its atoms). Supports are small (tens of atoms), so every step re-solves
all of them from scratch with one batched Cholesky in float64 instead of keeping incremental
factors: a step is ~20 batched ops whatever the number of blocks.

Both take ``ridge`` (>= 0; ``check_ridge`` validates it), GRAD-MATCH's regularisation
coefficient (CORDS's ``lam``): they minimise ``||A_S^T w - t||^2 + ridge ||w||^2`` instead,
i.e. solve with ``G_SS + ridge I``. It is in the units of the Gram (those of ``||g_i||^2``, the
atoms' squared norms), so its effect depends on how the gradients are scaled. The residuals
reported and the ``tol`` stop measure the match alone, without the ridge term.

Must never: fill up a short support, rescale weights or touch sample/label bookkeeping (that is
``select``'s job); never rebuild the Gram of a large support at every step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from hpd.subset.blocks import block_rows
from hpd.subset.kernels import GradKernel

Tensor = torch.Tensor
Array = npt.NDArray[np.float64]

_F64 = torch.float64


def check_ridge(ridge: object) -> float:
    """``ridge`` as a float, or a ValueError unless it is a finite real number >= 0 (a bool is
    refused: ``ridge=True`` is a mistake, not 1.0)."""
    value = math.nan
    if isinstance(ridge, numbers.Real) and not isinstance(ridge, (bool, np.bool_)):
        value = float(ridge)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return value


@dataclass(frozen=True)
class OmpResult:
    """Chosen atoms (positions into the kernel), their weights and the relative residual."""

    positions: Tensor  # long [s], on the kernel's device, in support order
    weights: Tensor  # float64 [s] on the CPU, > 0
    residual: float  # ||A_S^T w - t|| / ||t||, computed exactly at the end
    iterations: int  # outer steps (one full correlation pass each)


@contextmanager
def single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """One torch thread while a solver runs on the CPU, the caller's setting restored after.

    The solvers issue thousands of small ops; OpenMP hand-offs cost more than they save there
    (GRAD-MATCH, 10% of 20,000 samples: 1.3-1.6 s with 1 thread, 5.8-8.5 s with 2, on a busy
    2-core machine).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mv(A: Array, x: Array) -> Array:
    """``A @ x`` for host float64 arrays (x a vector or a matrix); big ones through torch, whose
    thread setting the caller controls (numpy's BLAS would start its own threads from about
    100 x 100 up)."""
    if A.size < 8192:
        return np.asarray(A @ x)
    At, xt = torch.from_numpy(A), torch.from_numpy(np.ascontiguousarray(x))
    return (torch.mv(At, xt) if xt.ndim == 1 else torch.mm(At, xt)).numpy()


class _State:
    """The support and its factorisation.

    Device: ``S`` (atom positions, in support order) and ``rows`` (the cached Gram rows of the
    support atoms, stored by *slot*; ``slot_of[i]`` is the slot of support position i, so a
    removal moves one row instead of shifting all later ones). Host, float64 numpy:
    ``Li`` = inverse Cholesky factor of ``G_SS + ridge I``, ``bS`` = ``b[S]``, ``y = Li bS``,
    weights ``w = Li^T y``.
    """

    def __init__(self, kernel: GradKernel, k: int, b: Tensor, ridge: float, gram: bool) -> None:
        dev = kernel.device
        self.kernel, self.b, self.ridge = kernel, b, ridge
        self.rows = torch.empty((k, kernel.n), dtype=kernel.dtype, device=dev) if gram else None
        self.S = torch.empty(k, dtype=torch.long, device=dev)
        self.slot_of: list[int] = []
        self.Li = np.zeros((k, k))
        self.y = np.zeros(k)
        self.bS = np.zeros(k)
        self.b_host = b.to(_F64).cpu().numpy()
        self.w = np.zeros(0)
        self.w_dev = b.new_zeros(0)  # w on the device, support order
        self.w_slot = b.new_zeros(0)  # w on the device, slot order
        self.deletions = 0
        self.permuted = False  # slot_of is not the identity

    @property
    def s(self) -> int:
        return len(self.slot_of)

    def set_w(self, w: Array) -> None:
        self.w = w
        self.w_dev = torch.from_numpy(w).to(device=self.b.device, dtype=self.b.dtype)
        self.w_slot = self.w_dev
        if self.rows is not None and self.permuted:
            order = np.empty(len(w))
            order[self.slot_of] = w
            self.w_slot = torch.from_numpy(order).to(device=self.b.device, dtype=self.b.dtype)

    def correlations(self, target: Tensor) -> Tensor:
        s = self.s
        if s == 0:
            return self.b.clone()
        if self.rows is not None:
            return self.b - self.w_slot @ self.rows[:s]
        resid = target - self.kernel.weighted_sum(self.S[:s], self.w_dev)
        return self.kernel.correlate(resid)

    def extend(self, js: list[int], cols: Tensor, dep_tol: float) -> bool:
        """Append atoms ``js`` (their Gram columns ``cols`` [n, len(js)]) in one block.

        False (and nothing changed) when the block is numerically dependent: some new pivot
        ``d^2 <= dep_tol * G_jj``.
        """
        s, m = self.s, len(js)
        self.S[s : s + m] = torch.tensor(js, dtype=torch.long, device=self.S.device)
        g = cols[self.S[: s + m]].to(_F64).cpu().numpy()  # [s + m, m]: G_SB over G_BB
        Li = self.Li[:s, :s]
        bB = self.b_host[js]
        if m == 1:  # the common case, in scalars
            lv = _mv(Li, g[:s, 0])
            g_jj = float(g[s, 0])
            d2 = g_jj + self.ridge - float(lv @ lv)
            if not d2 > dep_tol * max(g_jj, 1e-300):
                return False
            d = math.sqrt(d2)
            self.Li[s, :s] = _mv(Li.T, lv) / -d
            self.Li[s, s] = 1.0 / d
            self.y[s] = (bB[0] - float(lv @ self.y[:s])) / d
        else:
            X = _mv(Li, g[:s])  # L^-1 G_SB
            G_BB = g[s:]
            schur = G_BB - X.T @ X + self.ridge * np.eye(m)
            try:
                L22 = np.linalg.cholesky(0.5 * (schur + schur.T))
            except np.linalg.LinAlgError:
                return False
            if bool((np.diag(L22) ** 2 <= dep_tol * np.diag(G_BB)).any()):
                return False
            Li22 = np.linalg.inv(L22)
            self.Li[s : s + m, :s] = -Li22 @ _mv(Li.T, X).T
            self.Li[s : s + m, s : s + m] = Li22
            self.y[s : s + m] = Li22 @ (bB - X.T @ self.y[:s])
        self.bS[s : s + m] = bB
        if self.rows is not None:
            self.rows[s : s + m] = cols.T
        self.slot_of.extend(range(s, s + m))
        return True

    def solve(self) -> Array:
        s = self.s
        return _mv(self.Li[:s, :s].T, self.y[:s])

    def delete(self, p: int) -> None:
        """Remove support position p in O(s^2): the inverse Cholesky factor of the reduced
        Gram is ``C^-1 L_del^-1`` with ``C = chol(I + v v^T)``, applied in closed form."""
        s, Li = self.s, self.Li
        q = s - p - 1
        if q > 0:
            lpp = Li[p, p]
            v = -Li[p + 1 : s, p] / lpp
            left = Li[p + 1 : s, :p] - np.outer(Li[p + 1 : s, p], Li[p, :p] / lpp)
            M = np.concatenate([left, Li[p + 1 : s, p + 1 : s]], 1)
            vv = v * v
            sig_next = 1.0 + np.cumsum(vv)
            sig = sig_next - vv
            VM = v[:, None] * M
            T = (np.cumsum(VM, 0) - VM) / sig[:, None]
            Li[p : s - 1, : s - 1] = (M - v[:, None] * T) / np.sqrt(sig_next / sig)[:, None]
        Li[s - 1, :s] = 0.0
        Li[:s, s - 1] = 0.0
        self.bS[p : s - 1] = self.bS[p + 1 : s].copy()
        self.S[p : s - 1] = self.S[p + 1 : s].clone()
        slot, last = self.slot_of.pop(p), s - 1
        if slot != last and self.rows is not None:  # move the row in the last slot into the hole
            self.rows[slot] = self.rows[last]
            self.slot_of[self.slot_of.index(last)] = slot
            self.permuted = True
        self.deletions += 1

    def delete_many(self, positions: list[int]) -> None:
        for p in sorted(positions, reverse=True):
            self.delete(p)
        self.refresh()

    def refresh(self) -> None:
        """Recompute ``y`` (and, every 32 deletions, ``Li`` from scratch) after removals."""
        m = self.s
        if m and self.deletions >= 32:
            self.deletions = 0
            S = self.S[:m]
            if self.rows is not None:
                slots = torch.tensor(self.slot_of, dtype=torch.long, device=S.device)
                G = self.rows[slots][:, S]
            else:
                G = self.kernel.columns(S)[S]
            Gt = G.to(_F64).cpu()
            Gt = 0.5 * (Gt + Gt.T) + self.ridge * torch.eye(m, dtype=_F64)
            L, info = torch.linalg.cholesky_ex(Gt)
            if int(info) != 0:  # numerically semi-definite: tiny jitter
                jitter = 1e-10 * float(Gt.diagonal().mean()) + 1e-300
                L = torch.linalg.cholesky(Gt + jitter * torch.eye(m, dtype=_F64))
            eye = torch.eye(m, dtype=_F64)
            self.Li[:m, :m] = torch.linalg.solve_triangular(L, eye, upper=False).numpy()
        self.y[:m] = _mv(self.Li[:m, :m], self.bS[:m])


def _backtrack(st: _State, z: Array, w_old: Array, excluded: Tensor) -> None:
    """Lawson-Hanson inner loop: move from the feasible ``w_old`` towards the unconstrained
    solution ``z``, dropping atoms whose weight reaches 0, until the solution is positive."""
    while True:
        neg = z <= 0
        if not neg.any():
            st.set_w(z)
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(neg, w_old / (w_old - z), np.inf)
        alpha = float(ratio.min())
        w_new = w_old + alpha * (z - w_old)
        drop = (neg & (ratio <= alpha * (1 + 1e-12))) | (w_new <= 0)
        gone = np.flatnonzero(drop).tolist()
        excluded[st.S[gone]] = False  # they may enter again later
        st.delete_many(gone)
        w_old = w_new[~drop]
        if st.s == 0:
            st.set_w(w_old)
            return
        z = st.solve()


def _matching_pursuit(G: Array, c: Array, m: int, ctol: float) -> list[int]:
    """Up to m of the candidates (Gram ``G``, correlations ``c``, host float64), greedily,
    each time discounting the others by their overlap with the one just taken."""
    c = c.copy()
    taken: list[int] = []
    for _ in range(m):
        i = int(np.argmax(c))
        ci = float(c[i])
        if not ci > ctol:
            break
        taken.append(i)
        c -= G[:, i] * (ci / max(float(G[i, i]), 1e-300))
        c[taken] = -math.inf
    return taken


@dataclass
class _Run:
    kernel: GradKernel
    st: _State
    t: Tensor
    tnorm2: float
    k: int
    tol: float
    ctol: float
    dep_tol: float
    check_below: float
    excluded: Tensor
    steps: int = 0

    def converged(self) -> bool:
        st = self.st
        if st.s == 0:
            return False
        r2 = self.tnorm2 - float(st.w @ st.bS[: st.s]) - st.ridge * float(st.w @ st.w)
        if r2 > self.check_below or self.steps % 8:
            return False
        return _residual(self.kernel, self.t, st) <= self.tol * math.sqrt(self.tnorm2)

    def step(self, block: int) -> bool:
        """One full correlation pass and the entry of up to ``block`` atoms; False to stop."""
        st = self.st
        self.steps += 1
        c = st.correlations(self.t).masked_fill_(self.excluded, -math.inf)
        vals, pool = torch.topk(c, min(self.kernel.n, 2 * block))
        vals_h, pool_h = vals.to(_F64).cpu().numpy(), pool.tolist()
        if not float(vals_h[0]) > self.ctol or self.converged():
            return False
        m = min(block, self.k - st.s)
        if m == 1:
            js, cols = [pool_h[0]], self.kernel.column(pool_h[0])[:, None]
        else:
            ok = [i for i, v in enumerate(vals_h.tolist()) if v > self.ctol]
            cand = self.kernel.subset(pool[ok])
            G = cand.columns(torch.arange(cand.n, device=pool.device)).to(_F64).cpu().numpy()
            taken = _matching_pursuit(G, vals_h[ok], m, self.ctol)
            js = [pool_h[ok[i]] for i in taken]
            cols = self.kernel.columns(js)
        self.enter(js, cols)
        return True

    def enter(self, js: list[int], cols: Tensor) -> None:
        st, s0 = self.st, self.st.s
        jt = torch.tensor(js, dtype=torch.long, device=self.excluded.device)
        if not st.extend(js, cols, self.dep_tol):
            if len(js) > 1:  # some pivot is dependent: enter the best atom alone
                self.enter(js[:1], cols[:, :1])
            else:
                self.excluded[jt] = True  # numerically in span(S): banned for good
            return
        self.excluded[jt] = True
        z = st.solve()
        while (z[s0:] <= 0).any():  # send back entering atoms with non-positive weight
            back = [s0 + i for i, zi in enumerate(z[s0:].tolist()) if zi <= 0]
            if len(back) == st.s - s0:  # all of them (a lone atom only through rounding)
                st.delete_many(back)
                if len(js) > 1:
                    self.excluded[jt] = False
                    self.enter(js[:1], cols[:, :1])
                return  # a lone refused atom stays banned, so it cannot come back forever
            self.excluded[st.S[back]] = False
            st.delete_many(back)
            z = st.solve()
        if float(z.min()) > 0:
            st.set_w(z)
        else:
            _backtrack(st, z, np.concatenate([st.w, np.zeros(st.s - s0)]), self.excluded)


def auto_block(n: int, k: int) -> int:
    """Atoms entered per step for ``block=None``: ``k // 12``, between 1 and 16."""
    return max(1, min(16, k // 12))


def _nnls_omp(
    kernel: GradKernel,
    k: int,
    *,
    target: Tensor | None = None,
    tol: float = 1e-4,
    ridge: float = 0.0,
    block: int | None = None,
    gram_bytes: int = 1 << 28,
    max_iter: int | None = None,
) -> OmpResult:
    """``nnls_omp`` proper (the caller picks the thread setting)."""
    n, dev, dt = kernel.n, kernel.device, kernel.dtype
    k = max(0, min(int(k), n))
    t = kernel.weighted_sum() if target is None else target.to(device=dev, dtype=dt)
    tnorm2 = float(t.to(_F64).square().sum())
    if k == 0 or tnorm2 == 0.0:
        none = torch.empty(0, dtype=torch.long, device=dev)
        return OmpResult(none, torch.zeros(0, dtype=_F64), 0.0 if tnorm2 == 0.0 else 1.0, 0)
    b = kernel.correlate(t)
    eps = torch.finfo(dt).eps
    run = _Run(
        kernel,
        _State(kernel, k, b, ridge, gram=n * k * b.element_size() <= gram_bytes),
        t,
        tnorm2,
        k,
        tol,
        ctol=10 * eps * float(b.abs().max()),
        dep_tol=1e-10 if dt == _F64 else 1e-5,
        check_below=max(4 * tol * tol, 100 * eps) * tnorm2,
        excluded=torch.zeros(n, dtype=torch.bool, device=dev),
    )
    B = auto_block(n, k) if block is None else max(1, int(block))
    max_iter = 3 * k + 30 if max_iter is None else max_iter
    while run.st.s < k and run.steps < max_iter and run.step(B):
        pass
    st = run.st
    res = _residual(kernel, t, st) / math.sqrt(tnorm2)
    w = torch.from_numpy(np.clip(st.w, 0.0, None))
    return OmpResult(st.S[: st.s].clone(), w, res, run.steps)


def nnls_omp(
    kernel: GradKernel,
    k: int,
    *,
    target: Tensor | None = None,
    tol: float = 1e-4,
    ridge: float = 0.0,
    block: int | None = None,
    gram_bytes: int = 1 << 28,
    max_iter: int | None = None,
) -> OmpResult:
    """Greedy non-negative matching pursuit: at most ``k`` atoms whose weighted sum matches
    ``target`` (default: the sum of all atoms).

    Stops early when the relative residual falls to ``tol`` or no atom correlates positively
    with the residual (then ``w`` is the exact NNLS optimum). ``ridge`` adds ``ridge * ||w||^2``
    to the objective (Gram units, see the module docstring; ``residual`` leaves it out).
    ``block``: atoms entered per step (1 = exact OMP; None = ``auto_block``). ``gram_bytes``:
    the most memory for cached Gram rows before correlations are recomputed from features.
    """
    ridge = check_ridge(ridge)
    with single_thread_on_cpu(kernel.device):
        return _nnls_omp(
            kernel, k, target=target, tol=tol, ridge=ridge, block=block,
            gram_bytes=gram_bytes, max_iter=max_iter,
        )  # fmt: skip


def _residual(kernel: GradKernel, t: Tensor, st: _State) -> float:
    if st.s == 0:
        return float(t.to(_F64).norm())
    approx = kernel.weighted_sum(st.S[: st.s], st.w_dev)
    return float((t - approx).to(_F64).norm())


# -- many small problems at once ------------------------------------------------------------
#
# ``nnls_omp_blocks`` runs exact OMP-NNLS (one atom per step, Lawson-Hanson back-tracking) on
# every block of a [nb, m, m] Gram in lockstep: block b's atoms are its m points, its target
# their sum. The supports are small (a block's budget), so each step re-solves every block's
# support from scratch with one batched Cholesky: no incremental factor, no per-block Python.


@dataclass
class _Blocks:
    """Lockstep state: support slots ``S`` [nb, kmax] (-1 = empty), their weights ``w`` and
    Gram rows ``rows`` [nb, kmax, m] (row-major per slot: a batched GEMV over them is several
    times faster than over columns); ``b`` [nb, m] = correlations with the targets; supports
    are solved with ``G_SS + ridge I``."""

    K: Tensor
    b: Tensor
    S: Tensor
    w: Tensor
    rows: Tensor
    excluded: Tensor
    dep_tol: float
    ridge: float = 0.0

    def correlations(self) -> Tensor:
        """``b - G[:, S] w`` of every block, float64 [nb, m], -inf where excluded (all blocks
        at once: cheaper than gathering the live ones)."""
        cw = torch.bmm(self.w.to(self.rows.dtype)[:, None, :], self.rows)[:, 0]
        return (self.b - cw.to(_F64)).masked_fill_(self.excluded, -math.inf)

    def least_squares(self, L: Tensor) -> tuple[Tensor, Tensor]:
        """Unconstrained weights on each support of blocks L (empty slots: 0) and whether each
        support is numerically independent."""
        S = self.S[L]
        active = S >= 0
        kmax = int(S.shape[1])
        si = S.clamp(min=0)
        slots = torch.arange(kmax, device=S.device)
        m = int(self.rows.shape[2])
        at = (L[:, None, None] * kmax + slots[None, :, None]) * m + si[:, None, :]
        G = self.rows.view(-1).index_select(0, at.reshape(-1)).view(len(L), kmax, kmax)
        G = (G + G.transpose(1, 2)).to(_F64).mul_(0.5)
        a = active.to(_F64)  # empty slots: identity rows and columns, right-hand side 0
        G.mul_(a[:, :, None]).mul_(a[:, None, :])
        g_diag = G.diagonal(dim1=1, dim2=2).clone()  # dependence is judged without the ridge
        G.diagonal(dim1=1, dim2=2).add_(1.0 - a).add_(a * self.ridge)
        rhs = self.b[L[:, None], si].mul_(a)
        chol, info = torch.linalg.cholesky_ex(G)
        piv = chol.diagonal(dim1=1, dim2=2) ** 2
        ok = (info == 0) & ~(active & (piv <= self.dep_tol * g_diag)).any(1)
        if not bool(ok.all()):
            chol[~ok] = torch.eye(kmax, dtype=_F64, device=G.device)
        z = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
        return z.masked_fill_(~active, 0.0), ok

    def drop(self, L: Tensor, mask: Tensor, ban: Tensor) -> None:
        """Empty the slots ``mask`` [len(L), kmax] of blocks L; their atoms may enter again
        unless ``ban`` marks them."""
        S = self.S[L]
        rows, slots = torch.nonzero(mask, as_tuple=True)
        atoms = S[rows, slots]
        self.excluded[L[rows], atoms] = ban[rows, slots]
        S[rows, slots] = -1
        self.S[L] = S


def _backtrack_blocks(st: _Blocks, L: Tensor, new_slot: Tensor) -> None:
    """Solve the supports of blocks L after an atom entered each at ``new_slot``, with
    Lawson-Hanson back-tracking where weights go non-positive; sets ``st.w[L]``."""
    w_old = st.w[L].clone()
    todo = torch.arange(len(L), device=L.device)
    entering = torch.zeros(st.S[L].shape, dtype=torch.bool, device=L.device)
    entering[todo, new_slot] = True
    z, ok = st.least_squares(L)
    if not bool(ok.all()):  # the entering atom is numerically in its support's span: ban it
        st.drop(L, entering & ~ok[:, None], entering & ~ok[:, None])
        z[~ok] = w_old[~ok]
    while todo.numel():
        active = st.S[L[todo]] >= 0
        neg = active & (z[todo] <= 0)
        bad = neg.any(1)
        st.w[L[todo[~bad]]] = z[todo[~bad]]
        todo, neg, active = todo[bad], neg[bad], active[bad]
        if not todo.numel():
            return
        zt, wt = z[todo], w_old[todo]
        ratio = torch.where(neg, wt / (wt - zt).clamp(min=1e-300), math.inf)
        alpha = ratio.amin(1, keepdim=True)
        w_new = wt + alpha * (zt - wt)
        gone = active & ((neg & (ratio <= alpha * (1 + 1e-12))) | (w_new <= 0))
        # an atom sent back in the step it entered would only enter again: ban it
        st.drop(L[todo], gone, gone & entering[todo])
        w_old[todo] = w_new.masked_fill_(gone | ~active, 0.0)
        z[todo] = st.least_squares(L[todo])[0]


def nnls_omp_blocks(
    K: Tensor, budgets: Tensor, *, tol: float = 1e-4, ridge: float = 0.0
) -> tuple[Tensor, Tensor]:
    """OMP-NNLS on every block of ``K`` [nb, m, m] (a Gram per block, 0 at padding) at once.

    Block b: atoms = its rows, target = their sum, at most ``budgets[b]`` atoms; stops when the
    relative residual reaches ``tol`` or no atom correlates positively with the residual.
    ``ridge`` adds ``ridge * ||w_b||^2`` to every block's objective (in the units of ``K``).
    Returns the supports [nb, kmax] (positions into the block, -1 = none) and their weights
    (float64, > 0 on the support).
    """
    ridge = check_ridge(ridge)
    nb, m = int(K.shape[0]), int(K.shape[1])
    kmax = int(budgets.max()) if nb else 0
    dev, dt = K.device, K.dtype
    b = K.sum(2).to(_F64)  # float32 sums of m terms: ample for a 1e-4 tolerance
    tn2 = b.sum(1)
    st = _Blocks(
        K=K,
        b=b,
        S=torch.full((nb, kmax), -1, dtype=torch.long, device=dev),
        w=torch.zeros((nb, kmax), dtype=_F64, device=dev),
        rows=K.new_zeros((nb, kmax, m)),
        excluded=~(K.diagonal(dim1=1, dim2=2) > 0),  # padding and zero gradients
        dep_tol=1e-10 if dt == _F64 else 1e-5,
        ridge=ridge,
    )
    ctol = 10 * torch.finfo(dt).eps * b.abs().amax(1)
    live = (budgets > 0) & (tn2 > 0)
    for _ in range(3 * kmax + 30):  # Lawson-Hanson ends far sooner; a guard against cycling
        cmax, j = st.correlations().max(1)
        # ||A_S^T w - t||^2 at the support's optimum, where w^T G w = w.b - ridge ||w||^2
        r2 = tn2 - (st.w * b.gather(1, st.S.clamp(min=0))).sum(1) - ridge * st.w.square().sum(1)
        live &= (cmax > ctol) & ((st.S >= 0).sum(1) < budgets) & (r2 > tol * tol * tn2)
        L = torch.nonzero(live)[:, 0]
        if not L.numel():
            break
        j = j[L]
        slot = (st.S[L] < 0).int().argmax(1)  # first empty slot
        st.S[L, slot] = j
        st.excluded[L, j] = True
        st.rows[L, slot] = block_rows(K, L, j[:, None])[:, 0]
        _backtrack_blocks(st, L, slot)
    return st.S, st.w
