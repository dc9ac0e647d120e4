"""Dialogs: error messages (and the hook that turns any uncaught exception into one) and Help > Plugins."""
