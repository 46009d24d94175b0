"""Decode a genotype into a torchvision-style ``nn.Module`` built unit by unit from ``units.expand``."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

from .genotype import MOBILE_BLOCKS, Genotype, GenotypeError, load_genotype
from .units import AvgPool, Network, Unit, expand

ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "gelu": nn.GELU, "relu6": nn.ReLU6,
}


def as_genotype(genotype: Genotype | str | os.PathLike) -> Genotype:
    """A ``Genotype`` as is, or one read by ``load_genotype`` from a path or the text form."""
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, (str, os.PathLike)):
        return load_genotype(genotype)
    raise GenotypeError(f"genotype: expected a Genotype, a path or a text form, got {type(genotype).__name__}")


def _activation(name: str | Callable[..., nn.Module] | None, block: str | None) -> Callable[..., nn.Module]:
    if name is None:
        # DESIGN.md §7: ReLU for the ResNet families, SiLU for the MobileNet families.
        return nn.SiLU if block in MOBILE_BLOCKS else nn.ReLU
    if isinstance(name, str):
        if name.lower() not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}")
        return ACTIVATIONS[name.lower()]
    if callable(name):
        return name
    raise ValueError(f"activation: expected a name or an nn.Module class, got {name!r}")


def _conv(conv, activation: Callable[..., nn.Module] | None) -> Conv2dNormActivation:
    """Conv (no bias) + BN (+ activation) for one ``units.Conv``; padding k//2 gives side ⌈r/s⌉."""
    return Conv2dNormActivation(conv.c_in, conv.c_out, kernel_size=conv.k, stride=conv.s,
                                groups=conv.c_in if conv.dw else 1, activation_layer=activation)


class Block(nn.Module):
    """One block unit: the main-path convs (SE after the depthwise conv) plus the residual of DESIGN.md §7.

    ResNet families add the shortcut before the final activation (torchvision ``Bottleneck``);
    MobileNet families end on a linear projection and add the identity after it (torchvision
    ``MBConv``).
    """

    def __init__(self, unit: Unit, activation: Callable[..., nn.Module], drop_path: float = 0.0):
        super().__init__()
        mobile = unit.block in MOBILE_BLOCKS
        self.spec = (f"{unit.block} {unit.c_in}→{unit.c_out}, btn={unit.btn}, k={unit.k}, s={unit.s}"
                     + (f", se={unit.se}" if unit.se else "")
                     + (", projection" if unit.projection else ", identity" if unit.residual else "")
                     + (" (pooled)" if unit.pooled else ""))
        layers: list[nn.Module] = []
        last = len(unit.layers) - 1
        for i, conv in enumerate(unit.layers):
            layers.append(_conv(conv, None if i == last else activation))
            if conv.dw and unit.se_op is not None:
                layers.append(SqueezeExcitation(unit.se_op.channels, unit.se_op.squeeze, activation=activation))
        self.branch = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if unit.residual:
            # ceil_mode keeps odd sides equal to the strided conv's ⌈r/2⌉.
            parts = [nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if isinstance(op, AvgPool)
                     else _conv(op, None) for op in unit.shortcut_ops]
            self.shortcut = nn.Sequential(*parts) if len(parts) > 1 else parts[0] if parts else nn.Identity()
        self.drop_path = StochasticDepth(drop_path, "row") if unit.residual and drop_path > 0 else nn.Identity()
        self.act = nn.Identity() if mobile else activation(inplace=True) if _takes_inplace(activation) else activation()

    def extra_repr(self) -> str:
        return self.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.shortcut is not None:
            out = self.drop_path(out) + self.shortcut(x)
        return self.act(out)


def _takes_inplace(activation) -> bool:
    return activation in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish)


