"""vaekit: variational autoencoders on images, text and audio, built on PyTorch.

    import vaekit
    run = vaekit.train(vaekit.Config())           # trains on the embedded digits
    run = vaekit.Run.load("runs/digits-...")       # or load a run directory
    images = run.model.sample(16)
    print(run.evaluate(k=5000)["nll_nats"])
"""

__version__ = "0.1.0"

from .config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from .data import Bundle, load_data  # noqa: E402
from .errors import VaekitError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .model import VAE, build_model  # noqa: E402
from .objectives import Objective  # noqa: E402
from .run import Run  # noqa: E402
from .report import write_report  # noqa: E402
from .serve import serve  # noqa: E402
from .train import resume, train  # noqa: E402

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "Bundle", "load_data", "VaekitError",
           "evaluate", "VAE", "build_model", "Objective", "Run", "train", "resume",
           "write_report", "serve", "__version__"]
