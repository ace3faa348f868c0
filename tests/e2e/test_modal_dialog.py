"""The app's one question dialog (web/static/js/modal-dialog.js) in a real Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.browser import LiveServer  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


async def test_a_question_asked_again_at_once_is_not_closed_by_the_earlier_ones_close(
    page: Page, live_server: LiveServer
) -> None:
    # A dialog's close event is queued. Escape on "Buy video minutes" then Enter on the same
    # bundle at once reopened the dialog before the first close arrived, and that close
    # cancelled the new question: the dialog vanished under the keyboard user.
    await page.goto(live_server.at("/login"), wait_until="domcontentloaded")
    state = await page.evaluate(
        """async () => {
            const { askChoice } = await import("/static/js/modal-dialog.js");
            const dialog = document.createElement("dialog");
            dialog.innerHTML = '<p>Buy?</p><button data-choice="cancel">Cancel</button>'
                + '<button data-choice="buy">Buy now</button>';
            document.body.append(dialog);
            const first = askChoice(dialog, { focus: "buy" });
            first.close();
            const second = askChoice(dialog, { focus: "buy" });
            let answer = null;
            second.answer.then((choice) => (answer = choice));
            await new Promise((resolve) => setTimeout(resolve, 100));
            const focused = document.activeElement.textContent;
            const state = { open: dialog.open, answer, focused };
            dialog.querySelector('[data-choice="buy"]').click();
            await second.answer;
            return { ...state, finally: answer, first: await first.answer };
        }"""
    )
    assert state == {
        "open": True,
        "answer": None,
        "focused": "Buy now",
        "finally": "buy",
        "first": "dismissed",
    }
