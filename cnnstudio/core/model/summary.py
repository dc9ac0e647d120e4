"""The model a spec builds, described: layers, output shapes, trainable and frozen parameters.

What the Model panel shows while a spec is edited: :func:`summarize` builds the model
(TensorFlow, seconds; the window runs it in a worker) with pretrained weights off, since the
architecture is what is shown, not a download, and for a pretrained backbone counts the
parameters per block as the chosen transfer mode trains them.
"""

from __future__ import annotations

import copy

from cnnstudio.core.model import transfer as tl


def _summary_spec(spec, registry):
    """``spec`` with pretrained weights off: the summary needs the architecture, not a download."""
    provider = registry.backbones[spec.backbone]
    params = dict(spec.params)
    for param in provider.params:
        if param.kind == "weights":
            params[param.name] = "none"
    spec = copy.deepcopy(spec)
    spec.params = params
    return spec


def _shape(layer) -> str:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return ""
    outputs = output if isinstance(output, (list, tuple)) else [output]
    return ", ".join("(" + ", ".join("None" if d is None else str(d) for d in o.shape) + ")" for o in outputs)


def _layer_rows(model, depth: int = 0) -> list[dict]:
    rows = []
    for layer in model.layers:
        nested = hasattr(layer, "layers") and layer.layers and layer is not model
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "shape": _shape(layer),
            "params": int(layer.count_params()) if layer.built else 0,
            "trainable": bool(layer.trainable),
            "depth": depth,
            "children": _layer_rows(layer, depth + 1) if nested else [],
        })
    return rows


def summarize(spec, num_classes: int, registry, transfer: tuple | None = None) -> dict:
    """Build ``spec`` (TensorFlow, seconds) and describe it: layers, shapes, parameter counts.

    ``transfer`` is ``(mode, finetune_blocks, finetune_from)`` for a pretrained backbone: the
    model is shown as the mode trains it, with trainable and frozen parameters per block; for
    fine-tuning, each block's state in both phases.
    """
    from cnnstudio.core.model.models import build_model, parameter_counts  # imports TensorFlow

    provider = registry.backbones[spec.backbone]
    mode = transfer[0] if transfer and provider.pretrained else None
    spec = tl.apply_mode(_summary_spec(spec, registry), mode, provider)
    model = build_model(spec, num_classes, registry)
    out = {"name": model.name, "counts": parameter_counts(model), "layers": _layer_rows(model),
           "num_classes": num_classes, "mode": mode}
    if provider.pretrained:
        rows = tl.block_summary(model, provider)
        if mode == "finetune":
            tl.unfreeze_top(model, provider, transfer[1], transfer[2] or None)
            later = {r["block"]: r for r in tl.block_summary(model, provider)}
            out["finetune_counts"] = parameter_counts(model)
            for row in rows:
                after = later.get(row["block"], row)
                if after["state"] != row["state"]:
                    row["state"] = f"{row['state']}, then {after['state']}"
                    row["trainable_after"] = after["trainable"]
        out["blocks"] = rows
    return out
