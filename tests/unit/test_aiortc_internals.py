"""Fails loudly when aiortc moves the private internals media/aiortc_adapter relies on.

If this fails after an aiortc upgrade: read media/aiortc_adapter/__init__.py's docstring, adapt the
adapter to the new internals, re-run tests/e2e/test_media_forwarding.py, then add the
version to TESTED_AIORTC_VERSIONS.
"""

from __future__ import annotations

import aiortc

from media.aiortc_adapter import TESTED_AIORTC_VERSIONS, check_aiortc_internals


async def test_aiortc_version_is_one_the_forwarder_was_tested_with() -> None:
    assert aiortc.__version__ in TESTED_AIORTC_VERSIONS, (
        f"aiortc {aiortc.__version__} is installed, but media/aiortc_adapter was tested with "
        f"{TESTED_AIORTC_VERSIONS}: check its internals and pin the new version"
    )


async def test_private_internals_used_by_the_forwarder_are_present() -> None:
    problems = await check_aiortc_internals()
    assert not problems, "aiortc internals moved:\n  " + "\n  ".join(problems)
