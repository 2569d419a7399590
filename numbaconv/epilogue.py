"""The epilogue: what is applied to each output value where a kernel writes it.

Note [epilogue]
~~~~~~~~~~~~~~~
Every algorithm's kernels apply the epilogue in the same pass that writes
the output, never as a separate pass over it (an extra read and write of
the whole output: the cost the fused activations and residual adds of the
whole-networks work remove).  Today the epilogue is the bias; it is carried
from the public function to the kernels as one :class:`Epilogue` object, so
a new term (an activation, a residual) is added here and in the kernels'
store, not threaded positionally through every module.

One convention for "no bias": ``Epilogue.bias`` is always an array, of
``C_out`` values or of none (a zero-length array); kernels test its
length.  An algorithm that computes into a scratch buffer and writes the
output in a last step applies the epilogue there; a rewrite that splits a
problem (phases, crops) gives each part the same epilogue, and output
positions no part writes receive :meth:`Epilogue.fill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

@dataclass(frozen=True, eq=False)
class Epilogue:
    """The epilogue of one call (Note [epilogue]).

    Attributes
    ----------
    bias : array
        ``(C_out,)`` values added to every output of a channel, in the
        compute dtype, on the call's device; zero-length for no bias.
    """

    bias: Any

    @classmethod
    def of(cls, bias, dtype):
        """The epilogue of a call with ``bias`` (an array, or None) computing
        in ``dtype``."""
        if bias is None:
            none = _NONE.get(np.dtype(dtype))
            return cls(np.empty(0, dtype=dtype)) if none is None else none
        return cls(bias)

    @property
    def has_bias(self) -> bool:
        return len(self.bias) != 0

    def bias_or_none(self):
        """The bias array, or None when there is none."""
        return self.bias if len(self.bias) else None

    def fill(self, out):
        """Write the epilogue of an all-zero convolution into ``out``
        (canonical ``(N, C_out, ...)``): the bias, or zeros."""
        if self.has_bias:
            out[...] = self.bias.reshape((1, -1) + (1,) * (out.ndim - 2))
        else:
            out[...] = 0
        return out


#: The epilogue of no bias per compute dtype, shared by every call without one.
_NONE = {np.dtype(t): Epilogue(np.empty(0, dtype=t)) for t in (np.float32, np.float64)}
