"""Load test of the latent explorer on loopback: N decode requests from C concurrent clients.

Starts the server in this process on 127.0.0.1 (a free port), sends a bounded number of
POST /api/decode requests with random latents, and prints requests/second and latency
percentiles. Every request must succeed.

    python bench/serve_load.py RUN [--requests 2000] [--clients 8]
    python bench/serve_load.py          # trains a small digits run first
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import vaekit
from vaekit.serve import create_app


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", type=Path)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.run is None:
        cfg = vaekit.Config()
        cfg.train.epochs = 20
        args.run = vaekit.train(cfg, out=Path(tmp.name) / "run", quiet=True, pictures=False).path
    run = vaekit.Run.load(args.run)

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    srv = make_server("127.0.0.1", 0, create_app(run), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port, latent = srv.server_port, run.model.latent
    per_client = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]

    def client(n, seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat, failures = [], 0
        for _ in range(n):
            body = json.dumps({"z": [rng.gauss(0, 1) for _ in range(latent)]})
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                ok = r.status == 200 and json.loads(data)["image"].startswith("data:image/png")
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            lat.append(time.perf_counter() - t)
            failures += not ok
        conn.close()
        return lat, failures

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(client, per_client, range(args.clients)))
    wall = time.perf_counter() - start
    srv.shutdown()
    lat = sorted(x for r in results for x in r[0])
    failures = sum(r[1] for r in results)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * len(lat))) - 1)]
    print(f"{len(lat)} requests from {args.clients} clients in {wall:.2f} s: {len(lat) / wall:,.0f} requests/s; "
          f"latency p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms; {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
