"""Chromium for the network tests: inside a participant's namespace, or on this machine,
with a 30 fps fake camera (Chromium's default fake camera runs at 20 fps, which would
make ">= 20 fps at the far end" a test of the camera, not of the link).

Playwright talks to Chromium over a pipe, so a wrapper that runs Chromium under
`ip netns exec` is all it takes: the browser's every packet (page loads, the call
socket, media) then crosses the participant's link. A page on the link's address is not
a secure context (no camera) unless Chromium is told to treat that origin as one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from playwright.async_api import Browser, BrowserType

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.net.links import Link

FAKE_CAMERA_30_FPS = "--use-fake-device-for-media-stream=fps=30"


def write_busy_camera(path: Path, *, width: int = 640, height: int = 480, frames: int = 30) -> Path:
    """A 30 fps Y4M clip (played in a loop by the fake camera) that a VP8 encoder needs
    well over a megabit for: a moving gradient with a quarter of the picture in noise.
    Chromium's own fake camera draws so little that it never sends much above 500 kbit/s,
    which would leave nothing for a 500 kbit/s cap to squeeze."""
    rng = np.random.default_rng(15)
    columns = np.arange(width, dtype=np.uint16)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            luma = np.tile(((columns + index * 8) % 256).astype(np.uint8), (height, 1))
            noise = rng.integers(0, 256, size=(height // 2, width // 2), dtype=np.uint8)
            top, left = (index * 4) % (height // 2), (index * 8) % (width // 2)
            luma[top : top + height // 2, left : left + width // 2] = noise
            chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
            out.write(b"FRAME\n" + luma.tobytes() + chroma.tobytes() + chroma.tobytes())
    return path


def _args(secure_origins: tuple[str, ...], camera_file: Path | None) -> list[str]:
    args = [
        FAKE_CAMERA_30_FPS if arg == "--use-fake-device-for-media-stream" else arg
        for arg in CHROMIUM_ARGS
    ]
    if camera_file is not None:
        args.append(f"--use-file-for-fake-video-capture={camera_file}")
    if secure_origins:
        args.append("--unsafely-treat-insecure-origin-as-secure=" + ",".join(secure_origins))
    return args


@asynccontextmanager
async def chromium(
    browser_type: BrowserType,
    *,
    link: Link | None = None,
    secure_origins: tuple[str, ...] = (),
    busy_camera: bool = False,
) -> AsyncIterator[Browser]:
    """A Chromium of its own; inside `link`'s namespace when given; with `busy_camera`,
    its camera shows a picture that needs a high bitrate (`write_busy_camera`)."""
    folder = Path(tempfile.mkdtemp(prefix="videoconsult-chromium-"))
    executable = CHROMIUM
    if link is not None:
        wrapper = folder / "chromium-in-namespace"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {link.namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
    camera = write_busy_camera(folder / "camera.y4m") if busy_camera else None
    browser = await browser_type.launch(
        executable_path=executable, args=_args(secure_origins, camera), headless=True
    )
    try:
        yield browser
    finally:
        await browser.close()
        shutil.rmtree(folder, ignore_errors=True)
