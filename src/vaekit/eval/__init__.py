"""Evaluation: the importance-sampling primitive, and the figures of a model on a data split
(ELBO, importance-sampled NLL, bits/dim, KL per dimension, active units, stochastic layers)."""

from .importance import importance_terms, log_likelihood, log_weights
from .metrics import (COLLAPSE_REMEDIES, active_units_of, collapse_epoch, elbo_sums, evaluate, iwae_sum, layers_text, pass_rows,
                      release_freed_memory)

__all__ = ["active_units_of", "collapse_epoch", "COLLAPSE_REMEDIES", "importance_terms", "log_weights", "log_likelihood", "evaluate", "elbo_sums", "iwae_sum", "layers_text",
           "pass_rows", "release_freed_memory"]
