"""CNN Studio: train image classifiers from a folder of images, in a window or from the command line."""

__version__ = "0.1.0"
