"""The command line with a disk that fills up during training, for the write-failure tests:

    python faultrun.py FOLDER EPOCH [--real] -- ARGS...

FOLDER's disk becomes full at the end of epoch EPOCH (counted from 1), after the epoch is
reported and before its checkpoint is written: the checkpoint of epoch EPOCH - 1 is the last that
fits. ``--real``: FOLDER is a tmpfs, filled by a filler file; else the patched writer of
:mod:`faultdisk` runs out of budget there. A fresh process, so a crash shows as its exit code.
"""

import sys
from pathlib import Path

from faultdisk import SmallDisk, patch_writes

from cnnstudio.cli import main, terminal


def run(argv: list[str]) -> int:
    folder, epoch = Path(argv[0]), int(argv[1])
    rest = argv[2:]
    real = rest[:1] == ["--real"]
    rest = rest[1:] if real else rest
    assert rest[:1] == ["--"], "faultrun.py FOLDER EPOCH [--real] -- ARGS..."
    disk = SmallDisk(folder, real=real)
    if not real:
        patch_writes(disk)
    reported = terminal.TerminalState.on_epoch_end

    def on_epoch_end(self, e):
        reported(self, e)
        if e.epoch + 1 == epoch:
            disk.fill()

    terminal.TerminalState.on_epoch_end = on_epoch_end
    return main(rest[1:])


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
