"""Convolution over dask arrays (docs/dask.md): ``numbaconv.dask``.

``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` take a ``dask.array`` input,
NumPy weights and bias and every parameter of the single-machine functions,
and return a lazy ``dask.array`` whose blocks are computed by the numbaconv
kernels (``numbaconv.conv2d`` ... on each block, with the same
``algorithm=``).  Install with ``pip install 'numbaconv[dask]'``; the guide
is docs/dask.md.

How a call becomes a graph:

* The weight and the bias enter the graph once, as one task each
  (``dask.delayed``), which every block's task depends on: a worker fetches
  them once, instead of every task carrying a copy.
* Batch chunks map block by block.
* Channel chunks: with ``groups == 1`` each input-channel chunk convolves
  with its slice of the weight into a partial output, and the partial
  outputs are added by a tree reduction; with groups, every channel chunk
  must hold whole groups and maps directly to the output channels of its
  groups (output-channel chunks).
* Spatial chunks use halo exchange, Note [halo].

Note [halo]
~~~~~~~~~~~
Forward: the input is padded at the true array edges only -- reflect,
replicate and circular by ``dask.array.pad``, zeros by the edge blocks
themselves, which saves the padding's tasks (the 2x2-chunk case of
tests/test_dask.py: 223 tasks with ``dask.array.pad``, 85 without) -- so
blocks convolve without padding.
Output ``o`` along an axis reads padded inputs ``[o*s, o*s + h]`` with ``h
= dilation * (k - 1)``: with chunk boundaries at multiples of the stride
``s``, the block of padded inputs ``[a, b)`` extended by ``h`` on its right
(``dask.array.overlap.overlap`` with the asymmetric depth ``(0, h)``,
``boundary="none"``, ``allow_rechunk=False``) computes exactly the outputs
whose first input lies in ``[a, b)``: ``(b - a) / s`` of them, and for the
last block (no right neighbour) ``floor((L - a - h - 1) / s) + 1``.  Every
chunk is rechunked to at least ``max(h + 1, s)`` so that the halo comes from
one neighbour and the last block computes at least one output.

Transposed: output ``t`` of the un-cropped transposed convolution ``z``
(before ``padding`` is cut and ``output_padding`` added) gathers inputs
``i`` with ``i*s + k*d = t``, i.e. ``i`` in ``[ceil((t - h) / s), floor(t /
s)]``.  Give input chunk ``[a, b)`` the outputs ``t`` in ``[a*s, b*s)``:
they need inputs from ``a - floor(h / s)`` to ``b - 1``, so the matching
overlap is on the *left*, depth ``floor(h / s)`` (and none on the right).
Each block runs the single-machine transposed convolution of its extended
input and keeps ``[s * left, s * left + (b - a) * s)`` of its local output
(``left`` = the halo it actually got, 0 for the first block), zero-extended
where ``s > h + 1`` leaves outputs no input reaches; the last block runs to
the end of ``z``.  The result is ``z[padding : padding + output_size]`` plus
the bias.

Memory format: a block keeps the memory format its task hands over (Note
[memory format] in :mod:`numbaconv.spec`): the blocks of a channels-last
dask array (``da.from_array(x_nhwc, chunks=...).transpose(0, 3, 1, 2)``)
are views of channels-last memory (strided ones, for spatial chunks),
which the block functions pad (or, unpadded and strided, copy)
channels-last and convolve into channels-last output blocks -- a
channels-last-contiguous block without a copy; dask joins such blocks
keeping their layout.  (Partial sums of input-channel chunks are
added by dask and come out C-contiguous.)

Results: every output element is computed from the same inputs, weights and
(with ``algorithm="direct"``) the same loop order as on one machine, so
forward results are bit for bit those of ``numbaconv.conv*`` wherever the
block's direct loop order is the whole problem's; a transposed block
handles its own padding and may round a few outputs differently in the last
bit (docs/dask.md); input-channel chunks add partial sums in a tree, and
the transform algorithms' summation order depends on the block size: those
agree within the algorithm's tolerance.
"""

from __future__ import annotations

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("numbaconv.dask needs dask: pip install 'numbaconv[dask]' "
                      "(dask[array,distributed])") from exc

from . import functional
from .dispatch import resolve_algorithm
from .algorithms.direct import choose_loop_order, direct_forward, serves_phase_planes
from .epilogue import Epilogue
from .spec import Operand, make_conv_spec, make_transposed_spec

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d"]

