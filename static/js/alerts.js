// Page alerts, per viewer: a tone per size tier (Web Audio) and browser notifications
// (Notification API) for rows arriving live over the socket. Settings in localStorage.
// Only rows the page shows alert (its symbol, side and minimum; its venue when rows have
// one); rows already on the page at load or after a filter change never do. A burst
// (rows within BURST_MS) makes one sound, of its largest tier, and one notification.
(function () {
  "use strict";

  var KEY = "orderfox-alerts";
  var DEFAULTS = {
    sound: false, tier1: 100000, tier2: 1000000, tier3: 10000000,
    notify: false, notifyMin: 1000000,
  };
  var BURST_MS = 700;
  // Tier -> tone: higher and more beeps for bigger liquidations.
  var TONES = { 1: { hz: 440, beeps: 1 }, 2: { hz: 660, beeps: 2 }, 3: { hz: 880, beeps: 3 } };
  var BEEP_S = 0.16;

  var settings = load();
  var audio = null;
  var pending = [];
  var timer = null;
  var feedElt = null;

  function load() {
    var saved = {};
    try {
      saved = JSON.parse(localStorage.getItem(KEY) || "{}") || {};
    } catch (e) {
      saved = {};  // unreadable or blocked storage: defaults
    }
    var merged = {};
    Object.keys(DEFAULTS).forEach(function (name) {
      merged[name] = name in saved ? saved[name] : DEFAULTS[name];
    });
    return merged;
  }

  function save() {
    try {
      localStorage.setItem(KEY, JSON.stringify(settings));
    } catch (e) {
      // Storage blocked: the settings last for this page only.
    }
  }

  function money(usd) {
    var units = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (usd >= units[i][0]) return "$" + (usd / units[i][0]).toFixed(1) + units[i][1];
    }
    return "$" + Math.round(usd);
  }

  function tierOf(usd) {
    if (usd >= +settings.tier3) return 3;
    if (usd >= +settings.tier2) return 2;
    if (usd >= +settings.tier1) return 1;
    return 0;
  }

  function control() {
    return document.querySelector(".alerts-control");
  }

  // The page's filters, read when a row arrives (a filter change re-renders #feed).
  function passesPage(row) {
    var feed = document.getElementById("feed");
    if (!feed) return false;
    var side = feed.dataset.side === "long" ? "SELL" : feed.dataset.side === "short" ? "BUY" : "";
    if (side && row.dataset.side !== side) return false;
    if (parseFloat(row.dataset.usd) < parseFloat(feed.dataset.minUsd || "0")) return false;
    var symbol = control() ? control().dataset.symbol : "";
    if (symbol && row.dataset.symbol !== symbol) return false;
    var venue = feed.dataset.venue;
    return !(venue && row.dataset.venue && row.dataset.venue !== venue);
  }

  function rowsOnPage() {
    return document.querySelectorAll("#liquidation-rows tr.liq-row:not([data-alerted])");
  }

  function markAll() {
    rowsOnPage().forEach(function (row) { row.dataset.alerted = "1"; });
  }

  function take() {
    rowsOnPage().forEach(function (row) {
      row.dataset.alerted = "1";
      if (!passesPage(row)) return;
      pending.push({ symbol: row.dataset.symbol, side: row.dataset.side, usd: parseFloat(row.dataset.usd) });
    });
    if (pending.length && !timer) timer = setTimeout(flush, BURST_MS);
  }

  function flush() {
    timer = null;
    var rows = pending;
    pending = [];
    if (settings.sound) {
      var tier = Math.max.apply(null, rows.map(function (r) { return tierOf(r.usd); }));
      if (tier > 0) play(tier);
    }
    if (settings.notify) {
      var big = rows.filter(function (r) { return r.usd >= +settings.notifyMin; });
      if (big.length) notify(big);
    }
  }

  function summary(rows) {
    var largest = rows.reduce(function (a, b) { return b.usd > a.usd ? b : a; });
    if (rows.length === 1) {
      var what = largest.side === "SELL" ? "long liquidated" : "short liquidated";
      return largest.symbol + " " + what + " " + money(largest.usd);
    }
    var total = rows.reduce(function (sum, r) { return sum + r.usd; }, 0);
    return rows.length + " liquidations, " + money(total) + ", largest " +
      largest.symbol + " " + money(largest.usd);
  }

  function notify(rows) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      new Notification("OrderFox liquidations", { body: summary(rows), tag: "orderfox-alerts" });
    } catch (e) {
      // Some browsers (Android Chrome) only notify through a service worker: none here.
    }
  }

  function audioContext() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  // One oscillator per sound; its gain pulses once per beep.
  function play(tier) {
    var ctx = audioContext();
    if (!ctx) return;
    var tone = TONES[tier];
    var start = ctx.currentTime + 0.01;
    var osc = ctx.createOscillator();
    var gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(tone.hz, start);
    gain.gain.setValueAtTime(0.0001, start);
    for (var i = 0; i < tone.beeps; i++) {
      var at = start + i * BEEP_S;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.linearRampToValueAtTime(0.2, at + 0.01);
      gain.gain.linearRampToValueAtTime(0.0001, at + BEEP_S * 0.75);
    }
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(start);
    osc.stop(start + tone.beeps * BEEP_S);
  }

  function showState() {
    var elt = control();
    if (!elt) return;
    var on = [];
    if (settings.sound) on.push("sound");
    if (settings.notify) on.push("notify");
    elt.dataset.active = on.length ? "1" : "0";
    elt.querySelector(".alerts-state").textContent = on.length ? on.join("+") : "off";
    var note = elt.querySelector(".alerts-permission");
    if (!("Notification" in window)) note.textContent = "This browser has no notifications.";
    else if (Notification.permission === "denied") note.textContent = "Notifications are blocked for this site.";
    else note.textContent = "";
  }

  function fillForm() {
    var form = control() && control().querySelector("form");
    if (!form) return;
    Object.keys(DEFAULTS).forEach(function (name) {
      var input = form.elements[name];
      if (input.type === "checkbox") input.checked = !!settings[name];
      else input.value = settings[name];
    });
    showState();
  }

  function askPermission(input) {
    if (!("Notification" in window)) {
      input.checked = settings.notify = false;
      return;
    }
    if (Notification.permission === "granted") return;
    Notification.requestPermission().then(function (answer) {
      if (answer !== "granted") {
        input.checked = settings.notify = false;
        save();
      }
      showState();
    });
  }

  // Settings change on input; the click on a checkbox is the gesture browsers want
  // before they allow sound (AudioContext) or ask for notification permission.
  function onChange(evt) {
    var input = evt.target;
    if (!input.name || !(input.name in DEFAULTS)) return;
    if (input.type === "checkbox") {
      settings[input.name] = input.checked;
      if (input.name === "sound" && input.checked) audioContext();
      if (input.name === "notify" && input.checked) askPermission(input);
    } else {
      var value = parseFloat(input.value);
      if (!isNaN(value) && value >= 0) settings[input.name] = value;
    }
    save();
    showState();
  }

  function setUp() {
    var elt = control();
    if (elt) {
      fillForm();
      elt.addEventListener("change", onChange);
      elt.querySelector("form").addEventListener("submit", function (evt) { evt.preventDefault(); });
      elt.querySelector(".alerts-test").addEventListener("click", function () {
        [1, 2, 3].forEach(function (tier, n) { setTimeout(function () { play(tier); }, n * 700); });
      });
    }
    // A saved "sound on" needs one user gesture after a reload before audio may play.
    document.addEventListener("pointerdown", function () {
      if (settings.sound) audioContext();
    }, { once: true });
  }

  // Rows on the page now are history: they never alert.
  feedElt = document.getElementById("feed");
  markAll();
  setUp();

  // Live rows: after every handler of the message (dashboard.js drops duplicates and
  // rows its filter does not want first).
  document.addEventListener("htmx:wsAfterMessage", function () {
    setTimeout(take, 0);
  });

  // A filter change re-rendered #feed over HTTP: its rows are history too.
  document.addEventListener("htmx:afterSettle", function () {
    var elt = document.getElementById("feed");
    if (elt && elt !== feedElt) {
      feedElt = elt;
      markAll();
    }
  });
})();
