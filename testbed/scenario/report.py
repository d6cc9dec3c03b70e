"""The run report: one self-contained HTML file (inline CSS and SVG, no network); JUnit XML is in
:mod:`testbed.scenario.junit`."""

from __future__ import annotations

import html
import os
import statistics
import time
from pathlib import Path

import jinja2

from testbed.contract.events import EventName
from testbed.scenario.junit import clean_text, junit_tree, write_junit
from testbed.scenario.results import BoardEvent, Interval, ScenarioResult, Verdict
from testbed.scenario.timeline import CrashEpisode, crash_episodes
from testbed.scenario.verdict import STARVED_SHARE

# ---------------------------------------------------------------- timeline SVG

_MARKS: dict[str, tuple[str, str, str]] = {
    # event: (colour, shape, legend)
    EventName.CRASH: ("#d62728", "circle", "crash"),
    EventName.UPLOAD_OK: ("#2ca02c", "triangle", "dump stored"),
    EventName.UPLOAD_FAIL: ("#ff7f0e", "cross", "upload failed"),
    EventName.DUMP_SKIPPED: ("#7f7f7f", "square", "dump skipped"),
    EventName.APP_RESTART: ("#1f77b4", "diamond", "app restarted"),
    EventName.OS_RESTART: ("#17becf", "diamond", "OS component restarted"),
    EventName.SYNC_OK: ("#9467bd", "tick", "sync"),
    EventName.SYNC_FAIL: ("#9467bd", "cross", "sync failed"),
    EventName.BOOT_READY: ("#bbbbbb", "tick", "boot"),
}
_BANDS = {
    "link-down": ("#ff7f0e", "link down"),
    "paused": ("#8c564b", "paused"),
    "service-fault": ("#d62728", "service fault"),
    "reboot": ("#bbbbbb", "reboot"),
}
_W, _LEFT, _RIGHT, _ROW = 960, 110, 20, 80


def _shape(shape: str, x: float, y: float, colour: str, title: str) -> str:
    t = f"<title>{html.escape(title)}</title>"
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}">{t}</circle>'
    if shape == "triangle":
        return f'<path d="M{x:.1f},{y - 6} l6,10 h-12 z" fill="{colour}">{t}</path>'
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4}" width="8" height="8" fill="{colour}">{t}</rect>'
    if shape == "diamond":
        return f'<path d="M{x:.1f},{y - 6} l6,6 l-6,6 l-6,-6 z" fill="{colour}">{t}</path>'
    if shape == "cross":
        return (f'<path d="M{x - 4:.1f},{y - 4} l8,8 M{x + 4:.1f},{y - 4} l-8,8" stroke="{colour}" '
                f'stroke-width="2.5">{t}</path>')  # fmt: skip
    return f'<line x1="{x:.1f}" y1="{y - 7}" x2="{x:.1f}" y2="{y + 7}" stroke="{colour}" stroke-width="2">{t}</line>'


def _ticks(span: float) -> list[float]:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            break
    out, t = [], 0.0
    while t <= span + 1e-9:
        out.append(t)
        t += step
    return out


def _fmt_event(e: BoardEvent) -> str:
    fields = " ".join(f"{k}={v}" for k, v in e.fields.items())
    return f"t={e.t:.3f}s {e.name} {fields}".strip()


