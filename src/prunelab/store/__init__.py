"""Content-addressed run directories, atomic writes and locks."""
