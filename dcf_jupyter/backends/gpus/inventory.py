"""The GPUs of this machine a gateway may hand out: from NVML (nvidia-ml-py), else `nvidia-smi`, else none;
restricted by `--gpus`/`$DCF_GPUS` and the gateway's own `$CUDA_VISIBLE_DEVICES`; and how much memory each
process uses on them (for status)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, brief

SMI_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Gpu:
    """One device as NVML numbers it (PCI bus order; replicas get `CUDA_DEVICE_ORDER=PCI_BUS_ID` to match)."""

    index: int
    name: str = "GPU"
    uuid: str = ""
    memory_total: int = 0  # bytes; 0 when unknown (a declared device on a machine without NVML)


@dataclass(frozen=True)
class Inventory:
    """The devices a gateway hands out, and where it learnt of them ("nvml", "nvidia-smi", "declared", "none")."""

    devices: tuple[Gpu, ...]
    source: str

    def describe(self) -> str:
        """One line for the gateway's log."""
        if not self.devices:
            return "no GPU (NVML and nvidia-smi found none; --gpus or $DCF_GPUS declare some)"
        names = ", ".join(f"{d.index}: {d.name}" for d in self.devices)
        return f"{len(self.devices)} GPU(s) from {self.source}: {names}"


def parse_gpu_list(text: str, source: str = "--gpus") -> list[int] | None:
    """`--gpus`/`$DCF_GPUS`: '0,1,2,3' names devices, '4' means 0-3, 'none' or '0' none; '' or 'all' is no
    restriction (None)."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    if text == "none":
        return []
    try:
        if "," not in text:
            return list(range(int(text)))
        indices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{source}: expected GPU indices like 0,1,2,3, a count like 4, or none; got {brief(text)}"
                          ) from None
    if any(i < 0 for i in indices) or len(set(indices)) != len(indices):
        raise ConfigError(f"{source}: GPU indices must be distinct and not negative, got {brief(text)}")
    return sorted(indices)


def detect() -> Inventory:
    """This machine's GPUs: NVML first, nvidia-smi second, else none."""
    devices = _from_nvml()
    if devices is not None:
        return Inventory(tuple(devices), "nvml")
    devices = _from_smi()
    if devices is not None:
        return Inventory(tuple(devices), "nvidia-smi")
    return Inventory((), "none")


def inventory(declared: str | None, cuda_visible: str | None, found: Inventory | None = None) -> Inventory:
    """The devices a gateway hands out: what it finds (`found`, else `detect()`), restricted to `declared`
    (`--gpus`/`$DCF_GPUS`) and to the gateway's own `cuda_visible`. Declared devices a machine without NVML or
    nvidia-smi does not list are taken as declared: how a gateway is handed GPUs it cannot see, and how tests
    run without any."""
    found = found if found is not None else detect()
    wanted = parse_gpu_list(declared or "")
    devices = list(found.devices)
    source = found.source
    if wanted is not None:
        if devices:
            missing = sorted(set(wanted) - {d.index for d in devices})
            if missing:
                have = ", ".join(str(d.index) for d in devices)
                raise ConfigError(f"--gpus names GPU {', '.join(map(str, missing))}, which this machine lacks "
                                  f"({source} lists {have})")
            devices = [d for d in devices if d.index in wanted]
        else:
            devices, source = [Gpu(index=i, name="declared GPU") for i in wanted], "declared"
    if cuda_visible is not None:
        devices = _visible(devices, cuda_visible)
    return Inventory(tuple(devices), source if devices else "none")


def _visible(devices: list[Gpu], cuda_visible: str) -> list[Gpu]:
    """The devices `CUDA_VISIBLE_DEVICES` lets through, named by index or UUID (a prefix is enough, as in CUDA)."""
    keep: list[Gpu] = []
    for part in (p.strip() for p in cuda_visible.split(",")):
        if not part:
            continue
        if part.isdigit():
            chosen = [d for d in devices if d.index == int(part)]
        else:
            chosen = [d for d in devices if d.uuid and d.uuid.startswith(part)]
        if not chosen:
            break  # CUDA ignores the rest of the list after an entry it does not know
        keep += [d for d in chosen if d not in keep]
    return keep


@contextlib.contextmanager
def _nvml() -> Iterator[Any]:
    import pynvml

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _from_nvml() -> list[Gpu] | None:
    try:
        with _nvml() as nvml:
            devices = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                devices.append(Gpu(index=index, name=_text(nvml.nvmlDeviceGetName(handle)),
                                   uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                                   memory_total=int(nvml.nvmlDeviceGetMemoryInfo(handle).total)))
            return devices
    except Exception:  # noqa: BLE001 - no pynvml, no driver, no device: each means "ask nvidia-smi"
        return None


def _smi(query: str, kind: str = "gpu") -> list[list[str]] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", f"--query-{kind}={query}", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in result.stdout.splitlines() if line.strip()]


def _from_smi() -> list[Gpu] | None:
    rows = _smi("index,name,uuid,memory.total")
    if rows is None:
        return None
    try:
        return [Gpu(index=int(i), name=name, uuid=uuid, memory_total=int(float(mib)) * 1024 * 1024)
                for i, name, uuid, mib in rows]
    except ValueError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class GpuProcess:
    """A process using a device, as the driver reports it."""

    pid: int
    memory_used: int  # bytes; 0 when the driver does not say


def processes(devices: Sequence[Gpu]) -> dict[int, list[GpuProcess]]:
    """Processes on each device (by index), from NVML, else nvidia-smi; empty when neither answers."""
    found = _processes_nvml(devices)
    return found if found is not None else _processes_smi(devices)


def _processes_nvml(devices: Sequence[Gpu]) -> dict[int, list[GpuProcess]] | None:
    try:
        with _nvml() as nvml:
            result: dict[int, list[GpuProcess]] = {}
            for device in devices:
                handle = nvml.nvmlDeviceGetHandleByIndex(device.index)
                result[device.index] = [GpuProcess(p.pid, int(p.usedGpuMemory or 0))
                                        for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)]
            return result
    except Exception:  # noqa: BLE001 - any NVML failure: ask nvidia-smi
        return None


def _processes_smi(devices: Sequence[Gpu]) -> dict[int, list[GpuProcess]]:
    rows = _smi("gpu_uuid,pid,used_memory", kind="compute-apps") or []
    by_uuid = {d.uuid: d.index for d in devices if d.uuid}
    result: dict[int, list[GpuProcess]] = {d.index: [] for d in devices}
    for row in rows:
        with contextlib.suppress(ValueError, IndexError, KeyError):
            result[by_uuid[row[0]]].append(GpuProcess(int(row[1]), int(float(row[2])) * 1024 * 1024))
    return result

