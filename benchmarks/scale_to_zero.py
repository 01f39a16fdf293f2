"""Scale to zero on the local backend: what idle functions hold, what a call at zero replicas pays, and how fast
load brings replicas.

    python benchmarks/scale_to_zero.py [--functions 40] [--cold 15] [--no-detect]

1. 40 copies of hello-dcf with `min_replicas: 0`: RSS of the gateway and its workers right after the deploys
   (one replica each) and once all are idle (target: the gateway alone, under 100 MB).
2. Cold starts (the call's arrival at a function with zero replicas to its reply), p50/p95, for hello-dcf
   (target p50 <= 0.3 s) and detect (target p50 <= 1.0 s; TensorFlow needed), beside warm calls of the same
   function: the ratio is what a cold start costs. Replicas fork from warm templates; with --no-templates
   ($DCF_TEMPLATES=0) each starts as a fresh process, the baseline measured in the same run.
3. Scale-up under load: 6 callers of a 0.3 s function with `max_replicas: 3`, `target_ongoing_requests: 1`,
   `upscale_delay_s: 0`: seconds until 3 replicas have answered.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import yaml
from _harness import ROOT, cpu, gateway_process_with, median, percentile

from dcf_jupyter.client import Client, FunctionInfo

SLEEPS = "import os, time\n\n\nclass Handler:\n    def __call__(self, req):\n        time.sleep(0.3)\n" \
         "        return str(os.getpid())\n"



def rss_of(pid: int) -> float:
    """MB resident in one process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def rss_mb(root: int) -> tuple[float, int]:
    """MB resident in `root` and its descendants, and how many processes that is (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        count += 1
        todo += children.get(pid, [])
    return total / 1024, count


def copy_function(source: Path, parent: Path, name: str, **keys: object) -> Path:
    """functions/<source> copied as `name` with these config.yaml keys set."""
    folder = parent / name
    shutil.copytree(source, folder)
    config = folder / "config.yaml"
    data = yaml.safe_load(config.read_text())
    (old,) = data["functions"]
    data["functions"] = {name: {**data["functions"][old], **keys}}
    data.pop("dcf", None)
    config.write_text(yaml.safe_dump(data))
    return folder


def listed(client: Client, name: str) -> FunctionInfo:
    return next(f for f in client.list() if f.name == name)


def until_idle(client: Client, names: list[str], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        idle = {f.name for f in client.list() if f.idle}
        if idle.issuperset(names):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"not idle within {within} s: {sorted(set(names) - idle)}")
        time.sleep(0.05)


def cold_and_warm(client: Client, name: str, data: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of `rounds` cold calls (each after the function went idle) and of as many warm ones."""
    cold, warm = [], []
    for _ in range(rounds):
        until_idle(client, [name])
        started = time.perf_counter()
        client.call(name, data, timeout=300)
        cold.append(time.perf_counter() - started)
        for _ in range(3):
            started = time.perf_counter()
            client.call(name, data, timeout=300)
            warm.append(time.perf_counter() - started)
    return cold, warm


def report(label: str, cold: list[float], warm: list[float], target: float) -> float:
    """Print one function's cold and warm figures; its cold p50."""
    p50, p95, warm50 = median(cold), percentile(cold, 95), median(warm)
    verdict = "meets" if p50 <= target else "MISSES"
    print(f"    {label}: cold p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; warm p50 {warm50 * 1000:.1f} ms; "
          f"cold/warm {p50 / warm50:.0f}x; {verdict} the target p50 <= {target:g} s")
    return p50


