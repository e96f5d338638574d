"""vaekit: variational autoencoders on images, text and audio, built on PyTorch.

    import vaekit
    run = vaekit.train(vaekit.Config())           # trains on the embedded digits
    run = vaekit.Run.load("runs/digits-...")       # or load a run directory
    images = run.model.sample(16)
    print(run.evaluate(k=5000)["nll_nats"])
"""

from .version import __version__  # noqa: E402,F401

from .config import Config, DataConfig, ModelConfig, TrainConfig, resolve  # noqa: E402
from .errors import VaekitError  # noqa: E402
from .eval import evaluate, log_likelihood, log_weights  # noqa: E402
from .kinds import Bundle, Media, load_data, register_kind  # noqa: E402
from .model import LIKELIHOODS, NETS, OBJECTIVES, PRIORS, VAE, Objective, build_model  # noqa: E402
from .run import Run  # noqa: E402
from .report import write_report  # noqa: E402
from .serve import serve  # noqa: E402
from .train import resume, train  # noqa: E402

#: decorators that register a user's part under a name, chosen then like a built-in one (vaekit.plugins)
register_net, register_prior = NETS.register, PRIORS.register
register_likelihood, register_objective = LIKELIHOODS.register, OBJECTIVES.register

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "resolve", "Bundle", "Media", "load_data",
           "register_kind", "VaekitError", "evaluate", "log_weights", "log_likelihood", "VAE", "build_model",
           "Objective", "LIKELIHOODS", "NETS", "OBJECTIVES", "PRIORS", "Run", "train", "resume", "write_report",
           "serve", "register_net", "register_prior", "register_likelihood", "register_objective", "__version__"]
