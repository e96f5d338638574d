"""Priors p(z). Any prior implements ``log_prob``, ``sample`` and optionally ``analytic_kl``."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, Normal

from .objectives import logsumexp
from .registry import PRIORS


class Prior(nn.Module):
    """Interface for priors over a latent of size ``dim``.

    log_prob(z, c): (..., B, dim) -> (..., B) in nats.
    sample(n, c): (n, dim).
    analytic_kl(q, c): KL(q || p) per latent dimension, (B, dim), when it has a closed form,
        else None (the objective then uses the Monte Carlo estimate log q(z) - log p(z)).
    ``c`` is the one-hot (or soft) label of each example, (B, classes), for a conditional
    model; only a prior with ``conditional = True`` reads it, the others ignore it.
    """

    conditional = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    #: standard normal values one draw needs (``draw``'s ``noise``); a mixture also reads one uniform value
    noise_dim: int
    mixture: bool = False

    def draw(self, noise: torch.Tensor, u: torch.Tensor | None = None, c: torch.Tensor | None = None,
             temperature: float | torch.Tensor = 1.0) -> torch.Tensor:  # pragma: no cover - interface
        """z (n, dim) from given randomness: ``noise`` (n, noise_dim) standard normal values and, for
        a mixture, ``u`` (n,) uniform values in [0, 1) that pick each draw's component. A pure
        function of its inputs, so the same draw can be computed elsewhere (an exported sampler
        takes the randomness as inputs). ``temperature`` scales every Gaussian's standard
        deviation (of each layer, in a hierarchy), as NVAE and VDVAE sample."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, c: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n draws z ~ p(z [| c]), (n, dim): :meth:`draw` from fresh randomness."""
        device = next(iter([*self.parameters(), *self.buffers()])).device
        u = torch.rand(n, device=device) if self.mixture else None
        return self.draw(torch.randn(n, self.noise_dim, device=device), u, c, temperature)

    def analytic_kl(self, q: Normal, c: torch.Tensor | None = None) -> torch.Tensor | None:
        return None

    # the latent's family: a prior may bring its own posterior family (the categorical one does)
    def head(self, features: int) -> nn.Module | None:
        """The encoder's last layer for this latent, reading ``features`` values; None: the
        network's own :class:`~vaekit.model.nets.mlp.GaussianHead` (mean and log-variance)."""
        return None

    def posterior(self, params: torch.Tensor):
        """q(z | x) from the encoder head's output: by default a diagonal Gaussian."""
        return normal_from_params(params)

    #: why the training step must run on the host (a schedule set each step), else None
    host_step: str | None = None
    #: why the model's parts cannot be exported (the encoder's outputs are a Gaussian's), else None
    export_blocker: str | None = None

    def at_step(self, step: int) -> None:
        """Set what depends on the training step (called by the objective when ``host_step``)."""

    def variables(self) -> list[tuple[int, int]]:
        """The latent's categorical variables as (first unit, categories): the units of each are
        one one-hot (the explorer gives each one slider of its categories); none by default."""
        return []

    #: the stochastic layers, as (name, size), when there are more than one (else None)
    layers: list[tuple[str, int]] | None = None

    #: how many of the latent's first units the explorer's sliders and map show (the top layer of a
    #: deep hierarchy, whose lower layers then follow from it: :meth:`completed`); None: all
    explored_units: int | None = None

    def completed(self, part: torch.Tensor) -> torch.Tensor:
        """The whole latent for the values of the first :attr:`explored_units` units (N, units)."""
        return part

    def coordinates(self, q) -> torch.Tensor:
        """A posterior's point in the latent space the explorer, traversals and the latent map
        show, (B, dim): its mean (a Markov prior's: the first step's)."""
        return q.loc

    def path(self, z: torch.Tensor) -> torch.Tensor:
        """The whole latent such a point stands for, ready to decode: z itself (a Markov
        prior's: the path that starts at z and follows the transition's mean)."""
        return z

    def layer_means(self, loc: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The posterior mean of each stochastic layer, from the posterior mean ``loc`` of the
        model's latent (B, dim); None for a one-layer model."""
        return None

    def layer_kl(self, q, z: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Each layer's share of log q(z | x) - log p(z) for samples z ~ q, (..., B) per layer;
        None for a one-layer model."""
        return None


def component_log_probs(z: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:
    """(N, K): log N(z_n; m_k, diag v_k) for z (N, D), means and log_vars (K, D), as two matrix products
    (see :func:`diagonal_mixture_log_prob`). In float32 under mixed precision too: the products'
    terms are hundreds of nats that cancel, which bfloat16 would round by whole nats."""
    with torch.autocast(z.device.type, enabled=False):
        return _component_log_probs(z.float(), means.float(), log_vars.float())


def _component_log_probs(z, means, log_vars):
    inv_var = torch.exp(-log_vars)
    const = 0.5 * ((means.square() * inv_var).sum(-1) + log_vars.sum(-1) + means.shape[-1] * math.log(2 * math.pi))
    return torch.addmm(-const, z, (means * inv_var).T) - 0.5 * (z.square() @ inv_var.T)


def diagonal_mixture_log_prob(z: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor,
                              logits: torch.Tensor | None = None) -> torch.Tensor:
    """log sum_k pi_k N(z; m_k, diag v_k) for z (..., D), means and log_vars (K, D), pi = softmax(logits)
    (uniform when None).

    The same value as ``MixtureSameFamily(...).log_prob(z)`` (a test checks it), computed with two
    matrix products instead of a (..., K, D) tensor:
        -1/2 sum_d (z_d - m_kd)^2 / v_kd = -1/2 (z^2 @ (1/v_k)) + z @ (m_k / v_k) - 1/2 sum_d m_kd^2 / v_kd.
    With 500 components this is about 15 times faster, forward and backward, which is most of
    a VampPrior training step and of its k-sample NLL estimate.
    """
    shape = z.shape[:-1]
    log_comp = component_log_probs(z.reshape(-1, z.shape[-1]), means, log_vars)   # (N, K)
    if logits is None:
        out = logsumexp(log_comp, -1) - math.log(means.shape[0])
    else:
        out = logsumexp(log_comp + torch.log_softmax(logits, -1), -1)
    return out.view(shape)


def mixture_draw(means: torch.Tensor, log_vars: torch.Tensor, noise: torch.Tensor, u: torch.Tensor,
                 temperature=1.0, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Draws from the mixture sum_k pi_k N(m_k, diag v_k) (pi = softmax(logits), uniform when None)
    given the randomness: component k_n is where u_n (uniform in [0, 1)) falls in the cumulative weights (the inverse CDF of the
    categorical), then z_n = m_k + s_k * noise_n * temperature."""
    k = means.shape[0]
    if logits is None:
        pick = (u * k).long().clamp(max=k - 1)
    else:
        cdf = torch.cumsum(torch.softmax(logits, -1), -1)
        pick = (cdf.unsqueeze(0) <= u.unsqueeze(1)).sum(-1).clamp(max=k - 1)
    return means[pick] + torch.exp(0.5 * log_vars[pick]) * noise * temperature


class StandardNormal(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.register_buffer("zero", torch.zeros(()))

    def _dist(self, shape=()) -> Distribution:
        loc = self.zero.expand(*shape, self.dim)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)

    def log_prob(self, z, c=None):
        return self._dist().log_prob(z)

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        return noise * temperature

    def analytic_kl(self, q: Normal, c=None):
        """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, per dimension.

        The same value as ``kl_divergence(q, Normal(0, 1))`` (a test checks it); written out
        because the general Normal-Normal formula costs several extra tensor operations
        per training step, which is measurable on CPU with small networks. None for a posterior
        that is not a diagonal Gaussian (a flow).
        """
        if not isinstance(q, Normal):
            return None
        return 0.5 * (q.loc.square() + q.scale.square() - 1.0) - q.scale.log()


class ClassPrior(Prior):
    """p(z | y) = N(z; m_y, diag s_y^2): one learned Gaussian per class, for a conditional VAE.

    With the plain N(0, I) prior a conditional VAE often keeps the class in z as well as in
    the label, and a z drawn from N(0, I) may lie where another class's posteriors are, so a
    sample asked for one class looks like another. With p(z | y) the KL term pulls each class's
    posteriors to that class's Gaussian, and a sample for y is drawn from where class y lives.
    Soft labels (B, classes) mix the means and log-variances linearly. The means start at 0 and
    the variances at 1, so training starts from the N(0, I) prior.

    The parameters are stored divided by ``SCALE`` (10). Adam moves every parameter by about the
    learning rate per step, and the class Gaussians have to keep up with the encoder's
    posteriors as these move; stored this way they move 10 times faster. (On spoken digits, with
    lr 1e-3 and 30 epochs, unscaled means still lagged visibly behind the class's posterior
    means, and 81% of samples were recognised as their class against 88% with the scale.)
    """

    conditional = True
    SCALE = 10.0

    def __init__(self, dim: int, classes: int):
        super().__init__(dim)
        if classes < 1:
            raise ValueError("the class prior needs a conditional model (labels)")
        self.scaled_means = nn.Parameter(torch.zeros(classes, dim))
        self.scaled_log_vars = nn.Parameter(torch.zeros(classes, dim))
        self.logvar_range: tuple[float, float] | None = None   # set by build_model (--logvar-range)

    @property
    def means(self) -> torch.Tensor:
        """(classes, dim): the mean of each class's Gaussian."""
        return self.SCALE * self.scaled_means

    @property
    def log_vars(self) -> torch.Tensor:
        """(classes, dim): the log-variance of each class's Gaussian (in ``logvar_range``)."""
        return bounded(self.SCALE * self.scaled_log_vars, self.logvar_range)

    def _params(self, c):
        if c is None:
            raise ValueError("the class prior p(z | y) needs labels")
        with torch.autocast(c.device.type, enabled=False):   # float32 under mixed precision too
            c = c.float()
            return self.SCALE * (c @ self.scaled_means), c @ self.log_vars

    def _dist(self, c) -> Normal:
        mu, logvar = self._params(c)
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def log_prob(self, z, c=None):
        return self._dist(c).log_prob(z).sum(-1)

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        mu, logvar = self._params(c)
        return mu + torch.exp(0.5 * logvar) * noise * temperature

    def analytic_kl(self, q: Normal, c=None):
        """KL(N(m, s^2) || N(mu_y, v_y)) = (log v_y - log s^2 + (s^2 + (m - mu_y)^2) / v_y - 1) / 2;
        None for a posterior that is not a diagonal Gaussian (a flow)."""
        if not isinstance(q, Normal):
            return None
        mu, logvar = self._params(c)
        var = q.scale.square()
        return 0.5 * (logvar - var.log() + (var + (q.loc - mu).square()) * torch.exp(-logvar) - 1.0)


class MixtureOfGaussians(Prior):
    """p(z) = sum_k pi_k N(z; m_k, diag s_k^2), all of it learned.

    The means start spread out (N(0, I)) so the components do not collapse onto each other.
    """

    def __init__(self, dim: int, components: int = 10):
        super().__init__(dim)
        self.means = nn.Parameter(torch.randn(components, dim))
        self.log_vars = nn.Parameter(torch.zeros(components, dim))
        self.logits = nn.Parameter(torch.zeros(components))
        self.logvar_range: tuple[float, float] | None = None   # set by build_model (--logvar-range)

    def log_prob(self, z, c=None):
        return diagonal_mixture_log_prob(z, self.means, bounded(self.log_vars, self.logvar_range), self.logits)

    mixture = True

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        return mixture_draw(self.means, bounded(self.log_vars, self.logvar_range), noise, u, temperature, self.logits)


class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at K learned pseudo-inputs
    (Tomczak & Welling 2018, "VAE with a VampPrior").

    The pseudo-inputs live in data space, kept in [0, 1] by a sigmoid. The encoder is
    attached by the VAE, not registered here, so its weights are stored once.
    """

    def __init__(self, dim: int, shape: tuple[int, ...], components: int = 500):
        super().__init__(dim)
        # start near mid-grey with a little noise, so the components differ from the start
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(components, *shape))
        self.__dict__["_encoder"] = None
        self.__dict__["_head"] = None

    def attach(self, encoder: nn.Module, head: nn.Module | None = None) -> None:
        """The encoder whose posteriors make the mixture. ``head`` (optional) maps the encoder's
        posterior mean to the (mean, log-variance) of a higher stochastic layer: then the mixture
        is over that layer (the top of a hierarchical VAE)."""
        self.__dict__["_encoder"] = encoder
        self.__dict__["_head"] = head

    def components(self):
        mu, logvar = self._encoder(torch.sigmoid(self.pseudo_logits))
        if self._head is not None:
            mu, logvar = self._head(mu).chunk(2, -1)
        return mu, logvar

    def log_prob(self, z, c=None):
        return diagonal_mixture_log_prob(z, *self.components())

    mixture = True

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        return mixture_draw(*self.components(), noise, u, temperature)


def bounded(log_vars: torch.Tensor, logvar_range: tuple[float, float] | None) -> torch.Tensor:
    """Log-variances clipped to ``logvar_range`` by a hard tanh (as a ``GaussianHead`` clips its
    output), or as they are without one."""
    return log_vars if logvar_range is None else F.hardtanh(log_vars, *logvar_range)


def normal_from_params(params: torch.Tensor) -> Normal:
    """A diagonal Gaussian from a network's output [mean, log-variance] (last dimension)."""
    mu, logvar = params.chunk(2, -1)
    return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)


class HierarchicalPrior(Prior):
    """Stochastic layers z2, ..., zL above z1, each p(z_l | z_l+1) a Gaussian from a network.

    The top layer's prior p(zL) is N(0, I), or with ``top_prior="vamp"`` a VampPrior: the
    mixture of the posteriors of zL at K learned pseudo-inputs u_k (as in the hierarchical
    VampPrior VAE of Tomczak & Welling 2018). Any such mixture is a proper density, so every
    bound stays a bound. ``top`` is the size of z2, or a list of the sizes of z2, ..., zL; a
    layer above z2 is the same class again, over the layers from z2 up (``top_prior``).

    ``inference`` says how the upper layers are inferred, and so what this prior is a density over:

    - ``bottom-up`` (Burda et al. 2016): the encoder gives q(z1 | x) and this prior holds
      q(z2 | z1) (and q(z3 | z2), ...). The model's latent is z1 alone, and ``log_prob(z1)``
      draws z2 ~ q(z2 | z1), ... (reparameterised) and returns
      log p(z1 | z2) + ... + log p(zL) - log q(z2 | z1) - ..., whose expectation is a lower bound
      on log p(z1). In the VAE's weight log p(x|z1) + log p(z1) - log q(z1|x) it gives exactly
      the whole model's weight. The VampPrior's components are q(zL | z_L-1 = mean at u_k),
      the posterior means passed up from z1 = mu1(u_k).
    - ``top-down`` (Tomczak & Welling 2018; the ladder VAE's order): the latent is
      z = [z1, ..., zL], the encoder is a chain of :class:`~vaekit.model.nets.topdown.TopDownEncoder`
      giving q(zL | x) q(zL-1 | x, zL) ... q(z1 | x, z2), the decoder reads all layers, and
      ``log_prob(z) = log p(z1 | z2) + ... + log p(zL)`` exactly. The VampPrior's components
      are q(zL | u_k).

    Either way the ELBO, the IWAE bound and the k-sample NLL estimate of the whole model come
    from the same code as for any other prior (each of the k samples gets its own upper layers).
    """

    def __init__(self, dim: int, top: int | list[int] | None = None, hidden: int | list[int] = 128,
                 top_prior: str = "normal", shape: tuple[int, ...] | None = None, components: int = 500,
                 inference: str = "bottom-up", activation: str = "tanh", level: int = 1):
        tops = [int(t) for t in top] if isinstance(top, (list, tuple)) else [top or max(1, dim // 2)]
        if not tops or min(tops) < 1:
            raise ValueError(f"the layers above z1 need positive sizes, got {top}")
        if inference not in ("bottom-up", "top-down"):
            raise ValueError(f"unknown inference {inference!r}")
        super().__init__(dim + sum(tops) if inference == "top-down" else dim)
        self.inference, self.bottom, self.top, self.level = inference, dim, tops[0], level
        # p(z1 | z2) and, bottom-up, q(z2 | z1): MLPs with these hidden layers and nonlinearity
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        if inference == "bottom-up":
            self.up = _layer_net(dim, hidden, self.top, activation)    # q(z2 | z1)
        self.down = _layer_net(self.top, hidden, dim, activation)          # p(z1 | z2)
        if len(tops) > 1:     # the layers from z2 up: the same class again
            self.top_prior = HierarchicalPrior(self.top, tops[1:], hidden, top_prior, shape, components, inference,
                                               activation, level + 1)
        elif top_prior == "vamp":
            self.top_prior = VampPrior(self.top, tuple(shape), components)
        elif top_prior == "normal":
            self.top_prior = None  # N(0, I), written out below (and no entry in saved weights)
        else:
            raise ValueError(f"unknown top prior {top_prior!r}")

    @property
    def _above(self) -> "HierarchicalPrior | None":
        return self.top_prior if isinstance(self.top_prior, HierarchicalPrior) else None

    def attach(self, encoder) -> None:
        if self.top_prior is None:
            return
        if self.inference == "top-down":       # q(z2.. | u) is the top-down encoder's base
            self.top_prior.attach(encoder.base)
        elif self._above is not None:          # the layers above see u through z2 = its mean
            self.top_prior.attach(_MeanUp(encoder, self.up))
        else:                                  # q(z2 | z1 = mu1(u))
            self.top_prior.attach(encoder, self.up)

    _normal = staticmethod(normal_from_params)

    def _top_log_prob(self, z2):
        if self.top_prior is None:
            return Normal(torch.zeros_like(z2), torch.ones_like(z2), validate_args=False).log_prob(z2).sum(-1)
        return self.top_prior.log_prob(z2)

    @property
    def layers(self) -> list[tuple[str, int]]:
        above = self._above.layers if self._above is not None else [(f"z{self.level + 1}", self.top)]
        return [(f"z{self.level}", self.bottom), *above]

    def _terms(self, z):
        """For z of shape (N, dim): [log p(z1 | z2), ..., log p(zL)], one (N,) tensor per layer,
        and bottom-up [log q(z2 | z1), ..., log q(zL | zL-1)] for the upper layers drawn here
        (top-down: [])."""
        if self.inference == "top-down":
            z1, rest = z[:, :self.bottom], z[:, self.bottom:]     # rest: [z2, ..., zL]
            log_q = []
        else:
            z1 = z
            q2 = self._normal(self.up(z1))
            rest = q2.rsample()                                    # z2
            log_q = [q2.log_prob(rest).sum(-1)]
        log_p1 = self._normal(self.down(rest[:, :self.top])).log_prob(z1).sum(-1)
        if self._above is not None:
            log_p, log_q_above = self._above._terms(rest)
            return [log_p1, *log_p], log_q + log_q_above
        return [log_p1, self._top_log_prob(rest)], log_q

    def log_prob(self, z, c=None):
        log_p, log_q = self._terms(z.reshape(-1, self.dim))
        return (sum(log_p) - sum(log_q, 0.0)).view(z.shape[:-1])

    def layer_means(self, loc):
        if self.inference == "top-down":
            z1, rest = loc[..., :self.bottom], loc[..., self.bottom:]
        else:
            z1, rest = loc, self.up(loc).chunk(2, -1)[0]   # the mean of q(z2 | z1 = mu1)
        above = self._above.layer_means(rest) if self._above is not None else {f"z{self.level + 1}": rest}
        return {f"z{self.level}": z1, **above}

    def layer_kl(self, q, z):
        """Per layer: log q(z_l | .) - log p(z_l | z_l+1) (the top layer: - log p(zL)). Bottom-up,
        the upper layers are drawn from q(z2 | z1), ... here, as in :meth:`log_prob`."""
        shape = z.shape[:-1]
        log_p, log_q = self._terms(z.reshape(-1, self.dim))
        per_dim = q.log_prob(z)                                      # per dimension of the latent
        if self.inference == "top-down":
            q_layers = [part.sum(-1) for part in per_dim.split([size for _, size in self.layers], -1)]
        else:
            q_layers = [per_dim.sum(-1), *(v.view(shape) for v in log_q)]
        return {name: lq - lp.view(shape) for (name, _), lq, lp in zip(self.layers, q_layers, log_p)}

    @property
    def mixture(self) -> bool:
        return self.top_prior is not None and self.top_prior.mixture

    @property
    def noise_dim(self) -> int:
        """z1's values, then those of the layers above ([z1, z2, ..., zL], as the latent is ordered
        top-down); bottom-up the upper layers are drawn too, and only z1 is returned."""
        return self.bottom + (self.top if self.top_prior is None else self.top_prior.noise_dim)

    def draw(self, noise, u=None, c=None, temperature=1.0):
        eps1, above = noise[:, :self.bottom], noise[:, self.bottom:]
        # z2 (top-down: [z2, ..., zL])
        rest = above * temperature if self.top_prior is None else self.top_prior.draw(above, u, None, temperature)
        mu, logvar = self.down(rest[:, :self.top]).chunk(2, -1)
        z1 = mu + torch.exp(0.5 * logvar) * eps1 * temperature
        return torch.cat([z1, rest], -1) if self.inference == "top-down" else z1


class _MeanUp:
    """u -> (mean, log-variance) of q(z_l+1 | z_l) at z_l = the mean of the layer below at u: what
    the layers above z2 of a bottom-up hierarchy see as their encoder. A plain callable, so the
    networks it reads are not registered twice."""

    def __init__(self, encoder, up):
        self.encoder, self.up = encoder, up

    def __call__(self, u, c=None):
        return tuple(self.up(self.encoder(u)[0]).chunk(2, -1))


def _layer_net(d_in: int, hidden: list[int], latent: int, activation: str) -> nn.Sequential:
    """The MLP between two stochastic layers: d_in -> hidden... -> a Gaussian's mean and
    log-variance over ``latent`` dimensions (a :class:`~vaekit.model.nets.mlp.GaussianHead`). Its modules
    are numbered as they always were for one tanh layer, so the weights of runs saved before
    ``prior_hidden`` existed still load."""
    from .nets.mlp import GaussianHead, mlp_layers  # here: nets imports this module

    return nn.Sequential(*mlp_layers([d_in, *hidden], activation), GaussianHead(hidden[-1], latent))


def _vamp_fits(m, info):
    if info["value"] == "tokens":
        return "the VampPrior learns pseudo-inputs in data space, which token ids are not; use another prior for text"
    if m.conditional:
        return ("the VampPrior mixes the encoder's posteriors at pseudo-inputs, which have no labels, so it does not "
                "fit a conditional model; use --prior class")
    return None


def _top_vamp_fits(m, info):
    return _vamp_fits(m, info) if m.top_prior == "vamp" else None


def _class_fits(m, info):
    if not m.conditional:
        return ("the class prior (a learned Gaussian per class) needs a conditional model: set --conditional and "
                "give labels")
    return None


@PRIORS.register("normal", "N(0, I)")
def _normal_prior(m, info, classes):
    return StandardNormal(m.latent)


@PRIORS.register("mog", "a learned mixture of Gaussians (--prior-components, default 10)")
def _mog(m, info, classes):
    return MixtureOfGaussians(m.latent, m.prior_components or 10)


@PRIORS.register("vamp", "the VampPrior (--prior-components pseudo-inputs, default 500)", _vamp_fits)
def _vamp(m, info, classes):
    return VampPrior(m.latent, tuple(info["shape"]), m.prior_components or 500)


@PRIORS.register("hierarchical", "further stochastic layers z2, ... (--top-latent, --top-prior, --inference)",
                 _top_vamp_fits)
def _hierarchical(m, info, classes):
    return HierarchicalPrior(m.latent, m.top_sizes(), m.prior_hidden or [m.hidden[-1]], m.top_prior,
                             tuple(info["shape"]), m.prior_components or 500, m.inference, m.prior_activation)


@PRIORS.register("class", "p(z | y), a learned Gaussian per class, for --conditional", _class_fits)
def _class_prior(m, info, classes):
    return ClassPrior(m.latent, classes)
