"""Datasets: a folder of images scanned into an index, splits and stratified folds, the tf.data input
pipeline, the built-in sample, moving a mislabelled file, and the fingerprint of a split's files.
"""
