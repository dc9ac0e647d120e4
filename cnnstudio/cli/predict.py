"""``cnnstudio predict``: a bundle's top classes for images (with Grad-CAM), or what ImageNet sees."""

from __future__ import annotations

import sys

from cnnstudio.cli.common import CliError, plugin_registry
from cnnstudio.cli.terminal import TerminalTask, print_json, printable


class PredictState(TerminalTask):
    """The terminal state of 'predict --imagenet': its status lines begin with a capital."""

    def on_status(self, message):
        super().on_status(message[:1].upper() + message[1:])


def cmd_predict(args) -> int:
    from cnnstudio.core.io.images import expand_paths
    from cnnstudio.core.model.bundle import Bundle

    if args.imagenet:
        if args.gradcam is not None or args.gradcam_layer is not None:
            args.predict_parser.error("--gradcam goes with a model bundle, not with --imagenet")
        return cmd_predict_imagenet(args)
    if not args.images:
        args.predict_parser.error("the following arguments are required: IMAGE_OR_DIR")
    if args.gradcam_layer is not None and args.gradcam is None:
        args.predict_parser.error("--gradcam-layer goes with --gradcam OUT_DIR")
    extra = [o for o, v in (("--model", args.model), ("--weights", args.weights), ("--image-size", args.image_size))
             if v is not None]
    if extra:
        args.predict_parser.error(f"{', '.join(extra)} only go with --imagenet (a bundle holds its model)")
    files = expand_paths(args.images)
    if not files:
        raise CliError("no image files given")
    bundle = Bundle(args.bundle)
    results = bundle.predict_paths(files, top_k=args.top_k if args.top_k is not None else 3)
    overlays = {}
    if args.gradcam is not None:
        from cnnstudio.core.evaluation.gradcam import GradCam, gradcam_paths

        cam = GradCam(bundle.model, args.gradcam_layer)  # an unknown layer fails before anything is written
        written = gradcam_paths(bundle, [r.path for r in results if not r.error], args.gradcam, cam=cam)
        overlays = {w.path: w.out for w in written}
        done = sum(1 for w in written if w.out)
        print(f"Grad-CAM overlays (layer {cam.layer}) of {done} images in {args.gradcam}", file=sys.stderr)
    if args.json:
        print_json([
            {"path": r.path, "top": [{"class": c, "probability": p} for c, p in r.top] if r.top else None,
             "error": r.error, **({"gradcam": overlays.get(r.path)} if args.gradcam is not None else {})}
            for r in results
        ])
    else:
        for r in results:  # file and class names may hold newlines or terminal escapes
            if r.error:
                print(f"{printable(r.path)}: error: {printable(r.error)}")
            else:
                print(f"{printable(r.path)}: " + ", ".join(f"{printable(c)} {p * 100:.2f}%" for c, p in r.top))
    return 1 if all(r.error for r in results) else 0


def cmd_predict_imagenet(args) -> int:
    """``predict --imagenet``: the top ImageNet classes of each image, by a backbone's whole classifier."""
    from cnnstudio.builtins.imagenet import DEFAULT_MODEL, TOP_K, ImageNetClassifier
    from cnnstudio.core.io.images import expand_paths

    files = expand_paths([args.bundle, *args.images])  # with --imagenet every positional is an image
    if not files:
        raise CliError("no image files given")
    k = args.top_k if args.top_k is not None else TOP_K
    if k < 1:
        raise CliError("--top-k must be at least 1")
    state = PredictState(quiet=args.json)  # the download's bar and lines (none when the file is cached)
    try:
        classifier = ImageNetClassifier(args.model or DEFAULT_MODEL, args.weights or "imagenet",
                                        registry=plugin_registry(), state=state, input_size=args.image_size)
    finally:
        state.close()
    print(f"{classifier.label}, {classifier.input_size} px", file=sys.stderr)
    results = classifier.predict_paths(files, k=k)
    if args.json:
        print_json([
            {"path": r.path, "model": classifier.provider.id, "weights": classifier.weights_label,
             "pretrained": classifier.pretrained,
             "top": [{"class": n, "synset": s, "probability": p} for n, s, p in r.top] if r.top else None,
             "error": r.error}
            for r in results
        ])
    else:
        note = "" if classifier.pretrained else " (random weights, not pretrained)"
        for r in results:
            if r.error:
                print(f"{printable(r.path)}: error: {printable(r.error)}")
            else:
                print(f"{printable(r.path)}: " + ", ".join(f"{n} {p * 100:.2f}%" for n, _, p in r.top) + note)
    return 1 if all(r.error for r in results) else 0
