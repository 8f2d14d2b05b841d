"""``report.html``: the report as one self-contained page (no file beside it, no network).

The conventions and the commands first; then the summary by criterion; then every result row
(detector x OOD set) in one table sortable by any column and filterable by library, OOD
group, OOD set and detector name; the timing table; the plots embedded as PNG data.

Sorting and filtering are plain JavaScript in the page. The page state can be given in the
address (``report.html#sort=auroc:desc&library=openood&group=near``) and is kept there as the
reader changes it, so a view can be linked; ``#click=auroc,auroc`` clicks headers on load (a
headless browser's way to sort as a reader does).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import CONVENTION
from benchmark.results import Collection

# the result table's columns: (key, header, format)
COLUMNS = [
    ("library", "library", "text"), ("label", "detector", "text"),
    ("ood_dataset", "OOD set", "text"), ("ood_group", "group", "text"),
    ("auroc", "AUROC", "metric"), ("auroc_ci", "AUROC 95 % CI", "ci"),
    ("fpr95tpr", "FPR@95TPR", "metric"), ("aupr_in", "AUPR-In", "metric"),
    ("aupr_out", "AUPR-Out", "metric"), ("fit_seconds", "fit s", "seconds"),
    ("score_seconds", "score s", "seconds"), ("status", "status", "text"),
]

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;
color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.convention{background:#eef5ff;border-left:4px solid #4a7fd0;padding:.5em .8em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th.sortable{cursor:pointer;background:#f3f3f3;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{color:#a33}.filters label{margin-right:1em}.count{color:#666}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""

SCRIPT = """
(function(){
const table=document.getElementById('results'), body=table.tBodies[0];
const rows=Array.from(body.rows), heads=Array.from(table.tHead.rows[0].cells);
const filters={library:'',group:'',ood:'',detector:''};
let sort={key:'',dir:''};
function value(row,key){const c=row.querySelector('td[data-key="'+key+'"]');
  const v=c.getAttribute('data-v'); const n=parseFloat(v);
  return (v!==''&&!isNaN(n))?n:v;}
function apply(){
  if(sort.key){const d=sort.dir==='desc'?-1:1;
    const sorted=rows.slice().sort((a,b)=>{const x=value(a,sort.key),y=value(b,sort.key);
      if(x===''&&y!=='')return 1; if(y===''&&x!=='')return -1;
      return (x<y?-1:x>y?1:0)*d;});
    sorted.forEach(r=>body.appendChild(r));}
  heads.forEach(h=>h.setAttribute('aria-sort',h.dataset.key===sort.key?
    (sort.dir==='desc'?'descending':'ascending'):'none'));
  let shown=0;
  rows.forEach(r=>{const ok=(!filters.library||r.dataset.library===filters.library)&&
    (!filters.group||r.dataset.group===filters.group)&&(!filters.ood||r.dataset.ood===filters.ood)&&
    (!filters.detector||r.dataset.detector.toLowerCase().includes(filters.detector.toLowerCase()));
    r.hidden=!ok; if(ok)shown++;});
  document.getElementById('shown').textContent=shown+' of '+rows.length+' rows';
  const parts=[]; if(sort.key)parts.push('sort='+sort.key+':'+sort.dir);
  for(const k in filters){if(filters[k])parts.push(k+'='+encodeURIComponent(filters[k]));}
  history.replaceState(null,'',parts.length?'#'+parts.join('&'):location.pathname);}
heads.forEach(h=>h.addEventListener('click',()=>{
  const k=h.dataset.key;
  sort={key:k,dir:(sort.key===k&&sort.dir==='asc')?'desc':'asc'}; apply();}));
for(const k in filters){const el=document.getElementById('filter-'+k);
  el.addEventListener('input',()=>{filters[k]=el.value; apply();});}
const asked=location.hash.replace(/^#/,'').split('&');  // read before apply() rewrites it
for(const part of asked){
  const [k,v]=part.split('='); if(!v)continue;
  if(k==='sort'){const [key,dir]=decodeURIComponent(v).split(':'); sort={key:key,dir:dir||'asc'};}
  else if(k in filters){filters[k]=decodeURIComponent(v);
    document.getElementById('filter-'+k).value=filters[k];}}
apply();
// click=<key>[,<key>...]: click those headers, as a reader would (a headless browser's way in)
for(const part of asked){
  const [k,v]=part.split('='); if(k!=='click'||!v)continue;
  for(const key of decodeURIComponent(v).split(',')){
    const h=heads.find(x=>x.dataset.key===key); if(h)h.click();}}
})();
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _cell(key: str, kind: str, row: pd.Series) -> str:
    """One ``<td>`` with its sort value in ``data-v`` and its text as the report writes it."""
    if kind == "ci":
        lo, hi = _number(row.get("auroc_lo")), _number(row.get("auroc_hi"))
        text = f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        sort_v = "" if lo is None or hi is None else f"{hi - lo:.6f}"  # sorts by width
        return f'<td data-key="{key}" data-v="{sort_v}" class="num">{text}</td>'
    if kind in ("metric", "seconds"):
        v = _number(row.get(key))
        text = "" if v is None else (f"{v:.4f}" if kind == "metric" else f"{v:.3f}")
        return (f'<td data-key="{key}" data-v="{"" if v is None else repr(v)}" '
                f'class="num">{text}</td>')
    raw = row.get(key)
    text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw)
    return f'<td data-key="{key}" data-v="{_esc(text)}">{_esc(text)}</td>'


