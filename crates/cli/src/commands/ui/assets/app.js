// mlctl ui: the only script. The pages work without it; it adds confirmation to actions
// and keeps "Compare selected" off until two runs are ticked.
(function () {
  "use strict";
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.matches && f.matches("form.action")) {
      var q = f.getAttribute("data-confirm");
      if (q && !window.confirm(q)) { e.preventDefault(); return; }
      var b = f.querySelector("button");
      if (b) { b.disabled = true; b.textContent = "Working…"; }
    }
  });
  function syncCompare() {
    var form = document.getElementById("compare-form");
    if (!form) return;
    var n = form.querySelectorAll("input[name=id]:checked").length;
    var b = document.getElementById("compare");
    if (b) b.disabled = n < 2;
  }
  document.addEventListener("change", syncCompare);
  document.addEventListener("DOMContentLoaded", syncCompare);
})();
