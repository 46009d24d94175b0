"""Score any nn.Module the DeepMAD way by tracing its convolutions on a dummy input (imports torch).

How layers are counted, so that a traced module and a genotype are scored alike (DESIGN.md §2):

- Every ``nn.Conv2d`` call is recorded by a forward hook (channels, kernel, stride, groups, input
  and output sizes), and its data-flow predecessors are read from the autograd graph, so the
  result does not depend on how the module's ``forward`` is written.
- *Gate* convs are excluded: a conv on a 1×1 input every one of whose inputs comes through a
  global pooling or from another gate conv — the squeeze-excitation convs.
- The **layers** are the other convs on the longest conv chain from the input to the output (the
  main path). Shortcut projections (ResNet ``downsample``) are shorter parallel chains and are not
  layers; neither are linear layers (the classifier). Width w = c_in·k_h·k_w/groups.
- A **unit** is the outermost module on the path from the root to a layer that is not a
  container (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict`` or subclasses): a torchvision
  ``Bottleneck``/``InvertedResidual``/``MBConv``, or a bare conv such as a stem or head.
- A new **segment** starts at every unit whose output map is smaller than the previous unit's
  (a strided conv inside it or a pooling before it); c_j and r_j² are the channels and h·w of the
  segment's last layer output.
- **Stages** (table rows, depth penalty) are runs of consecutive units of one class, one parent
  module, one output width and one segment; the depth penalty reads the runs of multi-layer
  units (blocks), or of all units when a network has no blocks (VGG).
- MACs are ``FlopCounterMode`` total // 2 and params ``sum(p.numel())``, both from the live
  module, i.e. the ``torch`` convention.

Effectiveness ρ measured this way (``run.py inspect torchvision:<name>``, 224×224; ρ is the
largest prefix value, here always one of the last two prefixes):

================  ===  ======  ======================================================
model               L  ρ       layers counted
================  ===  ======  ======================================================
resnet18           17  0.0147  7×7 stem + 8 basic blocks × 2; 3 downsample 1×1s excluded
resnet34           33  0.0228  7×7 stem + 16 basic blocks × 2; 3 downsample 1×1s excluded
resnet50           49  0.0891  7×7 stem + 16 bottlenecks × 3; 4 downsample 1×1s excluded
mobilenet_v2       52  0.9395  3×3 stem + 2 + 16 inverted residuals × 3 + 1×1 head
efficientnet_b0    49  0.6288  3×3 stem + 2 + 15 MBConv × 3 + 1×1 head; 32 SE convs excluded
================  ===  ======  ======================================================

The ResNets sit far below the paper's ResNet bound ρ0 = 0.3 (their wide 3×3 layers give a
large geometric-mean width); the depthwise networks sit above the MobileNet bound ρ0 = 0.5,
because every depthwise layer has width k² (9 or 25), which pulls the geometric mean down.
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .limits import shown
from .objective import DEFAULT_BETA, check_alpha, prefix_rho, segment_terms, weighted_depth_penalty
from .problem import Budget
from .report import constraint_checks

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_GLOBAL_POOL = ("MeanBackward", "AdaptiveAvgPool", "AdaptiveMaxPool", "AmaxBackward")


def is_module_spec(text: str) -> bool:
    """True for ``torchvision:<name>`` or ``package.module:callable``."""
    return bool(_SPEC.match(str(text).strip()))


def _timm_model(name: str) -> nn.Module:
    """``timm.create_model(name)`` with random weights; our zoo networks are registered first."""
    try:
        import timm

        import deepmad_evo.timm  # noqa: F401  (registers deepmad_* with timm)
    except ImportError:
        raise ValueError("model: timm:<name> needs timm; install the extra: pip install 'deepmad-evo[timm]'") from None
    names = timm.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ValueError(f"model: {name!r} is not a timm model{hint}")
    return timm.create_model(name, pretrained=False)


# Prefixes that name a model of a model zoo: instantiating one runs no code the user did not install
# for that purpose. Anything else (``package.module:callable``) imports and calls arbitrary code.
SAFE_PREFIXES = ("torchvision", "timm")


def load_module(spec: str, allow_code: bool = False) -> nn.Module:
    """Instantiate ``torchvision:<name>`` / ``timm:<name>`` (random weights) or call ``package.module:callable``.

    Args:
        spec: the module spec.
        allow_code: permit ``package.module:callable`` (imports that module and calls the function:
            arbitrary code). Off by default.

    Raises:
        ValueError: naming the spec and what was expected.
    """
    spec = str(spec).strip()
    if not is_module_spec(spec):
        raise ValueError(f"model: expected 'torchvision:<name>', 'timm:<name>' or 'package.module:callable', "
                         f"got {shown(spec)}")
    module_name, attr = spec.split(":")
    if module_name not in SAFE_PREFIXES and not allow_code:
        raise ValueError(f"model: {shown(spec)} is no file here, and as package.module:callable it would import "
                         f"{module_name!r} and call {attr!r} (arbitrary code); expected a genotype, torchvision:<name> "
                         "or timm:<name>, or --allow-code to run it")
    if module_name == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if attr not in names:
            close = difflib.get_close_matches(attr, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
            raise ValueError(f"model: {attr!r} is not a torchvision classification model{hint}")
        return torchvision.models.get_model(attr, weights=None)
    if module_name == "timm":
        return _timm_model(attr)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model: {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except TypeError as exc:
        raise ValueError(f"model: {spec} must be callable without arguments ({exc})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec} returned {type(model).__name__}, expected an nn.Module")
    return model


@dataclass(frozen=True)
class TracedConv:
    """One recorded ``nn.Conv2d`` call."""

    name: str
    unit: str
    unit_class: str
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    role: str  # "layer" (main path), "branch" (shortcut / parallel chain) or "gate" (SE)

    @property
    def width(self) -> float:
        """DeepMAD width w = c_in·k_h·k_w/groups."""
        return self.c_in * self.kernel[0] * self.kernel[1] / self.groups


@dataclass(frozen=True)
class TracedUnit:
    name: str
    unit_class: str
    layers: tuple[TracedConv, ...]
    segment: int
    macs: int
    params: int

    @property
    def out_size(self) -> tuple[int, int]:
        return self.layers[-1].out_size

    @property
    def parent(self) -> str:
        return self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Trace:
    """A traced module: every conv call, the main-path units, and exact totals."""

    source: str
    image_size: int
    in_channels: int
    convs: tuple[TracedConv, ...]
    units: tuple[TracedUnit, ...]
    num_segments: int
    macs: int
    params: int

    @property
    def layers(self) -> tuple[TracedConv, ...]:
        return tuple(c for u in self.units for c in u.layers)


def _unit_of(model: nn.Module, name: str) -> tuple[str, str]:
    """Outermost non-container module on the path to ``name``: (qualified name, class name)."""
    module, path = model, []
    for part in name.split("."):
        module = getattr(module, part)
        path.append(part)
        if not isinstance(module, _CONTAINERS):
            return ".".join(path), type(module).__name__
    return name, type(module).__name__


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError(f"model: {type(model).__name__} has no nn.Conv2d to trace")


def _routes(grad_fns: dict, roots) -> list[set]:
    """For each root autograd node, the set of (conv index or -1 for the input, passed a global pool)."""
    memo: dict = {}

    def reach(node):
        # Iterative post-order walk: autograd chains between convs can be long (attention blocks).
        stack = [(node, False)]
        while stack:
            n, expanded = stack.pop()
            if n in memo:
                continue
            children = [c for c, _ in getattr(n, "next_functions", ()) if c is not None
                        and type(c).__name__ != "AccumulateGrad"]
            if not expanded:
                stack.append((n, True))
                stack.extend((c, False) for c in children if c not in memo and c not in grad_fns)
                continue
            out: set = set()
            for c in children:
                out |= {(grad_fns[c], False)} if c in grad_fns else memo[c]
            if not children:
                out = {(-1, False)}
            if type(n).__name__.startswith(_GLOBAL_POOL):
                out = {(i, True) for i, _ in out}
            memo[n] = frozenset(out)
        return memo[node]

    results = []
    for root in roots:
        if root is None:
            results.append({(-1, False)})
        elif root in grad_fns:
            results.append({(grad_fns[root], False)})
        else:
            results.append(set(reach(root)))
    return results


def trace_module(model: nn.Module, image_size: int = 224, in_channels: int | None = None,
                 source: str | None = None) -> Trace:
    """Run one dummy image through ``model`` (eval mode) and split its convs into layers, units, segments.

    Args:
        model: any module taking an image batch (N, C, H, W) and returning a tensor (or tensors).
        image_size: side of the square dummy input.
        in_channels: input channels; default the first conv's.
        source: a label for reports (e.g. ``torchvision:resnet50``).

    Returns:
        A ``Trace`` (see the module docstring for how layers are counted).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive integer, got {image_size!r}")
    in_channels = _in_channels(model) if in_channels is None else in_channels
    names = {m: n for n, m in model.named_modules()}
    calls, norms_after, output, counter = _run_hooked(model, names, in_channels, image_size)
    gate, on_path = _main_path(model, calls, output)
    convs = []
    for i, (name, m, in_size, out_size, *_rest) in enumerate(calls):
        unit, cls = _unit_of(model, name)
        role = "gate" if gate[i] else "layer" if i in on_path else "branch"
        convs.append(TracedConv(name, unit, cls, m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                                m.groups, in_size, out_size, role))
    units = _units(model, names, convs, on_path, norms_after, counter.get_flop_counts())
    params = sum(p.numel() for p in model.parameters())
    return Trace(source or type(model).__name__, image_size, in_channels, tuple(convs), tuple(units),
                 units[-1].segment + 1, int(counter.get_total_flops() // 2), int(params))


def _run_hooked(model: nn.Module, names: dict, in_channels: int, image_size: int):
    """One dummy forward in eval mode with hooks on every conv and norm layer, under a FLOP counter.

    Returns:
        (conv calls ``(name, module, in side, out side, output grad_fn, input grad_fn)`` in call order,
        {index of the conv call before: norm modules run after it}, the model's output, the counter).
    """
    from torch.utils.flop_counter import FlopCounterMode

    calls: list[tuple] = []

    def hook(module, inputs, output):
        calls.append((names[module], module, tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]), output.grad_fn,
                      inputs[0].grad_fn))

    norms_after: dict[int, list[nn.Module]] = {}

    def norm_hook(module, inputs, output):
        # A norm layer belongs with the conv that ran just before it (a stem's or VGG's conv + BN).
        norms_after.setdefault(len(calls) - 1, []).append(module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(norm_hook) for m in model.modules() if isinstance(m, _NORMS)]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=None)
    try:
        x = torch.zeros(1, in_channels, image_size, image_size, requires_grad=True)
        with torch.enable_grad(), counter:
            output = model(x)
    except RuntimeError as exc:
        raise ValueError(f"model: forward of a 1x{in_channels}x{image_size}x{image_size} input failed "
                         f"({str(exc).splitlines()[0]}); try --image-size") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not calls:
        raise ValueError(f"model: {type(model).__name__} ran no nn.Conv2d on the dummy input")
    return calls, norms_after, output, counter


