"""leaderboard.html: the leaderboard as one self-contained page (inline CSS and JS, no
network), beside leaderboard.md. A table sorted by the board's ranking metric; a click on any
column header sorts by it (again: the other way). Each row links to its run's report.html
where one sits beside the row's report.json, by a path relative to the leaderboard folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.html import _asset, _e
from harness.report.markdown import fmt_value, metric_label

SORT_JS = """(function(){
const t=document.getElementById('board');const heads=t.tHead.rows[0].cells;let col=-1,dir=1;
function val(tr,i){const c=tr.cells[i];const v=c.dataset.value;
 return v===undefined?c.textContent:(v===''?null:+v);}
Array.from(heads).forEach((h,i)=>h.addEventListener('click',()=>{
 dir=col===i?-dir:(h.dataset.numeric?-1:1);col=i;const rows=Array.from(t.tBodies[0].rows);
 rows.sort((a,b)=>{const x=val(a,i),y=val(b,i);if(x===null)return 1;if(y===null)return -1;
  return (typeof x==='number'?x-y:String(x).localeCompare(String(y)))*dir;});
 rows.forEach(r=>t.tBodies[0].appendChild(r));
 Array.from(heads).forEach(o=>o.removeAttribute('aria-sort'));
 h.setAttribute('aria-sort',dir>0?'ascending':'descending');}));
performance.mark('harness-ready');document.body.dataset.ready='1';})();"""


def _link(source: str, out: Path) -> str | None:
    """The run's report.html relative to the leaderboard folder, where it exists."""
    page = Path(source).parent / "report.html"
    if not page.is_file():
        return None
    return Path(os.path.relpath(page.resolve(), out.resolve())).as_posix()


def _num(value: Any) -> str:
    return "" if value is None else repr(float(value))


def render_leaderboard_html(board: Mapping[str, Any], out: Path) -> str:
    """leaderboard.html: a self-contained sortable table, each row linked to its run's page."""
    cols = board["columns"]
    head = ['<th data-numeric="1">#</th><th>model</th><th>adapter</th>']
    head += [f'<th data-numeric="1" data-key="{_e(c["task"])}.{_e(c["metric"])}">'
             f'{_e(c["task"])} {_e(metric_label(c["metric"]))}</th>' for c in cols]
    head += [f'<th data-numeric="1">Δ {_e(k)}</th>' for k in board["forgetting_columns"]]
    rows = []
    for r in board["rows"]:
        link = _link(r["source"], out)
        name = f"{r['base']} ({r['label']})"
        model = (f'<a href="{_e(link)}">{_e(name)}</a>' if link else _e(name))
        cells = [f'<td data-value="{r["rank"]}">{r["rank"]}</td><td>{model}</td>'
                 f'<td>{_e(r["adapter"])}</td>']
        for c in cols:
            v = r["scores"].get(c["task"], {}).get(c["metric"])
            value = None if v is None else v["value"]
            text = "–" if value is None else fmt_value(c["metric"], value)
            if v and v.get("ci95"):
                lo, hi = v["ci95"]
                text += f" [{fmt_value(c['metric'], lo)}, {fmt_value(c['metric'], hi)}]"
            cells.append(f'<td data-key="{_e(c["task"])}.{_e(c["metric"])}" '
                         f'data-value="{_num(value)}">{_e(text)}</td>')
        for k in board["forgetting_columns"]:
            d = r["forgetting"].get(k)
            cells.append(f'<td data-value="{_num(d)}">'
                         f'{"–" if d is None else _e(f"{100 * d:+.2f} pp")}</td>')
        rows.append(f'<tr data-rank="{r["rank"]}">{"".join(cells)}</tr>')
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>harness leaderboard</title><style>{_asset('page.css')}"
            f"th{{cursor:pointer}}th[aria-sort=ascending]::after{{content:' ▲'}}"
            f"th[aria-sort=descending]::after{{content:' ▼'}}</style></head><body><main>"
            f"<h1>harness leaderboard</h1><p>Ranked by {_e(board['sort'])}; click a column to "
            f"sort by it. Values (%) are ×100; run reports show their 95% CI; comparison rows "
            f"show the adapter's score and the forgetting Δ on general tasks.</p>"
            f"<table id=\"board\"><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></main>"
            f"<script>{SORT_JS}</script></body></html>")