#: dask.array.pad modes of the padding modes
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    """1-D convolution of a dask array; parameters as :func:`numbaconv.conv1d`.

    Parameters
    ----------
    input : dask.array.Array
        ``(N, C_in, L)`` or unbatched ``(C_in, L)``, chunked along any axes.
    weight : numpy.ndarray
        ``(C_out, C_in/groups, k)``; shipped to the workers once.
    bias : numpy.ndarray, optional
        ``(C_out,)``.
    stride, padding, dilation, groups, padding_mode, algorithm
        As :func:`numbaconv.conv1d`.

    Returns
    -------
    dask.array.Array
        Lazy ``(N, C_out, L_out)``; ``.compute()`` runs it on the current
        dask scheduler (threads, or a ``dask.distributed`` cluster).
    """
    return _forward("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                    padding_mode, algorithm)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    """2-D convolution of a dask array; see :func:`conv1d` and :func:`numbaconv.conv2d`."""
    return _forward("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                    padding_mode, algorithm)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    """3-D convolution of a dask array; see :func:`conv1d` and :func:`numbaconv.conv3d`."""
    return _forward("conv3d", 3, input, weight, bias, stride, padding, dilation, groups,
                    padding_mode, algorithm)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    """1-D transposed convolution of a dask array; parameters as
    :func:`numbaconv.conv_transpose1d` (weight ``(C_in, C_out/groups, k)``).
    Spatial chunks exchange the halo of Note [halo]."""
    return _transposed("conv_transpose1d", 1, input, weight, bias, stride, padding,
                       output_padding, groups, dilation, algorithm)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    """2-D transposed convolution of a dask array; see :func:`conv_transpose1d`."""
    return _transposed("conv_transpose2d", 2, input, weight, bias, stride, padding,
                       output_padding, groups, dilation, algorithm)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    """3-D transposed convolution of a dask array; see :func:`conv_transpose1d`."""
    return _transposed("conv_transpose3d", 3, input, weight, bias, stride, padding,
                       output_padding, groups, dilation, algorithm)


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

def _checked(op, ndim, input, weight, bias, algorithm):
    """(input with a batch axis, weight, bias, unbatched) or a clear error."""
    if not isinstance(input, da.Array):
        kind = type(input).__name__
        raise TypeError(f"numbaconv.dask.{op}: input must be a dask.array.Array, got {kind}; "
                        f"for an in-memory array call numbaconv.{op}")
    for name, value in (("weight", weight), ("bias", bias)):
        if dask.is_dask_collection(value):
            raise TypeError(
                f"numbaconv.dask.{op}: {name} must be a NumPy array (it is sent to every "
                f"worker whole, once), got a chunked {type(value).__name__}; call "
                f"{name}.compute() first")
    if not isinstance(algorithm, str):
        raise TypeError(f"numbaconv.dask.{op}: algorithm must be a str, got "
                        f"{type(algorithm).__name__}")
    weight = np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    if input.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(f"numbaconv.dask.{op}: input must have {ndim + 2} dimensions (or "
                         f"{ndim + 1} unbatched), got input.shape={input.shape}")
    unbatched = input.ndim == ndim + 1
    if unbatched:
        input = input[None]
    return input, weight, bias, unbatched


def _check_group_chunks(op, chunks, group_channels, groups, what):
    if groups == 1:
        return
    bounds = np.cumsum((0,) + tuple(chunks))
    if any(b % group_channels for b in bounds):
        raise ValueError(
            f"numbaconv.dask.{op}: with groups={groups} every {what} chunk must hold whole "
            f"groups of {group_channels} channels, got channel chunks {tuple(chunks)}; "
            f"rechunk the channel axis to multiples of {group_channels}")


# ---------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------

def _forward(op, ndim, input, weight, bias, stride, padding, dilation, groups, padding_mode,
             algorithm):
    x, weight, bias, unbatched = _checked(op, ndim, input, weight, bias, algorithm)
    spec = make_conv_spec(op, ndim, Operand.of(x), Operand.of(weight), Operand.of(bias), stride,
                          padding, dilation, groups, padding_mode)
    resolve_algorithm(algorithm, spec)       # an unknown or unserving algorithm fails now
    weight = weight.astype(spec.dtype, copy=False)
    bias = None if bias is None else bias.astype(spec.dtype, copy=False)
    x = x.astype(spec.dtype)
    _check_group_chunks(op, x.chunks[1], spec.in_channels_per_group, spec.groups,
                        "input-channel")
    # padding at the true edges (Note [halo]): zeros are added by the edge
    # blocks themselves (no extra tasks), other modes by dask.array.pad
    pads = [tuple(p) for p in spec.padding]
    if spec.padding_mode != "zeros" and any(p != (0, 0) for p in pads):
        x = da.pad(x, [(0, 0), (0, 0)] + pads, mode=_PAD_MODES[spec.padding_mode])
        pads = [(0, 0)] * ndim
    halos = [d * (k - 1) for d, k in zip(spec.dilation, spec.kernel_size)]
    x, out_chunks = _forward_chunks(x, spec.stride, halos, pads)
    # with algorithm="direct" every block takes the whole problem's loop
    # order, for the same summation order as on one machine (Note [halo])
    loop_order = choose_loop_order(spec) if algorithm == "direct" else None
    block = dict(ndim=ndim, stride=spec.stride, dilation=spec.dilation, algorithm=algorithm,
                 loop_order=loop_order, pads=tuple(pads),
                 counts=tuple(len(c) for c in x.chunks[2:]))
    cout_g = spec.out_channels_per_group

    def chunk_weight(start, size, groups):
        # groups=1: the input channels' slice; else the groups' output rows
        if groups is None:
            return weight[:, start:start + size]
        return weight[groups[0] * cout_g:groups[1] * cout_g]

    result = _over_channel_chunks(
        x, spec, bias, chunk_weight,
        lambda part, w, b, groups, channels: _map_with_halo(
            _forward_block, part, w, b, groups, [(0, h) for h in halos], out_chunks,
            channels, spec.dtype, block))
    return result[0] if unbatched else result


def _forward_chunks(x, stride, halos, pads):
    """Rechunk the input's spatial axes so that, in the coordinates of the
    padded input (zero padding ``pads`` added by the edge blocks), every
    boundary is a multiple of the stride and every chunk at least ``max(halo
    + 1, stride)`` long beyond the padding it holds; returns the input and
    the output chunks per spatial axis (Note [halo])."""
    new, outputs = {}, []
    for axis, (s, h, (lo, hi)) in enumerate(zip(stride, halos, pads), start=2):
        length = x.shape[axis]
        smallest = max(h + 1, s)
        inner = [int(b) + lo for b in np.cumsum(x.chunks[axis])[:-1]]
        bounds = _aligned_bounds(inner, s, lo + length + hi, lo + smallest, hi + smallest,
                                 smallest)
        new[axis] = tuple(np.diff(np.clip(bounds, lo, lo + length)))
        out = [(b - a) // s for a, b in zip(bounds[:-2], bounds[1:-1])]
        out.append((bounds[-1] - bounds[-2] - h - 1) // s + 1)
        outputs.append(tuple(out))
    return x.rechunk(new), outputs


def _aligned_bounds(inner, step, length, first, last, smallest):
    """Chunk boundaries ``0 = b_0 < ... < b_m = length``: the ``inner`` ones
    rounded down to multiples of ``step``, keeping those that leave the first
    chunk at least ``first``, the last at least ``last`` and every other at
    least ``smallest`` long."""
    kept = [0]
    for b in inner:
        b -= b % step
        if (b - kept[-1] >= (first if len(kept) == 1 else smallest)
                and length - b >= max(last, smallest)):
            kept.append(b)
    kept.append(length)
    return kept


def _over_channel_chunks(x, spec, bias, chunk_weight, map_chunk):
    """The result of ``x``, computed channel chunk by channel chunk (module
    docstring).  With ``groups == 1`` and several input-channel chunks, each
    chunk's partial output (its weight ``chunk_weight(start, size, None)``, no
    bias) is added in a tree and the bias once; otherwise every chunk holds
    whole groups ``(g0, g1)`` and maps, with ``chunk_weight(start, size, (g0,
    g1))`` and its slice of the bias, to those groups' output channels.
    ``map_chunk(part, weight, bias, groups, out_channels)`` builds a chunk's
    blocks; weights and biases enter the graph as one delayed task each."""
    def delayed(array):
        return dask.delayed(np.ascontiguousarray(array), pure=True)

    sizes = x.chunks[1]
    starts = [int(s) for s in np.cumsum((0,) + sizes[:-1])]
    if spec.groups == 1 and len(sizes) > 1:
        parts = [map_chunk(x[:, start:start + size], delayed(chunk_weight(start, size, None)),
                           None, 1, spec.out_channels)
                 for start, size in zip(starts, sizes)]
        result = da.stack(parts).sum(axis=0, split_every=2, dtype=spec.dtype)
        if bias is not None:
            result = result + bias.reshape((-1,) + (1,) * spec.ndim)
        return result
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    pieces = []
    for start, size in zip(starts, sizes):
        g0, g1 = start // cin_g, (start + size) // cin_g
        b = None if bias is None else delayed(bias[g0 * cout_g:g1 * cout_g])
        pieces.append(map_chunk(x[:, start:start + size],
                                delayed(chunk_weight(start, size, (g0, g1))), b, g1 - g0,
                                (g1 - g0) * cout_g))
    return pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=1)


def _map_with_halo(block_fn, x, w, b, groups, depths, spatial_chunks, out_channels, dtype,
                   block):
    """``block_fn`` on every block of ``x`` after the halo exchange of Note
    [halo]: ``depths`` the ``(left, right)`` overlap per spatial axis (none
    where the axis has one chunk); the output chunks are given explicitly."""
    depth = {axis: (d if len(x.chunks[axis]) > 1 and any(d) else 0)
             for axis, d in enumerate(depths, start=2)}
    if any(depth.values()):
        x = da.overlap.overlap(x, depth=depth, boundary="none", allow_rechunk=False)
    chunks = (x.chunks[0], (out_channels,)) + tuple(spatial_chunks)
    return da.map_blocks(block_fn, x, w, b, groups=groups, dtype=dtype, chunks=chunks,
                         meta=np.empty((0,) * x.ndim, dtype), **block)


def _forward_block(x, w, b, *, groups, ndim, stride, dilation, algorithm, loop_order, pads,
                   counts, block_id=None):
    # the zero padding of the blocks at the array's edges (Note [halo])
    widths = [(0, 0), (0, 0)]
    for axis, ((lo, hi), count) in enumerate(zip(pads, counts), start=2):
        j = block_id[axis]
        widths.append((lo if j == 0 else 0, hi if j == count - 1 else 0))
    # a block keeps its memory format (module docstring): a channels-last
    # block is padded channels-last and gives a channels-last block
    channels_last = _channels_last_order(x)
    if any(w_ != (0, 0) for w_ in widths):
        if channels_last:
            x = np.moveaxis(np.pad(np.moveaxis(x, 1, -1), widths[:1] + widths[2:] + [(0, 0)]),
                            -1, 1)
        else:
            x = np.pad(x, widths)
    else:
        x = _in_format(x, channels_last)
    if loop_order is not None and not channels_last:
        y = _direct_block(x, w, b, groups, ndim, stride, dilation, loop_order)
        if y is not None:
            return y
    conv = getattr(functional, f"conv{ndim}d")
    return conv(x, w, b, stride=stride, padding=0, dilation=dilation, groups=groups,
                algorithm=algorithm)


def _channels_last_order(x):
    """Whether block ``x`` (batched) is laid out channels-last: its channel
    axis has the smallest stride and the others are in (N, spatial...)
    order.  A block of a channels-last dask array is a strided view of
    channels-last memory (a spatial chunk of it), not channels-last
    *contiguous*, so the order decides, not Note [memory format]'s rule."""
    if x.shape[1] == 1 or x.flags.c_contiguous:
        return False
    moved = np.moveaxis(x, 1, -1)
    strides = [abs(s) for n, s in zip(moved.shape, moved.strides) if n != 1]
    return strides == sorted(strides, reverse=True)


