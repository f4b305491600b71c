// Polls the job until it finishes, moving the progress bar; then reloads into the results.
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const url = section.dataset.jobUrl;
  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const job = await response.json();
        document.getElementById("status").textContent = job.status;
        document.getElementById("status").className = "status status-" + job.status;
        document.getElementById("stage").textContent = job.stage;
        document.getElementById("percent").textContent = Math.round(job.progress * 100);
        document.getElementById("bar").value = job.progress;
        if (job.status !== "queued" && job.status !== "running") {
          window.location.reload();
          return;
        }
      }
    } catch (err) {
      // the server restarting: try again on the next tick
    }
    setTimeout(poll, 1500);
  }
  setTimeout(poll, 1000);
})();
