"""The gateway benchmark: Rhetor against LiteLLM's proxy and the bare upstream, one run.

    .venv/bin/python bench/gateway.py            # the full run (about 35 minutes)
    .venv/bin/python bench/gateway.py --quick    # a short run (about 6 minutes)

Prints the tables and writes them to bench/results/gateway-<timestamp>.md. Everything runs
on loopback:

- the upstream is the test suite's fake OpenAI server (`python -m tests.fakes.upstream`);
  its reply echoes the user message, one streamed delta per word, so a 7-word message is
  an 8-chunk answer and a 49-word one a 50-chunk stream. `direct` measures it alone: the
  floor every gateway adds to.
- LiteLLM's proxy is installed from PyPI into its own throwaway venv
  (bench/.venv-litellm, never a dependency of Rhetor) and run in its fastest setup: no
  database, no master key, one `openai/gpt-4o` deployment pointed at the fake upstream.
- Rhetor runs as `manage.py serve` (daphne workers) with budgets and metering on: an
  enforce-policy daily limit applies to every request (RHETOR_BUDGET_POLICY=enforce,
  RHETOR_BUDGET_DAILY_LIMIT), so each request is reserved, settled and recorded. It runs
  on SQLite, and on PostgreSQL (a scratch database `rhetor_bench`) with Redis (db 12).
- The load generator (bench/loadgen.py) is a closed loop: N connections, each sending
  its next request when the previous answer is complete.

Pinning (2 cores): every gateway with one worker runs on core 0; two-worker runs get
cores 0-1; the fake upstream and the load generator (this process) share core 1.
PostgreSQL and Redis are the machine's own services and are not pinned. Absolute numbers
drift on a shared machine, so the report compares each gateway with LiteLLM measured in
the same run.
"""

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from loadgen import LoadResult, run_load  # noqa: E402

