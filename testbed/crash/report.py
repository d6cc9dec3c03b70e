"""A crash analysis as text a person reads: what crashed, where, and the probable call chain."""

from __future__ import annotations

from testbed.crash.analysis import CrashAnalysis, Symbol


def _sym(s: Symbol | None) -> str:
    return f"{s.name}+{s.offset:#x}" if s else "?"


def format_analysis(a: CrashAnalysis, title: str | None = None) -> str:
    lines = []
    if title:
        lines.append(title)
    lines.append(f"{a.executable or '?'} (pid {a.pid}) killed by {a.signal_name} ({a.signal}), {a.arch}")
    lines.append(f"  at           {a.where()}   pc {a.pc:#x}")
    if a.lr is not None:
        lines.append(f"  called from  {_sym(a.caller) if a.caller else '?'}   lr {a.lr:#x}")
    chain = [_sym(s) for s in a.stack_scan]
    if a.function is not None:
        chain = [_sym(a.function), *([_sym(a.caller)] if a.caller else []), *chain]
        deduped: list[str] = []
        for name in chain:
            if not deduped or deduped[-1].split("+")[0] != name.split("+")[0]:
                deduped.append(name)
        lines.append("  call chain   " + " <- ".join(deduped) + ("  (callers below the first two: stack scan, probable)" if a.stack_scan else ""))
    lines.append(f"  sp {a.sp:#x}, pc offset {a.pc_offset:#x}, build id {a.build_id or '-'}")
    lines.append(f"  symbols      {a.symbols_from or 'none found (give --symbols DIR with the unstripped program)'}")
    regs = "  ".join(f"{k}={v:#x}" for k, v in a.registers.items())
    if regs:
        lines.append(f"  registers    {regs}")
    lines += [f"  note: {n}" for n in a.notes]
    return "\n".join(lines)
