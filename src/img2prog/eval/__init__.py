"""img2prog.eval."""
