"""Detection on a designed backbone: torchvision's FCOS (the DeepMAD paper's detector), RetinaNet and
Faster R-CNN, with torchvision's FPN over the genotype's feature levels (its segments, DESIGN.md §2).

The models are torchvision's own (``torchvision.models.detection``): same losses, target format
(``[{"boxes": (N, 4) xyxy, "labels": (N,)}]``), ``train()`` → loss dict, ``eval()`` → detections.
Only the backbone is ours: ``FPNBackbone`` runs the features-only network and
``torchvision.ops.FeaturePyramidNetwork`` on the chosen levels (default the last three, strides
8/16/32 on the paper's networks: C3–C5 as in torchvision's FCOS/RetinaNet), plus P6/P7 (FCOS,
RetinaNet) or a max-pooled level (Faster R-CNN), exactly as torchvision's ResNet-FPN builders do.
Anchor sizes follow each level's stride with torchvision's ratios (FCOS: one size = stride;
RetinaNet: 4·stride·2^{0,1/3,2/3}; Faster R-CNN: 8·stride).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from .genotype import Genotype
from .model import DeepMADNet, as_genotype, build_model

__all__ = ["FPNBackbone", "fpn_backbone", "fcos", "retinanet", "faster_rcnn"]


class FPNBackbone(nn.Module):
    """A features-only DeepMAD network followed by torchvision's FeaturePyramidNetwork.

    ``forward`` returns an ``OrderedDict`` of equal-width maps ``"0"``, ``"1"``, … (finest first, then the
    extra levels), and ``out_channels`` is that width — the interface torchvision's detectors expect
    (the same as ``torchvision.models.detection.backbone_utils.BackboneWithFPN``).
    """

    def __init__(self, body: DeepMADNet, out_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None):
        super().__init__()
        if not getattr(body, "features_only", False):
            raise ValueError("backbone: expected a features_only DeepMADNet (build_model(..., features_only=True))")
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels
        self.strides = tuple(body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def _levels(genotype: Genotype, out_indices: Sequence[int] | None) -> tuple[int, ...]:
    from .units import expand

    n = expand(genotype).num_segments
    return tuple(range(max(0, n - 3), n)) if out_indices is None else tuple(out_indices)


def fpn_backbone(genotype: Genotype | str | os.PathLike, *, out_indices: Sequence[int] | None = None,
                 out_channels: int = 256, extra: str = "p6p7", weights: str | os.PathLike | None = None,
                 trainable: bool = True, **kwargs) -> FPNBackbone:
    """The genotype's features-only network with an FPN on its segments ``out_indices``.

    Args:
        genotype: a ``Genotype``, a path or the text form.
        out_indices: segments fed to the FPN (default the last three).
        out_channels: FPN width.
        extra: ``"p6p7"`` (two stride-2 levels from P5, FCOS/RetinaNet), ``"pool"`` (a max-pooled level,
            Faster R-CNN) or ``"none"``.
        weights: classification weights (a folder with ``model.safetensors``) for the backbone.
        trainable: False freezes the backbone's parameters (the FPN and heads still train).
        **kwargs: passed to ``build_model`` (``drop_path_rate``, ``activation``, …).
    """
    g = as_genotype(genotype)
    extras = {"p6p7": lambda: LastLevelP6P7(out_channels, out_channels), "pool": LastLevelMaxPool,
              "none": lambda: None}
    if extra not in extras:
        raise ValueError(f"extra: expected one of {', '.join(extras)}, got {extra!r}")
    body = build_model(g, features_only=True, out_indices=_levels(g, out_indices), weights=weights, **kwargs)
    if not trainable:
        body.requires_grad_(False)
    return FPNBackbone(body, out_channels, extras[extra]())


def _strides(backbone: FPNBackbone, extra_levels: int) -> list[int]:
    last = backbone.strides[-1]
    return list(backbone.strides) + [last * 2 ** (i + 1) for i in range(extra_levels)]


def _normalisation(genotype: Genotype, kwargs: dict) -> None:
    # torchvision's GeneralizedRCNNTransform normalises with ImageNet RGB statistics by default; use the
    # model's (its pretrained_cfg), so one-channel genotypes work too.
    from .model import pretrained_cfg

    cfg = pretrained_cfg(genotype)
    kwargs.setdefault("image_mean", list(cfg["mean"]))
    kwargs.setdefault("image_std", list(cfg["std"]))


def fcos(genotype: Genotype | str | os.PathLike, num_classes: int, *, out_indices: Sequence[int] | None = None,
         weights_backbone: str | os.PathLike | None = None, trainable_backbone: bool = True,
         backbone_kwargs: dict | None = None, **kwargs) -> FCOS:
    """torchvision's FCOS on the genotype's FPN (P3–P5 + P6/P7 on the paper's networks).

    Args:
        genotype: the backbone's genotype.
        num_classes: object classes (FCOS has no background class).
        out_indices: backbone segments for the FPN (default the last three).
        weights_backbone: a classification weights folder for the backbone.
        trainable_backbone: False freezes the backbone.
        backbone_kwargs: passed to ``build_model``.
        **kwargs: passed to ``torchvision.models.detection.FCOS`` (``min_size``, ``max_size``,
            ``score_thresh``, …).
    """
    g = as_genotype(genotype)
    backbone = fpn_backbone(g, out_indices=out_indices, extra="p6p7", weights=weights_backbone,
                            trainable=trainable_backbone, **(backbone_kwargs or {}))
    sizes = tuple((s,) for s in _strides(backbone, 2))
    kwargs.setdefault("anchor_generator", AnchorGenerator(sizes, ((1.0,),) * len(sizes)))
    _normalisation(g, kwargs)
    return FCOS(backbone, num_classes, **kwargs)


def retinanet(genotype: Genotype | str | os.PathLike, num_classes: int, *, out_indices: Sequence[int] | None = None,
              weights_backbone: str | os.PathLike | None = None, trainable_backbone: bool = True,
              backbone_kwargs: dict | None = None, **kwargs) -> RetinaNet:
    """torchvision's RetinaNet (v2 layout: P6/P7 from P5) on the genotype's FPN; arguments as ``fcos``."""
    g = as_genotype(genotype)
    backbone = fpn_backbone(g, out_indices=out_indices, extra="p6p7", weights=weights_backbone,
                            trainable=trainable_backbone, **(backbone_kwargs or {}))
    sizes = tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3))) for s in _strides(backbone, 2))
    kwargs.setdefault("anchor_generator", AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)))
    _normalisation(g, kwargs)
    return RetinaNet(backbone, num_classes, **kwargs)


def faster_rcnn(genotype: Genotype | str | os.PathLike, num_classes: int, *, out_indices: Sequence[int] | None = None,
                weights_backbone: str | os.PathLike | None = None, trainable_backbone: bool = True,
                backbone_kwargs: dict | None = None, **kwargs) -> FasterRCNN:
    """torchvision's Faster R-CNN on the genotype's FPN (+ a max-pooled level for the RPN).

    ``num_classes`` counts the background class, as torchvision's does. Default levels: the last four
    segments (C2–C5 on the paper's networks, as torchvision's ResNet-FPN); other arguments as ``fcos``.
    """
    g = as_genotype(genotype)
    if out_indices is None:
        from .units import expand

        n = expand(g).num_segments
        out_indices = tuple(range(max(0, n - 4), n))
    backbone = fpn_backbone(g, out_indices=out_indices, extra="pool", weights=weights_backbone,
                            trainable=trainable_backbone, **(backbone_kwargs or {}))
    levels = len(backbone.strides)
    sizes = tuple((8 * s,) for s in _strides(backbone, 1))
    kwargs.setdefault("rpn_anchor_generator", AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)))
    kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign([str(i) for i in range(levels)], 7, 2))
    _normalisation(g, kwargs)
    return FasterRCNN(backbone, num_classes, **kwargs)
