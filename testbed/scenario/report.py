"""The run report: one self-contained HTML file (inline CSS and SVG, no network); JUnit XML is in
:mod:`testbed.scenario.junit`."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from testbed.scenario.junit import clean_text, junit_tree, write_junit
from testbed.scenario.outcomes import FATES, crash_outcomes
from testbed.scenario.report_svg import BANDS, fmt_event, legend_svg, timeline_svg
from testbed.scenario.results import CrashOutcome, ScenarioResult, Verdict
from testbed.scenario.verdict import STARVED_SHARE
from testbed.scenario.when import clocks_text, date, dates_at, duration, is_epoch, jump

# ---------------------------------------------------------------- HTML

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>testbed report: {{ verdict }} ({{ passed }}/{{ results|length }} scenarios)</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:2em}
.pass{color:#fff;background:#2ca02c}.fail{color:#fff;background:#d62728}.inconclusive{color:#222;background:#f0c419}
.not-evaluated{color:#fff;background:#888}
.badge{padding:.1em .5em;border-radius:3px;font-weight:bold;font-size:.9em;white-space:nowrap}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{background:#f8f8f8;border:1px solid #eee;padding:.5em;overflow:auto;max-height:30em;font-size:.8em}
.err{background:#fdecea;border:1px solid #d62728;padding:.5em;white-space:pre-wrap}
details{margin:.4em 0} summary{cursor:pointer} .muted{color:#777}
code{font-size:.9em} .chain{margin:0;padding:0;list-style:none} .chain li{display:inline}
.chain li+li:before{content:" \\2192  ";color:#999} .fate-stored,.fate-stored-from-spool{color:#2ca02c;font-weight:bold}
.fate-lost,.fate-no-outcome{color:#d62728;font-weight:bold} .fate-in-spool,.fate-dropped{color:#ff7f0e;font-weight:bold}
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
<td class="num">{{ dur(r.duration) }}{% if r.jumps %} <span class="muted">(clocks {{ warped(r) }})</span>{% endif %}</td></tr>{% endfor %}
</table>
{% for r in results %}{% set sc = loop.index %}
<h2 id="sc-{{ sc }}">{{ r.name }} <span class="badge {{ r.verdict|lower }}">{{ r.verdict }}</span></h2>
<p class="muted"><code>{{ r.path }}</code> &middot; {% if r.started_wall %}started {{ date(r.started_wall) }} &middot; {% endif %}took {{ dur(r.duration) }}{% if r.jumps %} of host time, while the clocks were warped {{ warped(r) }}{% endif %} &middot;
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
{% if clocks[sc - 1] %}<h3>Clocks and faults</h3>
<p class="muted">Host time runs on the x axis of the timeline; a warp moves the boards' and the service's clocks at once
(a zigzag on the timeline). What each clock read at each change (UTC):</p>
<table><tr><th>t</th><th>what</th><th>boards' clock</th><th>service's clock</th></tr>
{% for c in clocks[sc - 1] %}<tr><td class="num">{{ '%.2f'|format(c.t) }} s</td><td>{{ c.what }}</td><td>{{ c.boards }}</td><td>{{ c.service }}</td></tr>
{% endfor %}</table>{% endif %}
<h3>Crashes and where their dumps went</h3>
<table><tr><th>board</th><th>t</th><th>app</th><th>outcome</th><th>what happened</th><th>crash to stored</th><th>crash to restart</th><th>waited for a host CPU</th></tr>
{% for c in crashes[sc - 1] %}<tr><td>{{ c.board }}</td><td class="num">{{ '%.2f'|format(c.crash) }} s</td><td>{{ c.app }}</td>
<td class="fate-{{ c.fate }}">{{ fates.get(c.fate, c.fate) }}</td>
<td>{{ chain_html(c, sc, dump_ids[sc - 1]) }}</td>
<td class="num">{{ dur(c.to_stored) }}</td><td class="num">{{ dur(c.to_restart) }}</td>
{% set cpu = host_cpu[sc - 1].get((c.board, '%.3f'|format(c.crash))) %}<td class="num">{% if cpu %}{{ '%.2f s of %.2f s (%.0f%%)'|format(cpu.wait_s, cpu.wall_s, cpu.share * 100) }}{% else %}<span class="muted">not measured</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no crash</td></tr>{% endfor %}
</table>
<h3>Dumps stored at the service</h3>
<table><tr><th>id</th><th>stored at (service clock)</th><th>board</th><th>region</th><th class="num">size</th><th>component</th><th>signature</th><th>faulting function</th></tr>
{% for d in r.dumps %}<tr id="sc{{ sc }}-dump-{{ d.id }}"><td><code>{{ d.id[:12] }}</code></td><td>{{ date(d.created) }}</td><td>{{ d.board }}</td><td>{{ d.region }}</td>
<td class="num">{{ '{:,}'.format(d.size) }} B</td><td>{{ d.component }}</td><td><code>{{ d.signature[:12] }}</code></td>
<td>{% if d.analysis %}{{ d.analysis.signal_name }} in <code>{{ where(d.analysis) }}</code>{% else %}<span class="muted">{{ d.analysis_error or 'not analysed' }}</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no dump stored</td></tr>{% endfor %}
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
{% for row in r.audit %}<tr>{% for k, v in row.items() %}<td>{{ date(v) if is_epoch(k, v) else v }}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="muted">Times are the service's clock (warps included), UTC.</p>{% endif %}
<h3>Steps</h3>
<table><tr><th>#</th><th>start</th><th>took</th><th>step</th><th>result</th></tr>
{% for s in r.steps %}<tr><td class="num">{{ s.index + 1 }}</td><td class="num">{{ '%.2f'|format(s.start) }} s</td>
<td class="num">{{ dur(s.end - s.start) }}</td><td><code>{{ s.text }}</code>{% if s.line %} <span class="muted">line {{ s.line }}</span>{% endif %}</td>
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


def outcomes_of(result: ScenarioResult) -> list[CrashOutcome]:
    """The run's crash outcome chains: as the runner recorded them, else made from its events and dumps."""
    return result.crashes or crash_outcomes(result)


