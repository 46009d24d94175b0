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


class DeepMADNet(nn.Module):
    """The decoded network: ``stem``, ``stages`` (one ``nn.Sequential`` of blocks each), ``head``,
    then global average pooling, dropout and a linear ``classifier``.

    With ``features_only`` the forward returns the output of each selected segment (DESIGN.md §2)
    and ``feature_info`` lists their ``channels``, ``reduction`` and ``segment``.
    """

    def __init__(self, network: Network, num_classes: int, features_only: bool, out_indices: tuple[int, ...],
                 drop_rate: float, drop_path_rate: float, activation):
        super().__init__()
        self.network = network
        self.features_only = features_only
        self.out_indices = out_indices
        last_unit = max(i for i, u in enumerate(network.units) if u.segment == out_indices[-1]) \
            if features_only else len(network.units) - 1
        units = network.units[: last_unit + 1]
        num_blocks = sum(u.kind == "block" for u in network.units)

        self.stem = _conv(units[0].layers[0], _activation(activation, network.genotype.stages[0].block))
        self.stages = nn.Sequential()
        self.head: nn.Module = nn.Identity()
        block_id = 0
        for u in units[1:]:
            if u.kind == "block":
                if u.index == 0:
                    self.stages.append(nn.Sequential())
                # Stochastic depth grows linearly with block position, as in torchvision's EfficientNet.
                p = drop_path_rate * block_id / num_blocks
                self.stages[-1].append(Block(u, _activation(activation, u.block), p))
                block_id += 1
            else:
                self.head = _conv(u.layers[0], _activation(activation, network.genotype.stages[-1].block))
        # Position (in unit order) of the last unit of every returned segment.
        self._ends = tuple(max(i for i, u in enumerate(units) if u.segment == j) for j in out_indices)
        # Reduction = 2 ** (stride-2 units so far): exact for any side, odd ones included.
        reductions = [2 ** sum(u.s == 2 for u in units[: e + 1]) for e in self._ends]
        self.feature_info = [{"segment": j, "channels": units[e].c_out, "reduction": r}
                             for j, e, r in zip(out_indices, self._ends, reductions)]
        if features_only:
            self.avgpool = self.dropout = self.classifier = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
            self.classifier = nn.Linear(network.out_channels, num_classes)
        self.num_classes = num_classes

    @property
    def genotype(self) -> Genotype:
        return self.network.genotype

    def _units(self):
        yield self.stem
        for stage in self.stages:
            yield from stage
        if not isinstance(self.head, nn.Identity):
            yield self.head

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the selected segments, in order."""
        feats = []
        ends = set(self._ends)
        for i, module in enumerate(self._units()):
            x = module(x)
            if i in ends:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_features(x)
        for module in self._units():
            x = module(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(self.dropout(x))


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
            # torchvision EfficientNet's classifier init: uniform in ±1/sqrt(out).
            bound = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
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
                zero_init_residual: bool = False, activation: str | Callable[..., nn.Module] | None = None) -> DeepMADNet:
    """Build the torchvision-style network of a genotype (DESIGN.md §7).

    Args:
        genotype: a ``Genotype``, or a path / text form that ``load_genotype`` reads.
        num_classes: classifier outputs; default the genotype's ``num_classes``.
        features_only: return a backbone whose forward gives each selected segment's output.
        out_indices: segments to return with ``features_only`` (default all; negatives count from the end).
        drop_rate: dropout probability before the classifier.
        drop_path_rate: stochastic-depth rate; block i of N (counting every block) drops its residual
            branch with probability rate·i/N, as in torchvision's EfficientNet.
        zero_init_residual: zero γ of the last BN of every residual branch.
        activation: ``relu``/``silu``/``hardswish``/``gelu``/``relu6`` or an ``nn.Module`` class; default
            ReLU for basic/bottleneck and SiLU for mbconv(_se), per block (the stem follows
            the first stage's family, the head the last stage's).

    Returns:
        A ``DeepMADNet`` (an ``nn.Module``).
    """
    g = as_genotype(genotype)
    if num_classes is None:
        num_classes = g.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    for name, p in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
            raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
    _activation(activation, None)
    network = expand(g)
    indices = _out_indices(out_indices, network.num_segments)
    model = DeepMADNet(network, num_classes, features_only, indices, float(drop_rate), float(drop_path_rate),
                       activation)
    _init_weights(model, zero_init_residual)
    return model


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
