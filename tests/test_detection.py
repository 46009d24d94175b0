"""Detection and segmentation backbones: torchvision's task models on a tiny genotype, one train and one eval step."""

import pytest
import torch

from deepmad_evo.genotype import load_genotype

torch_only = pytest.mark.torch

# Four segments (strides 2, 4, 8, 16), a few thousand parameters: a train step takes well under a second.
TINY = load_genotype("i64_c3_n10 stem_k3_s2_c8 basic_d1_k3_s2_b8_c16 mbse_d2_k3_s2_b32_c24 bneck_d1_k3_s2_b8_c32")
SIDE = 64


def _targets(n, num_classes, generator):
    out = []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=generator) * (SIDE - 20)
        wh = 8 + torch.rand(3, 2, generator=generator) * 12
        out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, num_classes, (3,), generator=generator)})
    return out


def _backbone_grads(model):
    return [p.grad for n, p in model.named_parameters() if n.startswith("backbone.body.")]


@pytest.mark.parametrize("name", ["fcos", "retinanet", "faster_rcnn"])
def test_detector_train_and_eval_step(name, one_thread):
    from deepmad_evo import detection

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    extra = {"rpn_batch_size_per_image": 32, "box_batch_size_per_image": 32} if name == "faster_rcnn" else {}
    model = getattr(detection, name)(TINY, 4, min_size=SIDE, max_size=SIDE, **extra)
    images = [torch.rand(3, SIDE, SIDE, generator=g) for _ in range(2)]
    model.train()
    losses = model(images, _targets(2, 4, g))
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = _backbone_grads(model)
    assert grads and all(v is not None for v in grads)
    assert any(v.abs().sum() > 0 for v in grads)  # the losses reach the designed network
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and {"boxes", "scores", "labels"} <= set(out[0])
    assert out[0]["boxes"].ndim == 2 and out[0]["boxes"].shape[1] == 4


def test_fpn_levels_follow_the_genotype():
    from deepmad_evo.detection import fcos, fpn_backbone

    backbone = fpn_backbone(TINY, extra="p6p7", out_channels=32)
    assert backbone.strides == (4, 8, 16)  # the last three segments
    feats = backbone(torch.zeros(1, 3, SIDE, SIDE))
    assert [tuple(f.shape) for f in feats.values()] == [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4), (1, 32, 2, 2),
                                                        (1, 32, 1, 1)]
    model = fcos(TINY, 3, min_size=SIDE, max_size=SIDE)
    assert model.anchor_generator.sizes == ((4,), (8,), (16,), (32,), (64,))  # one anchor per level = its stride
    frozen = fpn_backbone(TINY, trainable=False)
    assert not any(p.requires_grad for p in frozen.body.parameters())
    with pytest.raises(ValueError, match="extra"):
        fpn_backbone(TINY, extra="p9")


@pytest.mark.parametrize("name", ["deeplabv3", "fcn"])
def test_segmentation_train_and_eval_step(name, one_thread):
    from deepmad_evo import segmentation

    torch.manual_seed(0)
    model = getattr(segmentation, name)(TINY, 5, aux_index=-2)
    images = torch.rand(2, 3, SIDE, SIDE)
    masks = torch.randint(0, 5, (2, SIDE, SIDE))
    model.train()
    out = model(images)
    assert out["out"].shape == (2, 5, SIDE, SIDE) and out["aux"].shape == (2, 5, SIDE, SIDE)
    loss = torch.nn.functional.cross_entropy(out["out"], masks) + 0.4 * torch.nn.functional.cross_entropy(out["aux"], masks)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("backbone.body.")]
    assert grads and all(v is not None and torch.isfinite(v).all() for v in grads)
    model.eval()
    with torch.no_grad():
        pred = model(images)["out"].argmax(1)
    assert pred.shape == (2, SIDE, SIDE)


def test_segmentation_rejects_aux_after_out():
    from deepmad_evo.segmentation import deeplabv3

    with pytest.raises(ValueError, match="aux_index"):
        deeplabv3(TINY, 3, out_index=1, aux_index=2)
