"""The version of vaekit (written into every run's config.yaml and checkpoint)."""

__version__ = "0.1.0"
