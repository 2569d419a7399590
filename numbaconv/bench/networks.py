"""The network suite: every convolution of eight standard networks, as data.

A :class:`Network` lists its *distinct* convolution layers once each, as
:class:`NetLayer` records, with ``count`` saying how many times that exact
layer (shapes, hyper-parameters and epilogue) occurs in the network.  The
shapes are at batch 1; :func:`layers_at_batch` gives them at another batch
size.  docs/benchmarking.md ("Network suite") says where each network's
shapes come from.

Conventions:

* ``input_shape`` is (N, C, *spatial) and ``weight_shape`` is the weight as
  PyTorch takes it: (C_out, C_in / groups, *kernel) for a convolution,
  (C_in, C_out / groups, *kernel) for a transposed one (``transposed``).
* Batch norm is not listed: at inference it folds into the convolution's
  weight and bias, so "conv, batch norm, activation" is one layer with that
  activation as its epilogue.  ``bias`` is the module's own ``bias=`` in
  the real network (False where a batch norm follows).
* The epilogue is ``activation(conv(x, w) + bias + residual)``: ``residual``
  says a residual add goes into this layer's output before its activation
  (ResNet's add comes before its ReLU; the inverted-residual blocks' adds
  have no activation after them).  ``negative_slope`` is leaky_relu's.
* Operations between two layers that are not convolutions (pooling, norms,
  PReLU, the squeeze-and-excitation scaling, concatenation) are not
  listed; ``note`` names the ones that sit in a layer's epilogue position
  but are not in :data:`ACTIVATIONS`.
* ``follows`` names the layers whose output is this layer's input (after
  those operations); several names where the stored layer occurs at several
  places in the network, each of which is one such producer.  ``skip``
  names a layer whose output is concatenated to it along the channels
  (the U-Nets' skip connections).  ``pool`` is the factor by which pooling
  shrinks each spatial size between the producer and this layer
  (:data:`GLOBAL_POOL`: a global average pool to size 1).  The first layer
  of a network follows nothing: its input is the network's.  The tests use
  these to check that the listed shapes connect.
* Names are the module paths of the torchvision model for the torchvision
  networks (``layer2.0.conv2``, ``features.3.0.block.1.0``); a stored
  layer that occurs several times has its first occurrence's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..spec import ConvSpec, problem_spec

#: The epilogue activations a layer may name (None: no activation).
ACTIVATIONS = (None, "relu", "relu6", "silu", "gelu", "hardswish", "leaky_relu", "sigmoid",
               "tanh")

#: ``pool`` of a layer whose input is its producer's output averaged to size 1.
GLOBAL_POOL = 0


@dataclass(frozen=True)
class NetLayer:
    """One distinct convolution of a network (see the module docstring)."""

    name: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    output_padding: int = 0
    bias: bool = False
    activation: str | None = None
    negative_slope: float = 0.01
    residual: bool = False
    count: int = 1
    follows: tuple[str, ...] = ()
    pool: int = 1
    skip: str | None = None
    note: str = ""

    @property
    def ndim(self) -> int:
        """The number of spatial dimensions (1, 2 or 3)."""
        return len(self.weight_shape) - 2

    def spec(self) -> ConvSpec:
        """The forward call's spec (:func:`numbaconv.spec.problem_spec`)."""
        return problem_spec(self.input_shape, self.weight_shape, stride=self.stride,
                            padding=self.padding, dilation=self.dilation, groups=self.groups,
                            transposed=self.transposed, output_padding=self.output_padding)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.spec().output_shape)

    @property
    def macs(self) -> int:
        """Multiply-adds of one occurrence (the spec's FLOPs / 2)."""
        return self.spec().flops // 2


@dataclass(frozen=True)
class Network:
    """A network's distinct convolutions, in network order.

    ``reference_gmacs`` is the published multiply-add count (billions) at
    batch 1 where one exists (``reference``: whose figure); it counts every
    layer the source counts, linear layers included.
    """

    name: str
    description: str
    source: str
    layers: tuple[NetLayer, ...]
    reference_gmacs: float | None = None
    reference: str = ""

    @property
    def distinct_layers(self) -> int:
        return len(self.layers)

    @property
    def total_layers(self) -> int:
        """Convolutions in one forward pass (every occurrence counted)."""
        return sum(layer.count for layer in self.layers)

    def macs(self, batch: int = 1) -> int:
        """Multiply-adds of all the network's convolutions at ``batch``."""
        return batch * sum(layer.macs * layer.count for layer in self.layers)

    def layer(self, name: str) -> NetLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}")


def layers_at_batch(network: Network | str, batch: int) -> tuple[NetLayer, ...]:
    """``network``'s layers (a :class:`Network` or a :data:`NETWORKS` name)
    with their input shapes at batch size ``batch``."""
    if isinstance(network, str):
        network = NETWORKS[network]
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return tuple(dataclasses.replace(layer, input_shape=(batch,) + layer.input_shape[1:])
                 for layer in network.layers)


_L = NetLayer

_HARDSIGMOID = ("its output goes through hardsigmoid (not fused here) and scales the depthwise "
                "conv's output channels")
_LINEAR = "a Linear on channels-last data in torchvision, listed as the 1x1 conv it equals"
_LINEAR_SCALED = (_LINEAR + "; the block's layer_scale (a per-channel factor before the "
                  "residual add) folds into its weight and bias")
_PRELU = "then PReLU and global layer norm (not fused here)"
_RES_AND_SKIP = ("each block's residual 1x1 (residual: the block's input) and, from the "
                 "second block on, its skip 1x1 (B = Sc = 128: the same conv; residual: the "
                 "sum of the earlier blocks' skip outputs)")
_BOTTLENECK = ("the bottleneck 1x1 after the encoder's layer norm, and the first block's "
               "skip 1x1 (the same conv: the skip sum starts with its output)")
_PRELU_IN = "its input is PReLU of the skip sum; the masks multiply the encoder output"