PYTHON = sys.executable
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"
LITELLM_VENV = REPO / "bench" / ".venv-litellm"
LITELLM_REQUIREMENT = "litellm[proxy]==1.108.7"
RESULTS = REPO / "bench" / "results"
PG_ADMIN_URL = os.environ.get("RHETOR_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB = "rhetor_bench"
REDIS_BENCH_URL = os.environ.get("RHETOR_BENCH_REDIS", "redis://127.0.0.1:6379/12")
GATEWAY_CORE = "0"
BOTH_CORES = "0,1"
CLIENT_CORE = 1

SHORT = "one two three four five six seven"  # an 8-word (8-chunk) answer
LONG = " ".join(["word"] * 49)  # a 50-chunk stream
V1 = "/v1/chat/completions"


def v1_body(*, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": LONG if stream else SHORT}],
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(body).encode()


def message_body_for(run: str) -> Callable[[int, int], bytes]:
    """/message with a stored context: each connection talks in its own context, a new
    one every 20 turns (so the history sent grows to 19 turns and starts again)."""
    turns: dict[int, int] = {}

    def body(slot: int, index: int) -> bytes:
        turn = turns.get(slot, 0)
        turns[slot] = turn + 1
        return json.dumps(
            {
                "message": SHORT,
                "context_id": f"bench:{run}-{slot}-{turn // 20}",
                "options": {"provider": "openai", "model": "gpt-4o", "max_tokens": 100},
            }
        ).encode()

    return body


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    concurrency: int
    stream: bool = False
    context: bool = False

    @property
    def label(self) -> str:
        kind = "stream 50 chunks" if self.stream else "JSON"
        via = "/message + context" if self.context else self.path
        return f"{via} {kind}"


NON_STREAM = [Workload("json", V1, c) for c in (1, 8, 32, 64)]
STREAM = [Workload("stream", V1, c, stream=True) for c in (1, 8, 32)]
MESSAGE = [Workload("message", "/message", c, context=True) for c in (1, 8, 32, 64)]


@dataclass
class Row:
    target: str
    workload: Workload
    result: LoadResult
    # The gateway's CPU time per answered request (warm-up included): a machine shared
    # with other work changes it much less than rates and latencies.
    cpu_ms: float | None = None


@dataclass
class Target:
    name: str
    base_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    peak_rss_kib: int = 0
    env: dict[str, str] = field(default_factory=dict)


# --- Processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 90.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def started(process: subprocess.Popen[bytes], health_url: str, log: Path) -> None:
    """Wait for a server to answer; stop it (and say why) when it does not."""
    try:
        wait_http(health_url, timeout=180)
    except RuntimeError:
        stop(process)
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{health_url} did not come up; the end of {log}:\n{tail}") from None


def tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            todo += [int(c) for c in children]
    return pids


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process and its children so far."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_upstream(log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            TASKSET,
            "-c",
            str(CLIENT_CORE),
            PYTHON,
            "-m",
            "tests.fakes.upstream",
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/models")
    return url, process


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing {LITELLM_REQUIREMENT} into {LITELLM_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", LITELLM_REQUIREMENT],
            check=True,
        )
    return binary


def start_litellm(upstream: str, workers: int, workdir: Path, log: Path) -> Target:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: bench-key\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    port = free_port()
    # No database and no master key: LiteLLM's fastest setup (an empty DATABASE_URL is
    # not "none" to it, so the variables are removed, not blanked).
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    cores = GATEWAY_CORE if workers == 1 else BOTH_CORES
    command = [TASKSET, "-c", cores, str(ensure_litellm()), "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603
        command, cwd=workdir, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    started(process, f"{url}/health/liveliness", log)
    return Target(f"LiteLLM {workers}w", url, [process])


def rhetor_env(upstream: str, database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RHETOR_PROVIDERS": "openai",
        "OPENAI_API_KEY": "bench-key",
        "OPENAI_BASE_URL": f"{upstream}/v1",
        # Budgets and metering on: an enforced daily limit holds every request.
        "RHETOR_BUDGET_POLICY": "enforce",
        "RHETOR_BUDGET_DAILY_LIMIT": "1000000",
        "RHETOR_HOST": "127.0.0.1",
        "RHETOR_LOG_LEVEL": "warning",
        "HERMES_API_URL": "",
        "ENGRAM_URL": "",
    }


def prepare_postgres() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DB}"


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def start_rhetor(
    name: str, upstream: str, *, workers: int, database_url: str, redis_url: str, log: Path
) -> Target:
    env = rhetor_env(upstream, database_url, redis_url)
    manage = [PYTHON, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)  # noqa: S603
    port = free_port()
    cores = GATEWAY_CORE if workers == 1 else BOTH_CORES
    command = [TASKSET, "-c", cores, *manage, "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--daphne-verbosity", "0"]
    process = subprocess.Popen(  # noqa: S603
        command, cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    started(process, f"{url}/health", log)
    return Target(name, url, [process], env=env)


def usage_record_count(target: Target) -> int:
    """How many usage records Rhetor wrote (every answered request must have one)."""
    code = "from budget.models import UsageRecord; print(UsageRecord.objects.count())"
    out = subprocess.run(  # noqa: S603
        [PYTHON, str(REPO / "manage.py"), "shell", "-c", code],
        env=target.env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


# --- Measuring ------------------------------------------------------------------------------


async def measure(
    target: Target, workload: Workload, *, duration: float, warmup: float, run: str
) -> LoadResult:
    peak = 0
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop_sampling.is_set():
            for process in target.processes:
                peak = max(peak, tree_rss_kib(process.pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_sampling.wait(), 0.5)

    sampler = asyncio.create_task(sample())
    cpu_before = sum(tree_cpu_seconds(p.pid) for p in target.processes)
    expect = b"[DONE]" if workload.stream else (b'"finished"' if workload.context else None)
    try:
        result = await run_load(
            target.base_url + workload.path,
            body=None if workload.context else v1_body(stream=workload.stream),
            body_for=message_body_for(f"{run}-{workload.concurrency}")
            if workload.context
            else None,
            concurrency=workload.concurrency,
            duration=duration,
            warmup=warmup,
            expect=expect,
        )
    finally:
        stop_sampling.set()
        await sampler
    target.peak_rss_kib = max(target.peak_rss_kib, peak)
    if target.processes and result.answered:
        cpu = sum(tree_cpu_seconds(p.pid) for p in target.processes) - cpu_before
        result.cpu_ms = cpu * 1000 / result.answered
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_row(row: Row) -> None:
    s = row.result.summary()
    print(
        f"  {row.target:<24} {row.workload.label:<34} c={row.workload.concurrency:<3} "
        f"{s['rate']:>8.1f}/s  p50 {fmt(s['p50_ms']):>7} ms  p99 {fmt(s['p99_ms']):>7} ms  "
        f"ttfb p50 {fmt(s['ttfb_p50_ms']):>7} ms  cpu/req {fmt(row.cpu_ms, 2):>6} ms  "
        f"errors {s['errors']}",
        flush=True,
    )


@dataclass
class Soak:
    seconds: float
    samples: list[tuple[float, int]]
    requests: int
    errors: int
    answered: int

    def growth(self) -> tuple[int, int, float]:
        """RSS after the first tenth of the soak (warmed up) and at the end, and growth."""
        warm = [kib for t, kib in self.samples if t >= self.seconds * 0.1] or [self.samples[-1][1]]
        base, last = warm[0], self.samples[-1][1]
        return base, last, (last - base) / base * 100 if base else 0.0


async def soak(target: Target, seconds: float) -> Soak:
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(
                (time.monotonic() - start, sum(tree_rss_kib(p.pid) for p in target.processes))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(1.0, seconds / 60))

    sampler = asyncio.create_task(sample())
    result = await run_load(
        target.base_url + V1, body=v1_body(stream=False), concurrency=8, duration=seconds, warmup=0
    )
    done.set()
    await sampler
    samples.append((time.monotonic() - start, sum(tree_rss_kib(p.pid) for p in target.processes)))
    return Soak(seconds, samples, result.requests, result.errors, result.answered)


# --- Report ------------------------------------------------------------------------------


def find(rows: list[Row], target: str, name: str, c: int) -> LoadResult | None:
    for row in rows:
        if row.target == target and row.workload.name == name and row.workload.concurrency == c:
            return row.result
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def report(
    rows: list[Row],
    targets: list[Target],
    soaks: dict[str, Soak],
    metering: list[str],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"# Gateway benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        f"{' (quick)' if args.quick else ''}",
        "",
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}. Pinning: one-worker "
        f"gateways on core {GATEWAY_CORE}, two-worker gateways on cores {BOTH_CORES}, fake "
        f"upstream and load generator on core {CLIENT_CORE}; PostgreSQL and Redis unpinned. "
        f"Each measurement: {args.warmup:g} s warm-up, then {args.duration:g} s closed loop. "
        "Rhetor: daphne via `manage.py serve`, enforced daily budget, every request "
        "reserved, settled and recorded. LiteLLM: proxy without database or master key.",
        "",
        "| target | workload | c | req/s | p50 ms | p99 ms | TTFB p50 ms | TTFB p99 ms "
        "| gateway CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row.result.summary()
        lines.append(
            f"| {row.target} | {row.workload.label} | {row.workload.concurrency} | "
            f"{s['rate']:.1f} | {fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} | "
            f"{fmt(s['ttfb_p50_ms'], 2)} | {fmt(s['ttfb_p99_ms'], 2)} | {fmt(row.cpu_ms, 2)} "
            f"| {s['errors']} |"
        )
    lines += ["", "Peak RSS of each gateway (all its processes, sampled every 0.5 s):", ""]
    lines += ["| target | peak RSS MiB |", "|---|---:|"]
    lines += [f"| {t.name} | {t.peak_rss_kib / 1024:.0f} |" for t in targets if t.peak_rss_kib]

    direct_p50 = (find(rows, "direct", "json", 1) or LoadResult(1)).summary()["p50_ms"]
    lite = "LiteLLM 1w"
    checks: list[tuple[str, str, str, bool | None]] = []

    def added(target: str) -> float | None:
        r = find(rows, target, "json", 1)
        p50 = r.summary()["p50_ms"] if r else None
        if p50 is None or direct_p50 is None:
            return None
        return float(p50) - float(direct_p50)

    lite_added = added(lite)
    for name in [t.name for t in targets if t.name.startswith("Rhetor") and t.name.endswith("1w")]:
        value = ratio(added(name), lite_added)
        checks.append(
            (
                f"{name}: added p50 at c=1 vs LiteLLM (target ≤ 0.20)",
                f"{fmt(added(name), 2)} ms vs {fmt(lite_added, 2)} ms",
                fmt(value, 2),
                None if value is None else value <= 0.2,
            )
        )
        r32, l32 = find(rows, name, "json", 32), find(rows, lite, "json", 32)
        value = ratio(r32.rate if r32 else None, l32.rate if l32 else None)
        checks.append(
            (
                f"{name}: req/s at c=32, one core, vs LiteLLM (target ≥ 4)",
                f"{fmt(r32.rate if r32 else None)} vs {fmt(l32.rate if l32 else None)}",
                fmt(value, 2),
                None if value is None else value >= 4,
            )
        )
        for kind, c in (("json", 32), ("stream", 32)):
            mine, theirs = find(rows, name, kind, c), find(rows, lite, kind, c)
            value = ratio(mine.cpu_ms if mine else None, theirs.cpu_ms if theirs else None)
            if value is not None:
                checks.append(
                    (
                        f"{name}: gateway CPU per request, {kind} c={c}, vs LiteLLM "
                        "(less drift than rates on a shared machine)",
                        f"{fmt(mine.cpu_ms, 2)} ms vs {fmt(theirs.cpu_ms, 2)} ms",  # type: ignore[union-attr]
                        fmt(value, 2),
                        None,
                    )
                )
        s32, ls32 = find(rows, name, "stream", 32), find(rows, lite, "stream", 32)
        if s32 and ls32:
            value = ratio(s32.rate, ls32.rate)
            checks.append(
                (
                    f"{name}: 50-chunk streams/s at c=32 vs LiteLLM (target ≥ 5)",
                    f"{s32.rate:.1f} vs {ls32.rate:.1f}",
                    fmt(value, 2),
                    None if value is None else value >= 5,
                )
            )
            t_r, t_l = s32.summary()["ttfb_p50_ms"], ls32.summary()["ttfb_p50_ms"]
            value = ratio(t_r, t_l)  # type: ignore[arg-type]
            checks.append(
                (
                    f"{name}: stream TTFB p50 at c=32 vs LiteLLM (target ≤ 0.20)",
                    f"{fmt(t_r)} ms vs {fmt(t_l)} ms",  # type: ignore[arg-type]
                    fmt(value, 2),
                    None if value is None else value <= 0.2,
                )
            )
    for c in (32, 64):
        one, two = (
            find(rows, "Rhetor PG+Redis 1w", "json", c),
            find(rows, "Rhetor PG+Redis 2w", "json", c),
        )
        value = ratio(two.rate if two else None, one.rate if one else None)
        if value is not None:
            checks.append(
                (
                    f"Rhetor PG+Redis: two workers vs one, req/s at c={c} (target ≥ 1.7)",
                    f"{two.rate:.1f} vs {one.rate:.1f}",  # type: ignore[union-attr]
                    fmt(value, 2),
                    value >= 1.7,
                )
            )
    for name, result in soaks.items():
        base, last, growth = result.growth()
        checks.append(
            (
                f"{name}: RSS over a {result.seconds / 60:.1f}-minute soak, c=8 (target ≤ +10%)",
                f"{base / 1024:.0f} → {last / 1024:.0f} MiB, {result.requests} requests, "
                f"{result.errors} errors",
                f"{growth:+.1f}%",
                growth <= 10,
            )
        )
    lines += ["", "Ratios against LiteLLM, measured in this run:", ""]
    lines += ["| check | measured | ratio | met |", "|---|---|---:|:---:|"]
    for label, measured, value_text, met in checks:
        mark = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {measured} | {value_text} | {mark} |")
    if metering:
        lines += ["", "Metering check (usage records written = requests answered):", ""]
        lines += [f"- {m}" for m in metering]
    return "\n".join(lines) + "\n"


# --- Main -------------------------------------------------------------------------------


@contextlib.contextmanager
def running(target: Target) -> Iterator[Target]:
    try:
        yield target
    finally:
        for process in target.processes:
            stop(process)


async def bench_target(
    target: Target, workloads: list[Workload], rows: list[Row], args: argparse.Namespace
) -> int:
    answered = 0
    for workload in workloads:
        result = await measure(
            target, workload, duration=args.duration, warmup=args.warmup, run=args.run_id
        )
        answered += result.answered
        row = Row(target.name, workload, result, result.cpu_ms)
        rows.append(row)
        print_row(row)
    return answered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rhetor vs LiteLLM vs the bare upstream.")
    parser.add_argument("--quick", action="store_true", help="short measurements and soak")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--soak", type=float, default=None, help="soak seconds (full: 600)")
    parser.add_argument(
        "--only",
        default="direct,litellm,sqlite,pg",
        help="comma list of: direct, litellm, sqlite, pg",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (4.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.soak = args.soak if args.soak is not None else (60.0 if args.quick else 600.0)
    args.run_id = f"{int(time.time())}"
    only = set(args.only.split(","))
    os.sched_setaffinity(0, {CLIENT_CORE})
    RESULTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rhetor-bench-"))
    log = workdir / "servers.log"
    print(f"logs: {log}", flush=True)
    rows: list[Row] = []
    targets: list[Target] = []
    soaks: dict[str, Soak] = {}
    metering: list[str] = []

    upstream_url, upstream = start_upstream(log)
    try:

        async def go() -> None:
            if "direct" in only:
                direct = Target("direct", upstream_url)
                await bench_target(direct, [*NON_STREAM, *STREAM], rows, args)
            if "litellm" in only:
                for workers, workloads in (
                    (1, [*NON_STREAM, *STREAM]),
                    (2, [NON_STREAM[2], NON_STREAM[3], STREAM[2]]),
                ):
                    with running(start_litellm(upstream_url, workers, workdir, log)) as target:
                        targets.append(target)
                        await bench_target(target, workloads, rows, args)
            configs: list[tuple[str, int, str, str, list[Workload]]] = []
            if "sqlite" in only:
                sqlite_url = f"sqlite:///{workdir / 'rhetor.sqlite3'}"
                configs.append(
                    ("Rhetor SQLite 1w", 1, sqlite_url, "", [*NON_STREAM, *STREAM, *MESSAGE])
                )
            if "pg" in only:
                for workers in (1, 2):
                    configs.append(
                        (
                            f"Rhetor PG+Redis {workers}w",
                            workers,
                            "",
                            REDIS_BENCH_URL,
                            [*NON_STREAM, *STREAM, MESSAGE[0], MESSAGE[2], MESSAGE[3]],
                        )
                    )
            for name, workers, database_url, redis_url, workloads in configs:
                if not database_url:
                    database_url = prepare_postgres()
                if redis_url:
                    flush_redis(redis_url)
                target = start_rhetor(
                    name,
                    upstream_url,
                    workers=workers,
                    database_url=database_url,
                    redis_url=redis_url,
                    log=log,
                )
                with running(target):
                    targets.append(target)
                    answered = await bench_target(target, workloads, rows, args)
                    if name == "Rhetor SQLite 1w" and args.soak > 0:
                        print(f"  soak: {args.soak:.0f} s at c=8 ...", flush=True)
                        soaks[name] = await soak(target, args.soak)
                        answered += soaks[name].answered
                        base, last, growth = soaks[name].growth()
                        print(
                            f"  soak RSS {base / 1024:.0f} -> {last / 1024:.0f} MiB "
                            f"({growth:+.1f}%)"
                        )
                    recorded = usage_record_count(target)
                    metering.append(
                        f"{name}: {answered} requests answered, {recorded} usage records"
                        f"{'' if recorded == answered else ' (MISMATCH)'}"
                    )
                    print(f"  {metering[-1]}", flush=True)

        asyncio.run(go())
    finally:
        stop(upstream)
    text = report(rows, targets, soaks, metering, args)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"gateway-{stamp}{'-quick' if args.quick else ''}.md"
    out.write_text(text)
    print()
    print(text)
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