def _main_path(model: nn.Module, calls: list[tuple], output) -> tuple[list[bool], set[int]]:
    """(gate flag per conv call, the conv calls on the longest conv chain from the input to the output)."""
    grad_fns = {c[4]: i for i, c in enumerate(calls)}
    conv_routes = _routes(grad_fns, [c[5] for c in calls])
    outputs = [t for t in _tensors(output)]
    out_routes = set().union(*_routes(grad_fns, [t.grad_fn for t in outputs])) if outputs else set()

    gate = [False] * len(calls)
    for i, (_, _, in_size, *_rest) in enumerate(calls):
        gate[i] = in_size == (1, 1) and all(pooled or (p >= 0 and gate[p]) for p, pooled in conv_routes[i])

    def main_preds(routes) -> set[int]:
        # Gate convs are transparent: look through them to the convs that feed them.
        preds = set()
        for p, _ in routes:
            preds |= ({p} if p < 0 or not gate[p] else main_preds(conv_routes[p]))
        return preds

    dist, best = [0] * len(calls), [-1] * len(calls)
    for i in range(len(calls)):
        if gate[i]:
            continue
        preds = sorted(main_preds(conv_routes[i]))
        d = {p: (0 if p < 0 else dist[p]) for p in preds}
        best[i] = max(preds, key=lambda p: (d[p], -p)) if preds else -1
        dist[i] = 1 + (d[best[i]] if preds else 0)
    ends = [p for p in main_preds(out_routes) if p >= 0]
    if not ends:
        raise ValueError(f"model: no convolution of {type(model).__name__} reaches its output")
    path, j = [], max(ends, key=lambda p: (dist[p], -p))
    while j >= 0:
        path.append(j)
        j = best[j]
    return gate, set(path)


