"""The run folder: its layout and records, finding and comparing runs, and evaluating a finished run
again from what it recorded.
"""
