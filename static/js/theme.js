// Apply the saved theme before first paint (dark unless the viewer chose light).
(function () {
  try {
    var theme = localStorage.getItem("orderfox-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.setAttribute("data-theme", theme);
    }
  } catch (e) {
    // Storage may be blocked (privacy mode): keep the default theme.
  }
})();
