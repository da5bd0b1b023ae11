// The admin API's credentials, one entry per way of signing in: headers() answers the headers
// every request carries; stepUp(maxAge) signs in again when a route asks for a fresh login
// (401 step_up_required) and answers whether it did. Local claims stand in for a verified JWT;
// a deployed API takes the bearer token its JWT authorizer checks.
(function () {
  const now = () => Math.floor(Date.now() / 1000);
  const modes = {
    "local-claims": {
      // auth.signedInAt: when the local user signed in; unset, every request is a fresh login.
      headers: async (auth, tenantId) => {
        const claims = { ...auth.claims, tenant_id: tenantId, auth_time: auth.signedInAt ?? now() };
        return { "X-Local-Claims": JSON.stringify(claims) };
      },
      stepUp: async (auth) => {
        auth.signedInAt = now();
        return true;
      },
    },
    bearer: {
      headers: async (auth) => ({ Authorization: `Bearer ${await auth.token()}` }),
      // The deployment's own re-login (e.g. its identity provider with max_age), if it has one.
      stepUp: async (auth, maxAge) => (auth.stepUp ? Boolean(await auth.stepUp(maxAge)) : false),
    },
  };

  function mode(auth) {
    const found = modes[auth.mode];
    if (!found) throw new Error(`unknown auth mode ${auth.mode}`);
    return found;
  }

  window.TenantKmsAuth = {
    headers: (auth, tenantId) => mode(auth).headers(auth, tenantId),
    stepUp: (auth, maxAge) => mode(auth).stepUp(auth, maxAge),
    describe(auth, tenantId) {
      return auth.mode === "local-claims" ? `${auth.claims.sub} (local claims) · tenant ${tenantId}` : `tenant ${tenantId}`;
    },
  };
})();
