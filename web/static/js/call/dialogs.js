// Accessible modal dialogs on the native <dialog> element.
//
// showModal() makes the rest of the page inert (screen readers see only the dialog;
// openModal also keeps Tab inside it) and the markup carries role="dialog"/"alertdialog",
// aria-modal and aria-labelledby/aria-describedby. On top of that we: move focus to the
// safe choice, treat Escape as Cancel, and give focus back to whatever had it before.

import { openModal } from "../modal-dialog.js";

/**
 * Open `dialog` and resolve with the `data-choice` of the button pressed, or `cancelValue`
 * when the user presses Escape. Only one answer is ever given, however many clicks.
 * @param {HTMLDialogElement} dialog
 * @param {object} [options]
 * @param {string} [options.cancelValue="cancel"]  what Escape means
 * @param {string} [options.focus]  data-choice of the button that gets focus first
 * @param {HTMLElement} [options.returnFocus]  where focus goes afterwards (default: the
 *   element focused when the dialog opened)
 * @returns {{answer: Promise<string>, close: () => void}}
 *   `close()` dismisses it from outside (e.g. the server made the question moot); the
 *   answer then resolves to "dismissed".
 */
export function askChoice(dialog, { cancelValue = "cancel", focus = cancelValue, returnFocus } = {}) {
  const opener =
    returnFocus || (document.activeElement instanceof HTMLElement ? document.activeElement : null);
  let settle;
  const answer = new Promise((resolve) => (settle = resolve));
  let done = false;

  const finish = (choice) => {
    if (done) return;
    done = true;
    dialog.removeEventListener("click", onClick);
    dialog.removeEventListener("cancel", onCancel);
    dialog.removeEventListener("close", onClose);
    if (dialog.open) dialog.close();
    for (const button of dialog.querySelectorAll("button[data-choice]")) button.disabled = false;
    // Focus goes back to where it was (the hang-up button), if it is still on screen.
    if (opener && opener.isConnected && !opener.closest("[hidden]")) opener.focus();
    settle(choice);
  };
  const onClick = (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-choice]") : null;
    if (!button || !dialog.contains(button)) return;
    // Disable at once: a double click must not send two answers.
    for (const other of dialog.querySelectorAll("button[data-choice]")) other.disabled = true;
    finish(button.dataset.choice);
  };
  const onCancel = (event) => {
    event.preventDefault(); // we close it ourselves, so focus handling stays in one place
    finish(cancelValue);
  };
  // Chromium may close a modal dialog on Escape without a cancel event (close watcher
  // rules); a close we did not ask for is still a Cancel.
  const onClose = () => finish(cancelValue);

  dialog.addEventListener("click", onClick);
  dialog.addEventListener("cancel", onCancel);
  dialog.addEventListener("close", onClose);
  if (!dialog.open) openModal(dialog);
  const first = dialog.querySelector(`button[data-choice="${focus}"]`) || dialog.querySelector("button");
  if (first) first.focus();
  return { answer, close: () => finish("dismissed") };
}

/**
 * A non-modal notice announced to screen readers (role="status" in the markup), e.g.
 * "Your clinician would like to carry on". Hidden again after `ms`.
 */
export function flashNotice(element, text, ms = 8000) {
  element.textContent = text;
  element.hidden = false;
  clearTimeout(element._hideTimer);
  element._hideTimer = setTimeout(() => {
    element.hidden = true;
  }, ms);
}
