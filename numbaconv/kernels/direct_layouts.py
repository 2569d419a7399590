"""The layout arithmetic of the direct kernels, in plain Python.

The block sizes of the channels-last kernel, the forms of the phase-planes
kernel and which one a layer takes, the offsets and sizes of each form's
buffers, the scratch a thread allocates and the bands it works in.  The
kernels (``kernels/direct_*.py``) take these numbers as arguments or
compile-time constants, and the cost models and plans read them here:
this module imports no numba, so asking costs no compilation.
"""

from __future__ import annotations

import functools

#: Output pixels (along W) and output channels computed together by
#: conv_channels_last; see Note [register blocking] in
#: kernels/direct_channels_last.py.  The kernel body is written out for
#: exactly these sizes.
PIXEL_BLOCK = 4
CHANNEL_BLOCK = 3
#: Output pixels per patch buffer (Note [patch rows]); bounds the buffer to
#: PATCH_PIXELS * KD*KH*KW*C_in/groups values per thread.
PATCH_PIXELS = 64

#: The forms of the phase-planes kernel: one output row per pass (Note
#: [phase planes]), two (Note [row pairs]), and stride 2 from row and
#: column phases (Note [stride-two phases]).
PHASE_PLANE_FORMS = ("single_rows", "row_pairs", "stride_two")

#: A thread's scratch above which the phase-planes kernel works in bands
#: of at most this many bytes (Note [plane bands]).
BAND_BYTES = 2 * 2**20

#: The passes a row-pairs or stride-two task is compiled for (Note [tasks
#: per kernel]): one fused pass of a 3x3 kernel's nine taps, one of a 5x5
#: kernel's 25, or a pass per kernel column (its taps in the groups of
#: ``tap_group`` in kernels/direct_taps.py).
FUSED_PASSES = ("nine", "five", "columns")


def phase_plane_forms(kernel_size, stride, dilation):
    """The forms of :data:`PHASE_PLANE_FORMS` that serve a phase-planes layer
    of 2-D ``kernel_size`` and canonical ``stride`` and ``dilation``."""
    forms = ["single_rows"]
    undilated = dilation[1] == dilation[2] == 1
    if undilated and stride[1] == stride[2] == 1:
        forms.append("row_pairs")
    if undilated and stride[1] == stride[2] == 2:
        forms.append("stride_two")
    return tuple(forms)


def default_phase_plane_form(kernel_size, stride, dilation):
    """The form :func:`~numbaconv.kernels.direct_phase_planes.conv_phase_planes`
    takes by default: row pairs for 7- and 5-row kernels (a fused seven- or
    five-tap pass per kernel column) and 3x3 (one fused nine-tap pass) of
    unit stride, the stride-two form for stride 2 and kernels of at least
    3x3, else single rows.  It depends on the kernel size, stride and
    dilation only, so that a block of a larger problem (numbaconv.dask)
    takes its whole problem's form.  Kernels smaller than 3 along an axis
    keep single rows (a 2x2 stride-two layer: 0.092 ms in single rows
    against 0.120; docs/results-direct.md, "Phase-plane forms").
    """
    forms = phase_plane_forms(kernel_size, stride, dilation)
    KH, KW = kernel_size
    if "row_pairs" in forms and (KH in (5, 7) or (KH, KW) == (3, 3)):
        return "row_pairs"
    if "stride_two" in forms and min(KH, KW) >= 3:
        return "stride_two"
    return "single_rows"


@functools.lru_cache(maxsize=256)
def serving_forms(kernel, stride, dilation):
    """``(phase_plane_forms(...), default_phase_plane_form(...))``, remembered."""
    return (phase_plane_forms(kernel, stride, dilation),
            default_phase_plane_form(kernel, stride, dilation))


@functools.lru_cache(maxsize=1024)
def form_arguments(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows):
    """The arguments of ``form``'s task after ``pad_w``: its band rows and
    layout (remembered: a call asks every time, and a small call's Python
    is about 20 us)."""
    if form == "row_pairs":
        return (band_rows,) + row_pairs_layout(band_rows, W, KH, KW, pad_w)
    if form == "stride_two":
        return (band_rows,) + stride_two_layout(band_rows, W, KH, KW, pad_w)
    return (sh, sw, dh, dw, band_rows) + single_rows_band_layout(
        H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows)


