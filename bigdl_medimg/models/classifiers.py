"""Classification networks on BigDL's Keras-style (channels-first) API.

* :func:`densenet2d` - DenseNet-BC (Huang et al. 2017) as CheXNet used it:
  DenseNet-121 is ``growth_rate=32, block_config=(6, 12, 24, 16),
  init_features=64``; smaller variants change those numbers.
* :func:`resnet2d` - ResNet with bottleneck blocks (ResNet-50 is
  ``layers=(3, 4, 6, 3)``) or basic blocks for small variants.
* :func:`cnn3d` - a 3-D CNN for volumes (meniscus regions, whole knees):
  conv-BN-ReLU blocks with max pooling and a global max + average pooled head,
  so a small local finding (a tear cleft) is not averaged away.

Every builder returns a model whose output is one score (logit) per label or
class; :func:`build_topology` maps the ``topology`` Param names to builders.
3-D batch normalisation uses the exact 5-D substitute of :mod:`.unet3d`.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError
from .unet3d import batch_norm_5d

__all__ = ["densenet2d", "densenet2d_graph", "resnet2d", "cnn3d", "build_topology", "check_densenet", "TOPOLOGIES"]


def _conv_bn_relu_2d(x, n, k, stride=1):
    from bigdl.dllib.keras.layers import Activation, BatchNormalization, Convolution2D

    x = Convolution2D(n, k, k, subsample=(stride, stride), border_mode="same", bias=False)(x)
    x = BatchNormalization(dim_ordering="th")(x)
    return Activation("relu")(x)


def check_densenet(n_outputs: int, input_shape, growth_rate: int, block_config, init_features: int,
                   compression: float) -> tuple[int, int, int]:
    """``(channels, height, width)`` after checking DenseNet settings (both engines' builders call it)."""
    c, h, w = (int(v) for v in input_shape)
    if n_outputs < 1 or growth_rate < 1 or not block_config or init_features < 1 or not 0 < compression <= 1:
        raise ConfigError("densenet2d: n_outputs, growth_rate, init_features >= 1; block_config non-empty; "
                          "0 < compression <= 1")
    if min(h, w) < 4 * 2 ** len(block_config):
        raise ConfigError(f"densenet2d: input {h}x{w} is too small for {len(block_config)} blocks")
    return c, h, w


def densenet2d(n_outputs: int, input_shape: Sequence[int] = (1, 224, 224), *, growth_rate: int = 32,
               block_config: Sequence[int] = (6, 12, 24, 16), init_features: int = 64, bn_size: int = 4,
               compression: float = 0.5, dropout: float = 0.0):
    """DenseNet-BC; the defaults are DenseNet-121 (7x7/2 stem, max pool, four dense blocks)."""
    from bigdl.dllib.keras.engine.topology import merge
    from bigdl.dllib.keras.layers import (Activation, AveragePooling2D, BatchNormalization, Convolution2D, Dense,
                                          Dropout, GlobalAveragePooling2D, Input, MaxPooling2D)
    from bigdl.dllib.keras.models import Model

    c, h, w = check_densenet(n_outputs, input_shape, growth_rate, block_config, init_features, compression)
    inp = Input(shape=(c, h, w))
    x = _conv_bn_relu_2d(inp, init_features, 7, stride=2)
    x = MaxPooling2D((3, 3), strides=(2, 2), border_mode="same")(x)
    n = init_features
    for b, layers in enumerate(block_config):
        for _ in range(int(layers)):
            y = BatchNormalization(dim_ordering="th")(x)
            y = Activation("relu")(y)
            y = Convolution2D(bn_size * growth_rate, 1, 1, bias=False)(y)
            y = BatchNormalization(dim_ordering="th")(y)
            y = Activation("relu")(y)
            y = Convolution2D(growth_rate, 3, 3, border_mode="same", bias=False)(y)
            x = merge([x, y], mode="concat", concat_axis=1)
            n += growth_rate
        if b < len(block_config) - 1:  # transition
            n = max(1, int(n * compression))
            x = BatchNormalization(dim_ordering="th")(x)
            x = Activation("relu")(x)
            x = Convolution2D(n, 1, 1, bias=False)(x)
            x = AveragePooling2D((2, 2), strides=(2, 2))(x)
    x = Activation("relu")(BatchNormalization(dim_ordering="th")(x))
    x = GlobalAveragePooling2D(dim_ordering="th")(x)
    if dropout > 0:
        x = Dropout(dropout)(x)
    return Model(inp, Dense(n_outputs)(x))


def densenet2d_graph(n_outputs: int, input_shape: Sequence[int] = (1, 224, 224), *, growth_rate: int = 32,
                     block_config: Sequence[int] = (6, 12, 24, 16), init_features: int = 64, bn_size: int = 4,
                     compression: float = 0.5, sigmoid: bool = True, mkldnn: bool = False):
    """:func:`densenet2d` written with BigDL's ``nn`` graph API, the form BigDL's ``mkldnn`` engine converts.

    The same layers and parameter count as :func:`densenet2d` (no dropout); the
    dense-block concatenation is ``JoinTable(2, 0)`` (channels of an NCHW batch)
    and the global pooling an average pooling over the last feature map.  With
    ``mkldnn`` the graph declares its input format nchw and output format nc,
    as BigDL's DNN backend requires.  ``sigmoid`` appends the output activation
    (BigDL's ``BCECriterion`` takes probabilities).
    """
    from bigdl.dllib.nn.layer import (Input, JoinTable, Linear, Model, ReLU, Sigmoid, SpatialAveragePooling,
                                      SpatialBatchNormalization, SpatialConvolution, SpatialMaxPooling, View)

    c, h, w = check_densenet(n_outputs, input_shape, growth_rate, block_config, init_features, compression)

    def bn_relu_conv(x, cin, cout, k):
        x = ReLU()(SpatialBatchNormalization(cin)(x))
        return SpatialConvolution(cin, cout, k, k, 1, 1, k // 2, k // 2, with_bias=False)(x)

    inp = Input()
    # no gradient w.r.t. the images (BigDL's own DNN ResNet does the same; mkldnn crashes computing it)
    x = SpatialConvolution(c, init_features, 7, 7, 2, 2, 3, 3, propagate_back=False, with_bias=False)(inp)
    x = ReLU()(SpatialBatchNormalization(init_features)(x))
    x = SpatialMaxPooling(3, 3, 2, 2, 1, 1)(x)
    h, w = -(-h // 4), -(-w // 4)
    n = init_features
    for b, layers in enumerate(block_config):
        for _ in range(int(layers)):
            y = bn_relu_conv(bn_relu_conv(x, n, bn_size * growth_rate, 1), bn_size * growth_rate, growth_rate, 3)
            x = JoinTable(2, 0)([x, y])
            n += growth_rate
        if b < len(block_config) - 1:
            m = max(1, int(n * compression))
            x = SpatialAveragePooling(2, 2, 2, 2)(bn_relu_conv(x, n, m, 1))
            n, h, w = m, h // 2, w // 2
    x = ReLU()(SpatialBatchNormalization(n)(x))
    x = SpatialAveragePooling(w, h, w, h)(x)
    x = x if mkldnn else View([n])(x)  # mkldnn's Linear takes the nchw map itself
    out = Linear(n, n_outputs)(x)
    if sigmoid:
        out = Sigmoid()(out)
    model = Model([inp], [out])
    if mkldnn:
        model.set_input_formats([7])  # Memory.Format.nchw
        model.set_output_formats([4])  # Memory.Format.nc
    return model


def resnet2d(n_outputs: int, input_shape: Sequence[int] = (1, 224, 224), *, layers: Sequence[int] = (3, 4, 6, 3),
             base_filters: int = 64, bottleneck: bool = True):
    """ResNet v1.5; the defaults are ResNet-50 (bottleneck blocks 3, 4, 6, 3)."""
    from bigdl.dllib.keras.engine.topology import merge
    from bigdl.dllib.keras.layers import (Activation, BatchNormalization, Convolution2D, Dense,
                                          GlobalAveragePooling2D, Input, MaxPooling2D)
    from bigdl.dllib.keras.models import Model

    c, h, w = (int(v) for v in input_shape)
    if n_outputs < 1 or base_filters < 1 or not layers:
        raise ConfigError("resnet2d: n_outputs and base_filters >= 1, layers non-empty")
    inp = Input(shape=(c, h, w))
    x = _conv_bn_relu_2d(inp, base_filters, 7, stride=2)
    x = MaxPooling2D((3, 3), strides=(2, 2), border_mode="same")(x)
    in_ch = base_filters
    for stage, blocks in enumerate(layers):
        width = base_filters * 2 ** stage
        out_ch = width * 4 if bottleneck else width
        for i in range(int(blocks)):
            stride = 2 if (i == 0 and stage > 0) else 1
            if bottleneck:
                y = _conv_bn_relu_2d(x, width, 1)
                y = _conv_bn_relu_2d(y, width, 3, stride=stride)
                y = Convolution2D(out_ch, 1, 1, bias=False)(y)
            else:
                y = _conv_bn_relu_2d(x, width, 3, stride=stride)
                y = Convolution2D(out_ch, 3, 3, border_mode="same", bias=False)(y)
            y = BatchNormalization(dim_ordering="th")(y)
            short = x
            if stride != 1 or in_ch != out_ch:
                short = Convolution2D(out_ch, 1, 1, subsample=(stride, stride), bias=False)(x)
                short = BatchNormalization(dim_ordering="th")(short)
            x = Activation("relu")(merge([y, short], mode="sum"))
            in_ch = out_ch
    x = GlobalAveragePooling2D(dim_ordering="th")(x)
    return Model(inp, Dense(n_outputs)(x))


def cnn3d(n_outputs: int, input_shape: Sequence[int] = (1, 32, 64, 64), *, filters: Sequence[int] = (8, 16, 32),
          batch_norm: bool = True, dropout: float = 0.2):
    """3-D CNN: per level two 3x3x3 conv(-BN)-ReLU and a 2x2x2 max pool; global max and average pooled head."""
    from bigdl.dllib.keras.engine.topology import merge
    from bigdl.dllib.keras.layers import (Activation, Convolution3D, Dense, Dropout, GlobalAveragePooling3D,
                                          GlobalMaxPooling3D, Input, MaxPooling3D)
    from bigdl.dllib.keras.models import Model

    c, d, h, w = (int(v) for v in input_shape)
    if n_outputs < 1 or not filters or min(filters) < 1:
        raise ConfigError("cnn3d: n_outputs >= 1 and positive filters")
    if any(s % 2 ** (len(filters) - 1) for s in (d, h, w)):
        raise ConfigError(f"cnn3d: input {d}x{h}x{w} must be divisible by {2 ** (len(filters) - 1)}")
    inp = Input(shape=(c, d, h, w))
    x = inp
    for level, n in enumerate(filters):
        for _ in range(2):
            x = Convolution3D(int(n), 3, 3, 3, border_mode="same")(x)
            if batch_norm:
                x = batch_norm_5d(x, int(n), (d >> level, h >> level, w >> level))
            x = Activation("relu")(x)
        if level < len(filters) - 1:
            x = MaxPooling3D((2, 2, 2))(x)
    x = merge([GlobalMaxPooling3D(dim_ordering="th")(x), GlobalAveragePooling3D(dim_ordering="th")(x)],
              mode="concat", concat_axis=1)
    if dropout > 0:
        x = Dropout(dropout)(x)
    return Model(inp, Dense(n_outputs)(x))


#: topology name -> (builder, keyword arguments, spatial dimensions)
TOPOLOGIES = {
    "densenet121": (densenet2d, dict(growth_rate=32, block_config=(6, 12, 24, 16), init_features=64), 2),
    "densenet_small": (densenet2d, dict(growth_rate=12, block_config=(3, 6, 4), init_features=24), 2),
    "densenet_tiny": (densenet2d, dict(growth_rate=8, block_config=(2, 2, 2), init_features=16), 2),
    "resnet50": (resnet2d, dict(layers=(3, 4, 6, 3), base_filters=64, bottleneck=True), 2),
    "resnet_small": (resnet2d, dict(layers=(1, 1, 1, 1), base_filters=16, bottleneck=False), 2),
    "cnn3d": (cnn3d, dict(filters=(16, 32, 64)), 3),
    "cnn3d_small": (cnn3d, dict(filters=(8, 16, 32)), 3),
}


def build_topology(name: str, n_outputs: int, input_shape: Sequence[int], **overrides):
    """Build the network called ``name`` (see :data:`TOPOLOGIES`) for ``input_shape`` = (channels, *spatial)."""
    if name not in TOPOLOGIES:
        raise ConfigError(f"unknown topology {name!r}; available: {', '.join(sorted(TOPOLOGIES))}")
    builder, kwargs, dims = TOPOLOGIES[name]
    if len(input_shape) != dims + 1:
        raise ConfigError(f"topology {name!r} takes {dims}-D images: input shape (channels, {dims} sizes), "
                          f"got {list(input_shape)}")
    return builder(n_outputs, input_shape, **{**kwargs, **overrides})
