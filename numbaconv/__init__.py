"""numbaconv: PyTorch's convolution semantics on NumPy arrays, at native speed.

Public API (this release): :func:`conv1d`, :func:`conv2d`, :func:`conv3d`,
:func:`algorithm_names`, :class:`UnsupportedAlgorithmError`, the float64
reference :func:`conv_reference`, and :func:`set_workspace_limit` /
:func:`get_workspace_limit`.
"""

from .algorithms import algorithm_names
from .config import get_workspace_limit, set_workspace_limit
from .errors import UnsupportedAlgorithmError
from .functional import conv1d, conv2d, conv3d
from .reference import conv_reference

__version__ = "0.1.0"

__all__ = ["conv1d", "conv2d", "conv3d", "conv_reference", "algorithm_names",
           "UnsupportedAlgorithmError", "get_workspace_limit", "set_workspace_limit",
           "__version__"]