def timeline_svg(result: ScenarioResult) -> str:
    """One inline SVG: a row per board with its events, fault bands and crash latencies."""
    last_step = max((st.end for st in result.steps), default=0.0)
    last_event = max((e.t for b in result.boards for e in b.events), default=0.0)
    span = max(last_step, last_event, 1.0) * 1.03
    plot_w = _W - _LEFT - _RIGHT
    rows = len(result.boards)
    height = 30 + rows * _ROW + 20

    def x(t: float) -> float:
        return _LEFT + max(0.0, min(t, span)) / span * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
           f'viewBox="0 0 {_W} {height}" class="timeline" font-family="sans-serif" font-size="11">']  # fmt: skip
    for t in _ticks(span):
        out.append(f'<line x1="{x(t):.1f}" y1="22" x2="{x(t):.1f}" y2="{height - 18}" stroke="#eee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{height - 5}" text-anchor="middle" fill="#666">{t:g}s</text>')
    for step in result.steps:
        out.append(
            f'<g><title>{html.escape(f"step {step.index + 1}: {step.text}")}</title>'
            f'<line x1="{x(step.start):.1f}" y1="14" x2="{x(step.start):.1f}" y2="{height - 18}" '
            f'stroke="{"#ccc" if step.ok else "#d62728"}" stroke-dasharray="2,3"/>'
            f'<text x="{x(step.start):.1f}" y="12" text-anchor="middle" fill="#888">{step.index + 1}</text></g>'
        )
    for row, board in enumerate(result.boards):
        top = 24 + row * _ROW
        mid = top + 34
        out.append(f'<text x="4" y="{mid + 4}" font-weight="bold">{html.escape(board.name)}</text>')
        out.append(f'<line x1="{_LEFT}" y1="{mid}" x2="{_W - _RIGHT}" y2="{mid}" stroke="#ddd"/>')
        bands: list[Interval] = [i for i in result.intervals if i.board in (None, board.name)]
        for band in bands:
            colour, legend = _BANDS.get(band.kind, ("#999", band.kind))
            end = band.end if band.end is not None else span
            title = html.escape(f"{legend} {band.label} {band.start:.2f}s to {end:.2f}s")
            width = max(2.0, x(end) - x(band.start))
            out.append(
                f'<rect x="{x(band.start):.1f}" y="{mid - 14}" width="{width:.1f}" '
                f'height="28" fill="{colour}" opacity="0.15"><title>{title}</title></rect>'
            )
        for i, ep in enumerate(crash_episodes(board.events)):
            out.extend(_episode_svg(ep, x, mid, stagger=i % 2))
        for event in board.events:
            if event.name in _MARKS:
                colour, shape, _ = _MARKS[event.name]
                out.append(_shape(shape, x(event.t), mid, colour, _fmt_event(event)))
    out.append("</svg>")
    return "".join(out)


def _episode_svg(ep: CrashEpisode, x, mid: float, stagger: int = 0) -> list[str]:
    """Latency bars of one crash: to stored (above, green) and to restart (below, blue); labels alternate rows."""
    parts = []
    up, down = 11 * stagger, 11 * stagger
    if ep.outcome is not None and ep.outcome.name == EventName.UPLOAD_OK:
        ms = ep.outcome.fields.get("ms")
        label = f"{ep.to_outcome * 1000:.0f} ms" if ep.to_outcome is not None else ""
        parts.append(f'<line x1="{x(ep.crash.t):.1f}" y1="{mid - 12}" x2="{x(ep.outcome.t):.1f}" y2="{mid - 12}" '
                     f'stroke="#2ca02c" stroke-width="1.5"><title>crash to stored {label} '
                     f'(upload {ms} ms by the board)</title></line>')  # fmt: skip
        parts.append(f'<text x="{x(ep.crash.t) + 2:.1f}" y="{mid - 15 - up}" fill="#2ca02c">{label}</text>')
    if ep.restart is not None and ep.to_restart is not None:
        label = f"restart {ep.to_restart * 1000:.0f} ms"
        parts.append(f'<line x1="{x(ep.crash.t):.1f}" y1="{mid + 12}" x2="{x(ep.restart.t):.1f}" y2="{mid + 12}" '
                     f'stroke="#1f77b4" stroke-width="1.5"><title>crash to {label}</title></line>')  # fmt: skip
        parts.append(f'<text x="{x(ep.crash.t) + 2:.1f}" y="{mid + 24 + down}" fill="#1f77b4">{label}</text>')
    return parts