IDLE_FAST = {"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 0.5}


def idle_memory(client: Client, gateway_pid: int, parent: Path, count: int) -> None:
    base, _ = rss_mb(gateway_pid)
    names = [f"hello-{i:02d}" for i in range(count)]
    started = time.perf_counter()
    for name in names:
        client.deploy(copy_function(ROOT / "functions" / "hello-dcf", parent, name,
                                    autoscaling={**IDLE_FAST, "downscale_delay_s": 15}))
    deployed = time.perf_counter() - started
    busy, processes = rss_mb(gateway_pid)
    print(f"{count} functions with min_replicas 0, deployed in {deployed:.1f} s")
    print(f"  RSS with one replica each: {busy:.0f} MB in {processes} processes (gateway alone before: {base:.0f} MB)")
    until_idle(client, names)
    time.sleep(1.0)  # processes exit just after List says idle
    idle, processes = rss_mb(gateway_pid)
    gateway = rss_of(gateway_pid)
    print(f"  RSS once all are idle: {idle:.0f} MB in {processes} process(es): the gateway {gateway:.0f} MB "
          f"({'meets' if gateway < 100 else 'MISSES'} the target, < 100 MB), its warm template(s) "
          f"{idle - gateway:.0f} MB; {busy / idle:.1f}x less than with replicas")
    for name in names:
        client.delete(name)


def cold_starts(client: Client, gateway_pid: int, parent: Path, rounds: int, detect: bool) -> dict[str, float]:
    """Cold and warm calls of hello-dcf (and detect); the cold p50 of each."""
    found = {}
    client.deploy(copy_function(ROOT / "functions" / "hello-dcf", parent, "hello-cold", autoscaling=IDLE_FAST))
    found["hello-dcf"] = report("hello-dcf", *cold_and_warm(client, "hello-cold", b"Hello", rounds), target=0.3)
    client.delete("hello-cold")
    if detect:
        image = ROOT / "notebooks" / "images" / "street.jpg"
        client.deploy(copy_function(ROOT / "functions" / "detect", parent, "detect-cold", autoscaling=IDLE_FAST))
        found["detect"] = report("detect", *cold_and_warm(client, "detect-cold", image.read_bytes(),
                                                          max(3, rounds // 3)), target=1.0)
        until_idle(client, ["detect-cold"])
        time.sleep(1.0)
        idle, processes = rss_mb(gateway_pid)
        print(f"      with detect idle: {idle:.0f} MB in {processes} process(es) "
              f"(gateway {rss_of(gateway_pid):.0f} MB)")
        client.delete("detect-cold")
    return found


def scale_up(client: Client, parent: Path) -> None:
    print("Scale-up under load (6 callers of a 0.3 s function, max_replicas 3, target 1, upscale_delay_s 0):")
    folder = parent / "sleeper"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "handler.py").write_text(SLEEPS)
    (folder / "config.yaml").write_text(yaml.safe_dump({"functions": {"sleeper": {
        "handler": {"dir": "./src", "file": "handler.py", "name": "Handler"},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                        "upscale_delay_s": 0, "downscale_delay_s": 5}}}}))
    client.deploy(folder)
    client.call("sleeper")
    answered: dict[str, float] = {}
    stop = threading.Event()
    load_started = time.perf_counter()

    def caller() -> None:
        while not stop.is_set():
            pid = str(client.call("sleeper", timeout=60))
            answered.setdefault(pid, time.perf_counter() - load_started)

    callers = [threading.Thread(target=caller) for _ in range(6)]
    for thread in callers:
        thread.start()
    deadline = time.monotonic() + 60
    while len(answered) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for thread in callers:
        thread.join()
    firsts = sorted(answered.values())
    print(f"  3 replicas answered after {firsts[-1]:.2f} s" if len(firsts) >= 3 else
          f"  only {len(firsts)} replica(s) answered within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=40)
    parser.add_argument("--cold", type=int, default=15, help="cold calls per function measured")
    parser.add_argument("--no-detect", action="store_true", help="leave out detect (needs TensorFlow)")
    args = parser.parse_args()
    print(f"CPU: {cpu()}; Python {platform.python_version()}")
    detect = not args.no_detect
    if detect:
        try:
            import tensorflow  # noqa: F401 - only asks whether detect can run here
        except ImportError:
            print("detect: left out (TensorFlow is not installed: pip install -e '.[tf]')")
            detect = False
    with tempfile.TemporaryDirectory(prefix="dcf-s2z-") as tmp:
        parent = Path(tmp)
        with gateway_process_with(extra=["--no-docker"]) as (address, gateway_pid), Client(address) as client:
            idle_memory(client, gateway_pid, parent / "memory", args.functions)
            print("Cold starts (call at 0 replicas -> reply) and warm calls:")
            print("  replicas forked from warm templates:")
            forked = cold_starts(client, gateway_pid, parent / "forked", args.cold, detect)
            scale_up(client, parent)
        os.environ["DCF_TEMPLATES"] = "0"
        with gateway_process_with(extra=["--no-docker"]) as (address, gateway_pid), Client(address) as client:
            print("  every replica a fresh process (DCF_TEMPLATES=0), the baseline:")
            fresh = cold_starts(client, gateway_pid, parent / "fresh", args.cold, detect)
        for name, p50 in forked.items():
            print(f"  {name}: a cold start from a template takes {p50 / fresh[name]:.2f}x a fresh process's")


if __name__ == "__main__":
    main()
