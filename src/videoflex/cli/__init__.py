"""The ``videoflex`` command line: one module per command, registered in :mod:`videoflex.cli.main`."""
