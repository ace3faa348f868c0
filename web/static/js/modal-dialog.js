// Opening a native <dialog> as a modal that keeps the keyboard focus.
//
// showModal() makes the rest of the page inert, but Tab from the dialog's last control
// still leaves for the browser's own toolbar. A person working by keyboard expects Tab to
// go round the dialog's controls, so Tab on the last goes to the first and Shift+Tab on the
// first to the last. Used by every dialog of the practice pages and the call pages.

const FOCUSABLE = [
  "a[href]",
  "button:not([disabled])",
  "input:not([disabled]):not([type=hidden])",
  "select:not([disabled])",
  "textarea:not([disabled])",
  "[tabindex]:not([tabindex='-1'])",
].join(", ");

const trapped = new WeakSet();

function focusableIn(dialog) {
  return [...dialog.querySelectorAll(FOCUSABLE)].filter(
    (node) => node.closest("dialog") === dialog && node.getClientRects().length > 0 && !node.closest("[hidden]"),
  );
}

function keepFocusIn(dialog) {
  if (trapped.has(dialog)) return;
  trapped.add(dialog);
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab" || event.defaultPrevented) return;
    if (!(event.target instanceof Element) || event.target.closest("dialog") !== dialog) return;
    const controls = focusableIn(dialog);
    if (!controls.length) return;
    const first = controls[0];
    const last = controls[controls.length - 1];
    // A radio group is one tab stop: its checked member stands for it at either end.
    const at = (control) => event.target === control || (control.type === "radio" && event.target.name === control.name && control.name);
    if (event.shiftKey ? at(first) : at(last)) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  });
}

/** showModal() `dialog`, with Tab kept inside it while it is open. */
export function openModal(dialog) {
  keepFocusIn(dialog);
  dialog.showModal();
}

// A question in a dialog (End Call / Cancel, Abandon, Buy now): focus goes to the safe
// choice, Escape is Cancel, and the focus goes back to whatever had it before.
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
  // rules); a close we did not ask for is still a Cancel. The close event is queued, so
  // the one of an earlier question can arrive after this question reopened the dialog
  // (Escape, then Enter on the same button at once): a dialog still open was not closed.
  const onClose = () => {
    if (!dialog.open) finish(cancelValue);
  };

  dialog.addEventListener("click", onClick);
  dialog.addEventListener("cancel", onCancel);
  dialog.addEventListener("close", onClose);
  if (!dialog.open) openModal(dialog);
  const first = dialog.querySelector(`button[data-choice="${focus}"]`) || dialog.querySelector("button");
  if (first) first.focus();
  return { answer, close: () => finish("dismissed") };
}
