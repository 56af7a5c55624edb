"""img2prog.train."""
