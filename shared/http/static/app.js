// The dashboard of finetune-autopilot: plain DOM, no framework, no build step.
// Everything shown comes from the app's own HTTP API (GET /api/runs, GET /api/runs/{id},
// POST /api/runs/{id}/cancel|retry|approve|rollback), called with the function key the
// user pasted, kept in this tab's session storage. Text from the API is only ever set
// as text (el() below appends strings as Text nodes), never parsed as HTML.
"use strict";

(() => {
  // "/api/ui" -> "/api": the API is beside the page, whatever the route prefix.
  const API = location.pathname.replace(/\/ui(\/.*)?$/, "");
  const KEY = "finetune-autopilot.function-key";
  const PAGE = 20;
  const REFRESH_MS = 3000;
  // Kept equal to RunState and its rules by tests/api/test_dashboard.py.
  const STATES = [
    "RECEIVED", "REJECTED", "DUPLICATE", "REGISTERING_DATA", "AWAITING_APPROVAL",
    "TRAINING", "TRAINING_FAILED", "CANCELED", "DEPLOYING", "DEPLOY_FAILED",
    "SMOKE_TESTING", "EVALUATING", "PROMOTING", "LIVE", "ROLLED_BACK", "FAILED",
  ];
  const TERMINAL = new Set([
    "REJECTED", "DUPLICATE", "TRAINING_FAILED", "CANCELED", "DEPLOY_FAILED", "LIVE",
    "ROLLED_BACK", "FAILED",
  ]);
  const CANCELLABLE = new Set([
    "RECEIVED", "REGISTERING_DATA", "AWAITING_APPROVAL", "TRAINING", "DEPLOYING",
    "SMOKE_TESTING", "EVALUATING",
  ]);
  const RETRYABLE = new Set(["TRAINING_FAILED", "DEPLOY_FAILED", "ROLLED_BACK", "FAILED"]);
  const BAD = new Set(["REJECTED", "TRAINING_FAILED", "DEPLOY_FAILED", "ROLLED_BACK", "FAILED"]);
  const QUIET = new Set(["CANCELED", "DUPLICATE"]);

  const $ = (selector) => document.querySelector(selector);
  let timer = 0;
  let generation = 0; // a newer render makes older fetches' answers stale
  let list = { state: null, tokens: [null], index: 0 };

  // -- building the page ------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child !== undefined && child !== null && child !== false && child !== "") {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const badge = (state) => {
    const tone = state === "LIVE" ? "ok" : BAD.has(state) ? "bad"
      : QUIET.has(state) ? "quiet" : state === "AWAITING_APPROVAL" ? "wait" : "active";
    return el("span", { class: `badge ${tone}` }, state);
  };
  const runLink = (id) => el("a", { href: `#/runs/${encodeURIComponent(id)}` }, id);
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  const number = (value, digits = 2) =>
    typeof value === "number" ? (Number.isInteger(value) ? value.toLocaleString()
      : value.toFixed(digits)) : value;

  function took(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  // A definition list of [label, value] pairs; empty values are left out.
  function facts(pairs) {
    const shown = pairs.filter(([, value]) =>
      value !== undefined && value !== null && value !== "" &&
      !(Array.isArray(value) && value.length === 0));
    return el("dl", { class: "facts" },
      shown.map(([label, value]) => [el("dt", {}, label), el("dd", {}, number(value))]));
  }

  function table(caption, headings, rows) {
    return el("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption },
      el("table", {},
        el("caption", {}, caption),
        el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))))));
  }

  function section(id, title, ...content) {
    return el("section", { "aria-labelledby": id }, el("h2", { id }, title), content);
  }

  // -- messages ---------------------------------------------------------------------

  function notify(text, ...extra) {
    $("#problem").replaceChildren();
    $("#notice").replaceChildren(el("p", {}, text, extra));
  }

  function complain(text, ...extra) {
    $("#notice").replaceChildren();
    $("#problem").replaceChildren(el("p", {}, text), extra);
  }

  function clearMessages() {
    $("#notice").replaceChildren();
    $("#problem").replaceChildren();
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  // Shows what the API said: its problem's title, status, detail and field errors.
  function failed(error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin("The key was refused: 401 Unauthorized. Paste a function key of this app.");
      return;
    }
    if (!(error instanceof ApiError)) {
      complain(`The app could not be reached: ${error.message}`);
      return;
    }
    const { title, detail, errors } = error.problem;
    complain(`${title || "The request failed"} (${error.status}): ${detail || error.message}`,
      errors && errors.length
        ? el("ul", {}, errors.map((e) => el("li", {}, `${e.field || "body"}: ${e.detail}`)))
        : null);
  }

  // -- the API ----------------------------------------------------------------------

  async function api(path, method = "GET") {
    const response = await fetch(API + path, {
      method,
      headers: { "x-functions-key": sessionStorage.getItem(KEY) || "" },
      cache: "no-store",
    });
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : null;
    if (!response.ok) throw new ApiError(response.status, body);
    return { status: response.status, body };
  }

  // -- views ------------------------------------------------------------------------

  function showLogin(problem) {
    clearTimeout(timer);
    $("#view").replaceChildren();
    $("#forget").hidden = true;
    $("#login").hidden = false;
    if (problem) complain(problem);
    $("#key").value = "";
    $("#key").focus();
  }

  // Re-renders the view in place, keeping the focus where it was (auto-refresh).
  function render(...content) {
    const focused = document.activeElement && document.activeElement.id;
    $("#login").hidden = true;
    $("#forget").hidden = false;
    $("#view").replaceChildren(...content.filter(Boolean)); // sections with nothing to show are null
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }

  function refreshLater(again) {
    clearTimeout(timer);
    timer = setTimeout(() => ($("#confirm").open ? refreshLater(again) : again()), REFRESH_MS);
  }

  async function showList(state) {
    const mine = ++generation;
    if (list.state !== state) list = { state, tokens: [null], index: 0 };
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (state) query.set("state", state);
    if (list.tokens[list.index]) query.set("continuation", list.tokens[list.index]);
    let page;
    try {
      page = (await api(`/runs?${query}`)).body;
    } catch (error) {
      if (mine === generation) failed(error);
      return;
    }
    if (mine !== generation) return;
    list.tokens = [...list.tokens.slice(0, list.index + 1), page.continuation];
    const active = page.runs.some((run) => !TERMINAL.has(run.state));
    const again = () => showList(state);
    render(
      el("h1", { id: "title", tabindex: -1 }, "Runs"),
      el("div", { class: "toolbar" },
        el("label", { for: "state-filter" }, "State"),
        el("select", {
          id: "state-filter",
          onchange: (event) => {
            location.hash = event.target.value ? `#/?state=${event.target.value}` : "#/";
          },
        },
        el("option", { value: "" }, "All states"),
        STATES.map((s) => el("option", { value: s, selected: s === state }, s))),
        el("button", { type: "button", id: "refresh", onclick: again }, "Refresh")),
      el("p", { class: "muted" }, `Newest first. Updated ${new Date().toLocaleTimeString()}`,
        active ? "; refreshing while a run is active." : "."),
      page.runs.length === 0
        ? el("p", { id: "empty" }, state ? `No run is ${state}.` : "No runs yet.")
        : table("Runs, newest first",
          ["Run", "Dataset", "State", "Activity", "Created", "Updated"],
          page.runs.map((run) => [runLink(run.run_id), run.dataset_name, badge(run.state),
            run.activity, when(run.created_at), when(run.updated_at)])),
      el("nav", { class: "pager", "aria-label": "Pages of runs" },
        el("button", {
          type: "button", id: "newer", disabled: list.index === 0,
          onclick: () => { list.index -= 1; again(); },
        }, "Newer"),
        el("span", {}, `Page ${list.index + 1}`),
        el("button", {
          type: "button", id: "older", disabled: !page.continuation,
          onclick: () => { list.index += 1; again(); },
        }, "Older")));
    if (active) refreshLater(again);
  }

  const ACTIONS = [
    {
      name: "cancel", label: "Cancel run",
      shown: (run) => CANCELLABLE.has(run.state) && !run.cancel_requested,
      question: (run) => `Cancel run ${run.run_id}? Its job is cancelled or its new ` +
        "deployment removed, and the run ends CANCELED.",
    },
    {
      name: "retry", label: "Retry",
      shown: (run) => RETRYABLE.has(run.state),
      question: (run) => `Retry run ${run.run_id} from the step that failed?`,
    },
    {
      name: "approve", label: "Approve",
      shown: (run) => run.state === "AWAITING_APPROVAL",
      question: (run) => {
        const plan = run.plan || {};
        const cost = typeof plan.total === "number"
          ? `${plan.total.toFixed(2)} ${plan.currency || ""}`.trim() : "unknown";
        return `Approve run ${run.run_id} (planned cost: ${cost})? Its job starts at once.`;
      },
    },
    {
      name: "rollback", label: "Roll back",
      shown: (run) => run.state === "LIVE" && Boolean(run.replaced && run.replaced.deployment),
      question: (run) => `Roll back run ${run.run_id}? Deployment ${run.replaced.deployment}'s ` +
        "model is deployed again and given all traffic.",
    },
  ];

  function confirmed(question) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = question;
    return new Promise((resolve) => {
      const answer = (yes) => { if (dialog.open) dialog.close(); resolve(yes); };
      $("#confirm-yes").onclick = () => answer(true);
      $("#confirm-no").onclick = () => answer(false);
      dialog.oncancel = () => resolve(false); // Escape
      dialog.showModal();
      $("#confirm-no").focus();
    });
  }

  async function act(run, action) {
    if (!(await confirmed(action.question(run)))) return;
    try {
      const { body } = await api(
        `/runs/${encodeURIComponent(run.run_id)}/${action.name}`, "POST");
      if (action.name === "rollback") {
        notify(`Rollback requested: run ${body.run_id} is ${body.state}. `,
          runLink(body.run_id));
      } else {
        notify(`${action.label}: requested; the run is ${body.state}.`);
      }
    } catch (error) {
      failed(error);
    }
    showRun(run.run_id);
  }

  function timelineSection(run) {
    const entries = run.timeline || [];
    const rows = entries.map((entry, index) => {
      const next = entries[index + 1];
      const end = next ? Date.parse(next.at) : TERMINAL.has(run.state) ? null : Date.now();
      const seconds = end === null ? null : (end - Date.parse(entry.at)) / 1000;
      const pascal = entry.state.toLowerCase().replace(/(^|_)(\w)/g, (_, __, c) => c.toUpperCase());
      return [
        badge(entry.state),
        when(entry.at),
        seconds === null ? "" : took(seconds) + (next ? "" : " so far"),
        el("span", { class: "pre" }, entry.detail),
        el("span", { class: "event" }, `FinetuneAutopilot.Run.${pascal}`,
          el("br"), el("small", {}, `${run.run_id}:${index}:${entry.state}`)),
      ];
    });
    return section("timeline", "Timeline and lifecycle events",
      el("p", { class: "muted" },
        "Each state change is published as a lifecycle event to Event Grid, with the id " +
        "shown; the API has no event feed, so these come from the run's timeline."),
      table("States, oldest first", ["State", "Entered", "Took", "Detail", "Event"], rows));
  }

  function azureSection(run) {
    const config = run.config || {};
    const replaced = run.replaced || {};
    const rolledBack = run.rolled_back_by || {};
    const approval = run.approval || {};
    const previous = Object.entries(run.previous_deployments || {})
      .map(([name, percent]) => `${name}: ${percent}%`).join(", ");
    return section("azure", "Job and deployment", facts([
      ["Fine-tuning job", run.job_name],
      ["Job status", run.job_status],
      ["Base model", config.base_model],
      ["Model", run.model_name],
      ["Model id", run.model_id],
      ["Endpoint", run.endpoint],
      ["Deployment", run.deployment],
      ["Reused deployment", run.adopted_deployment],
      ["Traffic before", previous],
      ["Replaced", replaced.deployment
        ? `${replaced.deployment} (${replaced.model || "model unknown"})` : ""],
      ["Rolled back by", rolledBack.run_id
        ? [runLink(rolledBack.run_id), ` (${rolledBack.by || "unknown"}, ${when(rolledBack.at)})`]
        : ""],
      ["Rollback of", config.rollback_of ? runLink(config.rollback_of) : ""],
      ["Restores", config.restores ? runLink(config.restores) : ""],
      ["Removes", config.removes],
      ["Duplicate of", run.duplicate_of ? runLink(run.duplicate_of) : ""],
      ["Approved by", approval.by ? `${approval.by} at ${when(approval.at)}` : ""],
    ].map(([label, value]) => [label, Array.isArray(value) ? el("span", {}, value) : value])));
  }

  function validationSection(run) {
    const v = run.validation || {};
    if (!Object.keys(v).length) return null;
    const tokens = v.tokens || {};
    const per = tokens.per_example || {};
    const lengths = v.lengths || {};
    const lines = (items) => items.map((e) => [e.line === 0 ? "file" : e.line, e.code, e.message]);
    return section("validation", "Validation report",
      facts([
        ["Verdict", v.valid ? "valid" : "invalid"],
        ["Task", v.task],
        ["Examples", v.examples],
        ["Lines", v.lines],
        ["Bytes", v.bytes],
        ["Near-duplicates", v.duplicates],
        ["Errors", v.error_count],
        ["Warnings", v.warning_count],
        ["Characters per example", lengths.max !== undefined
          ? `min ${lengths.min}, p50 ~${lengths.p50}, p95 ~${lengths.p95}, max ${lengths.max}` : ""],
        ["Tokens", tokens.total !== undefined
          ? `${number(tokens.total)} (${tokens.exact ? "exact" : "sampled"}, ${tokens.tokenizer})`
          : ""],
        ["Tokens per example", per.max !== undefined
          ? `min ${per.min}, p50 ${per.p50}, p95 ${per.p95}, max ${per.max}` : ""],
        [`Over max_seq_length (${tokens.max_seq_length})`, tokens.over_max_seq_length],
        ["Training tokens", v.training_tokens],
        ["Epochs", v.epochs],
        ["Estimated tokens", v.tokens ? null : v.estimated_tokens],
        ["Report", run.report_url],
      ]),
      v.errors && v.errors.length
        ? table(`Errors (${v.errors.length} of ${v.error_count} shown)`,
          ["Line", "Code", "Message"], lines(v.errors)) : null,
      v.warnings && v.warnings.length
        ? table("Warnings", ["Line", "Code", "Message"], lines(v.warnings)) : null);
  }

  function planSection(run) {
    const plan = run.plan || {};
    if (!Object.keys(plan).length) return null;
    const currency = plan.currency || "";
    const money = (value) => (typeof value === "number" ? `${value.toFixed(2)} ${currency}` : "");
    return section("plan", "Plan", facts([
      ["Total", money(plan.total) || "unknown"],
      ["Training", money(plan.training_cost)],
      ["Rollout", money(plan.rollout_cost)],
      ["Serving per hour", money(plan.deployment_cost_per_hour)],
      ["GPU hours", plan.gpu_hours],
      ["Training tokens", plan.training_tokens],
      ["Unknown inputs", (plan.missing || []).join(", ")],
    ]));
  }

  const score = (answer) => (answer
    ? el("span", {}, answer.error ? `error: ${answer.error}` : "",
      typeof answer.rouge_l === "number"
        ? ` ROUGE-L ${answer.rouge_l.toFixed(2)}, exact ${answer.exact_match}` : "")
    : "");

  function smokeSection(run) {
    const smoke = run.smoke || {};
    if (!smoke.results) return null;
    return section("smoke", "Smoke test",
      facts([["Verdict", smoke.passed ? "passed" : `failed: ${smoke.reason}`]]),
      table("Smoke prompts", ["Prompt", "Expected", "Answer", "Similarity", "Latency", "Result"],
        smoke.results.map((r) => [
          el("span", { class: "pre" }, r.prompt), el("span", { class: "pre" }, r.expected || ""),
          el("span", { class: "pre" }, r.answer),
          typeof r.similarity === "number" ? r.similarity.toFixed(2) : "",
          `${Math.round(r.latency_ms)} ms`, r.passed ? "passed" : r.reason,
        ])));
  }

  function evaluationSection(run) {
    const e = run.evaluation || {};
    if (!e.results) return null;
    const side = (s) => (s && typeof s.rouge_l === "number"
      ? `${s.deployment}: ROUGE-L ${s.rouge_l.toFixed(2)}, exact ${s.exact_match}, ` +
        `errors ${s.errors}` : s && s.deployment ? `${s.deployment}` : "");
    const verdict = e.verdict ? `${e.verdict === "promote" ? "promoted" : "rolled back"}: ${e.reason}`
      : `scoring (${e.results.length} examples)`;
    return section("evaluation", "Evaluation",
      facts([
        ["Verdict", verdict],
        ["Judged by", e.judged_by],
        ["Challenger", side(e.challenger)],
        ["Champion", side(e.champion) || "none (first model on the endpoint)"],
        ["Delta", typeof e.delta === "number" ? e.delta.toFixed(3) : ""],
        ["95% interval", Array.isArray(e.ci) ? e.ci.map((x) => x.toFixed(3)).join(" to ") : ""],
        ["Floor", e.floor],
        ["Margin", e.margin],
      ]),
      table("Held-out examples: challenger and champion side by side",
        ["Prompt", "Expected", "Challenger answer", "Score", "Champion answer", "Score"],
        e.results.map((r) => [
          el("span", { class: "pre" }, r.prompt), el("span", { class: "pre" }, r.expected),
          el("span", { class: "pre" }, (r.challenger || {}).answer || ""), score(r.challenger),
          el("span", { class: "pre" }, (r.champion || {}).answer || ""), score(r.champion),
        ])));
  }

  async function showRun(id) {
    const mine = ++generation;
    let run;
    try {
      run = (await api(`/runs/${encodeURIComponent(id)}`)).body;
    } catch (error) {
      if (mine === generation) failed(error);
      return;
    }
    if (mine !== generation) return;
    const active = !TERMINAL.has(run.state);
    const actions = ACTIONS.filter((a) => a.shown(run));
    render(
      el("p", {}, el("a", { href: "#/", id: "back" }, "All runs")),
      el("h1", { id: "title", tabindex: -1 }, "Run ", el("span", { class: "id" }, run.run_id),
        " ", badge(run.state)),
      el("p", { class: "muted", id: "run-status" },
        run.activity ? `${run.activity}. ` : "",
        `Updated ${new Date().toLocaleTimeString()}`,
        active ? "; refreshing while the run is active." : "."),
      run.last_error ? el("p", { class: "error-text" }, `Last error: ${run.last_error}`) : null,
      actions.length ? el("div", { class: "toolbar", role: "group", "aria-label": "Actions" },
        actions.map((a) => el("button", {
          type: "button", id: `action-${a.name}`, class: a.name === "retry" ? "" : "danger",
          onclick: () => act(run, a),
        }, a.label))) : null,
      section("summary", "Summary", facts([
        ["Dataset", `${run.dataset.container}/${run.dataset.name}`],
        ["Kind", (run.config || {}).kind || "training"],
        ["Created", when(run.created_at)],
        ["Updated", when(run.updated_at)],
        ["Next check", active ? when(run.next_check_at) : ""],
        ["Retries", run.retries || ""],
        ["Attempts at this step", run.attempts || ""],
        ["Cancel requested", run.cancel_requested ? "yes" : ""],
      ])),
      timelineSection(run),
      azureSection(run),
      validationSection(run),
      planSection(run),
      smokeSection(run),
      evaluationSection(run));
    if (active) refreshLater(() => showRun(id));
  }

  // -- routing: #/ (runs, ?state=X), #/runs/<id>; #key=K signs in (make run's URL) ---------

  function route(moved) {
    clearTimeout(timer);
    const signIn = location.hash.match(/^#key=(.+)$/);
    if (signIn) {
      sessionStorage.setItem(KEY, decodeURIComponent(signIn[1]));
      history.replaceState(null, "", `${location.pathname}#/`); // the key leaves the URL
    }
    if (!sessionStorage.getItem(KEY)) {
      showLogin();
      return;
    }
    const hash = location.hash.replace(/^#/, "") || "/";
    const run = hash.match(/^\/runs\/([^?]+)$/);
    const shown = run ? showRun(decodeURIComponent(run[1]))
      : showList(new URLSearchParams(hash.split("?")[1] || "").get("state") || "");
    if (moved) shown.then(() => $("#title") && $("#title").focus());
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("#key").value.trim());
      clearMessages();
      route(true);
    });
    $("#forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      clearMessages();
      showLogin();
    });
    window.addEventListener("hashchange", () => {
      clearMessages();
      route(true);
    });
    route(false);
  });
})();
