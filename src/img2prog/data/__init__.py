"""img2prog.data: datasets of (program, image) pairs — reading, writing, importing images.

The I/O layer is :mod:`img2prog.data.io` (re-exported here). ``datasets`` is imported only
by the functions that build or load datasets, so importing this package stays cheap.
"""

from img2prog.data.io import (
    DEFAULT_THRESHOLD,
    IMAGE_SIZE,
    DataError,
    export_jsonl,
    import_image_folder,
    import_jsonl,
    load_dataset_dir,
    load_programs,
    load_targets,
    normalize_image,
    programs_to_dataset,
    read_jsonl,
    resolve_targets,
    save_dataset,
    write_jsonl,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "IMAGE_SIZE",
    "DataError",
    "export_jsonl",
    "import_image_folder",
    "import_jsonl",
    "load_dataset_dir",
    "load_programs",
    "load_targets",
    "normalize_image",
    "programs_to_dataset",
    "read_jsonl",
    "resolve_targets",
    "save_dataset",
    "write_jsonl",
]
