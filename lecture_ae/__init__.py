"""lecture_ae: the reference implementation behind the autoencoder lecture.

Subpackages: :mod:`lecture_ae.sparse` (sparse coding and dictionary learning),
:mod:`lecture_ae.data` (embedded datasets and opt-in loaders),
:mod:`lecture_ae.plots`, :mod:`lecture_ae.runtime` (device, seeds, progress bars).
"""
from . import runtime
from .runtime import full_size, get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["runtime", "get_device", "seed_everything", "full_size", "__version__"]
