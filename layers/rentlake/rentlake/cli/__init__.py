"""The ``rentlake`` command: runs the functions' handlers on the embedded local lake or a real bucket."""
