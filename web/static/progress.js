// Polls the job until it finishes, moving the progress bar and showing its worker, stages and labelling estimate;
// then reloads into the results.
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const url = section.dataset.jobUrl;
  function showStages(stages) {
    const body = document.querySelector("#stages tbody");
    if (!body) return;
    body.replaceChildren(...stages.map(function (s) {
      const row = document.createElement("tr");
      const status = document.createElement("span");
      status.className = "status status-" + s.status;
      status.textContent = s.status;
      const cells = [s.stage, status, s.chunks_done + " / " + s.chunks, s.seconds.toFixed(1), s.worker || ""];
      cells.forEach(function (value) {
        const cell = document.createElement("td");
        cell.append(value);  // text, never markup
        row.append(cell);
      });
      return row;
    }));
  }
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
        document.getElementById("worker").textContent = job.worker || "waiting for one";
        const labelling = document.getElementById("labelling");
        labelling.textContent = job.labelling ? job.labelling.summary : "";  // text, never markup
        labelling.hidden = !job.labelling;
        showStages(job.stages);
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
