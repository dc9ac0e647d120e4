"""Datasets: a folder of images scanned into an index, splits and stratified folds, the tf.data input
pipeline, the built-in sample, moving a mislabelled file, and the fingerprint of a split's files.
"""

# How the training pipeline keeps decoded images (see cnnstudio.core.data.pipeline): by their
# size (auto), in memory, on disk, or not at all. Here so settings can check it without the pipeline.
CACHE_MODES = ("auto", "memory", "disk", "none")
