"""A self-contained HTML gallery: target | prediction | difference for each image.

The page embeds every picture as a PNG data URI, so it is one file that opens anywhere.
The difference image colours each pixel by what the prediction got wrong:

- black — black in both (true positive); white — white in both;
- red — predicted black where the target is white (false positive);
- blue — target black that the prediction missed (false negative).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FP_COLOUR = (220, 40, 40)
FN_COLOUR = (40, 90, 220)


@dataclass
class GalleryItem:
    name: str
    target: np.ndarray  # (S, S[, 3]) uint8, black on white
    program: str | None  # predicted program (None: no prediction)
    prediction: np.ndarray | None  # its rendering, same size as target (None: unparsable)
    target_program: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # e.g. score, IoU, perfect


def _gray(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[..., 0] if a.ndim == 3 else a


def difference_image(target: np.ndarray, prediction: np.ndarray | None) -> np.ndarray:
    """RGB image of agreement (see module docstring); a missing prediction misses everything."""
    t = _gray(target) == 0
    p = np.zeros_like(t) if prediction is None else _gray(prediction) == 0
    out = np.full(t.shape + (3,), 255, dtype=np.uint8)
    out[t & p] = 0
    out[~t & p] = FP_COLOUR
    out[t & ~p] = FN_COLOUR
    return out


def _data_uri(arr: np.ndarray, display: int) -> str:
    img = Image.fromarray(np.asarray(arr))
    if img.width > display:
        img = img.resize((display, display), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def render_gallery(items: Sequence[GalleryItem], metrics: dict | None = None, title: str = "img2prog gallery",
                   display: int = 160, notes: Sequence[str] = ()) -> str:
    """The page as a string. ``metrics`` (e.g. ``MetricsReport.to_dict()``) is shown on top."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        ("<style>body{font-family:system-ui,sans-serif;margin:1.5em}"
         "table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}"
         "img{image-rendering:pixelated;border:1px solid #999}code{font-size:12px;word-break:break-all}"
         ".bad{color:#b00}.ok{color:#070}</style></head><body>"),
        f"<h1>{esc(title)}</h1>",
    ]
    for note in notes:
        parts.append(f"<p>{esc(note)}</p>")
    if metrics:
        parts.append("<h2>Metrics</h2><table><tr>" + "".join(f"<th>{esc(k)}</th>" for k in metrics) + "</tr><tr>"
                     + "".join(f"<td>{_fmt(v)}</td>" for v in metrics.values()) + "</tr></table>")
    parts.append("<p>Difference: <b>black</b> both black, <span style='color:#dc2828'><b>red</b></span> "
                 "predicted but not in the target, <span style='color:#285adc'><b>blue</b></span> missed.</p>")
    parts.append("<table><tr><th>image</th><th>target</th><th>prediction</th><th>difference</th><th>programs</th></tr>")
    for it in items:
        target = np.asarray(it.target)
        pred = None if it.prediction is None else np.asarray(it.prediction)
        pred_img = pred if pred is not None else np.full_like(target, 255)
        info = " · ".join(f"{esc(k)}={_fmt(v)}" for k, v in it.info.items())
        progs = f"<div>predicted: <code>{esc(it.program) if it.program is not None else '<i>none</i>'}</code></div>"
        if it.target_program:
            progs += f"<div>target: <code>{esc(it.target_program)}</code></div>"
        if pred is None:
            progs += "<div class='bad'>prediction could not be rendered</div>"
        parts.append(
            f"<tr><td>{esc(it.name)}</td>"
            f"<td><img width={display} src='{_data_uri(target, display)}'></td>"
            f"<td><img width={display} src='{_data_uri(pred_img, display)}'></td>"
            f"<td><img width={display} src='{_data_uri(difference_image(target, pred), display)}'></td>"
            f"<td>{progs}<div>{info}</div></td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_gallery(path: str | Path, items: Sequence[GalleryItem], metrics: dict | None = None,
                  title: str = "img2prog gallery", **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_gallery(items, metrics, title, **kwargs), encoding="utf-8")
    return path
