"""labkit.teaching.steps: the handout's hands-on steps shown one by one (pure parts; the lab parts run in the
tiny lab of test_notebooks, whose notebook 02 asserts every step-14 request answered)."""

from __future__ import annotations

from labkit.nginx_conf import render_nginx_conf
from labkit.teaching.steps import DEFAULT_SITE, image_step, nginx_change


class _Named:
    def __init__(self, name, images=()):
        self.name, self._images = name, list(images)

    def status(self):
        return {"images": self._images}


def test_nginx_change_shows_the_upstream_block_replacing_the_default_location(tmp_path):
    after = render_nginx_conf("10.0.0.9", 80, [("10.0.0.2", 8080), ("10.0.0.3", 8080)], str(tmp_path))
    diff = nginx_change(after)
    assert diff.startswith("--- before (default site)\n+++ after (the balancer's nginx.conf)")
    assert "-        try_files $uri $uri/ =404;" in diff
    assert "+    upstream fibonacci {" in diff and "+        server 10.0.0.3:8080;" in diff
    assert "+            proxy_pass http://fibonacci;" in diff and "+    worker_connections 4096;" in diff
    assert "try_files" in DEFAULT_SITE


def test_image_step_says_what_was_done_or_what_stands_in():
    assert image_step(_Named("gcp", ["labkit-20261204-abcd-restserver"])).startswith(
        "gcp: restserver-0 was stopped and its disk imaged as labkit-20261204-abcd-restserver")
    assert "no image made yet" in image_step(_Named("gcp"))
    assert image_step(_Named("local")).startswith("local: no image")
    assert image_step(_Named("ssh")).startswith("ssh: no image")
