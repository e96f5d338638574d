"""Images: arrays, IDX files, folders of PNG/JPEG, the embedded digits and Fashion-MNIST."""

from .loader import load_images
from .media import Images

__all__ = ["Images", "load_images"]
