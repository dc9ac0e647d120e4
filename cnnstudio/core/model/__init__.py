"""The model: the parameter schema and the spec, the Keras classifier a spec builds, pretrained
weights, transfer learning and bottleneck features, the model bundle, and the summary of a spec.
"""
