"""Presets that reproduce the seed reports' networks, so a report's result can be rerun in a click."""

from __future__ import annotations

from cnnstudio.plugins import Preset


def _vgg_blocks(filters, dropout: float = 0.0) -> list[dict]:
    """Seed-report blocks: two 3x3 same-padded ReLU convolutions, 2x2 max pooling, optional dropout."""
    return [
        {"type": "conv", "filters": f, "convs": 2, "kernel": 3, "batch_norm": False,
         "pooling": "max", "dropout": dropout}
        for f in filters
    ]


def _scratch(blocks, dense, dense_dropout=0.0, augmentation=None) -> dict:
    return {
        "backbone": "scratch",
        "params": {"blocks": blocks},
        "head": {"pooling": "flatten", "dense": dense, "dropout": dense_dropout},
        "augmentation": augmentation or {},
        "input_size": 64,
    }


_SEED_AUGMENTATION = {"flip": "horizontal", "rotation": 0.05, "zoom": 0.05}

PRESETS = (
    Preset(
        "seed-model-1", "Seed model 1: two VGG blocks",
        _scratch(_vgg_blocks([32, 64]), [128]),
        "Reproduces the seed reports' first scratch model: VGG-like blocks of 32 and 64 filters "
        "(two 3x3 convolutions + max pooling each), flatten, dense 128, softmax.",
    ),
    Preset(
        "seed-model-2", "Seed model 2: three VGG blocks",
        _scratch(_vgg_blocks([32, 64, 128]), [128]),
        "Reproduces the seed reports' second scratch model: VGG-like blocks of 32, 64 and 128 "
        "filters, flatten, dense 128, softmax.",
    ),
    Preset(
        "seed-model-3", "Seed model 3: four VGG blocks",
        _scratch(_vgg_blocks([32, 64, 128, 256]), [128]),
        "Reproduces the seed reports' third scratch model: VGG-like blocks of 32, 64, 128 and "
        "256 filters, flatten, dense 128, softmax.",
    ),
    Preset(
        "seed-model-4", "Seed model 4: four VGG blocks, dropout, augmentation",
        _scratch(_vgg_blocks([32, 64, 128, 256], dropout=0.1), [128], 0.25, _SEED_AUGMENTATION),
        "Reproduces the seed reports' regularised model: model 3 with dropout 0.1 after each "
        "block and 0.25 after the dense layer, horizontal flips, rotation 0.05 and zoom 0.05.",
    ),
    Preset(
        "seed-model-5", "Seed model 5: tuned VGG blocks",
        _scratch(
            _vgg_blocks([32, 128, 256, 256], dropout=0.12), [512], 0.35,
            {"flip": "horizontal", "rotation": 0.03, "zoom": 0.17},
        ),
        "Reproduces the seed reports' tuned model (the hyperparameter search's best): blocks of "
        "32, 128, 256 and 256 filters with dropout 0.12, dense 512 with dropout 0.35, horizontal "
        "flips, rotation 0.03 and zoom 0.17.",
    ),
    Preset(
        "seed-model-6", "Seed model 6: VGG16 feature extraction",
        {
            "backbone": "vgg16",
            "params": {"weights": "imagenet", "trainable": False},
            "head": {"pooling": "flatten", "dense": [128], "dropout": 0.25},
            "augmentation": dict(_SEED_AUGMENTATION),
            "input_size": 224,
        },
        "Reproduces the seed reports' transfer-learning model: frozen VGG16 with ImageNet "
        "weights, flatten, dense 128 with dropout 0.25, horizontal flips, rotation 0.05 and zoom 0.05.",
    ),
    Preset(
        "keras-small-convnet", "Small convnet",
        _scratch(
            [{"type": "conv", "filters": f, "convs": 1, "kernel": 3, "batch_norm": False,
              "pooling": "max", "dropout": 0.0} for f in (32, 64, 128)],
            [],
        ),
        "Reproduces the seed reports' small Keras-style baseline convnet: one 3x3 ReLU "
        "convolution each of 32, 64 and 128 filters with max pooling, flattened straight "
        "into the softmax.",
    ),
)
