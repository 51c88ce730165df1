// The symbol page's market panels: candles with the liquidation volume pane and markers
// (lightweight-charts, vendored), the trades tape and the order book. The tape and the book
// arrive as hx-swap-oob fragments on their own socket (htmx's ws extension); the candle
// chart's live bar arrives as #candle-live. Settings (timeframe, rounding, depth) go to the
// server on the same socket, so changing them never reloads the page or reopens the socket.
(function () {
  "use strict";

  var SECONDS = { "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400 };
  var PERMANENT = [4008, 4009, 4404];
  var TAPE_ROWS = 50;
  var REFRESH_MIN_MS = 1000;

  var root = document.getElementById("market-panels");
  if (!root) return;
  var symbol = root.dataset.symbol;
  var panel = document.getElementById("candle-chart");
  var canvas = panel.querySelector(".candle-chart-canvas");
  var notice = panel.querySelector(".chart-notice");
  var thresholdInput = panel.querySelector("input[name=marker_usd]");
  var bookPanel = document.getElementById("order-book");
  var timeframe = panel.dataset.timeframe || "5m";
  var wrapper = null, socket = null, retries = 0, retryTimer = null, everOpen = false;
  var chart = null, candles = null, shorts = null, longs = null, delta = null, markerLayer = null;
  var bars = {};           // volume: time -> {short, long}
  var candleTimes = [];    // every candle time, oldest first
  var markers = [];
  var generation = 0, lastRefresh = 0, refreshTimer = null, thresholdTimer = null;

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function formatUsd(value) {
    var abs = Math.abs(value), sign = value < 0 && abs >= 0.5 ? "-" : "";
    var units = [[1e9, "B"], [1e6, "M"], [1e3, "K"]];
    for (var i = 0; i < units.length; i++) {
      if (abs >= units[i][0]) return sign + "$" + (abs / units[i][0]).toFixed(2) + units[i][1];
    }
    return sign + "$" + abs.toFixed(0);
  }

  // -- settings and the socket ------------------------------------------------------------

  function settings() {
    return {
      timeframe: timeframe,
      rounding: bookPanel.querySelector("select[name=rounding]").value,
      depth: parseInt(bookPanel.querySelector("select[name=depth]").value, 10),
    };
  }

  function sendSettings() {
    if (wrapper && socket && socket.readyState === WebSocket.OPEN) {
      wrapper.send(JSON.stringify(settings()));
    }
  }

  function setSocketState(state) {
    root.dataset.socket = state;
    if (state !== "open") {
      ["candles", "trades", "book"].forEach(function (name) {
        var elt = document.getElementById(name + "-state");
        if (elt) { elt.dataset.state = state; elt.textContent = state === "closed" ? "Disconnected" : "Reconnecting…"; }
      });
    }
  }

  function mine(evt) { return evt.target === root; }

  document.addEventListener("htmx:wsOpen", function (evt) {
    if (!mine(evt)) return;
    wrapper = evt.detail.socketWrapper;
    socket = evt.detail.event.target;
    root.dataset.sockets = String((parseInt(root.dataset.sockets || "0", 10) || 0) + 1);
    retries = 0;
    setSocketState("open");
    if (everOpen) load();  // a reconnect: candles may have moved on meanwhile
    everOpen = true;
    sendSettings();
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    if (!mine(evt)) return;
    var code = evt.detail.event.code;
    if (PERMANENT.indexOf(code) >= 0) { setSocketState("closed"); return; }
    setSocketState("reconnecting");
    if ([1006, 1011, 1012, 1013].indexOf(code) < 0 && !retryTimer) {
      var base = Math.min(10000, 500 * Math.pow(2, retries++));
      retryTimer = setTimeout(function () { retryTimer = null; if (wrapper) wrapper.reconnect(); },
                              base / 2 + Math.random() * base / 2);
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    if (!mine(evt)) return;
    root.dataset.frames = String((parseInt(root.dataset.frames || "0", 10) || 0) + 1);
    var rows = document.getElementById("trade-rows");
    var fresh = rows.querySelectorAll("tr.trade-liquidation:not([data-seen])");
    fresh.forEach(function (row) { row.dataset.seen = "1"; liquidationPassed(row); });
    var all = rows.querySelectorAll("tr");
    for (var i = TAPE_ROWS; i < all.length; i++) all[i].remove();
    liveCandle();
    paintBook();
    // The kline stream may be live while the candles' history is not: say what is shown.
    if (panel.dataset.candles === "no") setPanelState("candles", "unavailable", "Unavailable");
  });

  // Each level's depth bar: its width set through the CSSOM, since the
  // Content-Security-Policy refuses style attributes in the markup.
  function paintBook() {
    bookPanel.querySelectorAll(".book-level[data-fill]").forEach(function (level) {
      level.style.setProperty("--fill", level.dataset.fill + "%");
    });
  }

  bookPanel.querySelectorAll("select").forEach(function (select) {
    select.addEventListener("change", sendSettings);
  });

  // -- the chart ----------------------------------------------------------------------------

  function makeChart() {
    var LWC = window.LightweightCharts;
    chart = LWC.createChart(canvas, {
      autoSize: true,
      // The library's logo brings an inline <style>, which the Content-Security-Policy
      // refuses: the template credits TradingView with a plain link instead (its licence).
      layout: {
        background: { color: "transparent" },
        textColor: css("--muted", "#9aa4b2"),
        attributionLogo: false,
      },
      grid: { vertLines: { visible: false }, horzLines: { color: "rgba(128,128,128,0.15)" } },
      timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 2 },
    });
    panel.chart = chart;  // for the browser tests
    candles = chart.addSeries(LWC.CandlestickSeries, {
      upColor: css("--short", "#26a69a"), downColor: css("--long", "#ef5350"),
      wickUpColor: css("--short", "#26a69a"), wickDownColor: css("--long", "#ef5350"),
      borderVisible: false,
    }, 0);
    markerLayer = LWC.createSeriesMarkers(candles, []);
    var usd = { type: "custom", formatter: formatUsd, minMove: 1 };
    shorts = chart.addSeries(LWC.HistogramSeries, {
      color: css("--short", "#26a69a"), priceLineVisible: false, lastValueVisible: false, priceFormat: usd,
    }, 1);
    longs = chart.addSeries(LWC.HistogramSeries, {
      color: css("--long", "#ef5350"), priceLineVisible: false, lastValueVisible: false, priceFormat: usd,
    }, 1);
    delta = chart.addSeries(LWC.LineSeries, {
      color: css("--huge-edge", "#ffc400"), lineWidth: 2, priceLineVisible: false, priceFormat: usd,
    }, 1);
    panel.series = { candles: candles, shorts: shorts, longs: longs, delta: delta };
  }

  function candleCount() {
    var width = canvas.clientWidth || panel.clientWidth || 800;
    return Math.round(Math.min(Math.max((width / 6) * 3, 200), 1000));
  }

  function volumePoints(time) {
    var bar = bars[time] || { short: 0, long: 0 };
    return [{ time: time, value: bar.short }, { time: time, value: -bar.long },
            { time: time, value: bar.short - bar.long }];
  }

  function publish() {
    var total = 0;
    Object.keys(bars).forEach(function (t) { total += bars[t].short + bars[t].long; });
    var v = shorts.data();
    canvas.dataset.candles = String(candles.data().length);
    canvas.dataset.bars = String(v.length);
    canvas.dataset.total = String(total);
    canvas.dataset.markers = String(markers.length);
    canvas.dataset.panes = String(chart.panes().length);
    var c = candles.data();
    canvas.dataset.candleFirst = c.length ? String(c[0].time) : "";
    canvas.dataset.candleLast = c.length ? String(c[c.length - 1].time) : "";
    canvas.dataset.volumeFirst = v.length ? String(v[0].time) : "";
    canvas.dataset.volumeLast = v.length ? String(v[v.length - 1].time) : "";
  }

  function threshold() {
    var value = parseFloat(thresholdInput.value);
    return isFinite(value) && value >= 0 ? value : 100000;
  }

  function showMarkers() {
    var min = threshold();
    var shown = markers.filter(function (m) { return m.usd >= min; });
    canvas.dataset.markersShown = String(shown.length);
    markerLayer.setMarkers(shown.map(function (m) {
      var long = m.side === "SELL";
      return {
        time: m.time, position: long ? "belowBar" : "aboveBar",
        color: long ? css("--long", "#ef5350") : css("--short", "#26a69a"),
        shape: long ? "arrowUp" : "arrowDown", text: formatUsd(m.usd),
      };
    }));
  }

  // The liquidation volume and markers follow the page's venue filter (#feed data-venue).
  function pageVenue() {
    var feed = document.getElementById("feed");
    return (feed && feed.dataset.venue) || "";
  }

  var venue = pageVenue();

  function venueQuery() {
    return venue ? "&venue=" + encodeURIComponent(venue) : "";
  }

  document.addEventListener("htmx:afterSettle", function () {
    var next = pageVenue();
    if (next === venue) return;
    venue = next;
    load(true);
  });

  function load(keepView) {
    var mine = ++generation;
    var view = keepView ? chart.timeScale().getVisibleLogicalRange() : null;
    canvas.dataset.state = "loading";
    var url = root.dataset.api + timeframe + "?limit=" + candleCount() + "&min_usd=" + threshold() +
      venueQuery();
    fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("market chart API answered " + r.status);
      return r.json();
    }).then(function (body) {
      if (mine !== generation) return;
      draw(body);
      if (view) chart.timeScale().setVisibleLogicalRange(view);
      canvas.dataset.state = "ready";
      publish();
    }).catch(function (err) {
      canvas.dataset.state = "error";
      notice.hidden = false;
      notice.textContent = "The chart could not be loaded: " + err.message;
    });
  }

  function draw(body) {
    var size = SECONDS[timeframe];
    bars = {};
    body.volume.forEach(function (b) {
      bars[b.time] = { short: parseFloat(b.buy_volume), long: parseFloat(b.sell_volume) };
    });
    candleTimes = body.candles.map(function (c) { return c.time; });
    if (!candleTimes.length) {
      for (var t = body.start_time / 1000; t < body.end_time / 1000; t += size) candleTimes.push(t);
    }
    candles.setData(body.candles.map(function (c) {
      return { time: c.time, open: +c.open, high: +c.high, low: +c.low, close: +c.close };
    }));
    // One volume point per candle (zero when nothing was liquidated): the same time range.
    var series = [[], [], []];
    candleTimes.forEach(function (time) {
      var p = volumePoints(time);
      series[0].push(p[0]); series[1].push(p[1]); series[2].push(p[2]);
    });
    shorts.setData(series[0]); longs.setData(series[1]); delta.setData(series[2]);
    markers = body.markers.map(function (m) {
      return { key: markerKey(m.time_ms, m.side, m.usd), time: m.time, side: m.side, usd: parseFloat(m.usd) };
    });
    showMarkers();
    notice.hidden = !body.candles_error;
    notice.textContent = body.candles_error ?
      body.candles_error.replace(/\.?$/, ".") + " The liquidation volume is shown without them." : "";
    // Without candles the volume takes the chart; with them, a pane under the candles.
    var panes = chart.panes();
    if (panes[1]) {
      panes[0].setStretchFactor(body.candles.length ? 1 : 0.15);
      panes[1].setStretchFactor(body.candles.length ? 0.4 : 1);
    }
    panel.dataset.candles = body.candles.length ? "yes" : "no";
    if (!body.candles.length) setPanelState("candles", "unavailable", "Unavailable");
  }

  function setPanelState(name, state, label) {
    var elt = document.getElementById(name + "-state");
    if (elt) { elt.dataset.state = state; elt.textContent = label; }
  }

  function addBar(time) {
    if (candleTimes.length && time <= candleTimes[candleTimes.length - 1]) return;
    candleTimes.push(time);
    var p = volumePoints(time);
    shorts.update(p[0]); longs.update(p[1]); delta.update(p[2]);
  }

  // The live candle of the socket (#candle-live, swapped in by the last frame).
  function liveCandle() {
    var elt = document.getElementById("candle-live");
    if (!elt || !elt.dataset.time || elt.dataset.timeframe !== timeframe || !candles) return;
    if (canvas.dataset.state !== "ready" || panel.dataset.candles !== "yes") return;
    var time = parseInt(elt.dataset.time, 10);
    var last = candleTimes[candleTimes.length - 1];
    if (time < last) return;
    candles.update({ time: time, open: +elt.dataset.open, high: +elt.dataset.high,
                     low: +elt.dataset.low, close: +elt.dataset.close });
    addBar(time);
    canvas.dataset.liveTime = String(time);
    canvas.dataset.liveClose = elt.dataset.close;
    publish();
  }

  function markerKey(timeMs, side, usd) {
    return timeMs + ":" + side + ":" + parseFloat(usd).toFixed(2);
  }

  // A liquidation of this symbol passed in the tape: its marker, and fresh volume bars.
  function liquidationPassed(row) {
    var usd = parseFloat(row.dataset.usd), timeMs = parseInt(row.dataset.time, 10);
    var size = SECONDS[timeframe], time = Math.floor(timeMs / 1000 / size) * size;
    var key = markerKey(timeMs, row.dataset.side, row.dataset.usd);
    // A tape sent again whole (new settings) brings its liquidations again: one marker each.
    if (markers.some(function (m) { return m.key === key; })) return;
    markers.push({ key: key, time: time, side: row.dataset.side, usd: usd });
    if (candles) showMarkers();
    scheduleRefresh();
  }

  function refreshVolume() {
    lastRefresh = Date.now();
    refreshTimer = null;
    var mine = generation, size = SECONDS[timeframe];
    var current = candleTimes[candleTimes.length - 1];
    var url = root.dataset.volumeApi + timeframe + "?start_time=" + (current - size) * 1000 +
      "&end_time=" + (current + size) * 1000 + venueQuery();
    fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("volume API answered " + r.status);
      return r.json();
    }).then(function (body) {
      if (mine !== generation) return;
      var fresh = {};
      body.data.forEach(function (b) { fresh[b.time] = b; });
      [current - size, current].forEach(function (time) {
        var b = fresh[time];
        if (!b) return;
        bars[time] = { short: parseFloat(b.buy_volume), long: parseFloat(b.sell_volume) };
        var p = volumePoints(time);
        var historical = time < current;
        shorts.update(p[0], historical); longs.update(p[1], historical); delta.update(p[2], historical);
      });
      publish();
    }).catch(function (err) { console.warn("Refreshing the volume failed:", err); });
  }

  function scheduleRefresh() {
    if (refreshTimer || !candleTimes.length) return;
    refreshTimer = setTimeout(refreshVolume, Math.max(0, lastRefresh + REFRESH_MIN_MS - Date.now()));
  }

  panel.querySelectorAll("button[data-timeframe]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.timeframe === timeframe) return;
      timeframe = panel.dataset.timeframe = button.dataset.timeframe;
      panel.querySelectorAll("button[data-timeframe]").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      sendSettings();
      load(false);
    });
  });

  thresholdInput.addEventListener("input", function () {
    clearTimeout(thresholdTimer);
    thresholdTimer = setTimeout(function () { load(true); }, 400);
  });

  function start() {
    if (!window.LightweightCharts) return;
    makeChart();
    load(false);
    // Time crossing into a new bucket: a bar for it at once (the kline brings its prices).
    setInterval(function () {
      if (canvas.dataset.state !== "ready" || !candleTimes.length) return;
      var size = SECONDS[timeframe], now = Math.floor(Date.now() / 1000 / size) * size;
      if (panel.dataset.candles !== "yes" && now > candleTimes[candleTimes.length - 1]) {
        addBar(now); publish();
      }
    }, 1000);
  }

  // Connect the socket (htmx's ws extension) with the page's settings in its URL.
  function connect() {
    var s = settings();
    root.setAttribute("hx-ext", "ws");
    root.setAttribute("ws-connect", root.dataset.ws + "?timeframe=" + s.timeframe +
      "&rounding=" + encodeURIComponent(s.rounding) + "&depth=" + s.depth);
    if (window.htmx) htmx.process(root);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { start(); connect(); });
  } else {
    start(); connect();
  }
})();