def legend_svg() -> str:
    items = [(c, s, label) for c, s, label in _MARKS.values()]
    w = 130
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * 4}" height="{18 * ((len(items) + len(_BANDS) + 3) // 4)}" '
           'font-family="sans-serif" font-size="11">']  # fmt: skip
    for i, (colour, shape, label) in enumerate(items):
        cx, cy = 10 + (i % 4) * w, 10 + (i // 4) * 18
        out.append(_shape(shape, cx, cy, colour, label))
        out.append(f'<text x="{cx + 12}" y="{cy + 4}">{html.escape(label)}</text>')
    for j, (colour, label) in enumerate(_BANDS.values()):
        i = len(items) + j
        cx, cy = 10 + (i % 4) * w, 10 + (i // 4) * 18
        out.append(f'<rect x="{cx - 6}" y="{cy - 6}" width="12" height="12" fill="{colour}" opacity="0.3"/>')
        out.append(f'<text x="{cx + 12}" y="{cy + 4}">{html.escape(label)} (band)</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- HTML

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>testbed report: {{ verdict }} ({{ passed }}/{{ results|length }} scenarios)</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:2em}
.pass{color:#fff;background:#2ca02c}.fail{color:#fff;background:#d62728}.inconclusive{color:#222;background:#f0c419}
.not-evaluated{color:#fff;background:#888}
.badge{padding:.1em .5em;border-radius:3px;font-weight:bold;font-size:.9em}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f8f8f8;border:1px solid #eee;padding:.5em;overflow:auto;max-height:30em;font-size:.8em}
.err{background:#fdecea;border:1px solid #d62728;padding:.5em;white-space:pre-wrap}
details{margin:.4em 0} summary{cursor:pointer} .muted{color:#777}
code{font-size:.9em}
</style></head><body>
<h1>testbed report <span class="badge {{ verdict|lower }}">{{ verdict }}</span></h1>
<p class="muted">{{ generated }} &middot; {{ passed }} of {{ results|length }} scenarios passed &middot;
{% if inconclusive %}{{ inconclusive }} inconclusive (a board waited more than {{ starved_pct }} of an episode for a host CPU: no verdict on the device) &middot;{% endif %}
{{ n_expect_ok }} of {{ n_expect }} expectations held</p>
<table><tr><th>scenario</th><th>verdict</th><th>expectations</th><th>boards</th><th>crashes</th><th>dumps</th>
<th>median crash to stored</th><th>median crash to restart</th><th>duration</th></tr>
{% for r in results %}{% set st = stats[loop.index0] %}<tr><td><a href="#sc-{{ loop.index }}">{{ r.name }}</a></td>
<td><span class="badge {{ r.verdict|lower }}">{{ r.verdict }}</span></td>
<td class="num">{{ r.expectations|selectattr('passed')|list|length }}/{{ r.expectations|length }}</td>
<td class="num">{{ r.boards|length }}</td><td class="num">{{ st.crashes }}</td><td class="num">{{ r.dumps|length }}</td>
<td class="num">{{ st.stored }}</td><td class="num">{{ st.restart }}</td>
<td class="num">{{ '%.1f'|format(r.duration) }} s</td></tr>{% endfor %}
</table>
{% for r in results %}{% set sc = loop.index %}
<h2 id="sc-{{ sc }}">{{ r.name }} <span class="badge {{ r.verdict|lower }}">{{ r.verdict }}</span></h2>
<p class="muted"><code>{{ r.path }}</code> &middot; {{ '%.1f'|format(r.duration) }} s &middot;
{% if r.host_cpu_boards %}host CPU starvation measured on {{ r.host_cpu_boards|join(', ') }}{% else %}host CPU starvation not measured (no board has the host-cpu capability){% endif %}</p>
{% if r.description %}<p>{{ r.description }}</p>{% endif %}
{% if r.error %}<div class="err">{{ r.error }}</div>{% endif %}
<h3>Expectations</h3>
<table><tr><th>verdict</th><th>expectation</th><th>when</th><th>detail</th></tr>
{% for e in r.expectations %}<tr><td><span class="badge {{ e.verdict|lower|replace(' ', '-') }}">{{ {'PASS': 'held', 'FAIL': 'FAILED'}.get(e.verdict, e.verdict) }}</span></td>
<td>{% if e.name and e.name != e.text %}<b>{{ e.name }}</b> {% endif %}<code>{{ e.text }}</code>{% if e.line %} <span class="muted">line {{ e.line }}</span>{% endif %}</td>
<td>{{ 'after step %d'|format(e.step + 1) if e.step is not none else 'at the end' }}</td><td>{{ e.detail }}</td></tr>
{% else %}<tr><td colspan="4" class="muted">not evaluated</td></tr>{% endfor %}
</table>
<h3>Timeline</h3>
{{ timelines[sc - 1]|safe }}
{{ legend|safe }}
<h3>Crashes</h3>
<table><tr><th>board</th><th>t</th><th>app</th><th>signal</th><th>outcome</th><th>crash to outcome</th><th>crash to restart</th><th>waited for a host CPU</th></tr>
{% for board, ep in episodes[sc - 1] %}<tr><td>{{ board }}</td><td class="num">{{ '%.2f'|format(ep.crash.t) }} s</td>
<td>{{ ep.app }}</td><td>{{ ep.crash.fields.get('signal', '') }}</td><td>{{ ep.outcome_name }}</td>
<td class="num">{{ '%.0f ms'|format(ep.to_outcome * 1000) if ep.to_outcome is not none else '-' }}</td>
<td class="num">{{ '%.0f ms'|format(ep.to_restart * 1000) if ep.to_restart is not none else '-' }}</td>
{% set cpu = host_cpu[sc - 1].get((board, '%.3f'|format(ep.crash.t))) %}<td class="num">{% if cpu %}{{ '%.2f s of %.2f s (%.0f%%)'|format(cpu.wait_s, cpu.wall_s, cpu.share * 100) }}{% else %}<span class="muted">not measured</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no crash</td></tr>{% endfor %}
</table>
<h3>Dumps stored at the service</h3>
<table><tr><th>id</th><th>board</th><th>region</th><th class="num">size</th><th>component</th><th>signature</th><th>faulting function</th></tr>
{% for d in r.dumps %}<tr><td><code>{{ d.id[:12] }}</code></td><td>{{ d.board }}</td><td>{{ d.region }}</td>
<td class="num">{{ '{:,}'.format(d.size) }} B</td><td>{{ d.component }}</td><td><code>{{ d.signature[:12] }}</code></td>
<td>{% if d.analysis %}{{ d.analysis.signal_name }} in <code>{{ where(d.analysis) }}</code>{% else %}<span class="muted">{{ d.analysis_error or 'not analysed' }}</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="7" class="muted">no dump stored</td></tr>{% endfor %}
</table>
{% for d in r.dumps if d.analysis %}<details><summary>Crash analysis of dump <code>{{ d.id[:12] }}</code> ({{ d.board }}, {{ d.analysis.executable }}, {{ d.analysis.signal_name }})</summary>
<table><tr><th>signal</th><td>{{ d.analysis.signal }} ({{ d.analysis.signal_name }})</td><th>pid</th><td>{{ d.analysis.pid }}</td></tr>
<tr><th>function</th><td><code>{{ where(d.analysis) }}</code></td><th>caller (LR)</th><td><code>{{ sym(d.analysis.caller) }}</code></td></tr>
<tr><th>PC</th><td><code>{{ '0x%08x'|format(d.analysis.pc) }}</code> (offset <code>{{ '0x%x'|format(d.analysis.pc_offset) }}</code>)</td>
<th>SP / LR</th><td><code>{{ '0x%08x'|format(d.analysis.sp) }}</code> / <code>{{ '0x%08x'|format(d.analysis.lr) if d.analysis.lr is not none else '-' }}</code></td></tr>
<tr><th>build id</th><td colspan="3"><code>{{ d.analysis.build_id or '-' }}</code> {% if d.analysis.symbols_from %}symbols: <code>{{ d.analysis.symbols_from }}</code>{% endif %} {{ d.analysis.notes|join('; ') }}</td></tr>
</table>
{% if d.analysis.stack_scan %}<p>Probable call chain (words on the stack that point into functions; a heuristic, innermost first):
<code>{{ d.analysis.stack_scan|map('sym_fmt')|join(' ← ') }}</code></p>{% endif %}
<pre>{% for name, value in d.analysis.registers.items() %}{{ '%-8s'|format(name) }} {{ '0x%08x'|format(value) }}{{ '\\n' if loop.index % 4 == 0 else '   ' }}{% endfor %}</pre>
</details>{% endfor %}
{% if r.audit %}<h3>Support audit log</h3>
<table><tr>{% for k in r.audit[0].keys() %}<th>{{ k }}</th>{% endfor %}</tr>
{% for row in r.audit %}<tr>{% for v in row.values() %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
<h3>Steps</h3>
<table><tr><th>#</th><th>start</th><th>took</th><th>step</th><th>result</th></tr>
{% for s in r.steps %}<tr><td class="num">{{ s.index + 1 }}</td><td class="num">{{ '%.2f'|format(s.start) }} s</td>
<td class="num">{{ '%.2f'|format(s.end - s.start) }} s</td><td><code>{{ s.text }}</code>{% if s.line %} <span class="muted">line {{ s.line }}</span>{% endif %}</td>
<td>{{ 'ok' if s.ok else s.error }}</td></tr>{% endfor %}
</table>
<h3>Boards</h3>
{% for b in r.boards %}<details><summary><b>{{ b.name }}</b> &middot; group {{ b.group }} &middot; apps {{ b.apps|join(', ') }} &middot;
{{ b.events|length }} events &middot; device <code>{{ b.device_id[:16] }}&hellip;</code></summary>
<h4>Events</h4><pre>{% for e in b.events %}{{ fmt_event(e) }}
{% endfor %}</pre>
<h4>Console</h4><pre>{{ clean(b.console) }}</pre></details>{% endfor %}
{% if r.service_log %}<details><summary>Service log</summary><pre>{{ clean(r.service_log) }}</pre></details>{% endif %}
{% endfor %}
</body></html>
"""


def _where(analysis: dict) -> str:
    fn = analysis.get("function")
    if fn:
        return f"{fn['name']}+{fn['offset']:#x}"
    return f"pc {analysis.get('pc', 0):#x} (no symbols)"


def _sym(symbol: dict | None) -> str:
    return f"{symbol['name']}+{symbol['offset']:#x}" if symbol else "-"


def _stats(result: ScenarioResult) -> dict[str, str]:
    eps = [ep for b in result.boards for ep in crash_episodes(b.events)]
    stored = [ep.to_outcome for ep in eps if ep.outcome is not None and ep.outcome.name == EventName.UPLOAD_OK]
    restart = [ep.to_restart for ep in eps if ep.to_restart is not None]

    def ms(values: list) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms" if values else "-"

    return {"crashes": str(len(eps)), "stored": ms(stored), "restart": ms(restart)}


def render_html(results: list[ScenarioResult]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["sym_fmt"] = _sym
    template = env.from_string(_TEMPLATE)
    passed = sum(1 for r in results if r.passed)
    inconclusive = sum(1 for r in results if r.inconclusive)
    all_expect = [e for r in results for e in r.expectations]
    if not results or passed + inconclusive < len(results):
        verdict = Verdict.FAIL
    else:
        verdict = Verdict.INCONCLUSIVE if inconclusive else Verdict.PASS
    return template.render(
        results=results,
        verdict=str(verdict),
        passed=passed,
        inconclusive=inconclusive,
        starved_pct=f"{STARVED_SHARE:.0%}",
        host_cpu=[{(e.board, f"{e.crash:.3f}"): e.host_cpu for e in r.episodes if e.host_cpu} for r in results],
        n_expect=len(all_expect),
        n_expect_ok=sum(1 for e in all_expect if e.passed),
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        timelines=[timeline_svg(r) for r in results],
        stats=[_stats(r) for r in results],
        episodes=[[(b.name, ep) for b in r.boards for ep in crash_episodes(b.events)] for r in results],
        legend=legend_svg(),
        where=_where,
        sym=_sym,
        fmt_event=_fmt_event,
        clean=clean_text,
    )


def write_html(results: list[ScenarioResult], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(results), encoding="utf-8")
    return path


__all__ = ["clean_text", "junit_tree", "render_html", "timeline_svg", "write_html", "write_junit"]
