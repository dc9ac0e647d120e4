"""The window's pages: Start, Data, Model, Train, Evaluate, Predict and Experiments.

Each page reads and edits the window's :class:`~cnnstudio.gui.session.Session`; pages never talk
to each other.
"""
