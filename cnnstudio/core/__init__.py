"""The headless core: datasets, models, training, evaluation and bundles. Never imports Qt."""
