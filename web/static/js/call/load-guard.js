// A call page whose scripts did not all load would stay at "Loading…" for ever: the
// network dropped or changed while the page was loading (a browser aborts its requests in
// flight when the computer joins another network). Say so, and offer a reload.
//
// A classic script, loaded before the page's modules, so that it runs even when every
// module fails: a module whose own imports fail fires "error" at its <script> element,
// which this listener (capturing, on the window) sees.
(() => {
  let shown = false;
  function showReload() {
    const alert = document.getElementById("call-alert");
    if (!alert) return;
    alert.replaceChildren(
      "This page did not load completely: the connection dropped or changed. ",
    );
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button";
    button.id = "reload-page";
    button.textContent = "Reload the page";
    button.addEventListener("click", () => location.reload());
    alert.append(button);
    alert.hidden = false;
  }
  window.addEventListener(
    "error",
    (event) => {
      if (shown || !(event.target instanceof HTMLScriptElement)) return;
      shown = true;
      if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", showReload);
      } else {
        showReload();
      }
    },
    true,
  );
})();
