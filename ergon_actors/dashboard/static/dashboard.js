// Refreshes the part of the page inside <div id="live"> every data-refresh seconds, unless the
// reader is using a control inside it or the tab is hidden.
"use strict";
(function () {
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0)) { return; }
  var busy = false;
  function refresh() {
    var live = document.getElementById("live");
    if (busy || !live || document.hidden || live.contains(document.activeElement) ||
        live.querySelector("details[open]")) { return; }
    busy = true;
    fetch(window.location.href, {headers: {"X-Refresh": "1"}, credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null && html.indexOf('<div id="live">') === 0) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.firstElementChild;
          if (fresh) { live.replaceWith(fresh); document.body.setAttribute("data-refreshed", String(Date.now())); }
        }
      })
      .catch(function () { /* the next round tries again */ })
      .finally(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
})();
