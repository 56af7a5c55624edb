"""Graphics languages behind one interface.

>>> from img2prog.lang import get_language
>>> csg = get_language("csg2d")
>>> csg.canonical("( Circle 3 8  8 )")
'(Circle 3 8 8)'
"""

from img2prog.lang.base import Constraint, Language, Tokenizer, available_languages, get_language, register
from img2prog.lang.errors import ProgramError, RenderError

__all__ = [
    "Constraint",
    "Language",
    "ProgramError",
    "RenderError",
    "Tokenizer",
    "available_languages",
    "get_language",
    "register",
]
