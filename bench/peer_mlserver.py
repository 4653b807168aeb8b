"""Peer (m): MLServer 1.7 with adaptive batching, serving the same iris_classifier ONNX model.

What a user would pick instead of rtml: Seldon's MLServer, an Open Inference Protocol (V2) server
with server-side adaptive batching. It runs the registry's ONNX file through a small custom
runtime (:data:`RUNTIME_SOURCE`: an ``MLModel`` on onnxruntime with one intra-op thread, like the
baseline and rtml's workers), and wrk sends one random row per request (``bench/lua/predict_oip.lua``).

MLServer lives in its own virtualenv, ``.cache/mlserver-venv`` (created on first use, reused
while its stamp matches :data:`REQUIREMENTS`): its pins (fastapi, pydantic, uvicorn, ...) must not
touch rtml's environment, and nothing in rtml imports it. The runtime module and the settings are
written into a temporary model directory at start; the server is a child process, stopped by PID
(its inference-pool workers too, if it left any behind).

    .venv/bin/python -m bench.peer_mlserver            # set up, serve, wrk 5 s at c1/c16/c64
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import machine
from bench.http_load import HttpPlan, run_case
from bench.observe import memory_mb
from bench.paths import REPO_ROOT
from bench.services import READY_TIMEOUT_S, free_port
from rtml.stack import Child, wait_http_ok
from schemas.model_metadata import ModelMetadata

if TYPE_CHECKING:
    from bench.run import Run

SYSTEM = "mlserver"
SCENARIO = "m_predict"
VENV_DIR = REPO_ROOT / ".cache" / "mlserver-venv"
REQUIREMENTS = ("mlserver==1.7.*", "onnxruntime", "numpy", "uvloop<0.22")
"""uvloop 0.22+ breaks MLServer 1.7's start-up, hence the cap."""
_STAMP = ".rtml-bench-stamp"

# Adaptive batching. MLServer's docs give no default (batching stays off unless both are set;
# the values are "usually found through experimentation"). Its batcher takes the first queued
# request, then waits up to max_batch_time for more, until max_batch_size requests:
# - max_batch_size 64: in a closed loop (wrk) at concurrency c at most c requests can queue, so
#   64 covers our largest c and never cuts a batch short.
# - max_batch_time 1 ms: every batch, a lone c=1 request too, waits the window out, so it should
#   be as short as still forms batches. Measured here (wrk, 5 s each, pw 0): p50 at c=1 rises with
#   the window (3.9 / 4.4 / 6.3 / 10 ms for 0.5 / 1 / 2 / 5 ms); at c16/c64 1 ms did as well as
#   2 ms (best runs ~620-780 req/s), 0.5 ms no better (~310-500), 5 ms worse (~100-210, though
#   in a busier minute). A shared 2-core machine: treat these as rough.
MAX_BATCH_SIZE = 64
MAX_BATCH_TIME_S = 0.001

# Server-wide inference pool. 0: inference runs in the main process, next to the REST server.
# N>=1 (MLServer's default is 1) sends every (batched) request to worker processes over
# multiprocessing queues. With a model this small, the IPC round trip and (de)serialisation cost
# more than the inference it offloads, and the REST process (JSON, pydantic, batching) is the
# bottleneck either way; on 2 cores a worker only competes with it. Measured with batching on:
# 1 worker gave c=1 95-115 req/s at 5.8-6.6 ms CPU/request vs 117-230 at ~3.2 ms with 0, and no
# gain at c16/c64 (540-580 vs 540-830 req/s, more CPU per request): 0 is the peer we show.
PARALLEL_WORKERS = 0

RUNTIME_MODULE = "rtml_peer_runtime"
RUNTIME_CLASS = "OnnxRuntimeModel"
RUNTIME_SOURCE = textwrap.dedent(
    '''\
    """MLServer runtime for one ONNX model (written by rtml's bench/peer_mlserver.py)."""

    import numpy as np
    import onnxruntime as ort
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse


    class OnnxRuntimeModel(MLModel):
        async def load(self) -> bool:
            extra = self.settings.parameters.extra
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                self.settings.parameters.uri, sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._input = extra["input_name"]
            self._outputs = extra["outputs"]
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            # With adaptive batching, payload holds the queued requests concatenated on axis 0;
            # MLServer splits the outputs back along the same axis.
            rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
            results = self._session.run(self._outputs, {self._input: rows.reshape(len(rows), -1)})
            return InferenceResponse(
                model_name=self.name,
                model_version=self.version,
                outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._outputs, results)],
            )
    '''
)


def venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def ensure_venv() -> Path:
    """The MLServer virtualenv's python; (re)creates the venv when its stamp is missing or stale.

    Idempotent and safe to run concurrently (a file lock around the check and the install); a
    half-built venv has no stamp and is rebuilt from scratch next time. pip honours the usual
    PIP_* settings (PIP_FIND_LINKS for local wheels).
    """
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"requirements": list(REQUIREMENTS), "python": sys.version.split()[0]}
    with open(VENV_DIR.parent / "mlserver-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_path = VENV_DIR / _STAMP
        if stamp_path.is_file() and venv_python().exists():
            try:
                if json.loads(stamp_path.read_text()) == stamp:
                    return venv_python()
            except ValueError:
                pass
        started = time.monotonic()
        print(f"creating {VENV_DIR.relative_to(REPO_ROOT)} ({', '.join(REQUIREMENTS)}) ...", flush=True)
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
        log_path = VENV_DIR.parent / "mlserver-venv-pip.log"
        with log_path.open("w") as sink:
            done = subprocess.run(
                [str(venv_python()), "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"pip install into {VENV_DIR} failed ({done.returncode}):\n{tail}")
        stamp_path.write_text(json.dumps(stamp))
        print(f"  {VENV_DIR.name} ready in {time.monotonic() - started:.0f} s", flush=True)
        return venv_python()


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (tells a PID from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """PIDs of every live process below ``pid`` (MLServer's inference-pool workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


@dataclass
class MLServerChild(Child):
    """The ``mlserver start`` process; :meth:`stop` also reaps its workers and its temp model dir."""

    workdir: Path | None = None

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def stop(self, timeout_s: float = 15.0) -> int | None:
        # Only processes this server started: remembered with their start times before it stops.
        below = [(pid, _start_time(pid)) for pid in descendants(self.process.pid)] if self.alive else []
        try:
            return super().stop(timeout_s)
        finally:
            for pid, started in below:
                if started is not None and _start_time(pid) == started:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)


def write_model_repository(
    workdir: Path,
    model_dir: Path,
    http_port: int,
    *,
    parallel_workers: int = PARALLEL_WORKERS,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_batch_time_s: float = MAX_BATCH_TIME_S,
) -> ModelMetadata:
    """``settings.json`` and ``<name>/{model-settings.json, runtime}`` serving ``model_dir``."""
    meta = ModelMetadata.model_validate_json((model_dir / "metadata.json").read_bytes())
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": free_port(),
        # Metrics on (MLServer's default, and rtml's gateway keeps its /metrics too), on a free port.
        "metrics_port": free_port(),
        "parallel_workers": parallel_workers,
        # debug (MLServer's default: True) turns on uvicorn's access log, one line per request.
        "debug": False,
    }
    (workdir / "settings.json").write_text(json.dumps(settings, indent=2))
    model_root = workdir / meta.name
    model_root.mkdir(parents=True, exist_ok=True)
    (model_root / f"{RUNTIME_MODULE}.py").write_text(RUNTIME_SOURCE)
    outputs = [o for o in (meta.output_label, meta.output_probabilities, meta.output_value) if o]
    model_settings = {
        "name": meta.name,
        "implementation": f"{RUNTIME_MODULE}.{RUNTIME_CLASS}",
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time_s,
        "parameters": {
            "uri": str((model_dir / "model.onnx").resolve()),
            "version": meta.version,
            "extra": {"input_name": meta.input_name, "outputs": outputs},
        },
    }
    (model_root / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return meta


def start_mlserver(
    model_dir: Path,
    log_dir: Path,
    *,
    parallel_workers: int = PARALLEL_WORKERS,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_batch_time_s: float = MAX_BATCH_TIME_S,
) -> tuple[MLServerChild, str]:
    """``mlserver start`` on free loopback ports serving ``model_dir`` (a registry dir
    <root>/<name>/<version>), ready and answering one inference; returns the child and base URL."""
    python = ensure_venv()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rtml-mlserver-"))
    try:
        meta = write_model_repository(
            workdir,
            model_dir,
            port,
            parallel_workers=parallel_workers,
            max_batch_size=max_batch_size,
            max_batch_time_s=max_batch_time_s,
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "mlserver.log"
        with log_path.open("ab") as sink:
            process = subprocess.Popen(
                [str(python.parent / "mlserver"), "start", str(workdir)],
                cwd=workdir,  # MLServer's .metrics/ and .envs/ folders go here, not into the checkout
                env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    child = MLServerChild("mlserver", process, log_path, workdir=workdir)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base_url}/v2/health/ready", timeout_s=READY_TIMEOUT_S, child=child)
        # /v2/health/ready is also true while no model is registered yet: wait for ours too.
        wait_http_ok(f"{base_url}/v2/models/{meta.name}/ready", timeout_s=READY_TIMEOUT_S, child=child)
        check_inference(base_url, meta)
    except BaseException:
        child.stop()
        raise
    return child, base_url


def check_inference(base_url: str, meta: ModelMetadata) -> None:
    """One V2 request shaped like predict_oip.lua's must come back 200 with one row per output."""
    n = meta.n_features
    body = {"inputs": [{"name": "input-0", "shape": [1, n], "datatype": "FP32", "data": [0.5] * n}]}
    request = urllib.request.Request(
        f"{base_url}/v2/models/{meta.name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    shapes = [output["shape"][0] for output in answer["outputs"]]
    if not shapes or any(rows != 1 for rows in shapes):
        raise RuntimeError(f"unexpected V2 answer from MLServer: {answer}")


def _memory(child: MLServerChild) -> dict[str, dict[str, float | None]]:
    memory = {"mlserver": memory_mb(child.process.pid)}
    for index, pid in enumerate(descendants(child.process.pid), start=1):
        memory[f"mlserver-child-{index}"] = memory_mb(pid)
    return memory


def run_peer(run: Run) -> None:
    """Scenario (m): MLServer 1.7 with adaptive batching, wrk at each predict concurrency."""
    started = time.monotonic()
    ensure_venv()
    run.phase("mlserver_venv", started)
    started = time.monotonic()
    model = run.config.http.model
    child, base_url = start_mlserver(run.registry.root / model / run.registry.latest(model), run.log_dir)
    try:
        print(f"(m) MLServer at {base_url}", flush=True)
        plan, probe = run.config.http, machine.CpuProbe({SYSTEM: child.process.pid})  # with its workers
        for concurrency in run.config.concurrency:
            run.cases.append(run_case(base_url, SYSTEM, SCENARIO, concurrency, plan, probe=probe))
        run.memory["mlserver_after_load"] = _memory(child)
    finally:
        child.stop()
    run.phase("mlserver", started)


def main(argv: list[str] | None = None) -> int:
    """Standalone check: serve the registry's latest iris_classifier, wrk at each concurrency."""
    from runtime.registry import ModelRegistry
    from runtime.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m bench.peer_mlserver", description=main.__doc__)
    parser.add_argument("--model", default="iris_classifier")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--parallel-workers", type=int, default=PARALLEL_WORKERS)
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--max-batch-time", type=float, default=MAX_BATCH_TIME_S, help="seconds")
    args = parser.parse_args(argv)
    registry = ModelRegistry(load_settings().registry.root)
    version = registry.latest(args.model)
    meta = registry.metadata(args.model, version)
    plan = HttpPlan(args.duration, args.warmup, 1, 1, args.model, meta.n_features, 0)
    log_dir = REPO_ROOT / "bench" / "out" / "logs-peer-mlserver"
    started = time.monotonic()
    child, base_url = start_mlserver(
        registry.root / args.model / version,
        log_dir,
        parallel_workers=args.parallel_workers,
        max_batch_size=args.max_batch_size,
        max_batch_time_s=args.max_batch_time,
    )
    print(
        f"MLServer ready at {base_url} in {time.monotonic() - started:.1f} s (pids {child.pids()}, "
        f"parallel_workers={args.parallel_workers}, max_batch_size={args.max_batch_size}, "
        f"max_batch_time={args.max_batch_time * 1000:g} ms); log {child.log_path}",
        flush=True,
    )
    try:
        probe = machine.CpuProbe({SYSTEM: child.process.pid})
        cases = [
            run_case(base_url, SYSTEM, SCENARIO, int(c), plan, probe=probe)
            for c in args.concurrency.split(",")
        ]
        memory = _memory(child)
    finally:
        child.stop()
    print("\nconcurrency     req/s   p50 ms   p99 ms   errors")
    for case in cases:
        s = case.summary()
        rps, p50, p99 = s["rps"], s["p50_ms"], s["p99_ms"]
        print(f"c={s['concurrency']:<9} {rps:9.0f} {p50:8.2f} {p99:8.2f} {s['errors']:8d}")
    print("memory:", {name: round(v["rss_mb"] or 0, 1) for name, v in memory.items()}, "MB RSS")
    return 0 if all(case.summary()["errors_total"] == 0 for case in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
