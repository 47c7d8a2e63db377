"""`python -m hfbatch`."""

from hfbatch.cli import main

main()