def _units(model: nn.Module, names: dict, convs: list, on_path: set[int], norms_after: dict, flops: dict) -> list:
    """Main-path layers grouped into ``TracedUnit`` runs (one per unit module), with segments, MACs and params."""
    root = type(model).__name__
    params_of: dict[str, int] = {}
    unit_names = {c.unit for c in convs if c.role == "layer"}
    # Norm layers outside every unit (e.g. "stem.1" beside the unit "stem.0") join the unit of the conv before them.
    extra: dict[str, int] = {}
    counted: set[int] = set()
    for i, mods in norms_after.items():
        if i < 0 or convs[i].unit not in unit_names:
            continue
        for m in mods:
            name = names[m]
            inside = any(name == u or name.startswith(u + ".") for u in unit_names)
            if not inside and id(m) not in counted:
                counted.add(id(m))
                extra[convs[i].unit] = extra.get(convs[i].unit, 0) + sum(p.numel() for p in m.parameters())
    units, segment, prev_area = [], 0, None
    layers = [convs[i] for i in sorted(on_path)]
    k = 0
    while k < len(layers):
        run = [layers[k]]
        while k + len(run) < len(layers) and layers[k + len(run)].unit == run[0].unit:
            run.append(layers[k + len(run)])
        name = run[0].unit
        area = run[-1].out_size[0] * run[-1].out_size[1]
        if prev_area is not None and area < prev_area:
            segment += 1
        prev_area = area
        if name not in params_of:
            params_of[name] = sum(p.numel() for p in model.get_submodule(name).parameters()) + extra.get(name, 0)
        unit_flops = flops.get(f"{root}.{name}", {})
        units.append(TracedUnit(name, run[0].unit_class, tuple(run), segment, int(sum(unit_flops.values()) // 2),
                                int(params_of[name])))
        k += len(run)
    return units


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)
    elif hasattr(obj, "_fields"):  # namedtuple outputs (GoogLeNet, Inception)
        for o in obj:
            yield from _tensors(o)


