"""Training one run: its hyper-parameters, the events it reports, the Keras callbacks and the trainer."""
