"""gencourse: tested reference implementations behind the course on deep generative models.

    import gencourse
    from gencourse import data, metrics, viz, check
    gencourse.seed_everything(0)
    gencourse.show(gencourse.data.dequantize)   # the source, highlighted, in a notebook
"""
import importlib

from gencourse.train import get_device, seed_everything
from gencourse.showsource import show

__version__ = "0.1.0"

# The course's home. Badges and the Colab bootstrap cell of every lesson are kept in step with it.
REPO_URL = "https://github.com/gencourse/gencourse"

_SUBMODULES = (
    "data", "train", "metrics", "viz", "check", "exercises", "student", "bench",
    "autoencoder", "vae", "gan", "flows", "diffusion", "autoregressive", "flow_matching", "recipes", "nets",
    "parameterization", "transformer", "text", "vq", "latent",
)


def headline(name: str, value, fmt: str = "{:.3g}"):
    """Record a lesson's headline figure for ``make bench`` and return ``value`` (see :mod:`gencourse.bench`)."""
    from gencourse.bench import headline as record

    return record(name, value, fmt)


def setup(seed: int = 0, *, dpi: int = 80) -> None:
    """Start of every lesson: seed everything, keep torch within the machine's CPU quota, and set modest
    figure sizes."""
    from gencourse.train import limit_threads
    from gencourse.viz import setup_style

    limit_threads()
    seed_everything(seed)
    setup_style(dpi)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"gencourse.{name}")
    raise AttributeError(f"module 'gencourse' has no attribute {name!r}")


__all__ = ["REPO_URL", "get_device", "headline", "seed_everything", "setup", "show", *_SUBMODULES]
