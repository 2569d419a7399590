"""numbaconv: PyTorch's convolution semantics on NumPy arrays, at native speed.

Public API (this release): :func:`conv1d`, :func:`conv2d`, :func:`conv3d`,
:func:`conv_transpose1d` / ``2d`` / ``3d``, the gradients in
:mod:`numbaconv.grad` (``torch.nn.grad``'s names) and :func:`conv_backward`,
the shape helpers :func:`conv_output_size` / :func:`conv_input_size`,
:func:`algorithm_names`, :class:`UnsupportedAlgorithmError`, the float64
references (:func:`conv_reference` and its transposed and gradient
companions), :func:`set_workspace_limit` / :func:`get_workspace_limit`,
:func:`release_workspaces` (the scratch memory kept between calls), and
the dispatcher: :func:`choose_algorithm`, :func:`explain`, and measured
autotuning: :func:`tune`, :func:`set_tuning`, :func:`tuning_enabled`.
"""

from .algorithms import algorithm_names
from .config import get_workspace_limit, set_workspace_limit
from .errors import UnsupportedAlgorithmError
from . import grad
from .functional import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d,
                         conv_transpose3d)
from .grad import activation_backward, conv_backward
from .reference import (conv_grad_input_reference, conv_grad_weight_reference, conv_reference,
                        conv_transpose_reference)
from .dispatch import choose_algorithm, explain, tune
from .spec import conv_input_size, conv_output_size
from .tuning import set_tuning, tuning_enabled
from .workspaces import release_workspaces

from ._version import __version__

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "grad", "conv_backward", "activation_backward",
           "conv_output_size", "conv_input_size",
           "conv_reference", "conv_transpose_reference", "conv_grad_input_reference",
           "conv_grad_weight_reference", "algorithm_names", "choose_algorithm", "explain",
           "tune", "set_tuning",
           "tuning_enabled",
           "UnsupportedAlgorithmError", "get_workspace_limit", "set_workspace_limit",
           "release_workspaces",
           "__version__"]
