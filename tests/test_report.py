"""The HTML report: self-contained, every image present and a real PNG."""

import base64
import io
from html.parser import HTMLParser

from PIL import Image


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append((a.get("alt"), a.get("src", "")))
        for key in ("src", "href"):
            if key in a and a[key].startswith(("http:", "https:", "//")):
                self.external.append(a[key])


def parse(path):
    p = Images()
    p.feed(path.read_text())
    return p


def test_report_written_at_the_end_of_training(digits_run):
    p = parse(digits_run / "report.html")
    alts = [a for a, _ in p.images]
    for expected in ("learning curves", "prior samples", "reconstructions", "interpolations", "KL per dimension",
                     "latent map"):
        assert expected in alts
    assert not p.external, "the report must not load anything from the network"
    for alt, src in p.images:
        assert src.startswith("data:image/png;base64,"), alt
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.size[0] > 50 and img.size[1] > 50, alt


def test_report_command_includes_the_evaluation(digits_run, cli, tmp_path):
    assert cli("evaluate", digits_run, "--k", "10", "--quiet")[0] == 0
    rc, out, _ = cli("report", digits_run, "--out", tmp_path / "r.html")
    assert rc == 0 and str(tmp_path / "r.html") in out
    text = (tmp_path / "r.html").read_text()
    assert "NLL (importance sampled)" in text and "k = 10" in text and "active units" in text
    assert "<pre>" in text and "latent: 4" in text  # the configuration


def test_progress_written_to_a_log_updates_every_30_seconds_not_every_batch(digits_run, cli):
    """With stderr a file or a pipe (here pytest's capture), the k-sample NLL's bar draws once
    at the start and once at the end, not on every batch: a log under nohup stays readable."""
    import time

    start = time.perf_counter()
    rc, _, err = cli("evaluate", digits_run, "--k", "20000", "--json", digits_run / "log-eval.json")
    assert rc == 0
    assert time.perf_counter() - start > 1.0  # long enough for an ordinary bar to redraw many times
    assert 1 <= err.count("IS-NLL k=20000") <= 3, err


def test_a_run_shows_itself_in_a_notebook(digits_run):
    import vaekit

    page = vaekit.Run.load(digits_run)._repr_html_()
    assert str(digits_run) in page and "valid ELBO" in page and "latent 4" in page
    assert page.count("data:image/png;base64,") == 2          # the curves and the samples
