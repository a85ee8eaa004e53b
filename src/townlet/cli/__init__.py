"""The ``townlet`` command line."""
