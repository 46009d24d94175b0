"""Semantic segmentation on a designed backbone: torchvision's DeepLabV3 and FCN heads.

The DeepMAD paper segments with UperNet from mmsegmentation. mmseg is not used here: it needs mmcv,
whose compiled C++/CUDA ops are released per torch version and lag behind torch releases, and it brings
its own config and runner system; torchvision ships DeepLabV3 (ASPP) and FCN heads and the
``_SimpleSegmentationModel`` wrapper that our features-only network plugs into directly. The result
is the standard torchvision segmentation model: ``model(images)["out"]`` is (N, classes, H, W) at
the input resolution, ``["aux"]`` the optional auxiliary FCN logits. Our networks have no dilated
variant, so the head works at the chosen segment's stride (default the last segment, stride 32 on
the paper's networks; pass ``out_index`` for a finer one), where torchvision's ResNets dilate to 8.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead

from .genotype import Genotype
from .model import as_genotype, build_model

__all__ = ["SegmentationBackbone", "deeplabv3", "fcn"]


class SegmentationBackbone(nn.Module):
    """The features-only network returning ``{"out": map, "aux": map}`` as torchvision's segmentation models
    expect (torchvision uses ``IntermediateLayerGetter`` on a ResNet for the same)."""

    def __init__(self, body: nn.Module, aux: bool):
        super().__init__()
        self.body = body
        self.aux = aux

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.body(x)
        out = OrderedDict(out=feats[-1])
        if self.aux:
            out["aux"] = feats[0]
        return out


def _backbone(genotype, out_index: int, aux_index: int | None, weights, trainable: bool, kwargs: dict):
    from .units import expand

    g = as_genotype(genotype)
    n = expand(g).num_segments
    out = out_index % n if -n <= out_index < n else out_index
    indices = (out,) if aux_index is None else (aux_index % n if -n <= aux_index < n else aux_index, out)
    if aux_index is not None and not indices[0] < indices[1]:
        raise ValueError(f"aux_index: expected a segment before out_index {out_index}, got {aux_index}")
    body = build_model(g, features_only=True, out_indices=indices, weights=weights, **kwargs)
    if not trainable:
        body.requires_grad_(False)
    return SegmentationBackbone(body, aux_index is not None), body.feature_info.channels()


def deeplabv3(genotype: Genotype | str | os.PathLike, num_classes: int, *, out_index: int = -1,
              aux_index: int | None = None, weights_backbone: str | os.PathLike | None = None,
              trainable_backbone: bool = True, **kwargs) -> DeepLabV3:
    """torchvision's DeepLabV3 (ASPP head) on segment ``out_index``; an FCN auxiliary head on ``aux_index``.

    Args:
        genotype: the backbone's genotype.
        num_classes: segmentation classes (including background where the dataset has one).
        out_index: the segment the head reads (default the last).
        aux_index: an earlier segment for the auxiliary loss head, or None.
        weights_backbone: a classification weights folder for the backbone.
        trainable_backbone: False freezes the backbone.
        **kwargs: passed to ``build_model`` (``drop_path_rate``, …).
    """
    backbone, channels = _backbone(genotype, out_index, aux_index, weights_backbone, trainable_backbone, kwargs)
    aux = FCNHead(channels[0], num_classes) if aux_index is not None else None
    return DeepLabV3(backbone, DeepLabHead(channels[-1], num_classes), aux)


def fcn(genotype: Genotype | str | os.PathLike, num_classes: int, *, out_index: int = -1,
        aux_index: int | None = None, weights_backbone: str | os.PathLike | None = None,
        trainable_backbone: bool = True, **kwargs) -> FCN:
    """torchvision's FCN head on segment ``out_index`` (arguments as ``deeplabv3``)."""
    backbone, channels = _backbone(genotype, out_index, aux_index, weights_backbone, trainable_backbone, kwargs)
    aux = FCNHead(channels[0], num_classes) if aux_index is not None else None
    return FCN(backbone, FCNHead(channels[-1], num_classes), aux)
