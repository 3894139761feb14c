// The meeting's screens: a save that failed shows on the section (or scoring question) that made it,
// and forms marked data-retry (they carry a key, so resending never records twice) are resent with a
// growing delay until the node answers. Also the print button. No inline script (the CSP forbids it).
(function () {
  "use strict";
  var MAX_ATTEMPTS = 40;
  function box(elt) {
    return elt && elt.closest ? elt.closest("[data-save], .q") : null;
  }
  function failed(evt, retry) {
    var elt = evt.detail.elt;
    var b = box(elt);
    if (b) { b.classList.add("save-failed"); }
    var form = retry && elt && elt.closest ? elt.closest("form[data-retry]") : null;
    if (!form) { return; }
    var attempts = (parseInt(form.getAttribute("data-attempts"), 10) || 0) + 1;
    form.setAttribute("data-attempts", String(attempts));
    if (b) { b.classList.add("save-retrying"); }
    if (attempts > MAX_ATTEMPTS) { return; }
    window.setTimeout(function () {
      if (document.body.contains(form)) { window.htmx.trigger(form, "submit"); }
    }, Math.min(1500 * attempts, 15000));
  }
  document.addEventListener("htmx:sendError", function (evt) { failed(evt, true); });
  document.addEventListener("htmx:responseError", function (evt) { failed(evt, false); });
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (!evt.detail.successful && evt.detail.xhr && evt.detail.xhr.status !== 422) { return; }
    var b = box(evt.detail.elt);
    if (b) { b.classList.remove("save-failed", "save-retrying"); }
  });
  document.addEventListener("click", function (evt) {
    var target = evt.target && evt.target.closest ? evt.target.closest("[data-print]") : null;
    if (target) { window.print(); }
  });
})();
