// The symbol page's liquidation-volume chart (lightweight-charts, vendored).
// Shorts liquidated grow up (green), longs liquidated down (red), the delta is a line.
// Live: when the socket brings this symbol's rows or stats, the recent buckets are
// fetched again (at most once a second) and updated in place, which keeps the user's
// zoom and pan; when the clock crosses into a new bucket, an empty bar appears.
(function () {
  "use strict";

  var SECONDS = { "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400 };
  // How far back the chart starts, in buckets; within the API's maximum range.
  var SPAN_BUCKETS = { "1m": 360, "5m": 288, "15m": 288, "30m": 288, "1h": 336, "4h": 360, "1d": 365 };
  var REFRESH_MIN_MS = 1000;
  var VISIBLE_BARS = 120;
  var POLL_MS = 15000; // also refresh now and then: a narrow row filter may hide rows

  var panel = document.getElementById("volume-chart");
  if (!panel || !window.LightweightCharts) return;
  var canvas = panel.querySelector(".volume-chart-canvas");
  var symbol = panel.dataset.symbol;
  var LWC = window.LightweightCharts;
  var timeframe = panel.dataset.timeframe || "5m";
  var lastBarTime = 0;
  var bars = {}; // time -> {short, long}
  var generation = 0; // drops answers for a timeframe no longer shown
  var lastRefresh = 0;
  var refreshTimer = null;

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  var chart = LWC.createChart(canvas, {
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
    rightPriceScale: { scaleMargins: { top: 0.1, bottom: 0.1 } },
    localization: { priceFormatter: formatUsd },
  });
  panel.chart = chart; // for the browser test (zoom kept across updates)
  var shorts = chart.addSeries(LWC.HistogramSeries, {
    color: css("--short", "#26a69a"), priceLineVisible: false, lastValueVisible: false, title: "Shorts",
  });
  var longs = chart.addSeries(LWC.HistogramSeries, {
    color: css("--long", "#ef5350"), priceLineVisible: false, lastValueVisible: false, title: "Longs",
  });
  var delta = chart.addSeries(LWC.LineSeries, {
    color: css("--huge-edge", "#ffc400"), lineWidth: 2, priceLineVisible: false, title: "Delta",
  });

  function formatUsd(value) {
    var abs = Math.abs(value);
    var sign = value < 0 && abs >= 0.5 ? "-" : "";
    var units = [[1e9, "B"], [1e6, "M"], [1e3, "K"]];
    for (var i = 0; i < units.length; i++) {
      if (abs >= units[i][0]) return sign + "$" + (abs / units[i][0]).toFixed(2) + units[i][1];
    }
    return sign + "$" + abs.toFixed(0);
  }

  function bucketOf(seconds) {
    var size = SECONDS[timeframe];
    return Math.floor(seconds / size) * size;
  }

  function points(time) {
    var bar = bars[time] || { short: 0, long: 0 };
    return [
      { time: time, value: bar.short },
      { time: time, value: -bar.long },
      { time: time, value: bar.short - bar.long },
    ];
  }

  function url(startMs, endMs) {
    return panel.dataset.api + timeframe + "?start_time=" + startMs + "&end_time=" + endMs;
  }

  function publish() {
    canvas.dataset.bars = String(Object.keys(bars).length);
    var bar = bars[lastBarTime] || { short: 0, long: 0 };
    canvas.dataset.lastTime = String(lastBarTime);
    canvas.dataset.lastTotal = String(bar.short + bar.long);
    canvas.dataset.total = String(
      Object.keys(bars).reduce(function (sum, t) { return sum + bars[t].short + bars[t].long; }, 0)
    );
  }

  function fetchBuckets(startMs, endMs) {
    return fetch(url(startMs, endMs), { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("volume API answered " + r.status);
      return r.json();
    });
  }

  function load() {
    var mine = ++generation;
    var size = SECONDS[timeframe];
    var nowS = Math.floor(Date.now() / 1000);
    var end = bucketOf(nowS) + size;
    var start = end - size * SPAN_BUCKETS[timeframe];
    canvas.dataset.state = "loading";
    fetchBuckets(start * 1000, end * 1000).then(function (body) {
      if (mine !== generation) return;
      bars = {};
      body.data.forEach(function (b) {
        bars[b.time] = { short: parseFloat(b.buy_volume), long: parseFloat(b.sell_volume) };
      });
      // Every bucket from the start to now, empty ones included, so time reads evenly.
      var series = [[], [], []];
      for (var t = start; t <= bucketOf(nowS); t += size) {
        var p = points(t);
        series[0].push(p[0]); series[1].push(p[1]); series[2].push(p[2]);
      }
      shorts.setData(series[0]); longs.setData(series[1]); delta.setData(series[2]);
      lastBarTime = bucketOf(nowS);
      // A fresh timeframe opens on its latest buckets; later updates leave the view alone.
      var count = series[0].length;
      chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, count - VISIBLE_BARS), to: count + 1 });
      canvas.dataset.state = "ready";
      publish();
    }).catch(function (err) {
      canvas.dataset.state = "error";
      console.warn("Loading the volume chart failed:", err);
    });
  }

  function update(time) {
    var historical = time < lastBarTime;
    var p = points(time);
    shorts.update(p[0], historical); longs.update(p[1], historical); delta.update(p[2], historical);
    if (time > lastBarTime) lastBarTime = time;
  }

  // The current and previous buckets, fetched again and updated in place.
  function refresh() {
    lastRefresh = Date.now();
    refreshTimer = null;
    var mine = generation;
    var size = SECONDS[timeframe];
    var current = bucketOf(Math.floor(Date.now() / 1000));
    fetchBuckets((current - size) * 1000, (current + size) * 1000).then(function (body) {
      if (mine !== generation || canvas.dataset.state !== "ready") return;
      var fresh = {};
      body.data.forEach(function (b) { fresh[b.time] = b; });
      [current - size, current].forEach(function (time) {
        if (time < lastBarTime - size) return;
        var b = fresh[time];
        bars[time] = b ? { short: parseFloat(b.buy_volume), long: parseFloat(b.sell_volume) }
                       : (bars[time] || { short: 0, long: 0 });
        update(time);
      });
      publish();
    }).catch(function (err) { console.warn("Refreshing the volume chart failed:", err); });
  }

  function scheduleRefresh() {
    if (refreshTimer) return;
    var wait = Math.max(0, lastRefresh + REFRESH_MIN_MS - Date.now());
    refreshTimer = setTimeout(refresh, wait);
  }

  // A frame with this symbol's rows or its stats strip means new liquidations.
  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    var message = evt.detail && evt.detail.message;
    if (typeof message !== "string") return;
    if (message.indexOf("liquidation-rows") !== -1 ||
        message.indexOf('data-scope="' + symbol + '"') !== -1) {
      scheduleRefresh();
    }
  });

  // Time crossing into a new bucket: show it (empty) at once.
  setInterval(function () {
    if (canvas.dataset.state !== "ready") return;
    var current = bucketOf(Math.floor(Date.now() / 1000));
    if (current > lastBarTime) { update(current); publish(); }
  }, 1000);
  setInterval(function () { if (canvas.dataset.state === "ready") scheduleRefresh(); }, POLL_MS);

  panel.querySelectorAll("button[data-timeframe]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.timeframe === timeframe) return;
      timeframe = button.dataset.timeframe;
      panel.dataset.timeframe = timeframe;
      panel.querySelectorAll("button[data-timeframe]").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      load();
    });
  });

  load();
})();
