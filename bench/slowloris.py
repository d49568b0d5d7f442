"""Latency of normal predictions with and without 20 slow-loris uploads beside them (issue 15).

``python -m bench.slowloris --model DIR --out reports/bench/slowloris``

Before the fix, twenty authenticated connections that started a multipart file part and then sent a
byte every 2 s held all 16 prediction slots (a slot was taken before the body was read): normal
requests beside them waited 27-29.5 s. Here the real service (``python -m service``, default
settings, authentication on) first serves ``--clients`` keep-alive clients posting a 224 x 224 PNG
for ``--seconds`` (idle), then the same load again while 20 attackers trickle their bodies; an
attacker the server cuts off reconnects at once, so 20 are always in flight. The check: the median
(and p95) latency under attack stays within 2x of idle.
"""

import argparse
import io
import json
import os
import select
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from bench.service_process import REPO_ROOT, RunningService, latency_percentiles, running_service

_ATTACKERS = 20
_TRICKLE_S = 2.0
_BOUNDARY = "slowloris-b0undary"


def _film() -> bytes:
    rng = np.random.default_rng(15)
    plane = (rng.random((224, 224)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(plane).save(buffer, format="PNG")
    return buffer.getvalue()


def _load(service: RunningService, film: bytes, clients: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=60) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = http.post(
                    "/v1/predict", files={"file": ("f.png", film, "image/png")}, params={"overlay": "true"}
                )
                elapsed = (time.perf_counter() - started) * 1000.0
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": len(latencies),
        "per_s": round(len(latencies) / seconds, 1),
        "statuses": dict(statuses),
        "latency_ms": latency_percentiles(latencies),
    }


class Attackers:
    """``count`` connections, each sending headers and a part header, then one byte per interval."""

    def __init__(self, service: RunningService, film: bytes, count: int) -> None:
        parts = urlsplit(service.url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        head = (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        self.body = head + film + f"\r\n--{_BOUNDARY}--\r\n".encode()
        self.headers = (
            "POST /v1/predict HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            f"Authorization: {service.headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={_BOUNDARY}\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        ).encode()
        self.count = count
        self.stop = threading.Event()
        self.opened = 0
        self.answers: Counter[str] = Counter()
        self.lifetimes: list[float] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._attacker, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _attacker(self) -> None:
        while not self.stop.is_set():
            self._one_connection()

    def _one_connection(self) -> None:
        opened = time.monotonic()
        with socket.create_connection(self.address, timeout=30) as sock:
            with self.lock:
                self.opened += 1
            sent = 0
            try:
                sock.sendall(self.headers + self.body[:200])
                sent = 200
                while not self.stop.is_set() and sent < len(self.body) - 1:
                    readable, _, _ = select.select([sock], [], [], _TRICKLE_S)
                    if readable:
                        break
                    sock.sendall(self.body[sent : sent + 1])
                    sent += 1
                answer = self._status(sock) if not self.stop.is_set() else "stopped"
            except OSError:
                answer = "connection reset"
        with self.lock:
            self.answers[answer] += 1
            if answer != "stopped":
                self.lifetimes.append(time.monotonic() - opened)

    @staticmethod
    def _status(sock: socket.socket) -> str:
        chunks = []
        while chunk := sock.recv(65536):  # the server closes after a refusal (Connection: close)
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            return "closed without answer"
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        try:
            code = json.loads(body).get("code")
        except ValueError:
            code = None
        return f"{status} {code}"


def run(model: Path, clients: int, seconds: float) -> dict[str, object]:
    film = _film()
    with running_service(model) as service:
        _load(service, film, clients, 3.0)  # warm-up
        idle = _load(service, film, clients, seconds)
        attackers = Attackers(service, film, _ATTACKERS)
        attackers.start()
        time.sleep(_TRICKLE_S * 2)  # all 20 connected and trickling
        attacked = _load(service, film, clients, seconds)
        attackers.finish()
    idle_latency, attacked_latency = idle["latency_ms"], attacked["latency_ms"]
    assert isinstance(idle_latency, dict) and isinstance(attacked_latency, dict)
    ratios = {key: round(attacked_latency[key] / idle_latency[key], 2) for key in ("p50", "p95")}
    lifetimes = sorted(attackers.lifetimes)
    return {
        "command": " ".join(["python -m bench.slowloris", *sys.argv[1:]]),
        "load_average": os.getloadavg(),
        "clients": clients,
        "seconds_per_phase": seconds,
        "idle": idle,
        "under_attack": attacked,
        "latency_ratio": ratios,
        "within_2x": all(ratio <= 2.0 for ratio in ratios.values()),
        "attackers": {
            "concurrent": _ATTACKERS,
            "trickle_interval_s": _TRICKLE_S,
            "connections_opened": attackers.opened,
            "answers": dict(attackers.answers),
            "seconds_until_cut_p50": round(lifetimes[len(lifetimes) // 2], 1) if lifetimes else None,
        },
    }


def _row(name: str, phase: dict[str, object]) -> str:
    latency = phase["latency_ms"]
    assert isinstance(latency, dict)
    return (
        f"| {name} | {phase['requests']} | {phase['per_s']} | {phase['statuses']} | "
        f"{latency['p50']} | {latency['p95']} | {latency['p99']} |"
    )


def _text(report: dict[str, object]) -> str:
    idle, attacked = report["idle"], report["under_attack"]
    assert isinstance(idle, dict) and isinstance(attacked, dict)
    return "\n".join(
        [
            f"command: {report['command']}",
            f"load average at the end: {report['load_average']}",
            f"{report['clients']} clients posting a 224 x 224 PNG, {report['seconds_per_phase']} s per phase",
            "",
            "| phase | requests | per s | statuses | p50 ms | p95 ms | p99 ms |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
            *(_row(name, phase) for name, phase in (("idle", idle), ("20 slow-loris uploads", attacked))),
            "",
            f"latency ratio under attack / idle: {report['latency_ratio']}; within 2x: {report['within_2x']}",
            f"attackers: {json.dumps(report['attackers'])}",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench" / "slowloris")
    args = parser.parse_args()
    report = run(args.model, args.clients, args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".txt").write_text(_text(report))
    print(_text(report))
    return 0 if report["within_2x"] else 1


if __name__ == "__main__":
    sys.exit(main())
