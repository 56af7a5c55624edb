"""img2prog.models."""
