"""A deep hierarchical VAE of latent maps on residual networks (``--net resnet``), in the
manner of VDVAE (Child 2021) and NVAE (Vahdat & Kautz 2020).

Bottom-up (the encoder): x -> a 3x3 convolution -> residual blocks at each resolution, halving
the size down to 4x4 and then pooling to 1x1; the activation a_r at the end of each resolution is
kept. Top-down (the decoder): from a learned state at 1x1, up through the resolutions; at each
stochastic layer l, from the state s,

    p(z_l | z_>l)    = N(mu_p(s), sigma_p(s)^2)         (the prior: the decoder's)
    q(z_l | x, z_>l) = N(mu_q(s, a_r), sigma_q(s, a_r)^2)  (the posterior: the encoder's head)
    s <- s + f(s) + W z_l,   s <- block(s)

and the likelihood's parameters from the state at full resolution. The latent z is every layer's
map, flattened and joined, top layer first: z = [z_1 (1x1), z_2, ..., z_L (the finest)]. So
p(z) = prod_l p(z_l | z_<l in this order) is the decoder's own top-down pass: the prior
(:class:`LadderPrior`), the posterior (:class:`LadderPosterior`) and the decoder all read one
pass (:meth:`LadderDecoder.walk`), which each caches for the latent it drew or was given, so a
training step or an importance-sampling pass runs it once.

Stability, as those models needed: log-variances softly bounded to (-BOUND, BOUND) (and clipped
by ``--logvar-range``), the last convolution of every residual branch scaled by 1/sqrt(blocks)
and the prior's output zero at the start (p(z_l | .) = N(0, I), the branch the identity); KL
warm-up (``--warmup``), gradient clipping (``--clip-grad``) and skipped outlier updates
(``--skip-grad-norm``) are the trainer's; ``--spectral-reg`` adds NVAE's spectral regulariser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

from ..priors import Prior, bounded

#: the soft bound of every log-variance: BOUND * tanh(logvar / BOUND)
BOUND = 7.0

#: width: channels of the state; z: channels of each latent map; stoch: stochastic layers per
#: resolution, counted from 1x1 upward (4x4, 7x7 or 8x8, ...; resolutions past the list get none);
#: enc: residual blocks per resolution on the way up
PRESETS = {
    "small": {"width": 32, "z": 8, "stoch": (1, 2, 2, 1), "enc": 1},
    "base": {"width": 64, "z": 8, "stoch": (2, 3, 4, 3, 1), "enc": 2},
    "gpu": {"width": 128, "z": 16, "stoch": (4, 6, 10, 6, 2), "enc": 3},
}


def resolutions(h: int, w: int) -> list[tuple[int, int]]:
    """The sizes the network works at, full first: halved (rounding up) down to 4x4 or less, then 1x1."""
    sizes = [(h, w)]
    while max(h, w) > 4:
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    if sizes[-1] != (1, 1):
        sizes.append((1, 1))
    return sizes


@dataclass
class Layout:
    """The shape of the network for one preset and image shape."""

    width: int
    z: int
    enc: int
    sizes: list[tuple[int, int]]                 # full resolution first
    stoch: list[int]                             # stochastic layers at each of ``sizes``
    layers: list[tuple[int, int, int]] = field(default_factory=list)   # (level, h, w), top first

    @property
    def dim(self) -> int:
        return sum(self.z * h * w for _, h, w in self.layers)

    @property
    def mid(self) -> int:
        return max(16, self.width // 4)

    def names(self) -> list[tuple[str, int]]:
        return [(f"z{i} {h}x{w}x{self.z}", self.z * h * w) for i, (_, h, w) in enumerate(self.layers, 1)]


def layout(preset: str, shape) -> Layout:
    p = PRESETS[preset]
    sizes = resolutions(int(shape[1]), int(shape[2]))
    up = list(reversed(sizes))                   # 1x1 first
    stoch_up = [p["stoch"][i] if i < len(p["stoch"]) else 0 for i in range(len(up))]
    out = Layout(p["width"], p["z"], p["enc"], sizes, list(reversed(stoch_up)))
    for i, (h, w) in enumerate(up):
        out.layers += [(len(sizes) - 1 - i, h, w)] * stoch_up[i]
    return out


def conv(cin: int, cout: int, k: int, scale: float = 1.0) -> nn.Conv2d:
    c = nn.Conv2d(cin, cout, k, padding=k // 2)
    if scale != 1.0:
        with torch.no_grad():
            c.weight.mul_(scale)
            c.bias.zero_()
    return c


class Block(nn.Module):
    """A bottleneck residual block (VDVAE's): 1x1, 3x3, 3x3, 1x1 convolutions with GELUs before
    each; ``residual``: x + that branch, else the branch alone (a head to other channels)."""

    def __init__(self, cin: int, mid: int, cout: int, residual: bool = True, scale: float = 1.0):
        super().__init__()
        self.residual = residual
        self.convs = nn.ModuleList([conv(cin, mid, 1), conv(mid, mid, 3), conv(mid, mid, 3), conv(mid, cout, 1, scale)])

    def forward(self, x):
        h = x
        for c in self.convs:
            h = c(F.gelu(h))
        return x + h if self.residual else h


class GaussianMap(nn.Module):
    """A head giving a Gaussian over a latent map: mean and bounded log-variance, in float32
    (and, for the prior, ``extra`` channels of features for the state)."""

    def __init__(self, cin: int, mid: int, z: int, extra: int = 0, scale: float = 1.0):
        super().__init__()
        self.z, self.extra = z, extra
        self.net = Block(cin, mid, 2 * z + extra, residual=False, scale=scale)
        self.logvar_range: tuple[float, float] | None = None

    def forward(self, h) -> tuple[Normal, torch.Tensor | None]:
        out = self.net(h)
        mu, logvar = out[:, :self.z].float(), out[:, self.z:2 * self.z].float()
        feats = out[:, 2 * self.z:] if self.extra else None
        return Normal(mu, torch.exp(0.5 * bounded(BOUND * torch.tanh(logvar / BOUND), self.logvar_range)), validate_args=False), feats


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` is the tensor ``b`` (or a view of all of it)."""
    return a.data_ptr() == b.data_ptr() and a.numel() == b.numel() and a.dtype == b.dtype


def repeat_rows(a: torch.Tensor, k: int) -> torch.Tensor:
    """a (B, ...) k times over, (k*B, ...), row j*B + i being a[i] (as ``vae.repeated``)."""
    return a if k == 1 else a.unsqueeze(0).expand(k, *a.shape).reshape(k * a.shape[0], *a.shape[1:])


@dataclass
class Walk:
    """One top-down pass: the latent z (N, D), the state at full resolution, log p(z_l | z_<l) per
    layer (N, L), and, when the posterior was read, log q per latent unit (N, D) and the KL of each
    unit given the layers above (N, D)."""

    z: torch.Tensor
    state: torch.Tensor
    log_p: torch.Tensor
    log_q: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    acts: object = None                          # the bottom-up activations the posterior read


class LadderEncoder(nn.Module):
    """The bottom-up pass and the posterior heads q(z_l | x, z_>l) (they read the decoder's state)."""

    def __init__(self, shape, lay: Layout, spectral: float = 0.0):
        super().__init__()
        c = int(shape[0])
        self.spectral = spectral
        n_blocks = lay.enc * len(lay.sizes)
        self.lay = lay
        self.stem = conv(c, lay.width, 3)
        self.levels = nn.ModuleList([nn.Sequential(*[Block(lay.width, lay.mid, lay.width,
                                                           scale=1 / math.sqrt(n_blocks))
                                                     for _ in range(lay.enc)]) for _ in lay.sizes])
        self.heads = nn.ModuleList([GaussianMap(2 * lay.width, lay.mid, lay.z) for _ in lay.layers])
        self._decoder: list = []

    def bind(self, decoder: "LadderDecoder") -> None:
        self._decoder = [decoder]                # not a submodule: the decoder is the VAE's own

    def hidden(self, x, c=None) -> list[torch.Tensor]:
        """The activation at the end of each resolution, full first."""
        h, acts = self.stem(2.0 * x - 1.0), []
        for i, (level, size) in enumerate(zip(self.levels, self.lay.sizes)):
            if i:
                h = F.adaptive_avg_pool2d(h, size)
            h = level(h)
            acts.append(h)
        return acts

    def posterior(self, acts) -> "LadderPosterior":
        q = LadderPosterior(acts, self, self._decoder[0])
        if self.spectral > 0 and self.training:   # a training loss the objectives add (``aux_loss``)
            q.aux_loss = self.spectral * (spectral_penalty(self) + spectral_penalty(self._decoder[0]))
        return q

    def forward(self, x, c=None):
        return self.posterior(self.hidden(x, c))


class TopDownLayer(nn.Module):
    def __init__(self, lay: Layout, scale: float):
        super().__init__()
        self.prior = GaussianMap(lay.width, lay.mid, lay.z, extra=lay.width, scale=0.0)
        self.z_in = conv(lay.z, lay.width, 1, scale)
        self.block = Block(lay.width, lay.mid, lay.width, scale=scale)


class LadderDecoder(nn.Module):
    """The top-down pass: the prior p(z_l | z_>l) of each layer, and the likelihood's parameters."""

    #: torch.compile would guard on the cache's tensors (see :mod:`vaekit.compiling`)
    compile_blocker = "its prior, posterior and decoder share one top-down pass through a cache"

    def __init__(self, shape, lay: Layout, n_params: int):
        super().__init__()
        self.lay, self.shape, self.n_params = lay, tuple(int(s) for s in shape), n_params
        self.start = nn.Parameter(torch.zeros(1, lay.width, 1, 1))
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(1, lay.width, h, w)) for h, w in lay.sizes])
        n_blocks = len(lay.layers) + sum(1 for s in lay.stoch if s == 0)
        scale = 1 / math.sqrt(max(1, n_blocks))
        self.layers = nn.ModuleList([TopDownLayer(lay, scale) for _ in lay.layers])
        # a deterministic block at each resolution without a stochastic layer
        self.plain = nn.ModuleDict({str(i): Block(lay.width, lay.mid, lay.width, scale=scale)
                                    for i, s in enumerate(lay.stoch) if s == 0})
        self.out = conv(lay.width, n_params * self.shape[0], 1)
        self._last: Walk | None = None
        self.activation_floats = sum((lay.width * 3 + lay.mid * 4) * h * w * max(1, s) + 6 * lay.z * h * w * s
                                     for (h, w), s in zip(lay.sizes, lay.stoch))

    @property
    def dim(self) -> int:
        return self.lay.dim

    def walk(self, z: torch.Tensor | None = None, acts=None, heads=None, draw: str = "given",
             temperature=1.0, noise: torch.Tensor | None = None, n: int | None = None,
             top: torch.Tensor | None = None) -> Walk:
        """The top-down pass over N rows. ``draw``: "given" (the latent z (N, D)), "q" (a draw
        from the posterior, which reads ``acts``, N rows of them, through ``heads``), "q-mean" (its
        mean, layer by layer), or "p" (a draw from the prior with ``noise`` (N, D), each layer's
        standard deviation times its ``temperature``: one value, or one per layer from the top, the
        last repeated). With ``acts``, log q and the KL of each unit are kept too. ``top``: the
        first units of the latent given (whole layers, from the top), the rest drawn as ``draw`` says."""
        lay = self.lay
        rows = z.shape[0] if z is not None else noise.shape[0] if noise is not None else \
            acts[0].shape[0] if acts is not None else top.shape[0] if top is not None else n
        temps = [float(temperature)] if not isinstance(temperature, (list, tuple)) else [float(t) for t in temperature]
        s = self.start.expand(rows, -1, -1, -1)
        zs, log_p, log_q, kls = [], [], [], []
        offset, layer = 0, 0
        for level in reversed(range(len(lay.sizes))):
            size = lay.sizes[level]
            s = F.interpolate(s, size=size, mode="nearest") if s.shape[-2:] != size else s
            s = s + self.biases[level]
            for _ in range(lay.stoch[level]):
                part = self.layers[layer]
                p, feats = part.prior(s)
                width = lay.z * size[0] * size[1]
                q = heads[layer](torch.cat([s, acts[level]], 1))[0] if acts is not None else None
                if top is not None and offset + width <= top.shape[1]:
                    zl = top[:, offset:offset + width].view(rows, lay.z, *size).to(p.loc.dtype)
                elif draw == "given":
                    zl = z[:, offset:offset + width].view(rows, lay.z, *size).to(p.loc.dtype)
                elif draw == "q":
                    zl = q.rsample()
                elif draw == "q-mean":
                    zl = q.loc
                else:
                    t = temps[min(layer, len(temps) - 1)]
                    eps = noise[:, offset:offset + width].view(rows, lay.z, *size)
                    zl = p.loc + t * p.scale * eps
                log_p.append(p.log_prob(zl).flatten(1).sum(-1))
                if q is not None:
                    log_q.append(q.log_prob(zl).flatten(1))
                    kls.append((torch.log(p.scale / q.scale)
                                + (q.scale.square() + (q.loc - p.loc).square()) / (2 * p.scale.square())
                                - 0.5).flatten(1))
                zs.append(zl.flatten(1))
                s = s + feats + part.z_in(zl.to(s.dtype))
                s = part.block(s)
                offset, layer = offset + width, layer + 1
            if lay.stoch[level] == 0:
                s = self.plain[str(level)](s)
        w = Walk(z if draw == "given" else torch.cat(zs, 1), s, torch.stack(log_p, 1),
                 torch.cat(log_q, 1) if log_q else None, torch.cat(kls, 1) if kls else None, acts)
        self._last = w
        return w

    def cached(self, z: torch.Tensor, acts=None) -> Walk | None:
        """The latest pass, where it was over this latent (and read these activations, if asked)."""
        w = self._last
        if w is None or not _same(z, w.z) or (acts is not None and w.acts is not acts):
            return None
        return w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.cached(z) or self.walk(z)
        return self.out(w.state).view(z.shape[0], self.n_params, *self.shape)