def single_rows_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw):
    """``(Wq, pitch, size, guard, base, length)`` of the single-row form
    (Note [phase planes]): phase width, accumulator pitch and size, the
    widest column shift, where input row 0 starts in a column phase, and a
    column phase's length.  The one place these are computed: the kernel
    takes them as arguments, and the cost model reads them here."""
    Wq = W // sw
    pitch = sh * Wq                                   # accumulator row pitch
    size = (OH - 1) * pitch + OW                      # the last row's junk left out
    first_a = (-pad_w) // sw                          # column shifts of the taps
    last_a = ((KW - 1) * dw - pad_w) // sw
    guard = max(-first_a, last_a, 0)
    base = guard + pad_h * Wq                         # where input row 0 starts
    length = max(base + size + ((KH - 1) * dh - pad_h) * Wq + last_a,
                 base + H * Wq) + guard
    return Wq, pitch, size, guard, base, length


def single_rows_band_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows):
    """:func:`single_rows_layout` of whole planes (``band_rows >= OH``), or
    of one band of ``band_rows`` output rows (Note [plane bands]): a
    problem of its own whose input is the band's padded rows, padding
    included (``pad_h`` 0)."""
    if band_rows >= OH:
        return single_rows_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw)
    rows_in = (band_rows - 1) * sh + (KH - 1) * dh + 1
    return single_rows_layout(rows_in, W, band_rows, OW, KH, KW, 0, pad_w, sh, sw, dh, dw)


def row_pairs_layout(OH, W, KH, KW, pad_w):
    """``(guard, pitch, size, rows, length)`` of the row-pairs form (Note
    [row pairs]): the gap between rows (the widest column shift), the row
    pitch, the accumulators' size (a multiple of 16), the rows of each row
    phase read and a row phase's length."""
    guard = max(pad_w, KW - 1 - pad_w, 0)             # the largest column shift
    pitch = W + guard                                 # a row and its zero gap
    pairs = (OH + 1) // 2                             # an odd OH's last odd row is junk
    size = (pairs * pitch + 15) // 16 * 16            # no scalar remainder
    rows = pairs + KH // 2 + 1                        # rows of each row phase read
    length = guard + rows * pitch + guard + 16
    return guard, pitch, size, rows, length