class FeatureInfo(list):
    """Per-segment feature metadata in timm's vocabulary: one dict per segment with ``num_chs``,
    ``reduction`` (input side / feature side), ``module`` (the module whose output it is) and ``index``
    (the segment). ``.channels()`` / ``.reduction()`` / ``.module_name()`` read one key like timm's
    ``FeatureInfo``: for every entry, or for the given list positions."""

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        if idx is None:
            return [info[key] for info in self]
        if isinstance(idx, (list, tuple)):
            return [self[i][key] for i in idx]
        return self[idx][key]

    def channels(self, idx: int | Sequence[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self.get("module", idx)


GLOBAL_POOLS = ("avg", "max", "")


def _pool(kind: str) -> nn.Module:
    if kind not in GLOBAL_POOLS:
        raise ValueError(f"global_pool: expected one of 'avg', 'max' or '' (no pooling), got {kind!r}")
    return nn.AdaptiveAvgPool2d(1) if kind == "avg" else nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.Identity()


class DeepMADNet(nn.Module):
    """The decoded network: ``stem``, ``stages`` (one ``nn.Sequential`` of blocks each), ``head``,
    then global pooling, dropout and a linear ``classifier``.

    It speaks timm's and torchvision's model API: ``feature_info`` (every segment of DESIGN.md §2, or
    the selected ones with ``features_only``), ``forward_features`` (the last unpooled map),
    ``forward_head``, ``forward_intermediates``, ``reset_classifier`` / ``get_classifier``,
    ``num_features``, ``in_chans``, ``pretrained_cfg`` (input size and preprocessing) and ``genotype``.
    With ``features_only`` the forward returns the output of each selected segment.
    """

    def __init__(self, network: Network, num_classes: int, features_only: bool, out_indices: tuple[int, ...],
                 drop_rate: float, drop_path_rate: float, activation, global_pool: str = "avg"):
        super().__init__()
        self.network = network
        self.features_only = features_only
        self.out_indices = out_indices
        last_unit = max(i for i, u in enumerate(network.units) if u.segment == out_indices[-1]) \
            if features_only else len(network.units) - 1
        units = network.units[: last_unit + 1]
        num_blocks = sum(u.kind == "block" for u in network.units)

        # Stem and head are plain Sequentials (conv, bn, act), not torchvision's leaf Conv2dNormActivation:
        # timm's FeatureListNet (which flattens top-level Sequentials) and FX feature extraction then both
        # see their activation as the module "stem.2" / "head.2" that ends a segment.
        self.stem = nn.Sequential(*_conv(units[0].layers[0], _activation(activation, network.genotype.stages[0].block)))
        self.stages = nn.Sequential()
        self.head: nn.Module = nn.Identity()
        block_id = 0
        position = [0]  # per built unit: its place in the call order stem, stages[0], …, head
        for u in units[1:]:
            if u.kind == "block":
                if u.index == 0:
                    self.stages.append(nn.Sequential())
                # Stochastic depth grows linearly with block position, as in torchvision's EfficientNet.
                p = drop_path_rate * block_id / num_blocks
                self.stages[-1].append(Block(u, _activation(activation, u.block), p))
                block_id += 1
                position.append(len(self.stages))
            else:
                self.head = nn.Sequential(*_conv(u.layers[0], _activation(activation, network.genotype.stages[-1].block)))
                position.append(len(self.stages) + 1)
        # A segment always ends with the stem, a whole stage or the head, so each segment's output is
        # one module's output: the stem's / head's activation (its last child) or a stage.
        names = [f"stem.{len(self.stem) - 1}"] + [f"stages.{i}" for i in range(len(self.stages))] \
            + ([f"head.{len(self.head) - 1}"] if not isinstance(self.head, nn.Identity) else [])
        built = sorted({u.segment for u in units})
        ends = [max(i for i, u in enumerate(units) if u.segment == j) for j in built]
        # Reduction = 2 ** (stride-2 units so far): exact for any side, odd ones included.
        info = [{"num_chs": units[e].c_out, "reduction": 2 ** sum(u.s == 2 for u in units[: e + 1]),
                 "module": names[position[e]], "index": j} for j, e in zip(built, ends)]
        self.feature_info = FeatureInfo(info[j] for j in out_indices) if features_only else FeatureInfo(info)
        # Call position after which each feature_info entry is taken.
        self._feature_calls = tuple(position[ends[i["index"]]] for i in self.feature_info)
        self.in_chans = network.genotype.in_channels
        self.num_features = self.head_hidden_size = units[-1].c_out
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        if features_only:
            self.avgpool = self.dropout = self.classifier = None
            self.num_classes = 0
            self.global_pool = ""
        else:
            self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
            self.reset_classifier(num_classes, global_pool)

    @property
    def genotype(self) -> Genotype:
        return self.network.genotype

    def _calls(self):
        """The modules in call order: stem, each stage, the head (when there is one)."""
        return [self.stem, *self.stages] + ([] if isinstance(self.head, nn.Identity) else [self.head])

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``nn.Identity`` when built with ``num_classes=0``)."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: none, forward returns the
        pooled features); ``global_pool`` 'avg', 'max' or '' (no pooling, only with ``num_classes=0``)."""
        if self.features_only:
            raise ValueError("reset_classifier: a features_only backbone has no classifier")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes: expected an integer >= 0 (0: no classifier), got {num_classes!r}")
        global_pool = getattr(self, "global_pool", "avg") if global_pool is None else global_pool
        self.avgpool = _pool(global_pool)
        if global_pool == "" and num_classes > 0:
            raise ValueError("global_pool: '' (no pooling) needs num_classes=0; a linear classifier needs pooled features")
        self.global_pool = global_pool
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_linear(self.classifier)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter grouping (layer-wise lr decay, ``timm.optim.create_optimizer_v2(layer_decay=)``):
        the stem, then one group per stage (``coarse``) or per block, the head with the last group."""
        blocks = r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.(\d+)", None), (r"^head", (99999,))]
        return {"stem": r"^stem", "blocks": blocks}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations (timm's
        ``--grad-checkpointing``; ``torch.utils.checkpoint``, training mode only)."""
        self.grad_checkpointing = bool(enable)

    def _call(self, i: int, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and 0 < i <= len(self.stages) and not torch.jit.is_scripting():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling (the head's output, or the last built segment's)."""
        for i, module in enumerate(self._calls()):
            x = self._call(i, module, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, flatten and classify a ``forward_features`` map; ``pre_logits`` stops before the classifier."""
        if self.features_only:
            raise ValueError("forward_head: a features_only backbone has no head")
        x = self.avgpool(x)
        if self.global_pool:
            x = torch.flatten(x, 1)
        x = self.dropout(x)
        return x if pre_logits else self.classifier(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's intermediate-feature API: the outputs of the segments ``indices`` point at.

        Args:
            x: input images.
            indices: positions in ``feature_info``: None (all), an int n (the last n) or a sequence
                (negatives count from the end).
            norm: accepted for timm compatibility; the network has no final norm layer.
            stop_early: stop after the last requested segment (the returned final map is then that one).
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of intermediates.

        Returns:
            ``[maps]`` or ``(final map, [maps])``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: expected 'NCHW', got {output_fmt!r}")
        count = len(self._feature_calls)
        if indices is None:
            take = list(range(count))
        elif isinstance(indices, int):
            if not 0 < indices <= count:
                raise ValueError(f"indices: expected 1 to {count} (the last n segments), got {indices}")
            take = list(range(count - indices, count))
        else:
            take = list(_out_indices(indices, count))
        wanted = {self._feature_calls[i] for i in take}
        calls = self._calls()
        if stop_early or intermediates_only:
            calls = calls[: max(wanted) + 1]
        intermediates = []
        for i, module in enumerate(calls):
            x = self._call(i, module, x)
            if i in wanted:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """timm's pruning for feature extraction: drop the modules after the last segment ``indices`` needs
        (and the classifier with ``prune_head``); returns the absolute ``feature_info`` positions."""
        count = len(self._feature_calls)
        take = list(range(count - indices, count)) if isinstance(indices, int) else list(_out_indices(indices, count))
        last = self._feature_calls[max(take)]
        if last < len(self.stages):  # the head and later stages feed nothing requested
            self.head = nn.Identity()
            self.stages = self.stages[:last]
        keep = max(take) + 1
        self.feature_info = FeatureInfo(list(self.feature_info)[:keep])
        self._feature_calls = self._feature_calls[:keep]
        self.num_features = self.head_hidden_size = self.feature_info[-1]["num_chs"]
        if prune_head and not self.features_only:
            self.reset_classifier(0, "")
        return take

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_intermediates(x, intermediates_only=True)
        return self.forward_head(self.forward_features(x))


def _init_linear(m: nn.Linear) -> None:
    # torchvision EfficientNet's classifier init: uniform in ±1/sqrt(out).
    bound = 1.0 / m.out_features ** 0.5
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            _init_linear(m)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Block) and m.shortcut is not None:
                # Each residual branch then starts as the identity (Goyal et al. 2017).
                nn.init.zeros_(m.branch[-1][1].weight)


def _out_indices(out_indices, num_segments: int) -> tuple[int, ...]:
    if out_indices is None:
        return tuple(range(num_segments))
    try:
        idx = [int(i) for i in out_indices]
    except (TypeError, ValueError):
        raise ValueError(f"out_indices: expected a sequence of segment indices, got {out_indices!r}") from None
    norm = []
    for i in idx:
        if not -num_segments <= i < num_segments:
            raise ValueError(f"out_indices: expected indices in [0, {num_segments - 1}] (the network has "
                             f"{num_segments} segments), got {i}")
        norm.append(i % num_segments)
    if not norm or sorted(set(norm)) != norm:
        raise ValueError(f"out_indices: expected distinct increasing segment indices, got {list(out_indices)}")
    return tuple(norm)


def build_model(genotype: Genotype | str | os.PathLike, num_classes: int | None = None, *, features_only: bool = False,
                out_indices: Sequence[int] | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                zero_init_residual: bool = False, activation: str | Callable[..., nn.Module] | None = None,
                in_chans: int | None = None, global_pool: str = "avg",
                weights: str | os.PathLike | None = None) -> DeepMADNet:
    """Build the torchvision-style network of a genotype (DESIGN.md §7).

    Args:
        genotype: a ``Genotype``, or a path / text form that ``load_genotype`` reads.
        num_classes: classifier outputs; default the genotype's ``num_classes``; 0 builds no classifier
            (the forward returns the pooled features, timm's convention).
        features_only: return a backbone whose forward gives each selected segment's output.
        out_indices: segments to return with ``features_only`` (default all; negatives count from the end).
        drop_rate: dropout probability before the classifier.
        drop_path_rate: stochastic-depth rate; block i of N (counting every block) drops its residual
            branch with probability rate·i/N, as in torchvision's EfficientNet.
        zero_init_residual: zero γ of the last BN of every residual branch.
        activation: ``relu``/``silu``/``hardswish``/``gelu``/``relu6`` or an ``nn.Module`` class; default
            ReLU for basic/bottleneck and SiLU for mbconv(_se), per block (the stem follows
            the first stage's family, the head the last stage's).
        in_chans: input channels; default the genotype's.
        global_pool: 'avg' (default), 'max' or '' (no pooling; with ``num_classes=0``).
        weights: a folder with ``model.safetensors`` (as training writes it) or a ``.safetensors`` file to
            load; a classifier of another width than ``num_classes`` is left freshly initialised.

    Returns:
        A ``DeepMADNet`` (an ``nn.Module``).
    """
    g = as_genotype(genotype)
    if in_chans is not None and in_chans != g.in_channels:
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans: expected an integer >= 1, got {in_chans!r}")
        g = Genotype(g.stem, g.stages, g.head, g.image_size, in_chans, g.num_classes)
    if num_classes is None:
        num_classes = g.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes: expected an integer >= 0 (0: no classifier), got {num_classes!r}")
    for name, p in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
            raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
    _activation(activation, None)
    network = expand(g)
    indices = _out_indices(out_indices, network.num_segments)
    model = DeepMADNet(network, num_classes, features_only, indices, float(drop_rate), float(drop_path_rate),
                       activation, global_pool)
    _init_weights(model, zero_init_residual)
    model.pretrained_cfg = model.default_cfg = pretrained_cfg(g, num_classes)
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights)
    return model


def load_model(path: str | os.PathLike, **kwargs) -> nn.Module:
    """Rebuild the network a weights folder describes and load its weights.

    Args:
        path: the folder (model.safetensors + config.json) training wrote.
        **kwargs: passed to ``build_model`` (e.g. ``num_classes`` to fine-tune, ``features_only``).

    Returns:
        The ``DeepMADNet`` with the weights loaded and ``pretrained_cfg`` set from the config.
    """
    from .weights import config_genotype, read_config

    config = read_config(path)
    genotype = config_genotype(config)
    kwargs.setdefault("num_classes", int(config.get("num_classes", genotype.num_classes)))
    kwargs.setdefault("global_pool", config.get("global_pool", "avg"))
    model = build_model(genotype, weights=path, **kwargs)
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in config.get("pretrained_cfg", {}).items()}
    if not getattr(model, "features_only", False):
        cfg["num_classes"] = model.num_classes
    model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, **cfg}
    return model


def pretrained_cfg(genotype: Genotype, num_classes: int | None = None, *, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, crop_pct: float = 0.875,
                   interpolation: str = "bilinear") -> dict:
    """timm's ``pretrained_cfg`` of a genotype: input size, preprocessing, first conv and classifier.

    The defaults are the training recipe's evaluation transform (``configs/train/imagenet.toml``): resize
    to side/0.875 with bilinear interpolation, centre crop, ImageNet mean/std (their channel average
    repeated for inputs of other than 3 channels).
    """
    c, side = genotype.in_channels, genotype.image_size
    if mean is None or std is None:
        base_mean, base_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        mean = base_mean if c == 3 else (round(sum(base_mean) / 3, 4),) * c
        std = base_std if c == 3 else (round(sum(base_std) / 3, 4),) * c
    reduction = 2 ** sum(u.s == 2 for u in expand(genotype).units)
    return {"input_size": (c, side, side), "pool_size": (-(-side // reduction),) * 2, "crop_pct": crop_pct,
            "crop_mode": "center", "interpolation": interpolation, "mean": tuple(mean), "std": tuple(std),
            "num_classes": genotype.num_classes if num_classes is None else num_classes,
            "first_conv": "stem.0", "classifier": "classifier", "fixed_input_size": False,
            "description": f"DeepMAD genotype {genotype.to_text()}",
            "paper_name": "DeepMAD: Mathematical Architecture Design for Deep Convolutional Neural Network",
            "paper_ids": "arXiv:2303.02165"}


def live_costs(model: nn.Module, image_size: int, in_channels: int = 3) -> tuple[int, int]:
    """Params and MACs counted on a live module: ``sum(p.numel())`` and ``FlopCounterMode`` total // 2 for one image.

    Args:
        model: any module taking (N, in_channels, image_size, image_size).
        image_size: input side.
        in_channels: input channels.

    Returns:
        ``(params, macs)``; the module is left in the training mode it had.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return params, counter.get_total_flops() // 2


def verify_costs(genotype: Genotype | str | os.PathLike) -> tuple[int, int]:
    """Build the network once on CPU and count its params and MACs from the live module.

    The result equals ``costs.network_costs(expand(g), "torch")`` (DESIGN.md §4); a search shows
    both side by side.

    Args:
        genotype: a ``Genotype``, or a path / text form that ``load_genotype`` reads.

    Returns:
        ``(params, macs)`` of the decoded module, for one image at the genotype's size.
    """
    g = as_genotype(genotype)
    return live_costs(build_model(g), g.image_size, g.in_channels)
