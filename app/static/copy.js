// Copy buttons on the page that shows a phone's settings once: a button's
// data-copy goes to the clipboard. A file, not inline script: the panel's CSP
// allows script from 'self' only.
"use strict";

document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  var text = button.getAttribute("data-copy");
  var done = function () {
    button.textContent = "Copied";
    window.setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
  } else {
    fallback(text);
    done();
  }
});

// http://127.0.0.1 through an SSH tunnel is a secure context, a LAN address over
// plain http is not: there the old way, a selected textarea and execCommand.
function fallback(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  document.body.removeChild(area);
}
