"""img2prog: turn a picture into the graphics program that draws it."""

__version__ = "0.1.0"
