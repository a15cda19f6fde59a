// The hosted connect form: reads the session token from the URL fragment, drops it from the
// address bar, asks GET /v1/connect/sessions/current whether the link can still be used (so a
// used or expired link says so before anything is typed), and submits the workspace and Hex
// token to POST /v1/connect. The window that opened or frames the page (see sdk.js) hears how it
// ended. Plain JS, no dependencies; everything it shows is set with textContent.
(function () {
  "use strict";

  var REQUEST_TIMEOUT_MS = 60000;
  var STATUS_TIMEOUT_MS = 10000;

  var main = document.getElementById("main");
  var form = document.getElementById("form");
  var subdomainInput = document.getElementById("subdomain");
  var tokenInput = document.getElementById("token");
  var submitButton = document.getElementById("submit");
  var cancelButton = document.getElementById("cancel");
  var errorBox = document.getElementById("error");
  var success = document.getElementById("success");
  var submitLabel = submitButton.textContent;

  var allowedOrigins = readAllowedOrigins();
  var sessionToken = takeSessionToken();
  var busy = false;
  // Until the link's status is known, the form can be filled but not sent.
  var checking = false;

  // What a person can do about each error the server may answer with.
  var MESSAGES = {
    invalid_subdomain: {
      field: subdomainInput,
      text: "That doesn\u2019t look like a Hex workspace subdomain. Enter the part before .hex.tech in your Hex address, for example app, eu or your company\u2019s name."
    },
    invalid_token_format: {
      field: tokenInput,
      text: "That doesn\u2019t look like a Hex API token. Copy it again from Hex (Settings \u2192 API keys): it has no spaces and starts with hxtp_ or hxtw_."
    },
    hex_token_rejected: {
      field: tokenInput,
      text: "Hex did not accept this token: it may be mistyped, expired or revoked. In Hex, open Settings \u2192 API keys, create a new token and paste it here."
    },
    hex_insufficient_scope: {
      field: tokenInput,
      text: "Hex accepted this token, but it isn\u2019t allowed to read projects. In Hex, open Settings \u2192 API keys and create a token with read access to projects, then paste it here."
    },
    hex_workspace_not_found: {
      field: subdomainInput,
      text: function (ctx) {
        var where = ctx.subdomain ? "\u201c" + ctx.subdomain + ".hex.tech\u201d" : "that subdomain";
        return "No Hex workspace answers at " + where + ". Check the address you use to open Hex and enter the part before .hex.tech.";
      }
    },
    hex_rate_limited: {
      text: function (ctx) {
        var wait = ctx.retryAfter ? "Wait about " + describeSeconds(ctx.retryAfter) + " and try again." : "Wait a moment and try again.";
        return "Hex is receiving too many requests for this token right now. " + wait;
      }
    },
    hex_unavailable: {
      text: "We couldn\u2019t reach Hex just now, or it answered with an error. Wait a moment and try again."
    },
    token_already_connected: {
      field: tokenInput,
      text: "This Hex token is already in use by another connection. In Hex, open Settings \u2192 API keys, create a new token for this connection and paste it here."
    },
    session_expired: {
      blocked: true,
      text: "This connect link has expired. Go back to the app and ask it for a new link."
    },
    session_used: {
      blocked: true,
      text: "This connect link has already been used. If you need to connect again, go back to the app and ask it for a new link."
    },
    unauthorized: {
      blocked: true,
      notify: "invalid_link",
      text: "This connect link is not valid. Go back to the app and ask it for a new link."
    },
    network: {
      text: "We couldn\u2019t reach the server. Check your internet connection and try again."
    },
    timeout: {
      text: "This is taking too long. Check your internet connection and try again."
    }
  };

  cancelButton.hidden = !hasHost();

  if (!sessionToken) {
    block("This connect link is incomplete: it is missing its access code. Go back to the app and open the connect link again; if you copied it, copy the whole link.");
    notify({ type: "hexbroker:error", code: "invalid_link" });
  } else {
    checkSession();
  }

  // A new connect link opened in this tab changes only the fragment, which does not load the
  // page again: load it, so that the new link starts from a clean form.
  window.addEventListener("hashchange", function () {
    if (/(^#|&)token=/.test(window.location.hash)) {
      window.location.reload();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy || checking || !sessionToken) {
      return;
    }
    submitForm();
  });

  // The person gives up: the app hears it, and the link stays usable for another try.
  cancelButton.addEventListener("click", function () {
    if (busy || !sessionToken) {
      return;
    }
    block("You cancelled connecting. You can close this window and go back to the app.", "cancelled");
    notify({ type: "hexbroker:error", code: "cancelled" });
  });

  [subdomainInput, tokenInput].forEach(function (input) {
    input.addEventListener("input", function () {
      input.removeAttribute("aria-invalid");
    });
  });

  // Asks whether the link can still be used. It cannot be used up by asking; any trouble asking
  // leaves the form as it is, and submitting tells.
  function checkSession() {
    checking = true;
    submitButton.disabled = true;
    setState("checking");
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, STATUS_TIMEOUT_MS) : null;
    fetch("/v1/connect/sessions/current", {
      method: "GET",
      headers: { "Authorization": "Bearer " + sessionToken, "Accept": "application/json" },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      return response.json().then(function (body) {
        return { response: response, body: body };
      }, function () {
        return { response: response, body: null };
      });
    }).then(function (result) {
      var body = result.body || {};
      if (result.response.ok && body.state === "used") return failed("session_used");
      if (result.response.ok && body.state === "expired") return failed("session_expired");
      if (result.response.status === 401) return failed("unauthorized");
      if (result.response.ok && body.reconnect === true) reconnecting();
      usable();
    }, usable).then(function () {
      if (timer) window.clearTimeout(timer);
    });
  }

  function usable() {
    checking = false;
    if (!sessionToken) return;
    submitButton.disabled = false;
    setState("ready");
  }

  function reconnecting() {
    document.getElementById("title").textContent = "Reconnect your Hex workspace";
    document.querySelector(".lede").textContent =
      "Enter a new Hex API token for this workspace. We check it with Hex, then store it encrypted in place of the old one; it is never shown again.";
  }

  function submitForm() {
    var subdomain = subdomainInput.value.trim();
    var hexToken = tokenInput.value.trim();
    if (!subdomain) {
      showError("Enter your Hex workspace subdomain: the part before .hex.tech in your Hex address.", subdomainInput);
      return;
    }
    if (!hexToken) {
      showError("Paste your Hex API token. In Hex, open Settings \u2192 API keys to create one.", tokenInput);
      return;
    }

    setBusy(true);
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    var context = { subdomain: displaySubdomain(subdomain) };

    fetch("/v1/connect", {
      method: "POST",
      headers: {
        "Authorization": "Bearer " + sessionToken,
        "Content-Type": "application/json",
        "Accept": "application/json"
      },
      body: JSON.stringify({ subdomain: subdomain, token: hexToken }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch (e) {
          body = null;
        }
        return { response: response, body: body };
      });
    }).then(function (result) {
      if (timer) window.clearTimeout(timer);
      setBusy(false);
      var response = result.response;
      var body = result.body;
      if (response.ok && body && typeof body.id === "string") {
        connected(body);
        return;
      }
      var error = body && body.error && typeof body.error === "object" ? body.error : {};
      context.retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
      context.requestId = response.headers.get("x-request-id");
      failed(typeof error.code === "string" ? error.code : "", error.message, response.status, context);
    }).catch(function (err) {
      if (timer) window.clearTimeout(timer);
      setBusy(false);
      var code = err && err.name === "AbortError" ? "timeout" : "network";
      showError(MESSAGES[code].text, null);
    });
  }

  function connected(connection) {
    sessionToken = null;
    tokenInput.value = "";
    errorBox.textContent = "";
    form.hidden = true;

    var hexHost = hostOf(connection.hex_url);
    var workspace = document.getElementById("success-workspace");
    workspace.textContent = connection.subdomain || hexHost || "";
    if (hexHost && hexHost !== connection.subdomain) {
      var host = document.createElement("span");
      host.className = "muted";
      host.textContent = " \u00b7 " + hexHost;
      workspace.appendChild(host);
    }
    if (connection.hex_user_email) {
      document.getElementById("success-user-label").hidden = false;
      var user = document.getElementById("success-user");
      user.hidden = false;
      user.textContent = connection.hex_user_email;
    }
    var kind = connection.token_type === "personal" ? "personal token"
      : connection.token_type === "workspace" ? "workspace token" : "";
    var tokenLine = document.getElementById("success-token");
    tokenLine.textContent = connection.token_hint || "";
    if (kind) {
      var kindSpan = document.createElement("span");
      kindSpan.className = "muted";
      kindSpan.textContent = " \u00b7 " + kind;
      tokenLine.appendChild(kindSpan);
    }

    success.hidden = false;
    setState("success");
    success.focus();
    notify({ type: "hexbroker:connected", connection_id: connection.id, subdomain: connection.subdomain });
  }

  function failed(code, serverMessage, status, ctx) {
    var known = MESSAGES[code];
    if (known) {
      var text = typeof known.text === "function" ? known.text(ctx) : known.text;
      if (known.blocked) {
        block(text);
        notify({ type: "hexbroker:error", code: known.notify || code });
      } else {
        showError(text, known.field || null);
      }
      return;
    }
    var message = typeof serverMessage === "string" && serverMessage ? serverMessage
      : "Something went wrong (HTTP " + status + "). Try again in a moment.";
    if (status >= 500 && ctx.requestId) {
      message += " If it keeps happening, quote reference " + ctx.requestId + ".";
    }
    showError(message, null);
  }

  function showError(text, field) {
    [subdomainInput, tokenInput].forEach(function (input) {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", input.id + "-help");
    });
    errorBox.textContent = text;
    setState("error");
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", "error " + field.id + "-help");
      field.focus();
      if (typeof field.select === "function") field.select();
    }
  }

  // The link cannot (or will not) be used here any more: say why, and offer nothing to fill in.
  function block(text, state) {
    sessionToken = null;
    checking = false;
    tokenInput.value = "";
    [subdomainInput, tokenInput, submitButton, cancelButton].forEach(function (el) {
      el.disabled = true;
    });
    form.setAttribute("aria-disabled", "true");
    errorBox.textContent = text;
    setState(state || "blocked");
  }

  function setBusy(on) {
    busy = on;
    submitButton.disabled = on;
    submitButton.setAttribute("aria-busy", on ? "true" : "false");
    form.setAttribute("aria-busy", on ? "true" : "false");
    submitButton.textContent = on ? "Checking with Hex\u2026" : submitLabel;
    subdomainInput.readOnly = on;
    tokenInput.readOnly = on;
    if (on) {
      errorBox.textContent = "";
      setState("busy");
    }
  }

  function setState(state) {
    main.setAttribute("data-state", state);
  }

  // Sends a message to the window that opened or frames this page, for each allowed origin
  // only: the browser delivers it only where the target's origin matches, never to others.
  function notify(message) {
    hosts().forEach(function (target) {
      allowedOrigins.forEach(function (origin) {
        try {
          target.postMessage(message, origin);
        } catch (e) { /* a malformed origin: skip it */ }
      });
    });
  }

  // The windows that opened or frame this page.
  function hosts() {
    var targets = [];
    try {
      if (window.opener && !window.opener.closed) targets.push(window.opener);
    } catch (e) { /* a cross-origin opener can throw on access in old browsers */ }
    try {
      if (window.parent && window.parent !== window) targets.push(window.parent);
    } catch (e) { /* as above */ }
    return targets;
  }

  // Whether an app opened or frames this page, and so may be told that the person gave up.
  function hasHost() {
    return allowedOrigins.length > 0 && hosts().length > 0;
  }

  function readAllowedOrigins() {
    var meta = document.querySelector('meta[name="hexbroker-allowed-origins"]');
    try {
      var list = JSON.parse(meta ? meta.getAttribute("content") : "[]");
      return Array.isArray(list) ? list.filter(function (o) {
        return typeof o === "string" && o !== "*" && /^https?:\/\/[^\/]+$/.test(o);
      }) : [];
    } catch (e) {
      return [];
    }
  }

  // The session token from `#token=…`; the fragment is then removed from the address bar (and
  // history) so it is not left in view, in bookmarks or in a copied link.
  function takeSessionToken() {
    var hash = window.location.hash ? window.location.hash.slice(1) : "";
    if (!hash) return null;
    var token = null;
    try {
      token = new URLSearchParams(hash).get("token");
    } catch (e) {
      token = null;
    }
    try {
      window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search);
    } catch (e) { /* nothing else to do */ }
    token = token ? token.trim() : "";
    return token || null;
  }

  // What a person typed, reduced as the server does, for messages only.
  function displaySubdomain(input) {
    var text = input.toLowerCase().replace(/^https?:\/\//, "");
    text = text.split(/[\/?#]/)[0].replace(/\.+$/, "").replace(/\.hex\.tech$/, "");
    return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(text) ? text : "";
  }

  function hostOf(url) {
    if (typeof url !== "string" || !url) return "";
    try {
      var u = new URL(url);
      return (u.host + u.pathname).replace(/\/+$/, "");
    } catch (e) {
      return "";
    }
  }

  function parseRetryAfter(value) {
    if (!value) return 0;
    var seconds = /^\d+$/.test(value.trim()) ? parseInt(value, 10) : Math.round((Date.parse(value) - Date.now()) / 1000);
    return isFinite(seconds) && seconds > 0 && seconds <= 3600 ? seconds : 0;
  }

  function describeSeconds(seconds) {
    if (seconds < 90) return seconds + (seconds === 1 ? " second" : " seconds");
    var minutes = Math.round(seconds / 60);
    return minutes + " minutes";
  }
})();
