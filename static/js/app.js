// Small behaviours htmx does not cover. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";
  // A save that failed shows plainly on the control that made it; the next tap retries.
  function markFailed(evt) {
    var tile = evt.detail.elt && evt.detail.elt.closest ? evt.detail.elt.closest(".tile") : null;
    if (tile) { tile.classList.add("tile--error"); }
  }
  function clearFailed(evt) {
    var tile = evt.detail.elt && evt.detail.elt.closest ? evt.detail.elt.closest(".tile") : null;
    if (tile) { tile.classList.remove("tile--error"); }
  }
  document.addEventListener("htmx:sendError", markFailed);
  document.addEventListener("htmx:responseError", markFailed);
  document.addEventListener("htmx:beforeRequest", clearFailed);
})();
