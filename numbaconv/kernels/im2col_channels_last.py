"""im2col + GEMM kernels for channels-last (NDHWC) arrays, read and written in place.

The input is ``(N, D, H, W, C)`` and the output ``(N, OD, OH, OW, C_out)``,
both C-contiguous (SPEC 1b: a channels-last call is served without a copy);
the weight is rearranged once per call to ``(groups, C_out/groups, K)`` with
``K = KD * KH * KW * C_in/groups`` in ``(kd, kh, kw, c)`` order, the order
of the rows built here.

Note [channels-last columns]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Channels last, the column matrix of a tile of output pixels is naturally
``(pixels, K)``: the row of one pixel is its receptive field, which is
``KD * KH`` runs of ``KW * C`` contiguous input values (one group, no
W-dilation, inside the input) or one run of ``C_in/groups`` values per tap;
no element is gathered with a stride.  The product is then
``out_tile (pixels, C_out/groups) = columns @ W_g^T`` (BLAS ``gemm`` with B
transposed), written straight into the output, whose rows are the tile's
pixels with the output's row stride ``C_out`` (a group's channels are a
strided block of them).  Padding of every mode is resolved through the
index maps of :mod:`numbaconv.padding`, so the input is never padded or
copied.  The 1x1 (pointwise) case needs no columns at all: the input
*is* the ``(N * pixels, C_in)`` column matrix.

As in Note [column tiles] of :mod:`numbaconv.kernels.im2col_cpu`, a job
fills its tile's output block with the bias (or lets BLAS overwrite it),
adds every K chunk's product into it, then applies the fused epilogue to the
block while it is in the core's cache (Note [epilogue] in
:mod:`numbaconv.epilogue`).  Tiles and blocks, the GEMMs' shapes, are sized
by the caller from the spec, the workspace limit and numba's pool, never
from the threads of one call (Note [GEMM shapes] in
:mod:`numbaconv.kernels.blas`), so results are bit-identical for any
``numba.set_num_threads``.
"""

from __future__ import annotations

import numpy as np

from .blas import gemm_nt
from .direct_taps import copy_row, zero_run
from .epilogue_block import finish_block
from .jit import cpu_kernel, inline_helper
from .parallel import chunk_of, chunk_scratch, run_in_chunks


