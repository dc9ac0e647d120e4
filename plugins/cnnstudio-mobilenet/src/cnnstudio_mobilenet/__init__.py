"""MobileNetV2 and EfficientNetB0 backbones for CNN Studio.

The hooks live in :mod:`cnnstudio_mobilenet.plugin`, the module the ``cnnstudio.plugins`` entry
point names; importing this package imports neither TensorFlow nor Qt.
"""

__version__ = "0.1.0"
