// Template editor: show only the fields that matter for the chosen item type.
// Loaded by the version page (no inline script: the CSP forbids it); works on forms htmx swaps in.
(function () {
  "use strict";
  function sync(form) {
    var select = form.querySelector("select[name=type]");
    if (!select) { return; }
    form.querySelectorAll(".type-only").forEach(function (box) {
      var types = (box.getAttribute("data-types") || "").split(" ");
      box.hidden = types.indexOf(select.value) === -1;
    });
  }
  function syncAll(root) {
    (root || document).querySelectorAll("form.item-form").forEach(sync);
  }
  document.addEventListener("change", function (evt) {
    if (evt.target && evt.target.name === "type" && evt.target.form && evt.target.form.classList.contains("item-form")) {
      sync(evt.target.form);
    }
  });
  document.addEventListener("htmx:afterSettle", function () { syncAll(document); });
  document.addEventListener("DOMContentLoaded", function () { syncAll(document); });
})();