@cpu_kernel(parallel=False, python_callable=False)
def fill_rows(x, map_d, map_h, map_w, n, first_pixel, pixels, first_channel, cin_g, k0, rows,
              KD, KH, KW, sd, sh, sw, dd, dh, dw, pad_w, OH, OW, dst):
    """``dst[p * rows + k] = `` the (padded) input value that weight column
    ``k0 + k`` (``(kd, kh, kw, c)`` order) multiplies for output pixel
    ``first_pixel + p`` (flat over ``OD, OH, OW``) of image ``n``, reading
    channels ``first_channel + c`` of the unpadded channels-last input ``x``
    (Note [channels-last columns]); ``-1`` in a map is a zero.

    Used by im2col's column tiles (``rows`` a chunk of K) and by the direct
    algorithm's patch rows (whole K).  Flat views, unsigned indices: Note
    [reference counts] in kernels/direct_channels_last.py.
    """
    D, H, W, C = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    src = x.ravel()
    merged_run = KW * C
    # one group, no W dilation: a pixel's taps of one kernel row are one run
    # wherever they all lie inside the input
    can_merge = dw == 1 and cin_g == C
    ow = first_pixel % OW
    oh = (first_pixel // OW) % OH
    od = first_pixel // (OW * OH)
    for p in range(pixels):
        at = p * rows
        k = k0
        stop = k0 + rows
        tap = k // cin_g
        c = k - tap * cin_g
        kw = tap % KW
        kh = (tap // KW) % KH
        kd = tap // (KW * KH)
        iw0 = ow * sw - pad_w                   # input column of tap kw = 0
        interior = iw0 >= 0 and iw0 + KW - 1 < W
        while k < stop:
            srow = map_d[od * sd + kd * dd]
            scol = map_h[oh * sh + kh * dh]
            if can_merge and c == 0 and kw == 0 and interior and stop - k >= merged_run:
                count = merged_run
                if srow < 0 or scol < 0:
                    zero_run(dst, at, count)
                else:
                    copy_row(dst, at, src, (((n * D + srow) * H + scol) * W + iw0) * C, count)
                kw = KW
            else:
                count = min(cin_g - c, stop - k)
                iw = map_w[ow * sw + kw * dw]
                if srow < 0 or scol < 0 or iw < 0:
                    zero_run(dst, at, count)
                else:
                    copy_row(dst, at, src,
                             (((n * D + srow) * H + scol) * W + iw) * C + first_channel + c,
                             count)
                kw += 1
            at += count
            k += count
            c = 0
            kw, kh, kd = _carry(kw, kh, kd, KW, KH)
        ow, oh, od = _carry(ow + 1, oh, od, OW, OH)


@inline_helper
def _carry(low, middle, high, LOW, MIDDLE):
    """A three-digit counter ``(high, middle, low)`` whose low digit may
    have reached ``LOW``: carried into the next digits."""
    if low == LOW:
        low = 0
        middle += 1
        if middle == MIDDLE:
            middle = 0
            high += 1
    return low, middle, high


@inline_helper
def fill_bias_rows(flat, first, row_stride, rows, cols, bias, first_channel):
    """``flat[first + r * row_stride + j] = bias[first_channel + j]`` for
    ``r < rows``, ``j < cols`` (zeros when ``bias`` is empty): the start of
    a block of channels-last output."""
    zero = flat.dtype.type(0)
    has_bias = bias.shape[0] > 0
    for r in range(rows):
        at = first + r * row_stride
        for j in range(cols):
            flat[np.uint64(at + j)] = bias[first_channel + j] if has_bias else zero


def pointwise_channels_last(gemm_address, int_witness, x, w, bias, out, block_rows,
                            channel_blocks, code, slope, residual, chunks):
    """The pointwise (1x1, stride 1, unpadded) convolution of a channels-last input.

    ``x`` is ``(pixels, C_in)`` (the input, all images, reshaped: no copy),
    ``w`` ``(groups, C_out/groups, C_in/groups)`` and ``out`` ``(pixels,
    C_out)``.  A job is ``out[rows, group's channels] = x[rows, group's
    channels] @ w[g, block]^T + bias`` for a block of ``block_rows`` pixels,
    one group and one of ``channel_blocks`` blocks of its output channels:
    one single-threaded GEMM on views with the rows' stride as leading
    dimension, then the fused epilogue of the block (``code``, ``slope``,
    ``residual``: :meth:`numbaconv.epilogue.Epilogue.kernel_args`).
    """
    groups = w.shape[0]
    blocks = (x.shape[0] + block_rows - 1) // block_rows
    run_in_chunks(_pointwise_chunk, (gemm_address, int_witness, x, w, bias, out, block_rows,
                                     channel_blocks, code, slope, residual),
                  blocks * groups * channel_blocks, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _pointwise_chunk(gemm_address, int_witness, x, w, bias, out, block_rows, channel_blocks,
                     code, slope, residual, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of pointwise_channels_last; job =
    (row block, group, channel block)."""
    groups, cout_g, cin_g = w.shape
    size, Co = out.shape
    flat = out.ravel()
    finish = code != 0 or residual.shape[0] > 0
    for job in range(first_job, stop_job):
        b = job % channel_blocks
        g = (job // channel_blocks) % groups
        r0 = (job // (channel_blocks * groups)) * block_rows
        r1 = min(size, r0 + block_rows)
        j0 = b * cout_g // channel_blocks
        j1 = (b + 1) * cout_g // channel_blocks
        if j1 <= j0 or r1 <= r0:
            continue
        c0 = g * cout_g + j0
        if bias.shape[0]:
            fill_bias_rows(flat, r0 * Co + c0, Co, r1 - r0, j1 - j0, bias, c0)
        gemm_nt(gemm_address, int_witness, x[r0:r1, g * cin_g:(g + 1) * cin_g], w[g, j0:j1],
                out[r0:r1, c0:g * cout_g + j1], 1.0 if bias.shape[0] else 0.0)
        if finish:
            finish_block(flat, r0 * Co + c0, Co, r1 - r0, j1 - j0, residual, code, slope)


def im2col_channels_last(gemm_address, int_witness, x, map_d, map_h, map_w, w, bias, out,
                         kernel_size, stride, dilation, pad_w, tile, rows, row_blocks, code,
                         slope, residual, chunks):
    """Convolution of a channels-last input by column tiles (Note
    [channels-last columns]).

    Parameters
    ----------
    gemm_address, int_witness
        The CBLAS gemm (:func:`numbaconv.kernels.blas.find_gemm`).
    x : (N, D, H, W, C) array
        Unpadded channels-last input.
    map_d, map_h, map_w : int64 arrays
        Padding index maps of the three axes.
    w : (groups, C_out/groups, K) array
        The weight in ``(kd, kh, kw, c)`` column order.
    bias : (C_out,) or (0,) array
    out : (N, OD, OH, OW, C_out) array
        Written in full.
    kernel_size, stride, dilation : (3,) tuples of int
    pad_w : int
        Padding before the W axis (interior runs are read without the map).
    tile : int
        Output pixels (of one image) per job.
    rows : int
        Columns of the column buffer, a divisor of ``K``: K is reduced in
        ``K / rows`` chunks whose products are added into the output.
    row_blocks : int
        Each tile's output channels are split into this many jobs, each
        filling the tile's columns itself.
    code, slope, residual
        The fused epilogue (:meth:`numbaconv.epilogue.Epilogue.kernel_args`).
    chunks : int
        Number of parallel chunks of jobs (the thread count).
    """
    N, OD, OH, OW, Co = out.shape
    groups = w.shape[0]
    pixels = OD * OH * OW
    tiles = (pixels + tile - 1) // tile
    jobs = N * groups * tiles * row_blocks
    run_in_chunks(_tile_chunk, (gemm_address, int_witness, x, map_d, map_h, map_w, w, bias,
                                out.reshape(N * pixels, Co), *kernel_size, *stride, *dilation,
                                pad_w, OH, OW, tile, rows, row_blocks, code, slope, residual,
                                chunk_scratch(jobs, chunks, rows * tile, out.dtype)),
                  jobs, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _tile_chunk(gemm_address, int_witness, x, map_d, map_h, map_w, w, bias, out, KD, KH, KW,
                sd, sh, sw, dd, dh, dw, pad_w, OH, OW, tile, rows, row_blocks, code, slope,
                residual, work, first_job, stop_job):
    """Tiles ``first_job <= job < stop_job`` of im2col_channels_last; job =
    (n, g, tile, channel block); ``out`` is ``(N * pixels, C_out)``."""
    Co = out.shape[1]
    groups, cout_g, K = w.shape
    cin_g = x.shape[4] // groups
    size = out.shape[0] // x.shape[0]               # output pixels per image
    tiles = (size + tile - 1) // tile
    # this chunk's column tile (Note [chunk scratch] in kernels/parallel.py)
    columns = work[chunk_of(first_job, x.shape[0] * groups * tiles * row_blocks,
                            work.shape[0])][:rows * tile]
    flat = out.ravel()
    block = (cout_g + row_blocks - 1) // row_blocks
    overwrite = bias.shape[0] == 0
    finish = code != 0 or residual.shape[0] > 0
    for job in range(first_job, stop_job):
        b = job % row_blocks
        t = (job // row_blocks) % tiles
        g = (job // (row_blocks * tiles)) % groups
        n = job // (row_blocks * tiles * groups)
        j0 = b * block
        j1 = min(cout_g, j0 + block)
        if j0 >= j1:
            continue
        first_pixel = t * tile
        pixels = min(tile, size - first_pixel)
        r0 = n * size + first_pixel                 # the tile's first output row
        c0 = g * cout_g + j0
        if not overwrite:
            fill_bias_rows(flat, r0 * Co + c0, Co, pixels, j1 - j0, bias, c0)
        for k0 in range(0, K, rows):
            fill_rows(x, map_d, map_h, map_w, n, first_pixel, pixels, g * cin_g, cin_g, k0, rows,
                      KD, KH, KW, sd, sh, sw, dd, dh, dw, pad_w, OH, OW, columns)
            gemm_nt(gemm_address, int_witness, columns[:pixels * rows].reshape(pixels, rows),
                    w[g, j0:j1, k0:k0 + rows], out[r0:r0 + pixels, c0:g * cout_g + j1],
                    0.0 if overwrite and k0 == 0 else 1.0)
        if finish:
            finish_block(flat, r0 * Co + c0, Co, pixels, j1 - j0, residual, code, slope)
