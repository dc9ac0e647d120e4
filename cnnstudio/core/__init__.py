"""The headless core: datasets, models, training, evaluation, runs and experiments. Never imports Qt.

Sub-packages by concern, each importing only those below it (README, "Architecture"):
``experiments`` and ``report`` over ``training`` over ``runs`` over ``data`` and ``model`` over
``evaluation`` over ``io`` over ``tf``, and ``errors`` under all of them.
"""