def _options(values: Sequence[str]) -> str:
    return "".join(f'<option value="{_esc(v)}">{_esc(v)}</option>' for v in values)


def results_table(rows: pd.DataFrame) -> str:
    """Every (detector, OOD set) row with the filters above it."""
    libraries = sorted(rows["library"].astype(str).unique())
    groups = list(dict.fromkeys(rows["ood_group"].astype(str)))
    oods = list(dict.fromkeys(rows["ood_dataset"].astype(str)))
    filters = (
        '<p class="filters">'
        f'<label>library <select id="filter-library"><option value="">all</option>'
        f'{_options(libraries)}</select></label>'
        f'<label>OOD group <select id="filter-group"><option value="">all</option>'
        f'{_options(groups)}</select></label>'
        f'<label>OOD set <select id="filter-ood"><option value="">all</option>'
        f'{_options(oods)}</select></label>'
        '<label>detector <input id="filter-detector" type="search" placeholder="name contains">'
        '</label><span id="shown" class="count"></span></p>')
    head = "".join(f'<th class="sortable" data-key="{k}" aria-sort="none">{_esc(h)}</th>'
                   for k, h, _ in COLUMNS)
    body = []
    for _, r in rows.iterrows():
        cls = ' class="failed"' if str(r.get("status")) != "ok" else ""
        attrs = (f' data-library="{_esc(r["library"])}" data-group="{_esc(r["ood_group"])}" '
                 f'data-ood="{_esc(r["ood_dataset"])}" data-detector="{_esc(r["label"])}"')
        body.append(f"<tr{cls}{attrs}>" + "".join(_cell(k, kind, r) for k, _, kind in COLUMNS)
                    + "</tr>")
    return (filters + f'<table id="results"><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(body) + "</tbody></table>")


def markdown_table_html(text: str) -> str:
    """A Markdown pipe table (as :func:`benchmark.render.markdown_table` writes it) as HTML."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return f"<pre>{_esc(text)}</pre>"

    def cells(line: str) -> list[str]:
        return [c.strip().replace("**", "") for c in line.strip("|").split(" | ")]

    head = "".join(f"<th>{_esc(c)}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells(line)) + "</tr>"
                   for line in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{_esc(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def write_html(coll: Collection, out: Path, title: str, commands: list[str], generated: str,
               status: list[str], summary_md: str, timing_md: str, plots: list[Path]) -> Path:
    """Write ``out/report.html`` (module docstring); returns its path."""
    bars = [p for p in plots if p.name.endswith("auroc_bar.png")]
    rocs = [p for p in plots if "roc_" in p.name and p not in bars]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="convention">{_esc(CONVENTION)}</p>',
        "<h2>Commands</h2>", "<pre>" + _esc("\n".join(commands)) + "</pre>",
        f"<p>{_esc(generated)}</p>",
        *[f"<p><strong>{_esc(line.strip('*- '))}</strong></p>" for line in status if line],
        "<h2>Summary by criterion</h2>", markdown_table_html(summary_md),
        "<h2>Results: every detector on every OOD set</h2>",
        "<p>Click a header to sort (again: the other way). CI: the run's stratified bootstrap "
        "interval (sorts by its width). Failed rows in red, with the error in report.md.</p>",
        results_table(coll.rows),
        "<h2>Timing</h2>", markdown_table_html(timing_md),
        "<h2>Plots</h2>", *[_image(p) for p in bars + rocs],
        f"<script>{SCRIPT}</script></body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
