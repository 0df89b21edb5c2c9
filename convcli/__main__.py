"""``python -m convcli`` works like the ``convcli`` command."""

from convcli.cli import main

if __name__ == "__main__":
    main()
