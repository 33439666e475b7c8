"""Run the benchmarks and print one table: GridBot against its baselines and targets.

    python bench/run.py [NAME ...] [--quick | --scale F] [--with NAME="ARGS"] [--check]

NAME is any of roundtrip, provision, broadcast, resume, encryption (the default: these, in
that order), report, ratelimits. Each starts its own throw-away Synapse and prints its own
detailed table. roundtrip, provision, broadcast and resume run in this process and add their
rows to the summary printed at the end: GridBot's median (and p90 where there are enough
samples), its baseline's, the ratio, the target the README states, pass or FAIL. GridBot and
its baseline are measured in alternating rounds (bench/interleave.py), so the ratios hold on a
shared machine where the raw times do not.

The others run as their own process (``python bench/NAME.py``), and their summary row is the
verdict of their exit code: encryption (GridBot in encrypted vs plain rooms; --scale passed
on; --check decides), report (bench/report.py: reports on a generated year, absolute targets,
PostgreSQL for the province; only when named; --check decides) and ratelimits
(bench/ratelimits.py: GridBot exempt from rate limits vs held to Synapse's defaults; only
when named; no verdict).

--quick runs everything at a tenth of its size (minutes, not the better part of an hour);
--scale F at any other fraction; --with passes a bench its own options, after the scaled ones
(e.g. --with resume="--rooms 500 --keep /dev/shm/resume-500"). --check exits 1 when a target
is missed or a bench fails. Benchmarks are not tests: CI does not run them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.interleave import Result, Stats, failed, print_summary  # noqa: E402

BENCHES = ("roundtrip", "provision", "broadcast", "resume")


@dataclass(frozen=True)
class External:
    """A bench run as its own process, ``python bench/NAME.py``."""

    verdict: list[str] | None  # arguments that make its exit code a verdict (None: it has none)
    scales: bool  # takes --scale F
    default: bool  # runs without being named


EXTERNAL = {
    "encryption": External(["--check"], scales=True, default=True),
    "report": External(["--check"], scales=False, default=False),
    "ratelimits": External(None, scales=False, default=False),
    "province": External(["--check"], scales=False, default=False),
}
DEFAULT = (*BENCHES, *(name for name, e in EXTERNAL.items() if e.default))
QUICK_SCALE = 0.1


def run_external(name: str, extra: str, scale: float) -> Result:
    """``python bench/NAME.py`` as a child process; its output passes through."""
    bench = EXTERNAL[name]
    argv = [sys.executable, str(REPO / "bench" / f"{name}.py")]
    if bench.scales and scale != 1:
        argv += ["--scale", f"{scale:g}"]
    argv += [*shlex.split(extra), *(bench.verdict or [])]
    verdict_args = bench.verdict
    code = subprocess.run(argv, cwd=REPO, check=False).returncode
    if verdict_args is None:
        verdict, note = (None if code == 0 else False), f"exit code {code}; its own table above"
    else:
        verdict = code == 0
        note = f"exit code {code} ({' '.join(verdict_args)}); its own table above"
    return Result(name, f"bench/{name}.py", "", Stats(), verdict=verdict, note=note)


def bench_args(module: ModuleType, scale: float, extra: str) -> argparse.Namespace:
    argv = module.scaled(scale) if scale != 1 else []
    return module.parse([*argv, *shlex.split(extra)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benches to run (default: {', '.join(DEFAULT)}); also "
        + ", ".join(n for n in EXTERNAL if n not in DEFAULT),
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help=f"every bench at {QUICK_SCALE:g} of its size"
    )
    size.add_argument("--scale", type=float, default=1.0, help="every bench at this fraction")
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        metavar='NAME="ARGS"',
        help='options for one bench, e.g. resume="--rooms 500" (repeatable)',
    )
    parser.add_argument("--check", action="store_true", help="exit 1 on a missed target")
    args = parser.parse_args(argv)
    names = args.names or list(DEFAULT)
    known = (*BENCHES, *EXTERNAL)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(known)}")
    extra: dict[str, str] = {}
    for item in args.extra:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            parser.error(f'--with {item!r}: expected NAME="ARGS" with NAME in {known}')
        extra[name] = f"{extra.get(name, '')} {value}"
    scale = QUICK_SCALE if args.quick else args.scale
    if scale <= 0:
        parser.error("--scale must be above 0")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    results: list[Result] = []
    broken: list[str] = []
    started = time.monotonic()
    for name in names:
        if name in EXTERNAL:
            print(f"\n=== {name} (bench/{name}.py {extra.get(name, '').strip()})", flush=True)
            t0 = time.monotonic()
            results.append(run_external(name, extra.get(name, ""), scale))
            print(f"=== {name}: {time.monotonic() - t0:.0f} s", flush=True)
            continue
        module = importlib.import_module(f"bench.{name}")
        bench = bench_args(module, scale, extra.get(name, ""))
        shown = " ".join(
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(bench).items()
            if v not in (None, False) and k != "check"
        )
        print(f"\n=== {name} ({shown})", flush=True)
        t0 = time.monotonic()
        try:
            results.extend(asyncio.run(module.measure(bench)))
        except Exception:
            traceback.print_exc()
            broken.append(name)
        print(f"=== {name}: {time.monotonic() - t0:.0f} s", flush=True)

    size_note = f", scale {scale:g}" if scale != 1 else ""
    print_summary(
        results,
        f"GridBot vs baselines ({len(names)} benches{size_note}, "
        f"{time.monotonic() - started:.0f} s in all; median / p90, ratio = GridBot / baseline)",
    )
    if broken:
        print(f"\nfailed to run: {', '.join(broken)}")
    missed = failed(results)
    if missed:
        print(f"\ntargets missed: {', '.join(f'{r.bench} / {r.measure}' for r in missed)}")
    return 1 if args.check and (missed or broken) else 0


if __name__ == "__main__":
    sys.exit(main())
