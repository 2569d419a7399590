"""Convolution algorithms and the registry they join.

Importing this package registers every built-in algorithm.
"""

from .registry import (ConvAlgorithm, Plan, algorithm_names, algorithms, composite_paths,
                       costed_plan, get_algorithm, register, unregister)
from . import direct  # noqa: F401  (registers "direct")
from . import im2col  # noqa: F401  (registers "im2col")
from . import fft  # noqa: F401  (registers "fft")
from . import winograd  # noqa: F401  (registers "winograd", "winograd_f2")
from . import gpu  # noqa: F401  (the same names on "cuda"; imports no numba.cuda)

__all__ = ["ConvAlgorithm", "Plan", "algorithm_names", "algorithms", "composite_paths",
           "costed_plan", "get_algorithm", "register", "unregister"]
