"""The planes loop order of the direct algorithm: everything with few
channels per group that the other loop orders do not serve (3-D, input
dilation, other padding modes).  Each plane is gathered into a padded
scratch plane and computed row by row; kept simple because it is rare and
its compile time counts.  The canonical form and the other loop orders:
kernels/direct_channels_last.py.
"""

from __future__ import annotations

import numpy as np

from .direct_pack import gather_plane
from .epilogue_block import finish_args, finish_block
from .jit import cpu_kernel
from .parallel import run_in_chunks


def conv_planes(x, map_d, map_h, map_w, w, bias, out, groups, stride, dilation, chunks,
                finish=None):
    """Direct convolution one (image, output channel) plane at a time.

    ``x`` is the unpadded canonical input; each job gathers the padded
    planes of its group's input channels into a private scratch buffer (small
    enough to stay in cache for the layers this kernel is chosen for), then
    accumulates ``out_row += w[tap] * in_row[shifted]`` along output rows.
    ``bias`` is ``(C_out,)``, or empty for none.
    ``chunks`` runs of consecutive planes (the thread count), so each thread
    allocates its scratch once.  ``finish`` is the epilogue's ``(code,
    slope, residual)`` (:meth:`numbaconv.epilogue.Epilogue.kernel_args`),
    applied to each plane once it is complete; None: bias only.
    """
    run_in_chunks(_planes_chunk, (x, map_d, map_h, map_w, w, bias, out, groups, *stride,
                                  *dilation, *finish_args(finish, out.dtype)),
                  out.shape[0] * out.shape[1], chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _planes_chunk(x, map_d, map_h, map_w, w, bias, out, groups, sd, sh, sw, dd, dh, dw,
                  code, slope, residual, first_job, stop_job):
    """Planes ``first_job <= n * C_out + co < stop_job`` of conv_planes."""
    stride = (sd, sh, sw)
    dilation = (dd, dh, dw)
    Co = out.shape[1]
    cin_g = x.shape[1] // groups
    zero = out.dtype.type(0)
    planes = np.empty((cin_g, map_d.shape[0], map_h.shape[0], map_w.shape[0]), dtype=out.dtype)
    flat = out.ravel()
    plane = out.shape[2] * out.shape[3] * out.shape[4]
    for job in range(first_job, stop_job):
        n = job // Co
        co = job % Co
        g = co // (Co // groups)
        for ci in range(cin_g):
            gather_plane(x[n, g * cin_g + ci], map_d, map_h, map_w, planes[ci])
        # Note [no bias] in kernels/__init__.py
        _plane_task(planes, w[co], bias[co] if bias.shape[0] else zero, out[n, co], stride,
                    dilation)
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            finish_block(flat, job * plane, 0, 1, plane, residual, code, slope)


@cpu_kernel(parallel=False, python_callable=False)
def _plane_task(planes, w, bias, out, stride, dilation):
    """out[od, oh, ow] = bias + sum over (ci, taps) of w[ci, tap] * planes[ci, shifted].

    One output row at a time: ``out_row += tap * in_row[kw*dw :: sw]``.  Only
    the layers that no other loop order serves come here (3-D, input
    dilation, other padding modes of thin groups), so this favours short compile
    times over speed: a flat-plane variant of it doubled the compile time.
    """
    OD, OH, OW = out.shape
    cin_g, KD, KH, KW = w.shape
    Dp, Hp, Wp = planes.shape[1], planes.shape[2], planes.shape[3]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    # flat views and unsigned indices: Note [reference counts] (direct_channels_last)
    src = planes.ravel()
    dst = out.ravel()
    for od in range(OD):
        for oh in range(OH):
            orow = (od * OH + oh) * OW
            for ow in range(OW):
                dst[orow + ow] = bias
            for ci in range(cin_g):
                for kd in range(KD):
                    for kh in range(KH):
                        xrow = ((ci * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp
                        for kw in range(KW):
                            tap = w[ci, kd, kh, kw]
                            start = xrow + kw * dw
                            for i in range(OW):
                                dst[np.uint64(orow + i)] += tap * src[np.uint64(start + i * sw)]
