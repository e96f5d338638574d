"""The latent explorer: a small local web app (Flask) over a run directory.

    vaekit serve runs/x [--port 8000] [--host 127.0.0.1]

The page shows the 2-D map of the test set's posterior means (PCA when the latent is
larger). Decoded points are shown as images, as lines of text, or as a spectrogram with a
sound player, by the run's kind of data. Clicking the map decodes that point, and one slider per latent dimension (the
most active first) moves the decoded point; the button beside a slider traverses that dimension
(its whole range, decoded, around the point). Picking two test examples shows the
interpolation between them. Decoding runs on the server; every request is validated, and
a malformed one gets HTTP 400 with a JSON message.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import torch

from .eval.metrics import kl_per_dimension
from .kinds.media import latent_points, spread
from .traversal import vary

PAGE = (Path(__file__).parent / "explorer.html")
#: the largest request body the explorer reads (its requests are a few hundred bytes); larger: 413
MAX_REQUEST_BYTES = 64 * 1024
#: seconds a connection may take to send its request before the worker drops it
REQUEST_TIMEOUT_S = 10.0


class BadRequest(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadRequest(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _integer(v, what: str, n: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
        raise BadRequest(f"{what} must be an integer from 0 to {n - 1}, got {v!r}")
    return v


class Explorer:
    """What the server precomputes once: posterior means of the test set, the 2-D map, ranges."""

    def __init__(self, run, max_points: int = 2000):
        self.run, self.model = run, run.model
        bundle = run.data
        shown = spread(bundle.test.shape[0], max_points).to(bundle.test.device)
        self.x = bundle.test[shown]
        self.labels = bundle.test_labels[shown].tolist() if bundle.test_labels is not None else None
        self.label_names = bundle.label_names
        self.classes = self.model.classes
        self.y = bundle.test_labels[shown] if self.classes else None
        # the units shown: all, or the top layer of a deep hierarchy (the layers below follow from it)
        self.units = getattr(self.model.prior, "explored_units", None) or self.model.latent
        with torch.no_grad():
            self.mu = self.model.prior.coordinates(self.model.encode(self.x, self.y))[:, :self.units]
        self.xy, self.axes, self.pca = latent_points(self.model, self.x, max_points, self.y, units=self.units)
        activity, self.measure = kl_per_dimension(self.model, self.x, self.y)   # KL, or the means' variance
        activity = list(activity)[:self.units]
        self.order = [int(i) for i in np.argsort(-np.asarray(activity), kind="stable")]
        self.activity = activity
        lo = (self.mu.min(0).values - 0.5).clamp(max=-3.0)
        hi = (self.mu.max(0).values + 0.5).clamp(min=3.0)
        self.ranges = torch.stack([lo, hi], 1).tolist()
        self.lock = threading.Lock()  # one decode at a time: torch uses all cores for each

    @property
    def latent(self) -> int:
        return self.units

    def whole(self, z: torch.Tensor) -> torch.Tensor:
        """The latent to decode for points of the units shown."""
        return self.model.prior.path(self.model.prior.completed(z) if self.units < self.model.latent else z)

    @property
    def variables(self) -> list[tuple[int, int]]:
        """The latent's categorical variables, (first unit, categories) each (a prior without any: none)."""
        return getattr(self.model.prior, "variables", list)()

    def info(self) -> dict:
        return {"run": str(self.run.path), "latent": self.latent, "order": self.order, "activity": self.activity,
                "measure": self.measure, "ranges": self.ranges, "axes": list(self.axes), "label_names": self.label_names,
                "points": [[float(a), float(b)] for a, b in self.xy], "labels": self.labels,
                "shape": list(self.run.info["shape"]), "classes": self.classes, "modality": self.run.modality,
                "variables": [list(v) for v in self.variables], "codes": self.codes}

    @property
    def codes(self) -> dict | None:
        """A VQ-VAE's code layout for the explorer: positions, codebook vectors, and the map's
        shape (h, w) where the codes form one; None for other latents."""
        prior = self.model.prior
        if not hasattr(prior, "codes_of"):
            return None
        grid = getattr(prior, "code_map", None)
        return {"positions": prior.positions, "dim": prior.code_dim, "vectors": prior.codebook.tolist(),
                "map": list(grid[1:]) if grid else [1, prior.positions]}

    def decode(self, z: list[float], label: int | None = None) -> dict:
        with self.lock, torch.no_grad():
            t = torch.tensor([z], dtype=torch.float32, device=self.mu.device)
            y = None if not self.classes else torch.tensor([label or 0], device=self.mu.device)
            return self.run.media.render(self.model.decode_to_data(self.whole(t), True, y))

    def traverse(self, z: list[float], dim: int, steps: int, label: int | None = None) -> dict:
        """Dimension ``dim`` of the point z run over its slider's range in ``steps`` values, decoded;
        where ``dim`` is the first unit of a categorical variable, that variable through each of
        its categories (``steps`` is then their number)."""
        with self.lock, torch.no_grad():
            point = torch.tensor(z, dtype=torch.float32, device=self.mu.device)
            variable = dict(self.variables).get(dim)
            if variable:
                values = torch.arange(variable, dtype=torch.float32, device=self.mu.device)
                row = point.repeat(variable, 1)
                row[:, dim:dim + variable] = torch.eye(variable, device=self.mu.device)
                steps = variable
            else:
                lo, hi = self.ranges[dim]
                values = torch.linspace(lo, hi, steps, device=self.mu.device)
                row = vary(point, [dim], values)[0]
            y = None if not self.classes else torch.full((steps,), label or 0, device=self.mu.device)
            return {"values": values.tolist(),
                    **self.run.media.render(self.model.decode_to_data(self.whole(row), True, y))}

    def point_to_z(self, x: float, y: float) -> list[float]:
        if self.pca is None:
            z = [x, y][: self.latent]
        else:
            z = self.pca.inverse_transform(np.array([[x, y]]))[0].tolist()
        return [float(v) for v in z]

    def example(self, i: int) -> dict:
        with self.lock, torch.no_grad():
            y = None if self.y is None else self.y[i:i + 1]
            return {"index": i, "z": self.mu[i].tolist(), "example": self.run.media.render(self.x[i:i + 1]),
                    "label": None if self.labels is None else self.labels[i],
                    "reconstruction": self.run.media.render(self.model.reconstruct(self.x[i:i + 1], y=y))}

    def interpolate(self, a: int, b: int, steps: int) -> dict:
        with self.lock, torch.no_grad():
            ya, yb = (None, None) if self.y is None else (self.y[a:a + 1], self.y[b:b + 1])
            path = self.model.interpolate(self.x[a:a + 1], self.x[b:b + 1], steps, ya, yb)[0]
            return self.run.media.render_path(self.x[a:a + 1], path, self.x[b:b + 1])