def _stats(result: ScenarioResult) -> dict[str, str]:
    crashes = outcomes_of(result)
    stored = [c.to_stored for c in crashes if c.to_stored is not None]  # from the spool too
    restart = [c.to_restart for c in crashes if c.to_restart is not None]

    def median(values: list[float]) -> str:
        return duration(statistics.median(values)) if values else "-"

    return {"crashes": str(len(crashes)), "stored": median(stored), "restart": median(restart)}


def chain_html(c: CrashOutcome, sc: int, dump_ids: set[str]) -> Markup:
    """A crash's chain: each link with its detail and time; the stored dump links to its row."""
    items = []
    for link in c.chain:
        detail = escape(link.detail)
        if link.what == "stored" and c.dump_id and c.dump_id in dump_ids:
            anchor = Markup('<a href="#sc{}-dump-{}">dump <code>{}</code></a>').format(sc, c.dump_id, c.dump_id[:12])
            detail = Markup(detail).replace(escape(f"dump {c.dump_id}"), anchor)
        text = Markup("{}").format(link.what)
        if link.detail:
            text += Markup(' <span class="muted">({})</span>').format(detail)
        if link.t is not None:
            text += f" at {link.t:.2f} s"
        if link.what == "stored" and c.stored_at:
            text += f", in the service's store at {date(c.stored_at)}"
        if link.what == "stored" and c.crash_at:
            text += f" (the board dated its crash {date(c.crash_at)})"
        items.append(Markup("<li>{}</li>").format(text))
    return Markup('<ol class="chain">{}</ol>').format(Markup("").join(items))


_OPEN_CLOSE = {"link-down": ("link down", "link up"), "paused": ("paused", "resumed"),
               "service-fault": ("service fault", "service fault cleared"), "reboot": ("reboot", "rebooted")}  # fmt: skip


def clock_rows(result: ScenarioResult) -> list[dict[str, Any]]:
    """The start, every warp and every fault's start and end, with what the clocks read then."""
    if not result.jumps and not result.intervals:
        return []
    marks: list[tuple[float, str]] = [(0.0, "start")]
    marks += [(j.t, f"clock warp {jump(j.seconds)}") for j in result.jumps]
    for i in result.intervals:
        opened, closed = _OPEN_CLOSE.get(i.kind, (BANDS.get(i.kind, ("", i.kind))[1], f"{i.kind} ends"))
        who = f" ({i.board})" if i.board else ""
        until = "" if i.end is not None else ", until the end"  # the run stopped before it was undone
        marks.append((i.start, f"{opened} {i.label}".strip() + who + until))
        if i.end is not None:
            marks.append((i.end, closed + who))
    names = [b.name for b in result.boards]
    rows = []
    for t, what in sorted(marks, key=lambda m: m[0]):
        dates = dates_at(result, t + 1e-6)  # just after: a warp's row shows the clocks it set
        boards, service = clocks_text(dates, names) if dates else ("-", "-")
        rows.append({"t": t, "what": what, "boards": boards, "service": service})
    return rows


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
        crashes=[outcomes_of(r) for r in results],
        dump_ids=[{d.id for d in r.dumps} for r in results],
        clocks=[clock_rows(r) for r in results],
        fates=FATES,
        chain_html=chain_html,
        legend=legend_svg(),
        where=_where,
        sym=_sym,
        fmt_event=fmt_event,
        clean=clean_text,
        dur=duration,
        warped=lambda r: " ".join(jump(j.seconds) for j in r.jumps),
        date=date,
        is_epoch=is_epoch,
    )


def write_html(results: list[ScenarioResult], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(results), encoding="utf-8")
    return path


__all__ = ["clean_text", "junit_tree", "legend_svg", "render_html", "timeline_svg", "write_html", "write_junit"]
