"""Many runs at once: hyperparameter search, k-fold cross-validation, and running a recorded run again."""
