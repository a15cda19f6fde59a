// The operator console's only script: copy buttons (hidden until this runs, so the pages work
// without it). After a form post, the address is replaced by the page's own, so reloading shows
// the page again instead of posting the form a second time.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("button.copy[data-copy]");
    Array.prototype.forEach.call(buttons, function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) {
        return;
      }
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = target.value !== undefined && target.tagName === "INPUT" ? target.value : target.textContent;
        navigator.clipboard.writeText(text).then(function () {
          button.textContent = "Copied";
          window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
        });
      });
    });
    var shown = document.querySelector(".secret-box[data-home]");
    if (shown && window.history && window.history.replaceState) {
      window.history.replaceState(null, "", shown.getAttribute("data-home"));
    }
  });
})();
