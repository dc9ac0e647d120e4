"""The run folder: its layout and writers, the one reader of its records (each checked), finding
and comparing runs, and evaluating a finished run again from what it recorded.
"""
