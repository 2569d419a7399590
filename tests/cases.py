"""Named forward-convolution cases: one table for the correctness tests.

Each case is ``(id, input_shape, weight_shape, kwargs)``; small enough that
the float64 reference is instant, chosen so every parameter, both direct loop
orders and the ragged edges of the register blocks (widths and channel
counts that are not multiples of 4 and 3) are exercised.
"""

CASES = [
    # 1-D
    ("1d_basic", (2, 3, 17), (5, 3, 3), {}),
    ("1d_pad_stride", (2, 4, 20), (6, 4, 5), dict(stride=2, padding=2)),
    ("1d_dilated_groups", (1, 6, 25), (9, 2, 3), dict(dilation=3, groups=3, padding=1)),
    ("1d_same_even_kernel", (2, 8, 13), (4, 8, 4), dict(padding="same")),
    ("1d_reflect", (2, 5, 11), (3, 5, 3), dict(padding=4, padding_mode="reflect")),
    ("1d_circular_full", (1, 2, 6), (2, 2, 5), dict(padding=6, padding_mode="circular")),
    ("1d_replicate_big_pad", (1, 2, 3), (2, 2, 3), dict(padding=7, padding_mode="replicate")),
    ("1d_long_kernel", (1, 16, 300), (8, 16, 41), {}),
    ("1d_unbatched", (3, 10), (4, 3, 3), dict(padding=1)),
    ("1d_empty_batch", (0, 3, 10), (4, 3, 3), {}),
    ("1d_kernel_equals_padded", (1, 3, 4), (2, 3, 6), dict(padding=1)),
    # 2-D
    ("2d_basic", (2, 3, 9, 10), (4, 3, 3, 3), {}),
    ("2d_resnet_like", (1, 16, 14, 14), (16, 16, 3, 3), dict(padding=1)),
    ("2d_ragged_width", (1, 12, 7, 11), (7, 12, 3, 3), dict(padding=1)),
    ("2d_stride2", (2, 8, 15, 13), (10, 8, 3, 3), dict(stride=2, padding=1)),
    ("2d_asym_stride", (1, 9, 16, 17), (5, 9, 3, 2), dict(stride=(2, 3), padding=(1, 0))),
    ("2d_dilated", (1, 16, 17, 17), (8, 16, 3, 3), dict(padding=2, dilation=2)),
    ("2d_asym_dilation", (1, 4, 12, 14), (4, 4, 2, 3), dict(dilation=(3, 1), padding=(2, 1))),
    ("2d_depthwise", (2, 12, 10, 9), (12, 1, 3, 3), dict(padding=1, groups=12)),
    ("2d_depthwise_multiplier", (1, 4, 8, 8), (8, 1, 3, 3), dict(padding=1, groups=4)),
    ("2d_depthwise_stride2", (1, 6, 11, 12), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ("2d_depthwise_strided_dilated", (2, 4, 13, 14), (8, 1, 3, 2),
     dict(stride=(1, 2), dilation=(2, 3), padding=(0, 1), groups=4)),
    ("2d_depthwise_stride3_7x7", (1, 5, 17, 18), (5, 1, 7, 7),
     dict(stride=3, padding=3, groups=5)),
    ("2d_depthwise_7x7_row_pairs", (2, 5, 13, 11), (5, 1, 7, 7),
     dict(padding=3, groups=5)),
    ("2d_groups2", (2, 8, 9, 9), (6, 4, 3, 3), dict(groups=2, padding=1)),
    ("2d_groups4_dilated", (1, 16, 12, 12), (8, 4, 3, 3), dict(groups=4, dilation=2, padding=2)),
    ("2d_pointwise", (2, 32, 7, 7), (16, 32, 1, 1), {}),
    ("2d_stem_like", (1, 3, 31, 29), (8, 3, 7, 7), dict(stride=2, padding=3)),
    ("2d_same", (1, 5, 8, 9), (3, 5, 4, 3), dict(padding="same")),
    ("2d_same_dilated", (1, 5, 10, 9), (3, 5, 3, 2), dict(padding="same", dilation=(2, 3))),
    ("2d_valid", (1, 5, 8, 9), (3, 5, 4, 3), dict(padding="valid")),
    ("2d_reflect", (1, 4, 7, 6), (5, 4, 3, 3), dict(padding=(2, 1), padding_mode="reflect")),
    ("2d_replicate", (1, 4, 5, 6), (5, 4, 3, 3), dict(padding=3, padding_mode="replicate")),
    ("2d_circular", (1, 4, 5, 6), (5, 4, 3, 3), dict(padding=(5, 2), padding_mode="circular")),
    ("2d_circular_groups", (2, 6, 8, 8), (6, 2, 3, 3),
     dict(padding=1, groups=3, padding_mode="circular")),
    ("2d_kernel_bigger_than_input", (1, 2, 2, 2), (3, 2, 3, 3), dict(padding=1)),
    ("2d_one_pixel", (1, 8, 1, 1), (4, 8, 1, 1), {}),
    ("2d_unbatched", (3, 6, 7), (2, 3, 3, 3), dict(padding=1)),
    ("2d_empty_batch", (0, 3, 6, 7), (2, 3, 3, 3), {}),
    ("2d_one_out_channel_per_group", (1, 10, 6, 7), (5, 2, 3, 3), dict(groups=5, padding=1)),
    # 3-D
    ("3d_basic", (1, 3, 6, 7, 8), (4, 3, 3, 3, 3), {}),
    ("3d_vol_like", (1, 8, 9, 9, 9), (8, 8, 3, 3, 3), dict(padding=1)),
    ("3d_stride_dilation", (1, 4, 11, 10, 9), (5, 4, 2, 3, 3),
     dict(stride=(2, 1, 3), dilation=(2, 2, 1), padding=(1, 2, 0))),
    ("3d_groups_reflect", (2, 6, 5, 6, 7), (3, 2, 3, 3, 3),
     dict(groups=3, padding=1, padding_mode="reflect")),
    ("3d_depthwise_same", (1, 4, 6, 6, 6), (4, 1, 3, 3, 3), dict(groups=4, padding="same")),
    ("3d_unbatched_circular", (2, 5, 5, 5), (3, 2, 3, 3, 3),
     dict(padding=2, padding_mode="circular")),
    # regressions found by hypothesis: one input depth slice, depth taps read
    # only padding, H and W keep their width (im2col's same-width fill once
    # ignored the depth taps)
    ("3d_one_slice_depth_taps", (1, 1, 1, 1, 1), (1, 1, 2, 1, 1),
     dict(stride=(2, 1, 1), padding=(1, 0, 0))),
    ("3d_one_slice_same_width", (2, 3, 1, 5, 6), (4, 3, 2, 3, 3), dict(padding=1)),
]
