// The report page's behaviour: charts (Chart.js, served by this app), the Connect dialog,
// and refreshing after a reconnect until the new figures are in.
(function () {
  "use strict";

  const palette = {
    gross: "#635bff", net: "#0e9f6e", mrr: "#635bff", amount: "#0ea5e9",
    new_mrr: "#0e9f6e", expansion_mrr: "#22c55e", reactivation_mrr: "#a3e635",
    contraction_mrr: "#f59e0b", churned_mrr: "#d92d20",
  };
  const labels = {
    gross: "Gross volume", net: "Net volume", mrr: "MRR", amount: "Paid out",
    new_mrr: "New", expansion_mrr: "Expansion", reactivation_mrr: "Reactivation",
    contraction_mrr: "Contraction", churned_mrr: "Churn",
  };

  function moneyFormatter(currency, compact, locale) {
    try {
      return new Intl.NumberFormat(locale || "en-US", {
        style: "currency", currency: (currency || "usd").toUpperCase(),
        notation: compact ? "compact" : "standard",
      });
    } catch (error) {
      return new Intl.NumberFormat("en-US");
    }
  }

  function dayLabel(iso, locale) {
    const date = new Date(iso + "T00:00:00Z");
    return date.toLocaleDateString(locale || "en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  }

  function drawChart(spec) {
    const canvas = document.getElementById("chart-" + spec.name);
    if (!canvas || typeof Chart === "undefined") return;
    const full = moneyFormatter(spec.currency, false, spec.locale);
    const compact = moneyFormatter(spec.currency, true, spec.locale);
    const isLine = spec.kind === "line";
    const stacked = spec.name === "mrr_movements";
    const datasets = spec.series.map(function (name) {
      const colour = palette[name] || "#635bff";
      return {
        label: labels[name] || name,
        data: spec.data[name],
        borderColor: colour,
        backgroundColor: isLine ? colour + "1a" : colour,
        fill: isLine && name === spec.series[0],
        borderWidth: isLine ? 2 : 0,
        pointRadius: 0,
        tension: 0.3,
        cubicInterpolationMode: "monotone",
        borderRadius: isLine ? 0 : 3,
        maxBarThickness: 28,
      };
    });
    const chart = new Chart(canvas, {
      type: isLine ? "line" : "bar",
      data: { labels: spec.labels.map(function (day) { return dayLabel(day, spec.locale); }), datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: {
            display: spec.series.length > 1, position: "bottom",
            labels: { boxWidth: 10, boxHeight: 10, color: "#697386" },
          },
          tooltip: {
            callbacks: {
              label: function (item) { return item.dataset.label + ": " + full.format(item.raw); },
            },
          },
        },
        scales: {
          x: {
            stacked: stacked, grid: { display: false },
            ticks: { maxTicksLimit: window.innerWidth < 560 ? 4 : 8, color: "#697386", maxRotation: 0 },
          },
          y: {
            stacked: stacked, beginAtZero: true, grid: { color: "#eef1f5" },
            border: { display: false },
            ticks: {
              color: "#697386", maxTicksLimit: 6,
              callback: function (v) { return compact.format(v); },
            },
          },
        },
      },
    });
    canvas.dataset.drawn = "true";
    return chart;
  }

  function drawCharts() {
    const source = document.getElementById("chart-data");
    if (!source) return;
    JSON.parse(source.textContent).forEach(drawChart);
  }

  function wireConnectDialog() {
    const button = document.getElementById("connect-button");
    const dialog = document.getElementById("connect-dialog");
    if (!button || !dialog || typeof dialog.showModal !== "function") return;
    button.addEventListener("click", function (event) {
      event.preventDefault();
      dialog.showModal();
      const input = dialog.querySelector("input[type=password]");
      if (input) input.focus();
    });
  }

  // After a reconnect: poll until a sync newer than the reconnect has landed figures.
  function followSync() {
    const banner = document.getElementById("sync-started");
    if (!banner) return;
    const client = banner.dataset.client;
    const started = Date.parse(banner.dataset.started);
    const progress = document.getElementById("sync-progress");
    const deadline = Date.now() + 15 * 60 * 1000;
    function cleanUrl() {
      const url = new URL(window.location.href);
      url.searchParams.delete("sync_started");
      return url.toString();
    }
    function poll() {
      fetch("/api/clients/" + encodeURIComponent(client) + "/status", { cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (status) {
          const synced = status.last_sync_at && Date.parse(status.last_sync_at) >= started;
          if ((synced && status.has_figures) || status.connection === "failed") {
            window.location.replace(cleanUrl());
            return;
          }
          if (Date.now() > deadline) {
            progress.textContent = "The sync is taking longer than expected; see the client's " +
              "runs in the Dagster UI, or reload this page later.";
            return;
          }
          window.setTimeout(poll, 2000);
        })
        .catch(function () { window.setTimeout(poll, 4000); });
    }
    window.setTimeout(poll, 1500);
  }

  // A choice that changes what is shown (the comparison) applies at once; the form's own
  // button is there for pages opened without scripts.
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  drawCharts();
  wireConnectDialog();
  followSync();
  autosubmit();
})();
