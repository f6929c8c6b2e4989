"""Run the fuzz targets of :mod:`fuzz.targets` under atheris (libFuzzer), bounded in executions.

Two commands (``python -m fuzz.run --help``):

``one TARGET [libFuzzer flags...]``
    Fuzz one target in this process: coverage instrumentation of ``broker`` (atheris
    ``instrument_imports``), then libFuzzer with the given flags, e.g. ``-runs=100000`` and a
    corpus folder. The first uncaught exception (a broken contract) stops the run with a
    non-zero status and the input saved (``-artifact_prefix``).

``campaign --total N [--work DIR] [--targets a,b] [--timeout S]``
    Fuzz every target in turn, each in its own process, for its share of ``N`` executions
    (``Target.weight``), starting from its seeds, its regression inputs and what earlier
    campaigns left in ``DIR/corpus/<target>``. A crash is recorded (input, exception) and the
    target goes on with the executions left, at most ``--max-crashes`` times. Prints one line
    per target and writes ``DIR/summary.json``: executions, crashes, time.

The processes run at the priority they are started with; on a shared machine start the
campaign under ``nice``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = ROOT / "var" / "fuzz"
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(r"Done (\d+) runs in")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_RAISED = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Broken|Exit): ")


def run_one(name: str, flags: list[str]) -> None:
    """Fuzz target ``name`` in this process with libFuzzer ``flags`` (never returns)."""
    import atheris  # type: ignore[import-untyped]

    from fuzz.targets import TARGETS

    target = TARGETS[name]
    # Corpus folders as absolute paths: a target may change the working folder (settings does).
    flags = [flag if flag.startswith("-") else str(Path(flag).resolve()) for flag in flags]
    with atheris.instrument_imports(include=list(target.instrument)):
        test_one = target.build()
    atheris.Setup([sys.argv[0], *flags], test_one)
    atheris.Fuzz()


@dataclass
class Crash:
    """One crash of a campaign: the saved input and the last lines atheris printed about it."""

    artifact: str | None
    exception: str


@dataclass
class TargetReport:
    """What a campaign did with one target."""

    target: str
    budget: int
    executions: int = 0
    seconds: float = 0.0
    crashes: list[Crash] = field(default_factory=list)


def _exception_lines(stderr: str) -> str:
    """The exception atheris reported (its type and message), without the long traceback."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line:
            raised = [entry for entry in lines[i + 1 : i + 60] if _RAISED.match(entry)]
            return raised[0][:500] if raised else lines[i + 1][:500]
    for keyword in ("timeout", "out-of-memory", "deadly signal"):
        for line in lines:
            if keyword in line.lower():
                return line.strip()[:500]
    return "\n".join(lines[-5:])[:500]


def campaign(total: int, work: Path, names: list[str], timeout: int, max_crashes: int) -> list[TargetReport]:
    """Run every target for its share of ``total`` executions; see the module docstring."""
    from fuzz.targets import TARGETS, write_corpus

    work = work.resolve()  # the subprocesses' paths must not depend on a working folder
    chosen = [TARGETS[n] for n in names]
    weights = sum(t.weight for t in chosen)
    reports: list[TargetReport] = []
    for target in chosen:
        budget = max(1, round(total * target.weight / weights))
        report = TargetReport(target.name, budget)
        corpus = work / "corpus" / target.name
        crashes = work / "crashes"
        crashes.mkdir(parents=True, exist_ok=True)
        write_corpus(target.name, corpus)
        started = time.monotonic()
        while report.executions < budget and len(report.crashes) <= max_crashes:
            left = budget - report.executions
            command = [
                sys.executable,
                "-m",
                "fuzz.run",
                "one",
                target.name,
                f"-runs={left}",
                f"-timeout={timeout}",
                "-rss_limit_mb=3072",
                "-print_final_stats=1",
                f"-artifact_prefix={crashes}/{target.name}-",
                str(corpus),
            ]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            counted = [int(m) for m in _EXECUTED.findall(done.stderr)] or [int(m) for m in _DONE.findall(done.stderr)]
            executed = counted[-1] if counted else 0
            report.executions += executed
            if done.returncode != 0:
                artifact = _ARTIFACT.findall(done.stderr)
                # atheris prints the Python exception on stdout, libFuzzer its report on stderr
                why = _exception_lines(done.stdout + "\n" + done.stderr)
                report.crashes.append(Crash(artifact[-1] if artifact else None, why))
                report.executions += 1  # the crashing input ran too
                if executed == 0 and not artifact:
                    break  # the target does not start: nothing to gain from retrying
            elif executed == 0:
                break
        report.seconds = round(time.monotonic() - started, 1)
        reports.append(report)
        crash_text = "; ".join(c.exception for c in report.crashes) or "none"
        print(
            f"{target.name:15} {report.executions:>10} executions in {report.seconds:>8.1f} s, "
            f"{len(report.crashes)} crash(es): {crash_text}",
            flush=True,
        )
    return reports


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "one":
        if len(args) < 2:
            print("usage: python -m fuzz.run one TARGET [libFuzzer flags...]", file=sys.stderr)
            return 2
        run_one(args[1], args[2:])
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("one", help="fuzz one target in this process: one TARGET [libFuzzer flags...]")
    run = sub.add_parser("campaign", help="fuzz every target for its share of --total executions")
    run.add_argument("--total", type=int, required=True, help="executions over all targets")
    run.add_argument("--work", type=Path, default=DEFAULT_WORK, help="corpus, crashes and summary.json go here")
    run.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target names")
    run.add_argument("--timeout", type=int, default=10, help="seconds one input may take (a slower one is a crash)")
    run.add_argument("--max-crashes", type=int, default=20, help="restarts after crashes, per target")
    options = parser.parse_args(args)
    names = [n for n in options.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    started = time.monotonic()
    reports = campaign(options.total, options.work, names, options.timeout, options.max_crashes)
    summary = {
        "total_executions": sum(r.executions for r in reports),
        "total_crashes": sum(len(r.crashes) for r in reports),
        "seconds": round(time.monotonic() - started, 1),
        "targets": [asdict(r) for r in reports],
    }
    (options.work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"total: {summary['total_executions']} executions, {summary['total_crashes']} crash(es), "
        f"{summary['seconds']} s; details in {options.work / 'summary.json'}"
    )
    return 1 if summary["total_crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
