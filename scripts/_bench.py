"""What every `scripts/bench_*.py` shares: RESULT lines, timing, peak memory, machine facts.

A bench compares jaxlens with a peer on the same work in the same run and ends by printing one
line per comparison,

    RESULT <name> ours=<value> peer=<value> unit=<unit> ratio=<ratio>

with the ratio oriented so that > 1 means jaxlens is better (`Result`). Timings are the best of
several calls (`best_seconds`), contenders alternating round by round (`interleaved_seconds`),
because the machine may be shared: the least disturbed call is the closest to the machine's
speed and alternating exposes both sides to the same load. Peak memory is Linux's VmHWM of
the process, reset before the timed calls (`reset_peak_rss`). `memory_bandwidth` measures the
bytes/s a jitted reduction reads, the limit of memory-bound work such as decoding.
`finish` prints the RESULT lines and writes the run folder (`jaxlens.runs.RunFolder`):
`results.json`, a summary table of the comparisons and `report.md`.

Benches import this as `import _bench` (scripts/ is on `sys.path` when a script runs).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Result:
    """One comparison; `ratio` > 1 means jaxlens is better."""

    name: str
    ours: float
    peer: float
    unit: str
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours

    def line(self) -> str:
        return (
            f"RESULT {self.name} ours={self.ours:.4g} peer={self.peer:.4g} unit={self.unit} "
            f"ratio={self.ratio:.3f}"
        )

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "ours": self.ours, "peer": self.peer, "unit": self.unit,
                "ratio": self.ratio}  # fmt: skip


def result_line(name: str, ours: float, peer: float, unit: str, higher_is_better=True) -> str:
    """The RESULT line of one comparison (see `Result`)."""
    return Result(name, ours, peer, unit, higher_is_better).line()


# --------------------------------------------------------------------------------------------
# Timing


def call_seconds(fn: Callable[[], Any], calls: int) -> list[float]:
    """Wall time of each of `calls` calls of `fn` (the caller blocks on async results)."""
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def best_seconds(fn: Callable[[], Any], calls: int, *, warmup: int = 1) -> float:
    """Best wall time of `calls` calls after `warmup` untimed ones (compilation, allocator)."""
    for _ in range(warmup):
        fn()
    return min(call_seconds(fn, calls))


def interleaved_seconds(
    fns: dict[str, Callable[[], Any]], rounds: int, *, warmup: int = 1
) -> dict[str, float]:
    """Best wall time per function, calling them round-robin for `rounds` rounds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += call_seconds(fn, 1)
    return {name: min(t) for name, t in times.items()}


# --------------------------------------------------------------------------------------------
# Memory


def rss_bytes(key: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    """Restarts VmHWM (Linux `clear_refs` 5), so the next peak covers what runs after this."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def memory_bandwidth(nbytes: int = 1 << 30, calls: int = 5) -> float:
    """Bytes/s a jitted fp32 sum over an `nbytes` buffer reads (best of `calls`): the memory
    bandwidth that bounds a decode step, measured on the default device."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((nbytes // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    return nbytes / best_seconds(lambda: jax.block_until_ready(total(x)), calls)


# --------------------------------------------------------------------------------------------
# Machine and run folder


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPUs, memory, load, platform, JAX devices."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gib": round(_mem_total() / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    return info


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def add_run_args(parser, name: str) -> None:
    """`--quick` and `--run` (the run folder, default `runs/<name>[_quick]`)."""
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--run", default=None, help=f"run folder (default runs/{name}, runs/{name}_quick)"
    )


def open_run(name: str, args) -> Any:
    """The bench's `RunFolder`, its config the parsed arguments plus the machine facts."""
    import sys

    from jaxlens.runs import RunFolder

    path = args.run or f"runs/{name}{'_quick' if args.quick else ''}"
    return RunFolder(path, config={"args": vars(args), "machine": machine_info()},
                     command=sys.argv)  # fmt: skip


def finish(run, results: Iterable[Result], title: str, extra: dict | None = None) -> None:
    """Print the RESULT lines; write results.json, the summary table and report.md."""
    results = list(results)
    print("\n".join(r.line() for r in results), flush=True)
    run.save_json("results.json", {"results": [r.row() for r in results], **(extra or {})})
    if results:
        run.summary([r.row() for r in results])
    run.section("RESULT lines", "```\n" + "\n".join(r.line() for r in results) + "\n```")
    run.write_report(title)
    print(f"run folder: {run.path}", flush=True)
