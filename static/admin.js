// Live refresh for pages that ask for it (<body data-refresh="N">). The
// switch is remembered per browser; with it off, or without JavaScript,
// pages stay as loaded.
(function () {
  "use strict";
  var secs = Number(document.body.dataset.refresh || 0);
  var label = document.getElementById("live");
  var box = document.getElementById("live-toggle");
  if (!secs || !label || !box) return;
  var KEY = "gatehouse.live";
  var timer = null;
  function arm() {
    if (timer) clearTimeout(timer);
    timer = box.checked ? setTimeout(function () { location.reload(); }, secs * 1000) : null;
  }
  box.checked = localStorage.getItem(KEY) !== "off";
  label.hidden = false;
  box.addEventListener("change", function () {
    localStorage.setItem(KEY, box.checked ? "on" : "off");
    arm();
  });
  arm();
})();

// Forms that cannot be undone ask first (<form data-confirm="...">).
document.addEventListener("submit", function (e) {
  "use strict";
  var msg = e.target.dataset && e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});
