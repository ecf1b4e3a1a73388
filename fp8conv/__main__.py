"""``python -m fp8conv``: the same command line as the ``fp8conv`` console script."""

from fp8conv.cli import main

if __name__ == "__main__":
    main()