def _in_format(x, channels_last):
    """Block ``x`` contiguous in its format: channels-last (a view of NHWC
    memory; a view of ``x`` when it is one already) or C-contiguous."""
    if channels_last:
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    return np.ascontiguousarray(x)


def _direct_block(x, w, b, groups, ndim, stride, dilation, loop_order):
    """The block by the direct algorithm with ``loop_order`` (the whole
    problem's), or None where that loop order does not serve the block (it
    then runs with its own, and agrees within rounding)."""
    spec = make_conv_spec(f"conv{ndim}d", ndim, Operand.of(x), Operand.of(w), Operand.of(b),
                          stride, 0, dilation, groups)
    if (spec.dtype != spec.compute_dtype
            or (loop_order == "phase_planes" and not serves_phase_planes(spec))
            or (loop_order == "thin_channels_last" and spec.in_channels_per_group != 1)):
        return None
    lead = (1,) * (3 - ndim)
    out = np.empty(spec.output_shape[:2] + spec.output_size3, spec.dtype)
    direct_forward(spec, x.reshape(spec.input_shape[:2] + spec.input_size3),
                   np.ascontiguousarray(w).reshape(w.shape[:2] + lead + w.shape[2:]),
                   Epilogue.of(b, spec.compute_dtype), out, loop_order=loop_order)
    return out.reshape(spec.user_output_shape)


