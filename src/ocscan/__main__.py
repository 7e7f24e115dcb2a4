"""``python -m ocscan``: the same as the ``ocscan`` command."""

from ocscan.cli import main

main()
