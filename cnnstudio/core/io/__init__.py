"""Files in and out for the rest of the core: atomic writes, the studio's own folders, the one image
loader with its TensorFlow decoders, and digests of files' bytes.
"""
