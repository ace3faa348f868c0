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
