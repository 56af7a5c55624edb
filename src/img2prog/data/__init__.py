"""img2prog.data."""
