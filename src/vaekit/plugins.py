"""Parts of a model from outside vaekit: a user's network, prior, likelihood or objective,
registered by name and chosen like a built-in one.

    import vaekit

    @vaekit.register_net("tiny", "my own encoder and decoder")
    def build(model_cfg, info, z_enc, z_in, classes, lik):
        return MyEncoder(...), MyDecoder(...)

(``register_prior``, ``register_likelihood`` and ``register_objective`` are the same for the
other families; docs/architecture.md says what each builder returns.) A run records which module
registered each part it uses that is not vaekit's own (``plugins`` in config.yaml), and loading
the run imports that module again; where it cannot be imported, one sentence says which. The
command line imports the modules named in ``VAEKIT_PLUGINS`` (comma-separated) and those that
installed packages declare as entry points in the group ``vaekit.plugins``, before it reads its
options, so that ``vaekit train --net tiny`` works.
"""

from __future__ import annotations

import importlib
import os

from .errors import VaekitError

#: the entry-point group of installed packages that add parts to vaekit
GROUP = "vaekit.plugins"


def load_plugins() -> list[str]:
    """Import the modules of ``VAEKIT_PLUGINS`` and of the ``vaekit.plugins`` entry points;
    return their names. One that cannot be imported is one sentence."""
    from importlib.metadata import entry_points

    names = [m.strip() for m in os.environ.get("VAEKIT_PLUGINS", "").split(",") if m.strip()]
    for name in names:
        import_plugin(name, "VAEKIT_PLUGINS names it")
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as e:   # a broken third-party package: say which, and go on without it
            raise VaekitError(f"the vaekit plugin '{ep.name}' ({ep.value}) of an installed package cannot be "
                              f"loaded ({type(e).__name__}: {e}).") from None
        names.append(ep.value)
    return names


def import_plugin(module: str, why: str) -> None:
    """Import ``module``, or say in one sentence why it is needed and why it cannot be imported."""
    try:
        importlib.import_module(module)
    except Exception as e:
        hint = ("it was defined in a script; move it into a module on the Python path"
                if module == "__main__" else "put it on the Python path (PYTHONPATH) or install it")
        raise VaekitError(f"{why}, but the module '{module}' cannot be imported ({type(e).__name__}: {e}); "
                          f"{hint}.") from None
