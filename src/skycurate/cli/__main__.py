"""``python -m skycurate.cli``: the same as the ``skycurate`` console script."""

from skycurate.cli import main

if __name__ == "__main__":
    main()