def stride_two_layout(OH, W, KH, KW, pad_w):
    """``(guard, pitch, size, rows, length)`` of the stride-two form (Note
    [stride-two phases]), as :func:`row_pairs_layout` for one (row, column)
    phase."""
    # column shift a and phase b of kernel column kw: kw - pad_w = 2a + b
    guard = max(-((0 - pad_w) // 2), (KW - 1 - pad_w) // 2, 0)
    pitch = W // 2 + guard                            # a phase row and its zero gap
    rows = OH + KH // 2 + 1                           # rows of each row phase read
    length = guard + rows * pitch + guard + 16        # one (row, column) phase
    size = (OH * pitch + 15) // 16 * 16               # no scalar remainder (Note [row pairs])
    return guard, pitch, size, rows, length


def phase_planes_scratch(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw,
                         band_rows=None):
    """Values of scratch one thread of ``conv_phase_planes`` allocates
    in ``form`` with bands of ``band_rows`` output rows (default: whole
    planes): about a band of input and one of output."""
    rows = OH if band_rows is None else min(band_rows, OH)
    if form == "row_pairs":
        _, _, size, _, length = row_pairs_layout(rows, W, KH, KW, pad_w)
        return 2 * length + 2 * size
    if form == "stride_two":
        _, _, size, _, length = stride_two_layout(rows, W, KH, KW, pad_w)
        return 4 * length + size
    _, pitch, size, _, _, length = single_rows_band_layout(H, W, OH, OW, KH, KW, pad_h, pad_w,
                                                           sh, sw, dh, dw, rows)
    return sw * length + (1 if pitch == OW else size)


def phase_plane_band_rows(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, values):
    """The ``band_rows`` of ``conv_phase_planes`` for a thread's scratch
    of at most ``values``: whole planes when they fit, else the largest even
    band that fits, at least 2 rows (whose scratch may still be over).

    Note [plane bands]
    ~~~~~~~~~~~~~~~~~~
    Every form keeps about one input plane and one output plane of scratch
    per thread: nothing on a network's layers, but 1 GiB for a 7x7 filter
    over one 8192x8192 image, and 8.5 GiB peak on a 2**31-value image
    (docs/hardening.md), none of it under the workspace limit, which the
    plans did not report.  So a job is one band of ``band_rows`` output
    rows of a plane, and the scratch is a band's: the band's padded input
    rows (rows outside the input zeroed, since the band before may have
    left data there), its accumulators, the same layout functions with the
    band's rows.  Each output is computed by the same expression in any
    band, so the bits do not depend on the bands (tested for every form,
    stride and dilation); bands are even so that row pairs stay pairs.
    ``algorithms.direct`` reports the scratch as the plan's workspace and
    takes whole planes when their scratch is at most :data:`BAND_BYTES` a
    thread (every layer of the benchmarks: one band), else the largest
    bands under both that and the limit's share.  Bands in the cache also
    made large planes faster: bands of 0.5-2 MiB a thread ran 2-18x faster
    than whole planes beyond about 2 MiB (a 4096^2 7x7 plane 141.6 -> 16.2
    ms; docs/results-direct.md, "Plane bands").
    """
    args = (form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw)
    if phase_planes_scratch(*args) <= values:
        return OH
    low, high = 2, max(2, OH - OH % 2)                # even rows; the scratch grows with them
    while low < high:
        middle = (low + high + 2) // 4 * 2
        if phase_planes_scratch(*args, band_rows=middle) <= values:
            low = middle
        else:
            high = middle - 2
    return low


def fused_passes(KH, KW):
    """The :data:`FUSED_PASSES` of a ``KH x KW`` kernel in the row-pairs and
    stride-two forms.

    Note [tasks per kernel]
    ~~~~~~~~~~~~~~~~~~~~~~~
    A task that chose among its passes at run time, from the weight's shape,
    made numba compile all of them, each with its helpers inlined, for every
    layer: the first 3x3 depthwise call of a process with an empty cache
    spent 8.2 s compiling the row-pairs task, most of it on passes it never
    runs.  So each task is built by a factory (``_row_pairs_task``,
    ``_stride_two_task`` in kernels/direct_row_phases.py) whose passes are
    constants of the closure: numba prunes the branches they decide before it inlines
    anything, and compiles (and caches) one task per pass when a layer
    first needs it: 1.5 s for the 3x3 row-pairs task
    (docs/results-startup.md).
    """
    return "nine" if (KH, KW) == (3, 3) else "five" if (KH, KW) == (5, 5) else "columns"


#: A thread's scratch above which the thin weight gradient works in bands
#: (Note [thin weight gradient] in kernels/direct_thin_grad.py): half the
#: development machine's 512 KiB L2, since every pass over a band's
#: phases reads all of them again.  A 31x31 kernel over a 1024x1024 plane
#: made 341 passes over 8 MB: 59 ms with 2 MiB bands, 40 ms with these
#: (two threads of the loaded machine; 35 ms on one, fft 22).
THIN_GRAD_BAND_BYTES = 256 * 2**10

#: Fewest jobs of the thin weight gradient before a group's (image, band)
#: units are cut into segments (Note [thin weight gradient] in
#: kernels/direct_thin_grad.py): a constant, so that the segments, and the
#: bits, depend on the problem alone.
THIN_GRAD_JOBS = 8


def thin_grad_weight_geometry(OW, KH, KW, sh, sw, dh, dw, band_rows):
    """``(pitch, rows, size, region)`` of the thin weight gradient (Note
    [thin weight gradient] in kernels/direct_thin_grad.py) for bands of
    ``band_rows`` output rows: the phase rows' pitch, the phase rows a band
    reads, the flattened band (a multiple of 16) and one phase's length."""
    shift_h, shift_w = (KH - 1) * dh // sh, (KW - 1) * dw // sw
    pitch = OW + shift_w
    rows = band_rows + shift_h
    size = (band_rows * pitch + 15) // 16 * 16
    region = max(rows * pitch, shift_h * pitch + shift_w + size)
    return pitch, rows, size, region


def thin_grad_weight_passes(KH, KW):
    """Passes over a band's output gradient the thin weight gradient makes
    per (output, input) channel pair: one for a 3x3 kernel's nine taps, else
    each kernel row's taps seven, five or three at a time (``_tap_sums`` in
    kernels/direct_thin_grad.py groups them so)."""
    if (KH, KW) == (3, 3):
        return 1
    per_row, kw = 0, 0
    while kw < KW:
        left = KW - kw
        kw += left if left in (7, 5) else 3 if left >= 3 else 1
        per_row += 1
    return KH * per_row


def thin_grad_weight_scratch(cin_g, cout_g, OW, KH, KW, sh, sw, dh, dw, band_rows):
    """Values of scratch one thread of the thin weight gradient allocates."""
    pitch, rows, size, region = thin_grad_weight_geometry(OW, KH, KW, sh, sw, dh, dw, band_rows)
    return cin_g * sh * sw * region + size + (cout_g * cin_g + 1) * KH * KW


def thin_grad_weight_layout(N, groups, cin_g, cout_g, OH, OW, KH, KW, sh, sw, dh, dw, values):
    """``(band_rows, segments, pitch, rows, size, region)`` of the thin
    weight gradient: whole output planes when a thread's scratch fits in
    ``values``, else the largest bands that do (at least one row); with
    fewer than :data:`THIN_GRAD_JOBS` groups, the (image, band) units cut
    into segments (shorter bands when the images are too few).  A
    function of the problem only."""
    args = (cin_g, cout_g, OW, KH, KW, sh, sw, dh, dw)
    band_rows = OH
    if thin_grad_weight_scratch(*args, OH) > values:
        low, high = 1, OH
        while low < high:
            middle = (low + high + 1) // 2
            if thin_grad_weight_scratch(*args, middle) <= values:
                low = middle
            else:
                high = middle - 1
        band_rows = low
    segments = 1
    if groups < THIN_GRAD_JOBS:
        wanted = -(-THIN_GRAD_JOBS // groups)
        bands = -(-OH // band_rows)
        if N * bands < wanted:
            band_rows = max(1, -(-OH // -(-wanted // max(N, 1))))
            bands = -(-OH // band_rows)
        segments = max(1, min(wanted, N * bands))
    return (band_rows, segments) + thin_grad_weight_geometry(OW, KH, KW, sh, sw, dh, dw,
                                                             band_rows)


#: How the thin gradients' tasks split an input row into its column phases
#: (one task per form: Note [tasks per kernel]): a copy, a de-interleave,
#: a strided loop.
COLUMN_FORMS = ("unit", "two", "strided")


def column_form(stride_w):
    """The :data:`COLUMN_FORMS` entry of column stride ``stride_w``."""
    return "unit" if stride_w == 1 else "two" if stride_w == 2 else "strided"


def transposed_axis_phases(size, K, d, L, lo, O):
    """The phases of one axis of an input-dilated problem (Note [phases] in
    numbaconv/rewrites.py) as the thin transposed kernel takes them (Note
    [thin transposed phases] in kernels/direct_thin_grad.py): per phase
    ``rho < L``, its output count ``Q``, its taps ``k`` and the input index
    ``c_k`` that output ``q`` of the phase reads at ``q + c_k``; and the
    smallest and largest ``c_k`` of all phases (0 when there are no taps).
    ``size`` is the undilated input's length, ``lo`` the padding before
    (negative: a crop), ``O`` the output's length."""
    phases, shifts = [], []
    for rho in range(L):
        Q = max(0, -(-(O - rho) // L))
        taps = [(k, (rho + k * d - lo) // L) for k in range(K) if (rho + k * d - lo) % L == 0]
        if Q == 0:
            taps = []
        phases.append((Q, taps))
        shifts += [c for _, c in taps]
    return phases, (min(shifts, default=0), max(shifts, default=0))


def thin_transposed_geometry(axes, band_rows):
    """``(pitch, rows, size, length)`` of the thin transposed kernel for
    bands of ``band_rows`` phase rows: the input buffer's pitch, the input
    rows a band reads, the flattened band of one phase's accumulators (a
    multiple of 16) and one input channel's buffer length.  ``axes`` are
    the H and W :func:`transposed_axis_phases`."""
    (_, (h_min, h_max)), (w_phases, (w_min, w_max)) = axes
    Q_w = max(Q for Q, _ in w_phases)
    pitch = Q_w + w_max - w_min
    rows = band_rows + h_max - h_min
    size = (band_rows * pitch + 15) // 16 * 16
    length = max(rows * pitch, (h_max - h_min) * pitch + w_max - w_min + size)
    return pitch, rows, size, length


def thin_transposed_scratch(cin_g, L_w, axes, band_rows):
    """Values of scratch one thread of the thin transposed kernel allocates."""
    pitch, rows, size, length = thin_transposed_geometry(axes, band_rows)
    return cin_g * length + L_w * size


def thin_transposed_band_rows(cin_g, L_w, axes, values):
    """Phase rows per band of the thin transposed kernel: all of them when a
    thread's scratch fits in ``values``, else the most that fit (at least
    one)."""
    total = max(Q for Q, _ in axes[0][0])
    if thin_transposed_scratch(cin_g, L_w, axes, total) <= values:
        return total
    low, high = 1, total
    while low < high:
        middle = (low + high + 1) // 2
        if thin_transposed_scratch(cin_g, L_w, axes, middle) <= values:
            low = middle
        else:
            high = middle - 1
    return low


#: Most channels per job of the channels-last thin weight gradient: its
#: loops run along the channels, and blocks of 32 left them too short.
CHANNELS_LAST_BLOCK = 256


def channels_last_grad_weight_split(N, C, OH):
    """``(block, segments)`` of the channels-last thin weight gradient (Note
    [channels-last thin gradients] in kernels/direct_thin_grad.py): all
    channels in one block up to :data:`CHANNELS_LAST_BLOCK` (equal blocks
    beyond), and with fewer than :data:`THIN_GRAD_JOBS` blocks, segments of
    the (image, output row) units to make that many jobs.  A function of
    the problem only."""
    blocks = -(-C // CHANNELS_LAST_BLOCK)
    block = -(-C // blocks)
    if blocks >= THIN_GRAD_JOBS:
        return block, 1
    return block, max(1, min(-(-THIN_GRAD_JOBS // blocks), N * OH))