class LadderPosterior:
    """q(z | x) = prod_l q(z_l | x, z_>l): ``rsample``, ``log_prob`` (per latent unit), ``loc``
    (the means, layer by layer), as the VAE uses a posterior."""

    def __init__(self, acts, encoder: LadderEncoder, decoder: LadderDecoder):
        self.acts, self.encoder, self.decoder = acts, encoder, decoder
        self.batch = acts[0].shape[0]
        self.walked: Walk | None = None
        self._loc = None
        self._repeated = {1: acts}

    def _acts(self, k: int):
        if k not in self._repeated:
            self._repeated[k] = [repeat_rows(a, k) for a in self.acts]
        return self._repeated[k]

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        k = math.prod(sample_shape)
        self.walked = self.decoder.walk(acts=self._acts(k), heads=self.encoder.heads, draw="q")
        return self.walked.z.view(*sample_shape, self.batch, -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def walk_of(self, z: torch.Tensor) -> Walk:
        """The pass with this posterior over the latent z (..., B, D): the cached one, or a new one."""
        flat = z.reshape(-1, z.shape[-1])
        acts = self._acts(flat.shape[0] // self.batch)
        w = self.decoder.cached(flat, acts)
        return w if w is not None and w.log_q is not None else \
            self.decoder.walk(flat, acts=acts, heads=self.encoder.heads)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.walk_of(z).log_q.view(z.shape)

    @property
    def loc(self) -> torch.Tensor:
        if self._loc is None:
            self._loc = self.decoder.walk(acts=self.acts, heads=self.encoder.heads, draw="q-mean").z
        return self._loc

    def kl(self) -> torch.Tensor | None:
        """KL(q(z_l | x, z_>l) || p(z_l | z_>l)) per latent unit, given the layers above as drawn
        by the latest one-sample ``rsample`` (B, D); None otherwise."""
        w = self.walked
        return w.kl if w is not None and w.z.shape[0] == self.batch else None


def spectral_penalty(module: nn.Module, iterations: int = 1) -> torch.Tensor:
    """NVAE's spectral regulariser: the sum over convolutions of the largest singular value of
    each weight (as an (out, in*k*k) matrix), by power iteration from vectors kept between calls."""
    total = None
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        w = m.weight.flatten(1)
        u = getattr(m, "_spectral_u", None)
        if u is None or u.shape[0] != w.shape[0]:
            u = F.normalize(torch.randn(w.shape[0], device=w.device), dim=0)
        with torch.no_grad():
            for _ in range(iterations):
                v = F.normalize(w.t() @ u, dim=0)
                u = F.normalize(w @ v, dim=0)
        m._spectral_u = u
        sigma = u @ w @ v
        total = sigma if total is None else total + sigma
    return total if total is not None else torch.zeros(())


class LadderPrior(Prior):
    """p(z) = prod_l p(z_l | z_>l): the top-down pass of the decoder it is bound to (its
    parameters are the decoder's). ``sample`` takes one temperature or one per layer."""

    layered_temperature = True
    export_blocker = ("the deep hierarchical network's layers read each other in one top-down pass, which the "
                      "exported encoder, decoder and sampler do not describe")

    def __init__(self, lay: Layout):
        super().__init__(lay.dim)
        self.lay, self.noise_dim = lay, lay.dim
        self._decoder: list = []

    def bind(self, encoder, decoder) -> None:
        self._decoder = [decoder]

    @property
    def decoder(self) -> LadderDecoder:
        return self._decoder[0]

    def log_prob(self, z, c=None):
        flat = z.reshape(-1, self.dim)
        w = self.decoder.cached(flat) or self.decoder.walk(flat)
        return w.log_p.sum(-1).view(z.shape[:-1])

    def draw(self, noise, u=None, c=None, temperature=1.0):
        return self.decoder.walk(noise=noise, draw="p", temperature=temperature).z

    @torch.no_grad()
    def sample(self, n, c=None, temperature=1.0):
        return self.draw(torch.randn(n, self.dim, device=self.decoder.start.device), temperature=temperature)

    @property
    def explored_units(self) -> int:
        """The explorer's sliders and map show the top layer."""
        return self.layers[0][1]

    def completed(self, top: torch.Tensor) -> torch.Tensor:
        """The whole latent for the top layer's values ``top`` (N, units): each layer below at its
        prior's mean given the layers above."""
        return self.decoder.walk(top=top, draw="p", noise=torch.zeros(top.shape[0], self.dim, device=top.device),
                                 temperature=0.0).z

    def analytic_kl(self, q, c=None):
        return q.kl() if isinstance(q, LadderPosterior) else None

    @property
    def layers(self):
        return self.lay.names()

    def layer_means(self, loc):
        return dict(zip([n for n, _ in self.layers], loc.split([s for _, s in self.layers], -1)))

    def layer_kl(self, q, z):
        shape = z.shape[:-1]
        w = q.walk_of(z)
        log_q = [part.sum(-1) for part in w.log_q.split([s for _, s in self.layers], -1)]
        return {name: (lq - w.log_p[:, i]).view(shape) for i, ((name, _), lq) in enumerate(zip(self.layers, log_q))}

