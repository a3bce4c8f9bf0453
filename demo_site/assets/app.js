// The single-page section: client-side routing with history.pushState.
// The tag notices each path change by itself and sends one page per change.
(function () {
  "use strict";
  var VIEWS = {
    "/app": { title: "Overview", html: "<p>Your account at a glance: 2 orders, 1 saved address.</p>" },
    "/app/orders": { title: "Orders", html: "<p>Order history: the mug and the day pack, both delivered.</p>" },
    "/app/settings": { title: "Settings", html: "<p>Email preferences: weekly digest.</p>" }
  };

  function render() {
    var path = location.pathname.replace(/\/$/, "") || "/app";
    var view = VIEWS[path] || VIEWS["/app"];
    document.title = view.title + " · My account · Intilery Demo Shop";
    document.getElementById("view-title").textContent = view.title;
    document.getElementById("view").innerHTML = view.html;
    Array.prototype.forEach.call(document.querySelectorAll(".tabs a"), function (a) {
      if (a.getAttribute("href") === path) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
  }

  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest(".tabs a");
    if (!a) return;
    e.preventDefault();
    if (a.getAttribute("href") !== location.pathname) {
      history.pushState({}, "", a.getAttribute("href"));
      render();
    }
  });
  window.addEventListener("popstate", render);
  document.addEventListener("DOMContentLoaded", render);
})();
