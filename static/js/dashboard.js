// The live dashboard: connection status, filter updates over the socket, catch-up after
// reconnects, and the row housekeeping htmx leaves to us (dedupe, cap, highlight, local time).
(function () {
  "use strict";

  // The htmx ws extension retries only these close codes by itself.
  var EXTENSION_RETRIES = [1006, 1011, 1012, 1013];
  // The server refused what we sent or the feed does not exist: retrying cannot help
  // (liquidations/live/contracts.py: CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_NOT_FOUND).
  var PERMANENT = [4008, 4009, 4404];
  // Our own close of a silent socket (CLOSE_STALLED): reconnect.
  var STALLED = 4000;
  // The server sends something at least every 30 s; silence this long is a dead socket.
  var STALL_MS = 75000;

  var wrapper = null;       // the extension's socket wrapper (send, reconnect)
  var socket = null;        // the current WebSocket, to close it when it stalls
  var everConnected = false;
  var retries = 0;
  var retryTimer = null;
  var lastFrameAt = Date.now();
  var cursor = 0;           // newest row id this table accounts for
  var feed = null;          // the current #feed element
  var statusElt = null;
  var clockSkewMs = 0;

  // The symbol page's market panels have a socket of their own (market.js): not ours.
  function otherSocket(evt) {
    return evt.target && evt.target.id === "market-panels";
  }

  function reconnectDelay(retry) {
    var base = Math.min(10000, 500 * Math.pow(2, retry));
    return base / 2 + Math.random() * base / 2;
  }

  function setConnection(state) {
    var elt = document.querySelector(".connection-status");
    if (!elt) return;
    var text = { connected: "Connected", reconnecting: "Reconnecting…", disconnected: "Disconnected" };
    elt.dataset.state = state;
    elt.textContent = text[state];
  }

  // Read from the live #feed: a frame can land between a filter swap and its settle.
  function currentFilter() {
    var elt = document.getElementById("feed");
    return {
      min_usd: elt ? elt.dataset.minUsd || "0" : "0",
      side: elt ? elt.dataset.side || "all" : "all",
      venue: elt ? elt.dataset.venue || "all" : "all",
    };
  }

  function sendFilter() {
    if (!wrapper || !socket || socket.readyState !== WebSocket.OPEN) return;
    var message = currentFilter();
    message.side = message.side || "all";
    message.venue = message.venue || "all";
    message.since = cursor;
    wrapper.send(JSON.stringify(message));
  }

  function rowsBody() {
    return document.getElementById("liquidation-rows");
  }

  function localTime(timeElt) {
    var date = new Date(timeElt.getAttribute("datetime"));
    if (isNaN(date)) return;
    timeElt.textContent = date.toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
  }

  function passes(row, filter) {
    var side = filter.side === "long" ? "SELL" : filter.side === "short" ? "BUY" : "";
    if (side && row.dataset.side !== side) return false;
    if (filter.venue && filter.venue !== "all" && row.dataset.venue !== filter.venue) return false;
    return parseFloat(row.dataset.usd) >= parseFloat(filter.min_usd || "0");
  }

  // Mark rows already on the page as seen, and show their times in local time.
  function adoptRows(flash) {
    var body = rowsBody();
    if (!body) return;
    var filter = currentFilter();
    var seen = {};
    body.querySelectorAll("tr.liq-row[data-seen]").forEach(function (row) {
      seen[row.dataset.id] = true;
    });
    body.querySelectorAll("tr.liq-row:not([data-seen])").forEach(function (row) {
      var id = row.dataset.id;
      cursor = Math.max(cursor, parseInt(id, 10) || 0);
      // A catch-up and a live batch can both carry a row; a frame sent before the server
      // learnt a new filter can carry rows the table no longer wants.
      if (seen[id] || !passes(row, filter)) {
        row.remove();
        return;
      }
      seen[id] = true;
      row.dataset.seen = "1";
      row.querySelectorAll("time[datetime]").forEach(localTime);
      if (flash) row.classList.add("liq-new");
    });
    var rows = orderRows(body);
    var feedElt = document.getElementById("feed");
    var max = parseInt((feedElt && feedElt.dataset.maxRows) || "50", 10);
    for (var i = max; i < rows.length; i++) rows[i].remove();
    if (rows.length) body.querySelectorAll("tr.empty").forEach(function (e) { e.remove(); });
  }

  // Newest first by trade time, then id, as a fresh load orders them. A frame is
  // prepended whole, and a socket's catch-up (rows stored while it was away) can land
  // after live rows newer than its own: left in arrival order, the 50-row cap would
  // trim those newest rows and keep older ones.
  function orderRows(body) {
    var rows = Array.prototype.slice.call(body.querySelectorAll("tr.liq-row"));
    var keyed = rows.map(function (row) {
      var time = row.querySelector("time[datetime]");
      return {
        row: row,
        t: (time && Date.parse(time.getAttribute("datetime"))) || 0,
        id: parseInt(row.dataset.id, 10) || 0,
      };
    });
    keyed.sort(function (a, b) { return b.t - a.t || b.id - a.id; });
    var moved = keyed.some(function (entry, i) { return entry.row !== rows[i]; });
    if (moved) keyed.forEach(function (entry) { body.appendChild(entry.row); });
    return keyed.map(function (entry) { return entry.row; });
  }

  // A new #feed (first load or a filter change): take its filter and cursor.
  function adoptFeed() {
    var elt = document.getElementById("feed");
    if (!elt || elt === feed) return false;
    feed = elt;
    cursor = parseInt(feed.dataset.cursor || "0", 10) || 0;
    adoptRows(false);
    return true;
  }

  function formatAge(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s >= 86400) return Math.floor(s / 86400) + " d";
    if (s >= 3600) return Math.floor(s / 3600) + " h";
    if (s >= 60) return Math.floor(s / 60) + " min";
    return s + " s";
  }

  function tickWorkerAge() {
    var elt = document.getElementById("worker-status");
    if (!elt) return;
    if (elt !== statusElt) {
      statusElt = elt;
      var serverNow = parseInt(elt.dataset.nowS || "0", 10) * 1000;
      clockSkewMs = serverNow ? Date.now() - serverNow : 0;
    }
    var last = parseInt(elt.dataset.lastEventMs || "0", 10);
    var age = elt.querySelector(".age");
    if (last && age) age.textContent = formatAge(Date.now() - clockSkewMs - last);
  }

  function scheduleReconnect() {
    if (retryTimer || !wrapper) return;
    var delay = reconnectDelay(retries++);
    retryTimer = setTimeout(function () {
      retryTimer = null;
      if (wrapper) wrapper.reconnect();
    }, delay);
  }

  document.addEventListener("htmx:wsConnecting", function (evt) {
    if (otherSocket(evt)) return;
    if (everConnected) setConnection("reconnecting");
  });

  document.addEventListener("htmx:wsOpen", function (evt) {
    if (otherSocket(evt)) return;
    wrapper = evt.detail.socketWrapper;
    socket = evt.detail.event.target;
    everConnected = true;
    retries = 0;
    lastFrameAt = Date.now();
    setConnection("connected");
    // Every (re)connect: tell the server the filter and fetch what we missed.
    sendFilter();
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    if (otherSocket(evt)) return;
    var closed = evt.detail.event.target;
    if (socket && closed !== socket) return;  // an old socket we already replaced
    wrapper = evt.detail.socketWrapper || wrapper;
    var code = evt.detail.event.code;
    if (PERMANENT.indexOf(code) >= 0) {
      setConnection("disconnected");
      return;
    }
    setConnection("reconnecting");
    // 1000/1001 and others (idle timeouts, restarts behind a proxy): the extension
    // would stay closed, so retry here.
    if (EXTENSION_RETRIES.indexOf(code) < 0) scheduleReconnect();
  });

  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    if (otherSocket(evt)) return;
    lastFrameAt = Date.now();
  });

  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    if (otherSocket(evt)) return;
    adoptRows(true);
  });

  // The filter bar re-rendered #feed over HTTP: the open socket learns the new filter.
  document.addEventListener("htmx:afterSettle", function () {
    if (adoptFeed()) sendFilter();
  });

  document.addEventListener("click", function (evt) {
    var toggle = evt.target.closest(".theme-toggle");
    if (!toggle) return;
    var root = document.documentElement;
    var next = root.getAttribute("data-theme") === "light" ? "dark" : "light";
    root.setAttribute("data-theme", next);
    try {
      localStorage.setItem("orderfox-theme", next);
    } catch (e) {
      // Storage blocked: the choice lasts for this page only.
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      htmx.config.wsReconnectDelay = reconnectDelay;
    }
    adoptFeed();
    tickWorkerAge();
    setInterval(tickWorkerAge, 1000);
    setInterval(function () {
      if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastFrameAt > STALL_MS) {
        // A half-open connection: close it and let the close handler reconnect.
        socket.close(STALLED, "stalled");
      }
    }, 5000);
  });
})();