_RESNET50_LAYERS = (
    _L("conv1", (1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3, activation="relu"),
    _L("layer1.0.conv1", (1, 64, 56, 56), (64, 64, 1, 1), activation="relu", follows=("conv1",),
       pool=2),
    _L("layer1.0.conv2", (1, 64, 56, 56), (64, 64, 3, 3), padding=1, activation="relu", count=3,
       follows=("layer1.0.conv1", "layer1.1.conv1")),
    _L("layer1.0.downsample.0", (1, 64, 56, 56), (256, 64, 1, 1), follows=("conv1",), pool=2),
    _L("layer1.0.conv3", (1, 64, 56, 56), (256, 64, 1, 1), activation="relu", residual=True,
       count=3, follows=("layer1.0.conv2",)),
    _L("layer1.1.conv1", (1, 256, 56, 56), (64, 256, 1, 1), activation="relu", count=2,
       follows=("layer1.0.conv3",)),
    _L("layer2.0.conv1", (1, 256, 56, 56), (128, 256, 1, 1), activation="relu",
       follows=("layer1.0.conv3",)),
    _L("layer2.0.conv2", (1, 128, 56, 56), (128, 128, 3, 3), stride=2, padding=1,
       activation="relu", follows=("layer2.0.conv1",)),
    _L("layer2.0.downsample.0", (1, 256, 56, 56), (512, 256, 1, 1), stride=2,
       follows=("layer1.0.conv3",)),
    _L("layer2.0.conv3", (1, 128, 28, 28), (512, 128, 1, 1), activation="relu", residual=True,
       count=4, follows=("layer2.0.conv2", "layer2.1.conv2")),
    _L("layer2.1.conv1", (1, 512, 28, 28), (128, 512, 1, 1), activation="relu", count=3,
       follows=("layer2.0.conv3",)),
    _L("layer2.1.conv2", (1, 128, 28, 28), (128, 128, 3, 3), padding=1, activation="relu", count=3,
       follows=("layer2.1.conv1",)),
    _L("layer3.0.conv1", (1, 512, 28, 28), (256, 512, 1, 1), activation="relu",
       follows=("layer2.0.conv3",)),
    _L("layer3.0.conv2", (1, 256, 28, 28), (256, 256, 3, 3), stride=2, padding=1,
       activation="relu", follows=("layer3.0.conv1",)),
    _L("layer3.0.downsample.0", (1, 512, 28, 28), (1024, 512, 1, 1), stride=2,
       follows=("layer2.0.conv3",)),
    _L("layer3.0.conv3", (1, 256, 14, 14), (1024, 256, 1, 1), activation="relu", residual=True,
       count=6, follows=("layer3.0.conv2", "layer3.1.conv2")),
    _L("layer3.1.conv1", (1, 1024, 14, 14), (256, 1024, 1, 1), activation="relu", count=5,
       follows=("layer3.0.conv3",)),
    _L("layer3.1.conv2", (1, 256, 14, 14), (256, 256, 3, 3), padding=1, activation="relu", count=5,
       follows=("layer3.1.conv1",)),
    _L("layer4.0.conv1", (1, 1024, 14, 14), (512, 1024, 1, 1), activation="relu",
       follows=("layer3.0.conv3",)),
    _L("layer4.0.conv2", (1, 512, 14, 14), (512, 512, 3, 3), stride=2, padding=1,
       activation="relu", follows=("layer4.0.conv1",)),
    _L("layer4.0.downsample.0", (1, 1024, 14, 14), (2048, 1024, 1, 1), stride=2,
       follows=("layer3.0.conv3",)),
    _L("layer4.0.conv3", (1, 512, 7, 7), (2048, 512, 1, 1), activation="relu", residual=True,
       count=3, follows=("layer4.0.conv2", "layer4.1.conv2")),
    _L("layer4.1.conv1", (1, 2048, 7, 7), (512, 2048, 1, 1), activation="relu", count=2,
       follows=("layer4.0.conv3",)),
    _L("layer4.1.conv2", (1, 512, 7, 7), (512, 512, 3, 3), padding=1, activation="relu", count=2,
       follows=("layer4.1.conv1",)),
)

_MOBILENET_V3_LARGE_LAYERS = (
    _L("features.0.0", (1, 3, 224, 224), (16, 3, 3, 3), stride=2, padding=1,
       activation="hardswish"),
    _L("features.1.block.0.0", (1, 16, 112, 112), (16, 1, 3, 3), padding=1, groups=16,
       activation="relu", follows=("features.0.0",)),
    _L("features.1.block.1.0", (1, 16, 112, 112), (16, 16, 1, 1), residual=True,
       follows=("features.1.block.0.0",)),
    _L("features.2.block.0.0", (1, 16, 112, 112), (64, 16, 1, 1), activation="relu",
       follows=("features.1.block.1.0",)),
    _L("features.2.block.1.0", (1, 64, 112, 112), (64, 1, 3, 3), stride=2, padding=1, groups=64,
       activation="relu", follows=("features.2.block.0.0",)),
    _L("features.2.block.2.0", (1, 64, 56, 56), (24, 64, 1, 1), follows=("features.2.block.1.0",)),
    _L("features.3.block.0.0", (1, 24, 56, 56), (72, 24, 1, 1), activation="relu", count=2,
       follows=("features.2.block.2.0", "features.3.block.2.0")),
    _L("features.3.block.1.0", (1, 72, 56, 56), (72, 1, 3, 3), padding=1, groups=72,
       activation="relu", follows=("features.3.block.0.0",)),
    _L("features.3.block.2.0", (1, 72, 56, 56), (24, 72, 1, 1), residual=True,
       follows=("features.3.block.1.0",)),
    _L("features.4.block.1.0", (1, 72, 56, 56), (72, 1, 5, 5), stride=2, padding=2, groups=72,
       activation="relu", follows=("features.3.block.0.0",)),
    _L("features.4.block.2.fc1", (1, 72, 1, 1), (24, 72, 1, 1), bias=True, activation="relu",
       follows=("features.4.block.1.0",), pool=GLOBAL_POOL),
    _L("features.4.block.2.fc2", (1, 24, 1, 1), (72, 24, 1, 1), bias=True,
       follows=("features.4.block.2.fc1",), note=_HARDSIGMOID),
    _L("features.4.block.3.0", (1, 72, 28, 28), (40, 72, 1, 1), follows=("features.4.block.1.0",)),
    _L("features.5.block.0.0", (1, 40, 28, 28), (120, 40, 1, 1), activation="relu", count=2,
       follows=("features.4.block.3.0", "features.5.block.3.0")),
    _L("features.5.block.1.0", (1, 120, 28, 28), (120, 1, 5, 5), padding=2, groups=120,
       activation="relu", count=2, follows=("features.5.block.0.0",)),
    _L("features.5.block.2.fc1", (1, 120, 1, 1), (32, 120, 1, 1), bias=True, activation="relu",
       count=2, follows=("features.5.block.1.0",), pool=GLOBAL_POOL),
    _L("features.5.block.2.fc2", (1, 32, 1, 1), (120, 32, 1, 1), bias=True, count=2,
       follows=("features.5.block.2.fc1",), note=_HARDSIGMOID),
    _L("features.5.block.3.0", (1, 120, 28, 28), (40, 120, 1, 1), residual=True, count=2,
       follows=("features.5.block.1.0",)),
    _L("features.7.block.0.0", (1, 40, 28, 28), (240, 40, 1, 1), activation="hardswish",
       follows=("features.5.block.3.0",)),
    _L("features.7.block.1.0", (1, 240, 28, 28), (240, 1, 3, 3), stride=2, padding=1, groups=240,
       activation="hardswish", follows=("features.7.block.0.0",)),
    _L("features.7.block.2.0", (1, 240, 14, 14), (80, 240, 1, 1),
       follows=("features.7.block.1.0",)),
    _L("features.8.block.0.0", (1, 80, 14, 14), (200, 80, 1, 1), activation="hardswish",
       follows=("features.7.block.2.0",)),
    _L("features.8.block.1.0", (1, 200, 14, 14), (200, 1, 3, 3), padding=1, groups=200,
       activation="hardswish", follows=("features.8.block.0.0",)),
    _L("features.8.block.2.0", (1, 200, 14, 14), (80, 200, 1, 1), residual=True,
       follows=("features.8.block.1.0",)),
    _L("features.9.block.0.0", (1, 80, 14, 14), (184, 80, 1, 1), activation="hardswish", count=2,
       follows=("features.8.block.2.0", "features.9.block.2.0")),
    _L("features.9.block.1.0", (1, 184, 14, 14), (184, 1, 3, 3), padding=1, groups=184,
       activation="hardswish", count=2, follows=("features.9.block.0.0",)),
    _L("features.9.block.2.0", (1, 184, 14, 14), (80, 184, 1, 1), residual=True, count=2,
       follows=("features.9.block.1.0",)),
    _L("features.11.block.0.0", (1, 80, 14, 14), (480, 80, 1, 1), activation="hardswish",
       follows=("features.9.block.2.0",)),
    _L("features.11.block.1.0", (1, 480, 14, 14), (480, 1, 3, 3), padding=1, groups=480,
       activation="hardswish", follows=("features.11.block.0.0",)),
    _L("features.11.block.2.fc1", (1, 480, 1, 1), (120, 480, 1, 1), bias=True, activation="relu",
       follows=("features.11.block.1.0",), pool=GLOBAL_POOL),
    _L("features.11.block.2.fc2", (1, 120, 1, 1), (480, 120, 1, 1), bias=True,
       follows=("features.11.block.2.fc1",), note=_HARDSIGMOID),
    _L("features.11.block.3.0", (1, 480, 14, 14), (112, 480, 1, 1),
       follows=("features.11.block.1.0",)),
    _L("features.12.block.0.0", (1, 112, 14, 14), (672, 112, 1, 1), activation="hardswish",
       count=2, follows=("features.11.block.3.0", "features.12.block.3.0")),
    _L("features.12.block.1.0", (1, 672, 14, 14), (672, 1, 3, 3), padding=1, groups=672,
       activation="hardswish", follows=("features.12.block.0.0",)),
    _L("features.12.block.2.fc1", (1, 672, 1, 1), (168, 672, 1, 1), bias=True, activation="relu",
       count=2, follows=("features.12.block.1.0", "features.13.block.1.0"), pool=GLOBAL_POOL),
    _L("features.12.block.2.fc2", (1, 168, 1, 1), (672, 168, 1, 1), bias=True, count=2,
       follows=("features.12.block.2.fc1",), note=_HARDSIGMOID),
    _L("features.12.block.3.0", (1, 672, 14, 14), (112, 672, 1, 1), residual=True,
       follows=("features.12.block.1.0",)),
    _L("features.13.block.1.0", (1, 672, 14, 14), (672, 1, 5, 5), stride=2, padding=2, groups=672,
       activation="hardswish", follows=("features.12.block.0.0",)),
    _L("features.13.block.3.0", (1, 672, 7, 7), (160, 672, 1, 1),
       follows=("features.13.block.1.0",)),
    _L("features.14.block.0.0", (1, 160, 7, 7), (960, 160, 1, 1), activation="hardswish", count=3,
       follows=("features.13.block.3.0", "features.14.block.3.0")),
    _L("features.14.block.1.0", (1, 960, 7, 7), (960, 1, 5, 5), padding=2, groups=960,
       activation="hardswish", count=2, follows=("features.14.block.0.0",)),
    _L("features.14.block.2.fc1", (1, 960, 1, 1), (240, 960, 1, 1), bias=True, activation="relu",
       count=2, follows=("features.14.block.1.0",), pool=GLOBAL_POOL),
    _L("features.14.block.2.fc2", (1, 240, 1, 1), (960, 240, 1, 1), bias=True, count=2,
       follows=("features.14.block.2.fc1",), note=_HARDSIGMOID),
    _L("features.14.block.3.0", (1, 960, 7, 7), (160, 960, 1, 1), residual=True, count=2,
       follows=("features.14.block.1.0",)),
)

_EFFICIENTNET_B0_LAYERS = (
    _L("features.0.0", (1, 3, 224, 224), (32, 3, 3, 3), stride=2, padding=1, activation="silu"),
    _L("features.1.0.block.0.0", (1, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32,
       activation="silu", follows=("features.0.0",)),
    _L("features.1.0.block.1.fc1", (1, 32, 1, 1), (8, 32, 1, 1), bias=True, activation="silu",
       follows=("features.1.0.block.0.0",), pool=GLOBAL_POOL),
    _L("features.1.0.block.1.fc2", (1, 8, 1, 1), (32, 8, 1, 1), bias=True, activation="sigmoid",
       follows=("features.1.0.block.1.fc1",)),
    _L("features.1.0.block.2.0", (1, 32, 112, 112), (16, 32, 1, 1),
       follows=("features.1.0.block.0.0",)),
    _L("features.2.0.block.0.0", (1, 16, 112, 112), (96, 16, 1, 1), activation="silu",
       follows=("features.1.0.block.2.0",)),
    _L("features.2.0.block.1.0", (1, 96, 112, 112), (96, 1, 3, 3), stride=2, padding=1, groups=96,
       activation="silu", follows=("features.2.0.block.0.0",)),
    _L("features.2.0.block.2.fc1", (1, 96, 1, 1), (4, 96, 1, 1), bias=True, activation="silu",
       follows=("features.2.0.block.1.0",), pool=GLOBAL_POOL),
    _L("features.2.0.block.2.fc2", (1, 4, 1, 1), (96, 4, 1, 1), bias=True, activation="sigmoid",
       follows=("features.2.0.block.2.fc1",)),
    _L("features.2.0.block.3.0", (1, 96, 56, 56), (24, 96, 1, 1),
       follows=("features.2.0.block.1.0",)),
    _L("features.2.1.block.0.0", (1, 24, 56, 56), (144, 24, 1, 1), activation="silu", count=2,
       follows=("features.2.0.block.3.0", "features.2.1.block.3.0")),
    _L("features.2.1.block.1.0", (1, 144, 56, 56), (144, 1, 3, 3), padding=1, groups=144,
       activation="silu", follows=("features.2.1.block.0.0",)),
    _L("features.2.1.block.2.fc1", (1, 144, 1, 1), (6, 144, 1, 1), bias=True, activation="silu",
       count=2, follows=("features.2.1.block.1.0", "features.3.0.block.1.0"), pool=GLOBAL_POOL),
    _L("features.2.1.block.2.fc2", (1, 6, 1, 1), (144, 6, 1, 1), bias=True, activation="sigmoid",
       count=2, follows=("features.2.1.block.2.fc1",)),
    _L("features.2.1.block.3.0", (1, 144, 56, 56), (24, 144, 1, 1), residual=True,
       follows=("features.2.1.block.1.0",)),
    _L("features.3.0.block.1.0", (1, 144, 56, 56), (144, 1, 5, 5), stride=2, padding=2, groups=144,
       activation="silu", follows=("features.2.1.block.0.0",)),
    _L("features.3.0.block.3.0", (1, 144, 28, 28), (40, 144, 1, 1),
       follows=("features.3.0.block.1.0",)),
    _L("features.3.1.block.0.0", (1, 40, 28, 28), (240, 40, 1, 1), activation="silu", count=2,
       follows=("features.3.0.block.3.0", "features.3.1.block.3.0")),
    _L("features.3.1.block.1.0", (1, 240, 28, 28), (240, 1, 5, 5), padding=2, groups=240,
       activation="silu", follows=("features.3.1.block.0.0",)),
    _L("features.3.1.block.2.fc1", (1, 240, 1, 1), (10, 240, 1, 1), bias=True, activation="silu",
       count=2, follows=("features.3.1.block.1.0", "features.4.0.block.1.0"), pool=GLOBAL_POOL),
    _L("features.3.1.block.2.fc2", (1, 10, 1, 1), (240, 10, 1, 1), bias=True, activation="sigmoid",
       count=2, follows=("features.3.1.block.2.fc1",)),
    _L("features.3.1.block.3.0", (1, 240, 28, 28), (40, 240, 1, 1), residual=True,
       follows=("features.3.1.block.1.0",)),
    _L("features.4.0.block.1.0", (1, 240, 28, 28), (240, 1, 3, 3), stride=2, padding=1, groups=240,
       activation="silu", follows=("features.3.1.block.0.0",)),
    _L("features.4.0.block.3.0", (1, 240, 14, 14), (80, 240, 1, 1),
       follows=("features.4.0.block.1.0",)),
    _L("features.4.1.block.0.0", (1, 80, 14, 14), (480, 80, 1, 1), activation="silu", count=3,
       follows=("features.4.0.block.3.0", "features.4.1.block.3.0")),
    _L("features.4.1.block.1.0", (1, 480, 14, 14), (480, 1, 3, 3), padding=1, groups=480,
       activation="silu", count=2, follows=("features.4.1.block.0.0",)),
    _L("features.4.1.block.2.fc1", (1, 480, 1, 1), (20, 480, 1, 1), bias=True, activation="silu",
       count=3, follows=("features.4.1.block.1.0", "features.5.0.block.1.0"), pool=GLOBAL_POOL),
    _L("features.4.1.block.2.fc2", (1, 20, 1, 1), (480, 20, 1, 1), bias=True, activation="sigmoid",
       count=3, follows=("features.4.1.block.2.fc1",)),
    _L("features.4.1.block.3.0", (1, 480, 14, 14), (80, 480, 1, 1), residual=True, count=2,
       follows=("features.4.1.block.1.0",)),
    _L("features.5.0.block.1.0", (1, 480, 14, 14), (480, 1, 5, 5), padding=2, groups=480,
       activation="silu", follows=("features.4.1.block.0.0",)),
    _L("features.5.0.block.3.0", (1, 480, 14, 14), (112, 480, 1, 1),
       follows=("features.5.0.block.1.0",)),
    _L("features.5.1.block.0.0", (1, 112, 14, 14), (672, 112, 1, 1), activation="silu", count=3,
       follows=("features.5.0.block.3.0", "features.5.1.block.3.0")),
    _L("features.5.1.block.1.0", (1, 672, 14, 14), (672, 1, 5, 5), padding=2, groups=672,
       activation="silu", count=2, follows=("features.5.1.block.0.0",)),
    _L("features.5.1.block.2.fc1", (1, 672, 1, 1), (28, 672, 1, 1), bias=True, activation="silu",
       count=3, follows=("features.5.1.block.1.0", "features.6.0.block.1.0"), pool=GLOBAL_POOL),
    _L("features.5.1.block.2.fc2", (1, 28, 1, 1), (672, 28, 1, 1), bias=True, activation="sigmoid",
       count=3, follows=("features.5.1.block.2.fc1",)),
    _L("features.5.1.block.3.0", (1, 672, 14, 14), (112, 672, 1, 1), residual=True, count=2,
       follows=("features.5.1.block.1.0",)),
    _L("features.6.0.block.1.0", (1, 672, 14, 14), (672, 1, 5, 5), stride=2, padding=2, groups=672,
       activation="silu", follows=("features.5.1.block.0.0",)),
    _L("features.6.0.block.3.0", (1, 672, 7, 7), (192, 672, 1, 1),
       follows=("features.6.0.block.1.0",)),
    _L("features.6.1.block.0.0", (1, 192, 7, 7), (1152, 192, 1, 1), activation="silu", count=4,
       follows=("features.6.0.block.3.0", "features.6.1.block.3.0")),
    _L("features.6.1.block.1.0", (1, 1152, 7, 7), (1152, 1, 5, 5), padding=2, groups=1152,
       activation="silu", count=3, follows=("features.6.1.block.0.0",)),
    _L("features.6.1.block.2.fc1", (1, 1152, 1, 1), (48, 1152, 1, 1), bias=True, activation="silu",
       count=4, follows=("features.6.1.block.1.0", "features.7.0.block.1.0"), pool=GLOBAL_POOL),
    _L("features.6.1.block.2.fc2", (1, 48, 1, 1), (1152, 48, 1, 1), bias=True,
       activation="sigmoid", count=4, follows=("features.6.1.block.2.fc1",)),
    _L("features.6.1.block.3.0", (1, 1152, 7, 7), (192, 1152, 1, 1), residual=True, count=3,
       follows=("features.6.1.block.1.0",)),
    _L("features.7.0.block.1.0", (1, 1152, 7, 7), (1152, 1, 3, 3), padding=1, groups=1152,
       activation="silu", follows=("features.6.1.block.0.0",)),
    _L("features.7.0.block.3.0", (1, 1152, 7, 7), (320, 1152, 1, 1),
       follows=("features.7.0.block.1.0",)),
    _L("features.8.0", (1, 320, 7, 7), (1280, 320, 1, 1), activation="silu",
       follows=("features.7.0.block.3.0",)),
)

_CONVNEXT_TINY_LAYERS = (
    _L("features.0.0", (1, 3, 224, 224), (96, 3, 4, 4), stride=4, bias=True),
    _L("features.1.0.block.0", (1, 96, 56, 56), (96, 1, 7, 7), padding=3, groups=96, bias=True,
       count=3, follows=("features.0.0", "features.1.0.block.5")),
    _L("features.1.0.block.3", (1, 96, 56, 56), (384, 96, 1, 1), bias=True, activation="gelu",
       count=3, follows=("features.1.0.block.0",), note=_LINEAR),
    _L("features.1.0.block.5", (1, 384, 56, 56), (96, 384, 1, 1), bias=True, residual=True,
       count=3, follows=("features.1.0.block.3",), note=_LINEAR_SCALED),
    _L("features.2.1", (1, 96, 56, 56), (192, 96, 2, 2), stride=2, bias=True,
       follows=("features.1.0.block.5",)),
    _L("features.3.0.block.0", (1, 192, 28, 28), (192, 1, 7, 7), padding=3, groups=192, bias=True,
       count=3, follows=("features.2.1", "features.3.0.block.5")),
    _L("features.3.0.block.3", (1, 192, 28, 28), (768, 192, 1, 1), bias=True, activation="gelu",
       count=3, follows=("features.3.0.block.0",), note=_LINEAR),
    _L("features.3.0.block.5", (1, 768, 28, 28), (192, 768, 1, 1), bias=True, residual=True,
       count=3, follows=("features.3.0.block.3",), note=_LINEAR_SCALED),
    _L("features.4.1", (1, 192, 28, 28), (384, 192, 2, 2), stride=2, bias=True,
       follows=("features.3.0.block.5",)),
    _L("features.5.0.block.0", (1, 384, 14, 14), (384, 1, 7, 7), padding=3, groups=384, bias=True,
       count=9, follows=("features.4.1", "features.5.0.block.5")),
    _L("features.5.0.block.3", (1, 384, 14, 14), (1536, 384, 1, 1), bias=True, activation="gelu",
       count=9, follows=("features.5.0.block.0",), note=_LINEAR),
    _L("features.5.0.block.5", (1, 1536, 14, 14), (384, 1536, 1, 1), bias=True, residual=True,
       count=9, follows=("features.5.0.block.3",), note=_LINEAR_SCALED),
    _L("features.6.1", (1, 384, 14, 14), (768, 384, 2, 2), stride=2, bias=True,
       follows=("features.5.0.block.5",)),
    _L("features.7.0.block.0", (1, 768, 7, 7), (768, 1, 7, 7), padding=3, groups=768, bias=True,
       count=3, follows=("features.6.1", "features.7.0.block.5")),
    _L("features.7.0.block.3", (1, 768, 7, 7), (3072, 768, 1, 1), bias=True, activation="gelu",
       count=3, follows=("features.7.0.block.0",), note=_LINEAR),
    _L("features.7.0.block.5", (1, 3072, 7, 7), (768, 3072, 1, 1), bias=True, residual=True,
       count=3, follows=("features.7.0.block.3",), note=_LINEAR_SCALED),
)

_UNET2D_LAYERS = (
    _L("down1.conv1", (1, 1, 256, 256), (64, 1, 3, 3), padding=1, bias=True, activation="relu"),
    _L("down1.conv2", (1, 64, 256, 256), (64, 64, 3, 3), padding=1, bias=True, activation="relu",
       count=2, follows=("down1.conv1", "up1.conv1")),
    _L("down2.conv1", (1, 64, 128, 128), (128, 64, 3, 3), padding=1, bias=True, activation="relu",
       follows=("down1.conv2",), pool=2),
    _L("down2.conv2", (1, 128, 128, 128), (128, 128, 3, 3), padding=1, bias=True,
       activation="relu", count=2, follows=("down2.conv1", "up2.conv1")),
    _L("down3.conv1", (1, 128, 64, 64), (256, 128, 3, 3), padding=1, bias=True, activation="relu",
       follows=("down2.conv2",), pool=2),
    _L("down3.conv2", (1, 256, 64, 64), (256, 256, 3, 3), padding=1, bias=True, activation="relu",
       count=2, follows=("down3.conv1", "up3.conv1")),
    _L("down4.conv1", (1, 256, 32, 32), (512, 256, 3, 3), padding=1, bias=True, activation="relu",
       follows=("down3.conv2",), pool=2),
    _L("down4.conv2", (1, 512, 32, 32), (512, 512, 3, 3), padding=1, bias=True, activation="relu",
       count=2, follows=("down4.conv1", "up4.conv1")),
    _L("bottom.conv1", (1, 512, 16, 16), (1024, 512, 3, 3), padding=1, bias=True,
       activation="relu", follows=("down4.conv2",), pool=2),
    _L("bottom.conv2", (1, 1024, 16, 16), (1024, 1024, 3, 3), padding=1, bias=True,
       activation="relu", follows=("bottom.conv1",)),
    _L("up4.upconv", (1, 1024, 16, 16), (1024, 512, 2, 2), stride=2, transposed=True, bias=True,
       follows=("bottom.conv2",)),
    _L("up4.conv1", (1, 1024, 32, 32), (512, 1024, 3, 3), padding=1, bias=True, activation="relu",
       follows=("up4.upconv",), skip="down4.conv2"),
    _L("up3.upconv", (1, 512, 32, 32), (512, 256, 2, 2), stride=2, transposed=True, bias=True,
       follows=("down4.conv2",)),
    _L("up3.conv1", (1, 512, 64, 64), (256, 512, 3, 3), padding=1, bias=True, activation="relu",
       follows=("up3.upconv",), skip="down3.conv2"),
    _L("up2.upconv", (1, 256, 64, 64), (256, 128, 2, 2), stride=2, transposed=True, bias=True,
       follows=("down3.conv2",)),
    _L("up2.conv1", (1, 256, 128, 128), (128, 256, 3, 3), padding=1, bias=True, activation="relu",
       follows=("up2.upconv",), skip="down2.conv2"),
    _L("up1.upconv", (1, 128, 128, 128), (128, 64, 2, 2), stride=2, transposed=True, bias=True,
       follows=("down2.conv2",)),
    _L("up1.conv1", (1, 128, 256, 256), (64, 128, 3, 3), padding=1, bias=True, activation="relu",
       follows=("up1.upconv",), skip="down1.conv2"),
    _L("head", (1, 64, 256, 256), (2, 64, 1, 1), bias=True, follows=("down1.conv2",)),
)

_PIX2PIX_LAYERS = (
    _L("down1", (1, 3, 256, 256), (64, 3, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2),
    _L("down2", (1, 64, 128, 128), (128, 64, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down1",)),
    _L("down3", (1, 128, 64, 64), (256, 128, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down2",)),
    _L("down4", (1, 256, 32, 32), (512, 256, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down3",)),
    _L("down5", (1, 512, 16, 16), (512, 512, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down4",)),
    _L("down6", (1, 512, 8, 8), (512, 512, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down5",)),
    _L("down7", (1, 512, 4, 4), (512, 512, 4, 4), stride=2, padding=1, activation="leaky_relu",
       negative_slope=0.2, follows=("down6",)),
    _L("down8", (1, 512, 2, 2), (512, 512, 4, 4), stride=2, padding=1, activation="relu",
       follows=("down7",)),
    _L("up8", (1, 512, 1, 1), (512, 512, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("down8",)),
    _L("up7", (1, 1024, 2, 2), (1024, 512, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up8",), skip="down7"),
    _L("up6", (1, 1024, 4, 4), (1024, 512, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up7",), skip="down6"),
    _L("up5", (1, 1024, 8, 8), (1024, 512, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up6",), skip="down5"),
    _L("up4", (1, 1024, 16, 16), (1024, 256, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up5",), skip="down4"),
    _L("up3", (1, 512, 32, 32), (512, 128, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up4",), skip="down3"),
    _L("up2", (1, 256, 64, 64), (256, 64, 4, 4), stride=2, padding=1, transposed=True,
       activation="relu", follows=("up3",), skip="down2"),
    _L("up1", (1, 128, 128, 128), (128, 3, 4, 4), stride=2, padding=1, transposed=True, bias=True,
       activation="tanh", follows=("up2",), skip="down1"),
)

_CONV_TASNET_LAYERS = (
    _L("encoder", (1, 1, 16000), (512, 1, 16), stride=8, activation="relu"),
    _L("separator.bottleneck", (1, 512, 1999), (128, 512, 1), bias=True, count=2,
       follows=("encoder", "separator.tcn.0.dconv"), note=_BOTTLENECK),
    _L("separator.tcn.0.conv1x1", (1, 128, 1999), (512, 128, 1), bias=True, count=24,
       follows=("separator.bottleneck", "separator.tcn.0.res"), note=_PRELU),
    _L("separator.tcn.0.dconv", (1, 512, 1999), (512, 1, 3), padding=1, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.1.dconv", (1, 512, 1999), (512, 1, 3), padding=2, dilation=2, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.2.dconv", (1, 512, 1999), (512, 1, 3), padding=4, dilation=4, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.3.dconv", (1, 512, 1999), (512, 1, 3), padding=8, dilation=8, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.4.dconv", (1, 512, 1999), (512, 1, 3), padding=16, dilation=16, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.5.dconv", (1, 512, 1999), (512, 1, 3), padding=32, dilation=32, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.6.dconv", (1, 512, 1999), (512, 1, 3), padding=64, dilation=64, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.7.dconv", (1, 512, 1999), (512, 1, 3), padding=128, dilation=128, groups=512,
       bias=True, count=3, follows=("separator.tcn.0.conv1x1",), note=_PRELU),
    _L("separator.tcn.0.res", (1, 512, 1999), (128, 512, 1), bias=True, residual=True, count=47,
       follows=("separator.tcn.0.dconv", "separator.tcn.1.dconv", "separator.tcn.2.dconv",
                "separator.tcn.3.dconv", "separator.tcn.4.dconv", "separator.tcn.5.dconv",
                "separator.tcn.6.dconv", "separator.tcn.7.dconv"), note=_RES_AND_SKIP),
    _L("separator.mask", (1, 128, 1999), (1024, 128, 1), bias=True, activation="sigmoid",
       follows=("separator.tcn.0.res",), note=_PRELU_IN),
    _L("decoder", (1, 512, 1999), (512, 1, 16), stride=8, transposed=True, count=2,
       follows=("encoder",)),
)

_UNET3D_LAYERS = (
    _L("down1.conv1", (1, 1, 64, 64, 64), (32, 1, 3, 3, 3), padding=1, activation="relu"),
    _L("down1.conv2", (1, 32, 64, 64, 64), (64, 32, 3, 3, 3), padding=1, activation="relu",
       follows=("down1.conv1",)),
    _L("down2.conv1", (1, 64, 32, 32, 32), (64, 64, 3, 3, 3), padding=1, activation="relu",
       follows=("down1.conv2",), pool=2),
    _L("down2.conv2", (1, 64, 32, 32, 32), (128, 64, 3, 3, 3), padding=1, activation="relu",
       follows=("down2.conv1",)),
    _L("down3.conv1", (1, 128, 16, 16, 16), (128, 128, 3, 3, 3), padding=1, activation="relu",
       follows=("down2.conv2",), pool=2),
    _L("down3.conv2", (1, 128, 16, 16, 16), (256, 128, 3, 3, 3), padding=1, activation="relu",
       follows=("down3.conv1",)),
    _L("bottom.conv1", (1, 256, 8, 8, 8), (256, 256, 3, 3, 3), padding=1, activation="relu",
       follows=("down3.conv2",), pool=2),
    _L("bottom.conv2", (1, 256, 8, 8, 8), (512, 256, 3, 3, 3), padding=1, activation="relu",
       follows=("bottom.conv1",)),
    _L("up3.upconv", (1, 512, 8, 8, 8), (512, 512, 2, 2, 2), stride=2, transposed=True, bias=True,
       follows=("bottom.conv2",)),
    _L("up3.conv1", (1, 768, 16, 16, 16), (256, 768, 3, 3, 3), padding=1, activation="relu",
       follows=("up3.upconv",), skip="down3.conv2"),
    _L("up3.conv2", (1, 256, 16, 16, 16), (256, 256, 3, 3, 3), padding=1, activation="relu",
       follows=("up3.conv1",)),
    _L("up2.upconv", (1, 256, 16, 16, 16), (256, 256, 2, 2, 2), stride=2, transposed=True,
       bias=True, follows=("up3.conv2",)),
    _L("up2.conv1", (1, 384, 32, 32, 32), (128, 384, 3, 3, 3), padding=1, activation="relu",
       follows=("up2.upconv",), skip="down2.conv2"),
    _L("up2.conv2", (1, 128, 32, 32, 32), (128, 128, 3, 3, 3), padding=1, activation="relu",
       follows=("up2.conv1",)),
    _L("up1.upconv", (1, 128, 32, 32, 32), (128, 128, 2, 2, 2), stride=2, transposed=True,
       bias=True, follows=("up2.conv2",)),
    _L("up1.conv1", (1, 192, 64, 64, 64), (64, 192, 3, 3, 3), padding=1, activation="relu",
       follows=("up1.upconv",), skip="down1.conv2"),
    _L("up1.conv2", (1, 64, 64, 64, 64), (64, 64, 3, 3, 3), padding=1, activation="relu",
       follows=("up1.conv1",)),
    _L("head", (1, 64, 64, 64, 64), (3, 64, 1, 1, 1), bias=True, follows=("up1.conv2",)),
)

RESNET50 = Network(
    "resnet50",
    "ResNet-50 (v1.5: the stride sits in each first block's 3x3) at 1x3x224x224: a 7x7 "
    "stride-2 stem, then 3, 4, 6 and 3 bottleneck blocks (1x1, 3x3, 1x1, with a stride-2 1x1 "
    "downsample on each stage's first block, stride 1 in the first stage), ReLU; the residual "
    "add goes into each block's last 1x1, before its ReLU.",
    "torchvision.models.resnet50; He et al., Deep Residual Learning for Image Recognition "
    "(2016), Table 1",
    _RESNET50_LAYERS,
    reference_gmacs=4.089,
    reference="torchvision's model table (GFLOPS column, multiply-adds, fc included)",
)

MOBILENET_V3_LARGE = Network(
    "mobilenet_v3_large",
    "MobileNetV3-Large at 1x3x224x224: a 3x3 stride-2 stem, 15 inverted-residual blocks "
    "(1x1 expansion, 3x3 or 5x5 depthwise, squeeze-and-excitation 1x1s on 1x1 inputs in eight "
    "blocks, 1x1 projection with a residual add where the block keeps its shape), ReLU then "
    "hardswish, and a last 1x1 to 960 channels.  The classifier's Linear layers are not "
    "listed.",
    "torchvision.models.mobilenet_v3_large; Howard et al., Searching for MobileNetV3 (2019), "
    "Table 1",
    _MOBILENET_V3_LARGE_LAYERS,
    reference_gmacs=0.217,
    reference="torchvision's model table (GFLOPS column, multiply-adds, classifier included)",
)

EFFICIENTNET_B0 = Network(
    "efficientnet_b0",
    "EfficientNet-B0 at 1x3x224x224: a 3x3 stride-2 stem, 16 MBConv blocks in 7 stages "
    "(1x1 expansion by 6 except in the first stage, 3x3 or 5x5 depthwise, squeeze-and-"
    "excitation 1x1s on 1x1 inputs with SiLU and sigmoid, 1x1 projection with a residual add "
    "where the block keeps its shape), SiLU, and a 1x1 head to 1280 channels.  The classifier "
    "is not listed.",
    "torchvision.models.efficientnet_b0; Tan and Le, EfficientNet (2019), Table 1",
    _EFFICIENTNET_B0_LAYERS,
    reference_gmacs=0.386,
    reference="torchvision's model table (GFLOPS column, multiply-adds, classifier included)",
)

CONVNEXT_TINY = Network(
    "convnext_tiny",
    "ConvNeXt-T at 1x3x224x224: a 4x4 stride-4 stem, 3, 3, 9 and 3 blocks at 96, 192, 384 "
    "and 768 channels (7x7 depthwise, then the pointwise MLP 4x wide with GELU and a residual "
    "add), 2x2 stride-2 downsampling convs between stages.  The MLP's two layers are Linear "
    "layers on channels-last data in torchvision; they are listed as the 1x1 convolutions "
    "they equal.  Layer norms and the classifier are not listed.",
    "torchvision.models.convnext_tiny; Liu et al., A ConvNet for the 2020s (2022)",
    _CONVNEXT_TINY_LAYERS,
    reference_gmacs=4.456,
    reference="torchvision's model table (GFLOPS column, multiply-adds, classifier included)",
)

UNET2D = Network(
    "unet2d",
    "The 2-D U-Net at 1x1x256x256: four levels of two 3x3 convs with ReLU and 2x2 max "
    "pooling (64, 128, 256, 512 channels), two 3x3 convs at 1024 at the bottom, then 2x2 "
    "stride-2 transposed up-convs halving the channels, each followed by two 3x3 convs on "
    "the concatenation with the skip connection, and a 1x1 to 2 classes.  The convs pad by 1 "
    "(the paper's are unpadded, with cropped skips) so the sizes halve and double exactly.",
    "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation "
    "(2015), Fig. 1",
    _UNET2D_LAYERS,
)

PIX2PIX = Network(
    "pix2pix",
    "The pix2pix generator (U-Net-256, 64 base filters) at 1x3x256x256: eight 4x4 stride-2 "
    "convs down to 1x1 (64, 128, 256, 512, 512, 512, 512, 512 channels; leaky ReLU 0.2, ReLU "
    "after the innermost), then eight 4x4 stride-2 transposed convs up, each on the "
    "concatenation with the mirrored down layer's output, ReLU, and tanh on the last (3 "
    "channels).  Batch norm follows every conv but the first, the innermost down conv and "
    "the last; only the last has a bias of its own.  (In the reference code the skip "
    "connection carries a down layer's output before its leaky ReLU.)",
    "Isola et al., Image-to-Image Translation with Conditional Adversarial Networks (2017), "
    "appendix 6.1.1; the authors' PyTorch code (unet_256 generator)",
    _PIX2PIX_LAYERS,
)

CONV_TASNET = Network(
    "conv_tasnet",
    "Conv-TasNet (1-D) on one second of 16 kHz audio, 1x1x16000: a 16-tap stride-8 encoder to "
    "512 channels (ReLU, 1999 frames), a 1x1 bottleneck to 128, a temporal convolutional "
    "network of 3 repeats of 8 blocks (1x1 to 512, dilated depthwise 3-tap conv with dilation "
    "1..128, 1x1 residual and 1x1 skip outputs to 128), a 1x1 mask conv to 2 x 512 with "
    "sigmoid, and a 16-tap stride-8 transposed decoder per speaker (2 speakers).  The "
    "paper's best configuration: N=512, L=16, B=Sc=128, H=512, P=3, X=8, R=3.",
    "Luo and Mesgarani, Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for "
    "Speech Separation (2019), Fig. 1 and Table 1 hyper-parameters",
    _CONV_TASNET_LAYERS,
)

UNET3D = Network(
    "unet3d",
    "The 3-D U-Net at 1x1x64x64x64: three levels of two 3x3x3 convs with ReLU (32 then 64, "
    "64 then 128, 128 then 256 channels) and 2x2x2 max pooling, 256 then 512 at the bottom, "
    "then 2x2x2 stride-2 transposed up-convs keeping the channels, each followed by two "
    "3x3x3 convs on the concatenation with the skip connection, and a 1x1x1 to 3 classes.  "
    "Batch norm before each ReLU.  Padded by 1 (the paper's convs are unpadded) and one input "
    "channel (the paper's has three).",
    "Çiçek et al., 3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation "
    "(2016), Fig. 1",
    _UNET3D_LAYERS,
)

#: The suite, by name, in table order.
NETWORKS: dict[str, Network] = {net.name: net for net in (
    RESNET50, MOBILENET_V3_LARGE, EFFICIENTNET_B0, CONVNEXT_TINY, UNET2D, PIX2PIX, CONV_TASNET,
    UNET3D)}
