// Refreshes the part of the page inside <div id="live"> every data-refresh seconds, unless the
// tab is hidden or the reader is using it: a control in it has the focus or was typed into, or
// a <details> in it is open.
"use strict";
(function () {
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0)) { return; }
  var busy = false;
  function inUse(live) {
    if (document.hidden || live.contains(document.activeElement) || live.querySelector("details[open]")) {
      return true;
    }
    return Array.prototype.some.call(live.querySelectorAll("input"), function (input) {
      return input.type !== "hidden" && input.value !== input.defaultValue;
    });
  }
  function refresh() {
    var live = document.getElementById("live");
    if (busy || !live || inUse(live)) { return; }
    busy = true;
    fetch(window.location.href, {headers: {"X-Refresh": "1"}, credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        var current = document.getElementById("live");
        if (html === null || html.indexOf('<div id="live">') !== 0 || !current || inUse(current)) { return; }
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.firstElementChild;
        if (fresh) {
          current.replaceWith(fresh);
          document.body.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next round tries again */ })
      .finally(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
})();
