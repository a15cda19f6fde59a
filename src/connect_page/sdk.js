// hexbroker's frontend snippet, served at /connect/sdk.js. Plain JS, no dependencies.
//
//   <script src="https://broker.example.com/connect/sdk.js"></script>
//   button.onclick = function () {
//     hexbroker.connect({ url: connectUrl, mode: "popup" })   // or mode: "iframe", container: el
//       .then(function (connectionId) { ... })
//       .catch(function (error) { ... error.code ... });
//   };
//
// `url` is a connect session's `connect_url`. The promise resolves with the new connection's id,
// or rejects with an Error whose `code` is one of: `session_used`, `session_expired`,
// `invalid_link` (the link is unknown or incomplete), `cancelled` (the person gave up),
// `closed` (the popup was closed first), `popup_blocked` (call connect() from a click handler),
// `invalid_options`. Only messages from the connect page itself (the link's origin, the window
// this call opened) are believed. Once settled, the popup is closed or the frame removed.
(function (root) {
  "use strict";

  var POPUP_WIDTH = 520;
  var POPUP_HEIGHT = 720;
  var CLOSED_POLL_MS = 300;

  function ConnectError(code, message) {
    var error = new Error(message || code);
    error.name = "HexbrokerConnectError";
    error.code = code;
    return error;
  }

  var MESSAGES = {
    session_used: "This connect link has been used already; make a new connect session.",
    session_expired: "This connect link has expired; make a new connect session.",
    invalid_link: "This connect link is not valid; make a new connect session.",
    cancelled: "The person cancelled connecting.",
    closed: "The connect window was closed before connecting.",
    popup_blocked: "The browser blocked the connect window; call connect() from a click handler."
  };

  function fail(code) {
    return ConnectError(code, MESSAGES[code] || "Connecting failed (" + code + ").");
  }

  // The connect page's origin, from its link; null unless it is an http(s) link to the page
  // (`…/connect`, below a path prefix when HEXBROKER_PUBLIC_URL has one).
  function connectOrigin(url) {
    var parsed;
    try {
      parsed = new URL(url, root.location.href);
    } catch (e) {
      return null;
    }
    if ((parsed.protocol !== "https:" && parsed.protocol !== "http:") || !/\/connect$/.test(parsed.pathname)) {
      return null;
    }
    return parsed.origin;
  }

  function containerOf(container) {
    if (typeof container === "string") return root.document.querySelector(container);
    return container && typeof container.appendChild === "function" ? container : null;
  }

  function openPopup(url) {
    var left = Math.max(0, Math.round((root.screenX || 0) + ((root.outerWidth || POPUP_WIDTH) - POPUP_WIDTH) / 2));
    var top = Math.max(0, Math.round((root.screenY || 0) + ((root.outerHeight || POPUP_HEIGHT) - POPUP_HEIGHT) / 2));
    var features = "popup=yes,width=" + POPUP_WIDTH + ",height=" + POPUP_HEIGHT + ",left=" + left + ",top=" + top;
    try {
      return root.open(url, "_blank", features);
    } catch (e) {
      return null;
    }
  }

  function openFrame(url, container, height) {
    var frame = root.document.createElement("iframe");
    frame.src = url;
    frame.title = "Connect your Hex workspace";
    frame.setAttribute("data-hexbroker", "connect");
    frame.style.width = "100%";
    frame.style.height = height || POPUP_HEIGHT + "px";
    frame.style.border = "0";
    container.appendChild(frame);
    return frame;
  }

  // Opens the connect page for one session; see the top of this file.
  function connect(options) {
    return new Promise(function (resolve, reject) {
      options = options || {};
      var origin = connectOrigin(options.url);
      var mode = options.mode || "popup";
      if (!origin || (mode !== "popup" && mode !== "iframe")) {
        reject(ConnectError("invalid_options", "connect() needs {url: a connect_url, mode: 'popup' or 'iframe'}."));
        return;
      }
      var container = mode === "iframe" ? containerOf(options.container) : null;
      if (mode === "iframe" && !container) {
        reject(ConnectError("invalid_options", "mode 'iframe' needs a container element (or a selector for one)."));
        return;
      }

      var popup = null;
      var frame = null;
      var timer = null;
      var settled = false;

      function source() {
        return popup || (frame && frame.contentWindow);
      }

      function settle(error, connectionId) {
        if (settled) return;
        settled = true;
        root.removeEventListener("message", onMessage);
        if (timer) root.clearInterval(timer);
        if (popup && !popup.closed) {
          try { popup.close(); } catch (e) { /* nothing else to do */ }
        }
        if (frame && frame.parentNode) frame.parentNode.removeChild(frame);
        if (error) reject(error); else resolve(connectionId);
      }

      function onMessage(event) {
        // Only the connect page this call opened may answer it.
        if (event.origin !== origin || !event.source || event.source !== source()) return;
        var data = event.data;
        if (!data || typeof data !== "object") return;
        if (data.type === "hexbroker:connected" && typeof data.connection_id === "string") {
          settle(null, data.connection_id);
        } else if (data.type === "hexbroker:error" && typeof data.code === "string") {
          settle(fail(data.code));
        }
      }

      root.addEventListener("message", onMessage);
      if (mode === "popup") {
        popup = openPopup(options.url);
        if (!popup) {
          settle(fail("popup_blocked"));
          return;
        }
        timer = root.setInterval(function () {
          if (popup.closed) settle(fail("closed"));
        }, CLOSED_POLL_MS);
      } else {
        frame = openFrame(options.url, container, options.height);
      }
    });
  }

  root.hexbroker = { connect: connect, version: "1" };
})(window);
