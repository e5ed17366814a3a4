"""The ``bulkget`` console script: the same command line as the binary."""

import sys

from ._bulkget import main as _main


def main() -> None:
    sys.exit(_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