def create_app(run) -> "Flask":
    from flask import Flask, jsonify, request  # imported here: `import vaekit` does not need a web stack
    from werkzeug.exceptions import HTTPException

    ex = Explorer(run)
    app = Flask("vaekit")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES  # a larger body: 413, as JSON below
    app.json.sort_keys = False

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    @app.errorhandler(BadRequest)
    def bad_request(e):
        return jsonify(error=e.message), 400

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=e.description), e.code

    @app.get("/")
    def page():
        return PAGE.read_text(), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/info")
    def info():
        return jsonify(ex.info())

    def label_of(data) -> int | None:
        if not ex.classes or data.get("label") is None:
            return None
        return _integer(data["label"], "'label'", ex.classes)

    def latent_of(data) -> list[float]:
        z = data.get("z")
        if not isinstance(z, list) or len(z) != ex.latent:
            raise BadRequest(f"'z' must be a list of {ex.latent} numbers")
        return [_number(v, f"z[{i}]") for i, v in enumerate(z)]

    @app.post("/api/decode")
    def decode():
        data = body()
        return jsonify(ex.decode(latent_of(data), label_of(data)))

    @app.post("/api/decode_point")
    def decode_point():
        data = body()
        x, y = _number(data.get("x"), "x"), _number(data.get("y"), "y")
        z = ex.point_to_z(x, y)
        return jsonify(z=z, **ex.decode(z, label_of(data)))

    @app.get("/api/example/<int:i>")
    def example(i):
        return jsonify(ex.example(_integer(i, "the example index", ex.x.shape[0])))

    @app.post("/api/interpolate")
    def interpolate():
        data = body()
        n = ex.x.shape[0]
        a, b = _integer(data.get("a"), "'a'", n), _integer(data.get("b"), "'b'", n)
        steps = _integer(data.get("steps", 8), "'steps'", 33)
        return jsonify(ex.interpolate(a, b, max(steps, 2)))

    @app.post("/api/traverse")
    def traverse():
        data = body()
        z = latent_of(data)
        dim = _integer(data.get("dim"), "'dim'", ex.latent)
        steps = _integer(data.get("steps", 9), "'steps'", 33)
        return jsonify(ex.traverse(z, dim, max(steps, 2), label_of(data)))

    return app


def make_explorer_server(run, host: str = "127.0.0.1", port: int = 8000, timeout: float = REQUEST_TIMEOUT_S):
    """The explorer's HTTP server (werkzeug, a thread per request). A connection that does not send
    its whole request within ``timeout`` seconds is dropped, which frees its worker."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        pass

    Handler.timeout = timeout  # socketserver sets it on each connection's socket
    return make_server(host, port, create_app(run), threaded=True, request_handler=Handler)


def serve(run, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False):
    """Serve the explorer until interrupted."""
    server = make_explorer_server(run, host, port)
    if not quiet:
        print(f"latent explorer for {run.path} on http://{host}:{server.server_port}/  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