def _stage_runs(trace: Trace) -> list[list[TracedUnit]]:
    runs: list[list[TracedUnit]] = []
    for u in trace.units:
        prev = runs[-1][-1] if runs else None
        if prev is not None and (prev.unit_class, prev.parent, prev.layers[-1].c_out, prev.segment) == \
                (u.unit_class, u.parent, u.layers[-1].c_out, u.segment):
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


def _run_name(run: list[TracedUnit], trace: Trace) -> str:
    if len(run) == 1:
        return run[0].name
    parent = run[0].parent
    siblings = [u for u in trace.units if u.parent == parent]
    if parent and len(siblings) == len(run):
        return parent
    first, last = run[0].name.rpartition(".")[2], run[-1].name.rpartition(".")[2]
    return f"{parent}.{first}-{last}" if parent else f"{run[0].name}…{run[-1].name}"


def _side(size: tuple[int, int]):
    return size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"


def _kernel(run: list[TracedUnit]):
    k = max((c.kernel for u in run for c in u.layers), key=lambda t: t[0] * t[1])
    return k[0] if k[0] == k[1] else f"{k[0]}x{k[1]}"


def trace_report(trace: Trace, alpha: Sequence[float] | None = None, beta: float = DEFAULT_BETA,
                 budget: Budget | None = None) -> dict:
    """The ``report.genotype_report`` dict (same keys) for a traced module.

    Args:
        trace: from ``trace_module``.
        alpha: per-segment entropy weights; default (1, …, 1, 8).
        beta: depth-penalty weight.
        budget: when given, a check per constraint (``monotone`` reads the stage output widths).

    Returns:
        A JSON-ready dict; ``source`` names the module, ``genotype`` and ``text`` are None, and
        ``main_path`` lists every layer with its width.
    """
    alpha = check_alpha(alpha, trace.num_segments)
    runs = _stage_runs(trace)
    blocks = [r for r in runs if len(r[0].layers) > 1] or runs
    penalty = float(weighted_depth_penalty([len(r) for r in blocks], beta))
    rows, segments, terms, rhos = [], [], [], []
    cum_L, cum_lnw = 0, 0.0
    prev_out = (trace.image_size, trace.image_size)
    for i, run in enumerate(runs):
        for u in run:
            cum_L += len(u.layers)
            cum_lnw += sum(math.log(c.width) for c in u.layers)
        last = run[-1].layers[-1]
        seg = run[-1].segment
        ends = i == len(runs) - 1 or runs[i + 1][0].segment != seg
        name = _run_name(run, trace)
        term = None
        if ends:
            h, w = last.out_size
            term, rho = segment_terms(cum_lnw, cum_L, last.c_out, h * w, alpha[seg])
            terms.append(float(term))
            rhos.append(float(rho))
            segments.append({"index": seg, "ends_at": name, "channels": last.c_out, "side": _side(last.out_size),
                             "layers": cum_L, "entropy_term": term, "rho_prefix": rhos[-1], "alpha": alpha[seg]})
        out0 = run[0].out_size
        rows.append({
            "name": name, "block": run[0].unit_class, "in": run[0].layers[0].c_in, "out": last.c_out, "btn": None,
            "k": _kernel(run), "s": max(1, round(prev_out[0] / out0[0])), "depth": len(run),
            "side": _side(last.out_size), "segment": seg, "entropy_term": term,
            "rho_prefix": float(prefix_rho(cum_lnw, cum_L)),
            "macs": sum(u.macs for u in run), "params": sum(u.params for u in run),
        })
        prev_out = last.out_size
    entropy = float(sum(terms))
    rho = max(rhos)
    unit_params = {u.name: u.params for u in trace.units}
    classifier = {"macs": trace.macs - sum(u.macs for u in trace.units),
                  "params": trace.params - sum(unit_params.values())}
    return {
        "source": trace.source, "convention": "torch",
        "macs": trace.macs, "params": trace.params, "rho": rho, "rho_prefix": rhos,
        "entropy": entropy, "entropy_terms": terms, "depth_penalty": penalty, "objective": entropy - penalty,
        "layers": cum_L, "alpha": list(alpha), "beta": float(beta),
        "segments": segments, "stages": rows, "classifier": classifier,
        "constraints": constraint_checks(trace.macs, trace.params, rho, cum_L,
                                         [r[-1].layers[-1].c_out for r in blocks], budget),
        "genotype": None, "text": None,
        "image_size": trace.image_size,
        "main_path": [{"name": c.name, "c_in": c.c_in, "c_out": c.c_out, "k": list(c.kernel), "s": list(c.stride),
                       "groups": c.groups, "width": c.width, "side": _side(c.out_size)} for c in trace.layers],
        "excluded": {"branch": sum(c.role == "branch" for c in trace.convs), "gate": sum(c.role == "gate" for c in trace.convs)},
    }


def module_report(spec: str, image_size: int = 224, alpha: Sequence[float] | None = None, beta: float = DEFAULT_BETA,
                  budget: Budget | None = None, allow_code: bool = False) -> dict:
    """Load ``torchvision:<name>`` / ``timm:<name>`` / ``package.module:callable``, trace it and report it.

    Args:
        spec: the module spec.
        allow_code: permit ``package.module:callable`` (see ``load_module``).
        image_size: side of the dummy input.
        alpha, beta, budget: as for ``trace_report``.

    Returns:
        The report dict (see ``trace_report``).
    """
    model = load_module(spec, allow_code)
    return trace_report(trace_module(model, image_size, source=spec), alpha, beta, budget)
