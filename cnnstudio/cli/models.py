"""``cnnstudio models``: the backbones and presets with their parameters."""

from __future__ import annotations

from cnnstudio.cli.common import plugin_registry
from cnnstudio.cli.terminal import print_json


def _param_dict(p) -> dict:
    d = {"name": p.name, "kind": p.kind, "default": p.default}
    for key in ("minimum", "maximum", "step"):
        if getattr(p, key) is not None:
            d[key] = getattr(p, key)
    if p.choices:
        d["choices"] = list(p.choices)
    if p.help:
        d["help"] = p.help
    return d


def cmd_models(args) -> int:
    registry = plugin_registry()
    backbones = [
        {"id": b.id, "name": b.display_name, "pretrained": b.pretrained, "default_input_size": b.default_input_size,
         "min_input_size": b.min_input_size, "preprocessing": b.preprocessing,
         "origin": registry.origin("backbone", b.id), "params": [_param_dict(p) for p in b.params],
         "description": b.description}
        for b in registry.backbones.values()
    ]
    presets = [
        {"id": p.id, "name": p.display_name, "backbone": p.spec.get("backbone"), "description": p.description,
         "origin": registry.origin("preset", p.id), "spec": p.spec}
        for p in registry.presets.values()
    ]
    if args.json:
        print_json({"backbones": backbones, "presets": presets})
        return 0
    print("Backbones:")
    for b in backbones:
        tag = ", pretrained weights available" if b["pretrained"] else ""
        print(f"  {b['id']:<22} {b['name']} (input {b['default_input_size']} px, min {b['min_input_size']}{tag})")
        for p in b["params"]:
            print(f"      {p['name']} = {p['default']!r}" + (f"  {p.get('help')}" if p.get("help") else ""))
    print("Presets:")
    for p in presets:
        print(f"  {p['id']:<22} {p['description'] or p['name']}")
    return 0
