"""The frozen app's entry script: PyInstaller needs a file to run, the console script is not one."""

import sys

from cnnstudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
