"""The VAE, composed of parts: each family (likelihoods, priors, networks, objectives) has a
registry (:mod:`vaekit.model.registry`) that the config, the command line and the builder read.

Nothing here knows images, text or audio: parts are chosen by the data's shape and kind of
value (``binary``, ``levels``, ``continuous``, ``real``, ``tokens``).
"""

from . import categorical, likelihoods, nets, objectives, priors, sphere, vq  # noqa: F401  (each registers its parts)
from .objectives import Objective
from .registry import LIKELIHOODS, NETS, OBJECTIVES, PRIORS, Registry
from .vae import VAE, build_model, misfit, model_size

__all__ = ["VAE", "build_model", "misfit", "model_size", "Objective", "Registry", "LIKELIHOODS", "NETS", "OBJECTIVES", "PRIORS"]