# ---------------------------------------------------------------------------
# transposed
# ---------------------------------------------------------------------------

def _transposed(op, ndim, input, weight, bias, stride, padding, output_padding, groups,
                dilation, algorithm):
    x, weight, bias, unbatched = _checked(op, ndim, input, weight, bias, algorithm)
    spec = make_transposed_spec(op, ndim, Operand.of(x), Operand.of(weight), Operand.of(bias),
                                stride, padding, output_padding, groups, dilation)
    resolve_algorithm(algorithm, spec)       # an unknown or unserving algorithm fails now
    stride = spec.input_dilation
    dilation = spec.dilation
    kernel = spec.kernel_size
    halos = [d * (k - 1) for d, k in zip(dilation, kernel)]
    # z = the un-cropped output; y = z[pad : pad + size] (Note [halo])
    cut = [h - lo for h, (lo, _hi) in zip(halos, spec.padding)]          # = padding
    weight = weight.astype(spec.dtype, copy=False)
    bias = None if bias is None else bias.astype(spec.dtype, copy=False)
    x = x.astype(spec.dtype)
    _check_group_chunks(op, x.chunks[1], spec.in_channels_per_group, spec.groups,
                        "input-channel")
    lefts = [h // s for h, s in zip(halos, stride)]
    new = {}
    for axis, left in enumerate(lefts, start=2):
        inner = [int(b) for b in np.cumsum(x.chunks[axis])[:-1]]
        bounds = _aligned_bounds(inner, 1, x.shape[axis], max(left, 1), 1, max(left, 1))
        new[axis] = tuple(np.diff(bounds))
    x = x.rechunk(new)
    ends = [c + o for c, o in zip(cut, spec.output_size)]                 # z length used
    z_chunks = []
    for axis, (s, end) in enumerate(zip(stride, ends), start=2):
        sizes = [c * s for c in x.chunks[axis][:-1]]
        sizes.append(end - sum(sizes))
        z_chunks.append(tuple(sizes))
    block = dict(ndim=ndim, stride=stride, dilation=dilation, algorithm=algorithm,
                 lefts=tuple(lefts), z_chunks=tuple(z_chunks))
    # the weight's rows are the input channels, grouped or not
    z = _over_channel_chunks(
        x, spec, bias, lambda start, size, groups: weight[start:start + size],
        lambda part, w, b, groups, channels: _map_with_halo(
            _transposed_block, part, w, b, groups, [(left, 0) for left in lefts], z_chunks,
            channels, spec.dtype, block))
    y = z[(slice(None), slice(None)) + tuple(slice(c, e) for c, e in zip(cut, ends))]
    return y[0] if unbatched else y


def _transposed_block(x, w, b, *, groups, ndim, stride, dilation, algorithm, lefts, z_chunks,
                      block_id=None):
    conv = getattr(functional, f"conv_transpose{ndim}d")
    x = _in_format(x, _channels_last_order(x))          # a channels-last block stays so
    local = conv(x, w, b, stride=stride, padding=0, groups=groups,
                 dilation=dilation, algorithm=algorithm)
    index = [slice(None), slice(None)]
    for axis, (s, left, sizes) in enumerate(zip(stride, lefts, z_chunks), start=2):
        j = block_id[axis]
        got = left if j > 0 and len(sizes) > 1 else 0     # the halo this block received
        start = got * s
        index.append(slice(start, min(start + sizes[j], local.shape[axis])))
    kept = local[tuple(index)]
    target = tuple(kept.shape[:2]) + tuple(sizes[block_id[axis]] for axis, sizes in
                                           enumerate(z_chunks, start=2))
    if kept.shape != target:
        # outputs no input of the block reaches (a stride over halo + 1, or
        # the output padding at the end): the bias alone, as on one machine
        full = np.zeros_like(kept, shape=target, order="K")     # kept's memory format
        if b is not None:
            full[...] = b.reshape((1, -1) + (1,) * ndim)
        full[tuple(slice(0, n) for n in kept.shape)] = kept
        kept = full
    return kept
