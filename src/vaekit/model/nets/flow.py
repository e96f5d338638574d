"""A richer posterior: the encoder's Gaussian followed by inverse autoregressive flow steps
(IAF, Kingma et al. 2016).

    z_0 ~ q_0(z | x)                 the encoder's posterior (a diagonal Gaussian, or top-down)
    z_t = m_t + exp(s_t) * z_(t-1),  (m_t, s_t) = MADE_t(z_(t-1), h(x)),  t = 1 .. T
    log q(z_T | x) = log q_0(z_0 | x) - sum_t sum_i s_t,i

Each step's MADE (Germain et al. 2015) is a masked network whose i-th outputs see only the
dimensions before i in the step's order, and the encoder's features h(x) as context. The
Jacobian of a step is then triangular with diagonal exp(s_t), so its log-determinant is the sum
of s_t, and a sample with its density takes one parallel pass per step. Steps alternate between
the ascending and the descending order of the dimensions. The last layer of each step starts at
zero, so a new flow is the identity: added to a trained encoder (``--refine-encoder --flow``), it
starts from the proposal the encoder gave.

The density of a z that was not just drawn needs the inverse, a fixed point reached after D
passes per step for a D-dimensional latent; nothing on the training or evaluation path needs it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One autoregressive affine step: z -> m(z, h) + exp(s(z, h)) * z, with s_i and m_i
    depending on the dimensions before i in ``order`` (a permutation of 0..D-1) and on h.

    A MADE with one hidden layer: hidden unit j has a degree d_j in 0 .. D-1 and sees the
    inputs of rank < d_j + 1 (degree-0 units see only the context); output i (rank r_i, 1-based)
    sees the hidden units of degree < r_i. The log-scale is bounded to (-3, 3) by a soft clamp."""

    def __init__(self, dim: int, context: int, hidden: int, order: torch.Tensor):
        super().__init__()
        rank = torch.empty(dim, dtype=torch.long)
        rank[order] = torch.arange(1, dim + 1)                  # 1-based position in the order
        degree = torch.arange(hidden) % dim                     # 0 .. D-1, spread evenly
        self.inp = MaskedLinear(degree[:, None] >= rank[None, :])            # (hidden, dim)
        self.context = nn.Linear(context, hidden, bias=False)
        self.out = MaskedLinear((rank[:, None] > degree[None, :]).repeat(2, 1))  # (2 dim, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def shift_and_log_scale(self, z: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., B, D), ctx = self.context(h) (B, hidden): m and s, each (..., B, D)."""
        m, s = self.out(F.elu(self.inp(z) + ctx)).float().chunk(2, -1)   # float32, as GaussianHead
        return m, 3.0 * torch.tanh(s / 3.0)

    def forward(self, z: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The new z and the log-scales (..., B, D)."""
        m, s = self.shift_and_log_scale(z, ctx)
        return m + torch.exp(s) * z, s


class InverseAutoregressiveFlow(nn.Module):
    """``steps`` IAF steps over a ``dim``-dimensional latent with ``context`` features of x."""

    def __init__(self, dim: int, context: int, steps: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        ascending = torch.arange(dim)
        self.steps = nn.ModuleList(IAFStep(dim, context, hidden, ascending if t % 2 == 0 else ascending.flip(0))
                                   for t in range(steps))
        # per sample row, to size evaluation batches (VAE.floats_per_row)
        self.activation_floats = steps * (2 * hidden + 6 * dim)

    def contexts(self, h: torch.Tensor) -> list[torch.Tensor]:
        """Each step's projection of the features h (B, F), computed once per example."""
        return [step.context(h) for step in self.steps]

    def forward(self, z0: torch.Tensor, ctx: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """z_0 -> (z_T, sum over steps of the log-scales per dimension)."""
        z, log_scale = z0, torch.zeros_like(z0)
        for step, c in zip(self.steps, ctx):
            z, s = step(z, c)
            log_scale = log_scale + s
        return z, log_scale

    def inverse(self, z: torch.Tensor, ctx: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """z_T -> (z_0, the same log-scales as :meth:`forward` gives for that z_0). Each step is
        inverted by the fixed point z = (z_t - m(z)) exp(-s(z)): after i passes the first i
        dimensions in the step's order are exact, so D passes invert it."""
        log_scale = torch.zeros_like(z)
        for step, c in zip(reversed(self.steps), reversed(ctx)):
            target, x = z, torch.zeros_like(z)
            for _ in range(z.shape[-1]):
                m, s = step.shift_and_log_scale(x, c)
                x = (target - m) * torch.exp(-s)
            z, log_scale = x, log_scale + s
        return z, log_scale


class FlowPosterior:
    """q(z | x): a base posterior (``Normal`` or :class:`~vaekit.model.nets.topdown.TopDownPosterior`)
    pushed through an :class:`InverseAutoregressiveFlow` with the features h(x) as context.

    Has the parts of a posterior the VAE uses: ``rsample``, ``log_prob`` per dimension (the
    base's log-density at z_0 minus each dimension's log-scales, so ``.sum(-1)`` is
    log q(z | x)), ``loc`` (the base's point pushed through the flow) and ``map``."""

    def __init__(self, base, flow: InverseAutoregressiveFlow, ctx: list[torch.Tensor]):
        self.base, self.flow, self.ctx = base, flow, ctx
        self._last = None                      # (z, z_0, log-scales) of the latest rsample

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        z0 = self.base.rsample(sample_shape)
        z, log_scale = self.flow(z0, self.ctx)
        self._last = (z, z0, log_scale)
        return z

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _origin(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_0 and the log-scales for z: looked up when z is the latest sample or a leading part
        of it (a view of the same memory, as the VAE and the evaluation pass it), else inverted."""
        last = self._last
        if (last is not None and z.data_ptr() == last[0].data_ptr() and z.is_contiguous()
                and z.numel() <= last[0].numel() and z.shape[-1] == last[0].shape[-1]):
            return (last[1].reshape(-1)[:z.numel()].view(z.shape),
                    last[2].reshape(-1)[:z.numel()].view(z.shape))
        return self.flow.inverse(z, self.ctx)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        z0, log_scale = self._origin(z)
        return self.base.log_prob(z0) - log_scale

    @property
    def loc(self) -> torch.Tensor:
        return self.flow(self.base.loc, self.ctx)[0]

    def map(self, fn) -> "FlowPosterior":
        """The same flow on a base posterior changed by ``fn(normal, layer)`` (see
        :meth:`TopDownPosterior.map`)."""
        base = self.base.map(fn) if hasattr(self.base, "map") else fn(self.base, 1)
        return FlowPosterior(base, self.flow, self.ctx)
