"""`/docs` renders every operation in a real headless Chromium with no network but loopback: Swagger
UI's assets come from the gateway itself, not a CDN."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile

import httpx
import pytest

from tests.gateway.harness import GatewayProcess

#: Browsers tried in order (`QT_CHROMIUM` first); `.ci/install-browser` installs Debian's `chromium`.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The browser's path; in CI (`CI=true`) a missing browser fails the test instead of skipping it."""
    for name in (os.environ.get("QT_CHROMIUM", ""), *BROWSERS):
        found = shutil.which(name) if name else None
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("no Chromium found (run .ci/install-browser, or set QT_CHROMIUM)")
    pytest.skip("no Chromium here: run .ci/install-browser (in CI this is a failure, not a skip)")


async def rendered_dom(browser: str, url: str) -> str:
    """The page's DOM after its scripts ran, with every host but 127.0.0.1 unresolvable (offline)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_docs_render_every_operation_offline(gateway: GatewayProcess, client: httpx.AsyncClient) -> None:
    browser = chromium()
    paths = set((await client.get("/openapi.json")).json()["paths"])
    dom = await rendered_dom(browser, f"{gateway.url}/docs")
    assert "swagger-ui" in dom
    rendered = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
    assert rendered == paths, f"operations missing from /docs: {sorted(paths - rendered)[:10]}"
    assert len(re.findall(r'class="opblock opblock-', dom)) >= len(paths)
