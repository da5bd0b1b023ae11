// Settings › Security › Tenant KMS: the admin API's routes behind one page. Plain script, no
// build step: every state shown comes from an API answer, nothing is kept but the running job.
(function () {
  const settings = window.TENANT_KMS_ADMIN;
  const query = new URLSearchParams(location.search);
  const tenantId = query.get("tenant") || settings.tenantId;
  const base = `${settings.apiBase.replace(/\/$/, "")}/tenants/${encodeURIComponent(tenantId)}`;
  const jobKey = `tenant-kms-rewrap-job:${tenantId}`;
  const $ = (id) => document.getElementById(id);

  // Each provider's config fields, as the API takes them; external_id is issued, not typed.
  const PROVIDERS = [
    { id: "global", label: "Platform key", note: "The deployment's master key. The default." },
    { id: "operator_kms_aws", label: "Operator AWS KMS", note: "The operator's AWS KMS key." },
    { id: "operator_kms_gcp", label: "Operator Google Cloud KMS", note: "The operator's Cloud KMS key." },
    { id: "operator_kms_azure", label: "Operator Azure Key Vault", note: "The operator's Key Vault key." },
    {
      id: "customer_kms_aws",
      label: "Your AWS KMS key",
      note: "Your key; remove the grant and this tenant seals.",
      onboarding: "aws",
      fields: [
        { name: "region", label: "Region", placeholder: "eu-west-1" },
        { name: "key_arn", label: "Key ARN or alias ARN", placeholder: "arn:aws:kms:eu-west-1:111122223333:key/…" },
        { name: "role_arn", label: "Role ARN", placeholder: "arn:aws:iam::111122223333:role/tenant-kms" },
      ],
    },
    {
      id: "customer_kms_gcp",
      label: "Your Google Cloud KMS key",
      note: "Through Workload Identity Federation.",
      onboarding: "gcp",
      fields: [
        { name: "key_name", label: "Key name", placeholder: "projects/…/locations/…/keyRings/…/cryptoKeys/…" },
        {
          name: "workload_identity_provider",
          label: "Workload identity provider",
          placeholder: "//iam.googleapis.com/projects/…/locations/global/workloadIdentityPools/…/providers/…",
        },
        { name: "service_account_email", label: "Service account (optional)", optional: true },
      ],
    },
    {
      id: "customer_kms_azure",
      label: "Your Azure Key Vault key",
      note: "Through an Entra ID federated credential.",
      onboarding: "azure",
      fields: [
        { name: "key_id", label: "Key id", placeholder: "https://<vault>.vault.azure.net/keys/<name>" },
        { name: "tenant_id", label: "Entra tenant id" },
        { name: "client_id", label: "Application (client) id" },
      ],
    },
  ];
  const ONBOARDING_LABELS = {
    aws: { principal_arn: "Principal to trust (role trust policy)", external_id: "External ID (sts:ExternalId condition)" },
    gcp: { principal: "Principal (workload identity pool)", attribute_condition: "Attribute condition" },
    azure: { issuer: "Issuer", subject: "Subject identifier", audience: "Audience" },
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, { body, headers, steppedUp } = {}) {
    const sent = { ...(await TenantKmsAuth.headers(settings.auth, tenantId)), ...(headers || {}) };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const response = await fetch(base + path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = { message: text };
    }
    if (!response.ok) {
      // The API's {"error": {code, message}}, or a gateway's own {"message"}.
      const error = (data && data.error) || {};
      if (error.code === "step_up_required" && !steppedUp) {
        // The route wants a login of the last max_age seconds (RFC 9470): sign in again, once.
        const maxAge = Number((/max_age=(\d+)/.exec(response.headers.get("WWW-Authenticate") || "") || [])[1]);
        if (await TenantKmsAuth.stepUp(settings.auth, maxAge)) {
          show("notice", `Signed in again: this change needs a login of the last ${maxAge} s.`);
          return api(method, path, { body, headers, steppedUp: true });
        }
      }
      throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || (data && data.message) || response.statusText);
    }
    return data;
  }

  function show(id, text, kind) {
    const element = $(id);
    element.textContent = text;
    element.className = `result ${kind || ""}`;
  }

  function failure(id, error) {
    const hint = error.code === "step_up_required" ? " Sign in again, then retry." : "";
    show(id, `${error.code}: ${error.message}${hint}`, "bad");
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  // ------------------------------------------------------------------ status

  let current = null;

  function renderConfig(view) {
    current = view;
    $("status").textContent = view.status;
    $("status").className = `pill ${view.status}`;
    $("provider").textContent = view.provider ? labelOf(view.provider) : "not configured";
    $("active-version").textContent = view.active_version ?? "–";
    $("last-verified").textContent = when(view.last_verified_at);
    $("last-verify-error").textContent = view.last_verify_error || "none";
    $("session-ttl").textContent = view.session_ttl_seconds ? `${view.session_ttl_seconds} s` : "–";
    const sealed = view.status === "sealed";
    $("sealed-banner").hidden = !sealed;
    $("sealed-reason").textContent = sealed ? view.sealed_reason || "not given" : "";
    $("sealed-at").textContent = sealed ? when(view.sealed_at) : "";
    if (!sealed) show("unseal-result", "");
    document.body.dataset.status = view.status;
  }

  function labelOf(provider) {
    const found = PROVIDERS.find((p) => p.id === provider);
    return found ? `${found.label} (${provider})` : provider;
  }

  async function loadConfig() {
    renderConfig(await api("GET", "/kms"));
  }

  // ---------------------------------------------------------------- versions

  function renderVersions(versions) {
    const body = $("versions").querySelector("tbody");
    body.replaceChildren();
    for (const v of versions.slice().sort((a, b) => b.version - a.version)) {
      const row = document.createElement("tr");
      row.dataset.version = v.version;
      row.dataset.status = v.status;
      for (const value of [v.version, v.status, v.provider, v.key_id || "–", when(v.created_at), when(v.retired_at), v.records ?? 0]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      const action = document.createElement("td");
      if (v.status === "retired" && !v.records) {
        const destroy = document.createElement("button");
        destroy.type = "button";
        destroy.className = "quiet destroy";
        destroy.textContent = "Destroy";
        destroy.addEventListener("click", () => destroyVersion(v.version));
        action.append(destroy);
      }
      row.append(action);
      body.append(row);
    }
  }

  async function loadVersions() {
    renderVersions((await api("GET", "/keys")).versions);
  }

  async function destroyVersion(version) {
    if (!confirm(`Destroy version ${version}? Its wrapped key is deleted; nothing it encrypted can be read again.`)) return;
    try {
      await api("DELETE", `/keys/${version}`);
      show("rotate-result", `Version ${version} destroyed.`, "good");
    } catch (error) {
      failure("rotate-result", error);
    }
    await refresh();
  }

  async function rotate() {
    show("rotate-result", "Provisioning…");
    try {
      // A retried click must not provision twice.
      const answer = await api("POST", "/keys", { headers: { "Idempotency-Key": crypto.randomUUID() } });
      show("rotate-result", `Version ${answer.version} is active; older versions are retired.`, "good");
    } catch (error) {
      failure("rotate-result", error);
    }
    await refresh();
  }

  // ------------------------------------------------------------ configuration

  function renderProviders() {
    const holder = $("providers");
    for (const provider of PROVIDERS) {
      const label = document.createElement("label");
      label.className = "provider";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "provider";
      input.value = provider.id;
      input.addEventListener("change", () => choose(provider.id));
      const text = document.createElement("span");
      text.innerHTML = `<strong></strong><small></small>`;
      text.querySelector("strong").textContent = provider.label;
      text.querySelector("small").textContent = provider.note;
      label.append(input, text);
      holder.append(label);
    }
  }

  function chosen() {
    const input = document.querySelector('input[name="provider"]:checked');
    return input && PROVIDERS.find((p) => p.id === input.value);
  }

  async function choose(providerId, config) {
    document.querySelector(`input[name="provider"][value="${providerId}"]`).checked = true;
    const provider = PROVIDERS.find((p) => p.id === providerId);
    const fields = $("fields");
    fields.replaceChildren();
    for (const field of provider.fields || []) {
      const label = document.createElement("label");
      label.textContent = field.label;
      const input = document.createElement("input");
      input.name = field.name;
      input.placeholder = field.placeholder || "";
      input.required = !field.optional;
      input.value = (config && config[field.name]) || "";
      label.append(input);
      fields.append(label);
    }
    $("onboarding").hidden = !provider.onboarding;
    if (provider.onboarding) await loadOnboarding(provider.onboarding);
  }

  async function loadOnboarding(cloud) {
    const list = $("onboarding-values");
    list.replaceChildren();
    try {
      const answer = await api("GET", "/kms/onboarding");
      if (chosen()?.onboarding !== cloud) return; // another provider was picked meanwhile
      list.replaceChildren();
      for (const [name, label] of Object.entries(ONBOARDING_LABELS[cloud])) {
        const term = document.createElement("dt");
        term.textContent = label;
        const value = document.createElement("dd");
        const code = document.createElement("code");
        code.dataset.onboarding = `${cloud}.${name}`;
        code.textContent = answer[cloud][name] ?? "not available in this deployment";
        value.append(code);
        if (answer[cloud][name]) {
          const copy = document.createElement("button");
          copy.type = "button";
          copy.className = "quiet";
          copy.textContent = "Copy";
          copy.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(answer[cloud][name]));
          value.append(" ", copy);
        }
        list.append(term, value);
      }
    } catch (error) {
      const item = document.createElement("dd");
      item.textContent = `${error.code}: ${error.message}`;
      list.append(item);
    }
  }

  async function save(event) {
    event.preventDefault();
    const provider = chosen();
    if (!provider) return show("save-result", "Choose a provider.", "bad");
    const config = {};
    for (const input of $("fields").querySelectorAll("input")) {
      if (input.value.trim()) config[input.name] = input.value.trim();
    }
    show("save-result", "Verifying: a test encrypt and decrypt with the key…");
    try {
      const view = await api("PUT", "/kms", { body: { provider: provider.id, config } });
      show("save-result", `Saved. Verified at ${when(view.last_verified_at)}.`, "good");
    } catch (error) {
      const nothing = error.code === "verification_failed" ? " Nothing changed: the previous key stays in use." : "";
      show("save-result", `Not saved. ${error.code}: ${error.message}.${nothing}`, "bad");
    }
    await refresh();
  }

  async function verify() {
    show("verify-result", "Verifying…");
    try {
      const answer = await api("POST", "/kms/verify");
      if (answer.ok) show("verify-result", `Verified at ${when(answer.last_verified_at)}.`, "good");
      else show("verify-result", `Verification failed: ${answer.last_verify_error}`, "bad");
    } catch (error) {
      failure("verify-result", error);
    }
    await refresh();
  }

  async function unseal() {
    show("unseal-result", "Trying the active version…");
    try {
      const view = await api("POST", "/kms/unseal");
      renderConfig(view);
      show("notice", `Unsealed: version ${view.active_version} unwraps again.`, "good");
    } catch (error) {
      failure("unseal-result", error);
    }
    await refresh();
  }

  // ------------------------------------------------------------------ rewrap

  let polling = null;
  let migratedShown = null;

  function renderJob(job) {
    $("rewrap-job").hidden = false;
    $("rewrap-job").dataset.status = job.status;
    $("rewrap-job-id").textContent = job.job_id;
    $("rewrap-status").textContent = job.status;
    $("rewrap-migrated").textContent = job.migrated;
    $("rewrap-remaining").textContent = job.remaining;
    $("rewrap-skipped").textContent = job.skipped;
    show("rewrap-result", job.error ? `The job failed: ${job.error}` : "", job.error ? "bad" : "");
    const total = job.migrated + job.remaining;
    $("rewrap-progress").max = total || 1;
    $("rewrap-progress").value = total ? job.migrated : 1;
  }

  async function followJob(jobId) {
    clearTimeout(polling);
    try {
      const job = await api("GET", `/rewrap/${encodeURIComponent(jobId)}`);
      renderJob(job);
      // Records moved: the versions' record counts have too.
      if (job.migrated !== migratedShown) await loadVersions();
      migratedShown = job.migrated;
      if (job.status === "running") {
        polling = setTimeout(() => followJob(jobId), settings.pollMilliseconds);
        return;
      }
      sessionStorage.removeItem(jobKey);
    } catch (error) {
      failure("rewrap-result", error);
      if (error.code === "not_found") sessionStorage.removeItem(jobKey);
      else polling = setTimeout(() => followJob(jobId), settings.pollMilliseconds);
    }
  }

  async function rewrap() {
    try {
      const job = await api("POST", "/rewrap");
      renderJob(job);
      sessionStorage.setItem(jobKey, job.job_id);
      await followJob(job.job_id);
    } catch (error) {
      failure("rewrap-result", error);
    }
  }

  // --------------------------------------------------------------------- all

  async function refresh() {
    try {
      await loadConfig();
      await loadVersions();
      $("error").hidden = true;
    } catch (error) {
      $("error").hidden = false;
      $("error").textContent = `${error.code}: ${error.message}`;
      $("status").textContent = "unknown";
    }
  }

  async function start() {
    $("who").textContent = TenantKmsAuth.describe(settings.auth, tenantId);
    renderProviders();
    $("configure").addEventListener("submit", save);
    $("verify").addEventListener("click", verify);
    $("refresh").addEventListener("click", refresh);
    $("rotate").addEventListener("click", rotate);
    $("rewrap").addEventListener("click", rewrap);
    $("unseal").addEventListener("click", unseal);
    await refresh();
    if (current) await choose(current.provider || "global", current.config);
    const running = sessionStorage.getItem(jobKey);
    if (running) await followJob(running);
    document.body.dataset.ready = "true";
  }

  start();
})();
