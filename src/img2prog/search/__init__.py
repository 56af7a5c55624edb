"""img2prog.search."""
