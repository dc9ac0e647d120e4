"""Numbers from predictions: classification metrics, calibration (temperature scaling) and Grad-CAM.

Labels, probabilities and a Keras model in, plain data out; nothing here imports a spec, a dataset
or a run folder (a finished run is evaluated again by :mod:`cnnstudio.core.runs.evaluate`).
"""
