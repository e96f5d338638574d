"""Registries: one table per family of model parts (likelihoods, priors, networks, objectives).

Each entry is a name, a builder, a one-line help text and a check of whether it fits the data
and the rest of the model: ``fits(model_cfg, info)`` returns ``None`` or the reason it does
not, as the end of a sentence. Config validation, the command line's choices, the fit checks
and the builders all read the same table, so a new part is registered once:

    from vaekit.model.registry import PRIORS

    @PRIORS.register("laplace", help="a factorised Laplace prior")
    def _laplace(m, info, classes):
        return LaplacePrior(m.latent)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import VaekitError


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., Any]
    help: str = ""
    fits: Callable[[Any, dict], str | None] | None = None
    module: str = ""   # where the builder was defined: vaekit's own parts, or a user's module
    traits: dict = field(default_factory=dict)   # what else the rest of vaekit reads of the part, by name


class Registry:
    """name -> :class:`Entry` for one family of parts; ``family`` names it in messages."""

    def __init__(self, family: str):
        self.family = family
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, help: str = "", fits: Callable[[Any, dict], str | None] | None = None, **traits):
        """Decorator: register ``build`` under ``name`` (a name registered twice is an error).
        ``traits``: what the rest of vaekit reads of the part without building it (an
        objective's ``draws(k, groups)``: its samples of z a step and the k of its validation
        bound; a prior's ``width(model_cfg, data_info)``, the size of z, and ``family``, its posterior's)."""
        def add(build):
            if name in self.entries:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self.entries[name] = Entry(name, build, help, fits, getattr(build, "__module__", "") or "", traits)
            return build
        return add

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise VaekitError(f"unknown {self.family} '{name}'; expected one of: {', '.join(self.entries)}.") from None

    def build(self, name: str, *args, **kwargs):
        return self[name].build(*args, **kwargs)

    def traits(self, name: str) -> dict:
        """The traits of ``name`` ({} for a name not registered: the check that refuses it comes later)."""
        entry = self.entries.get(name)
        return entry.traits if entry else {}

    def misfit(self, name: str, model_cfg, info: dict) -> str | None:
        """Why the part ``name`` does not fit this model and data, or None when it does."""
        entry = self[name]
        return entry.fits(model_cfg, info) if entry.fits else None

    def outside(self, name: str) -> str | None:
        """The module that registered ``name`` when it is not part of vaekit, else None."""
        entry = self.entries.get(name)
        if entry is None or entry.module == "vaekit" or entry.module.startswith("vaekit."):
            return None
        return entry.module

    def help(self) -> str:
        return "; ".join(f"{e.name}: {e.help}" if e.help else e.name for e in self.entries.values())


LIKELIHOODS = Registry("likelihood")   # build(model_cfg, info) -> Likelihood
PRIORS = Registry("prior")             # build(model_cfg, info, classes) -> Prior
NETS = Registry("network")             # build(model_cfg, info, z_enc, z_in, classes, lik) -> (encoder, decoder)
OBJECTIVES = Registry("objective")     # build(train_cfg, steps_per_epoch) -> Objective
